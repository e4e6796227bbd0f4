"""Fuzz every command with generated bad inputs; count what must never happen.

    python bench/fuzz.py                    # 2000 cases in-process + the RSS slice in subprocesses
    python bench/fuzz.py --cases 200 --rss-cases 4
    python bench/fuzz.py --jobs 2           # the cases split over two processes

Cases (fixed seed): corrupt, truncated, bomb and odd files of every readable format (PNG 8/16-bit,
JPEG, BMP, TIFF, .npy) beside a good image; model, OOD-model and checkpoint files with hostile metadata
or damaged bytes; random values for numeric flags. Each case runs one command through typer's CliRunner
(in-process, under `scoretool --max-pixels` so accepted work stays small) and is checked for:
a traceback (an exception that escaped the CLI), an exit code other than 0/1/2, a changed input (SHA-256
of every input file before and after), and a written output with NaN or infinite values. The RSS slice
runs the bombs in fresh processes with the default pixel budget and reports their peak RSS
(getrusage RUSAGE_CHILDREN). Results: bench/results/fuzz.json, with the command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

BENCH_MAX_PIXELS = 2_000_000  # in-process budget (the RSS slice uses the default one)
IMAGE_COMMANDS = ("denoise", "noise", "restore-sr", "restore-inpaint", "restore-deblur", "uncertainty",
                  "evaluate-sure", "evaluate-clean", "ood-score")
HOSTILE = ["0", "-1", "-5", "7", "nan", "inf", "-inf", "1e30", "1e-30", "abc", "", "1e6", "3.5", "0.5"]  # no huge valid
# integers: `restore --steps 100000` is a valid request for hours of work, not a fault
FLAGS = {  # command → numeric flags to fuzz
    "denoise": ["--sigma", "--zeta", "--k", "--tile", "--ensemble", "--sigma-a"],
    "noise": ["--sigma-a", "--tile"],
    "restore-sr": ["--scale", "--steps", "--eta", "--travel", "--sigma-y", "--sigma-max", "--samples", "--tile"],
    "restore-inpaint": ["--mask-random", "--steps", "--sigma-y"],
    "restore-deblur": ["--steps", "--sigma-y"],
    "uncertainty": ["--sigma", "--probes", "--stride", "--smooth", "--iterations", "--margin", "--components"],
    "evaluate-sure": ["--sigma", "--probes", "--data-range"],
    "ood-score": ["--threshold-percentile"],
    "train": ["--steps", "--patch", "--batch", "--lr", "--sigma-min", "--sigma-max", "--blocks", "--checkpoint-minutes"],
}


# ---------------------------------------------------------------- generated files

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, side: int, bit_depth: int = 16, real: bool = False) -> Path:
    """A PNG whose header declares side² pixels; `real`: its zlib stream truly holds them (zero rows)."""
    ihdr = struct.pack(">IIBBBBB", side, side, bit_depth, 0, 0, 0, 0)
    if real:
        z, row, parts = zlib.compressobj(9), b"\0" * (1 + side * bit_depth // 8), []
        parts = [z.compress(row) for _ in range(side)] + [z.flush()]
        data = b"".join(parts)
    else:
        data = zlib.compress(b"\0" * 4096)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b""))
    return path


def tiff_bomb(path: Path, side: int) -> Path:
    """A zlib-compressed tiled TIFF of side² zero pixels (a few MB on disk)."""
    import tifffile

    tile = np.zeros((256, 256), np.uint8)
    tifffile.imwrite(path, (tile for _ in range((side // 256) ** 2)), shape=(side, side), dtype=np.uint8,
                     tile=(256, 256), compression="zlib")
    return path


def npy_bomb(path: Path, side: int) -> Path:
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (side, side)})
    return path


def jpeg_bomb(path: Path, side: int) -> Path:
    """A small JPEG whose SOF header is patched to side×side."""
    from PIL import Image as PILImage

    PILImage.new("L", (16, 16)).save(path)
    raw = bytearray(path.read_bytes())
    i = raw.find(b"\xff\xc0")
    raw[i + 5: i + 9] = struct.pack(">HH", side, side)
    path.write_bytes(bytes(raw))
    return path


def seed_files(folder: Path) -> list[tuple[str, bytes]]:
    """(suffix, bytes) of small valid files of every readable kind, the material mutations start from."""
    import tifffile
    from PIL import Image as PILImage

    from scoretool.io import Image, write_image

    rng = np.random.default_rng(0)
    grey = rng.random((1, 20, 24, 1)).astype(np.float32)
    rgb = rng.random((1, 20, 24, 3)).astype(np.float32)
    out = []
    for i, (suffix, px, dtype, vr) in enumerate([(".png", grey, np.uint8, (0, 255)), (".png", rgb, np.uint16, (0, 65535)),
                                                 (".jpg", grey, np.uint8, (0, 255)), (".bmp", grey, np.uint8, (0, 255)),
                                                 (".tif", grey, np.uint16, (0, 65535)), (".tif", grey, np.float32, (0, 1)),
                                                 (".npy", grey, np.float32, (0, 1))]):
        p = write_image(folder / f"seed{i}{suffix}", Image(px, np.dtype(dtype), None, vr, grey_2d=px.shape[-1] == 1))
        out.append((suffix, p.read_bytes()))
    PILImage.new("CMYK", (24, 20), (10, 200, 30, 5)).save(folder / "cmyk.jpg")
    PILImage.new("P", (24, 20)).save(folder / "palette.png")
    tifffile.imwrite(folder / "stack.tif", (rng.random((3, 20, 24)) * 255).astype(np.uint8))
    for name in ("cmyk.jpg", "palette.png", "stack.tif"):
        out.append((Path(name).suffix, (folder / name).read_bytes()))
    return out


def bad_image(rng: np.random.Generator, seeds, folder: Path, i: int) -> Path:
    """One generated bad (or odd) image file in `folder`."""
    kind = rng.integers(14)
    suffix, raw = seeds[rng.integers(len(seeds))]
    p = folder / f"bad{i}{suffix}"
    if kind <= 4:  # byte flips
        data = bytearray(raw)
        for _ in range(int(rng.integers(1, 30))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        p.write_bytes(bytes(data))
    elif kind <= 6:  # truncated
        p.write_bytes(raw[: int(rng.integers(len(raw)))])
    elif kind == 7:  # random bytes, or nothing
        p.write_bytes(rng.bytes(int(rng.integers(0, 300))))
    elif kind == 8:  # header bombs of every format
        side = int(rng.choice([30000, 65000, 100000]))
        p = [lambda: png_bomb(folder / f"bad{i}.png", side, int(rng.choice([8, 16]))),
             lambda: npy_bomb(folder / f"bad{i}.npy", side), lambda: jpeg_bomb(folder / f"bad{i}.jpg", min(side, 65000))][rng.integers(3)]()
    elif kind == 9:  # non-finite or odd arrays
        arrays = [np.full((20, 24), np.nan, np.float32), np.full((20, 24), np.inf, np.float32),
                  np.zeros((20, 24), np.complex64), np.zeros((2, 2), np.float32), np.zeros((2, 3, 4, 5, 6), np.float32),
                  np.zeros((20, 24, 7), np.float32), np.array(["a", "b"]), np.full((20, 24), 1e38, np.float32),
                  np.zeros((0, 24), np.float32), np.zeros((20, 24), bool)]
        p = folder / f"bad{i}.npy"
        np.save(p, arrays[rng.integers(len(arrays))])
    elif kind == 10:  # a pickle in a .npy
        p = folder / f"bad{i}.npy"
        np.save(p, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    elif kind == 11:  # another format's bytes under this suffix
        p.write_bytes(seeds[rng.integers(len(seeds))][1])
    else:  # odd but valid: CMYK, palette, stack, RGB 16-bit …
        p = folder / f"odd{i}{suffix}"
        p.write_bytes(raw)
    return p


def hostile_safetensors(rng: np.random.Generator, source: Path, dest: Path, kind: str) -> Path:
    """A model / OOD / checkpoint file derived from `source`: hostile metadata or damaged bytes."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(source), framework="numpy") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    choice = int(rng.integers(7))
    if choice == 0:  # damaged bytes
        raw = bytearray(source.read_bytes())
        for _ in range(int(rng.integers(1, 1000))):
            raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        dest.write_bytes(bytes(raw))
        return dest
    if choice == 1:
        dest.write_bytes(source.read_bytes()[: int(rng.integers(source.stat().st_size))])
        return dest
    if choice == 2:  # NaN tensors
        k = list(tensors)[int(rng.integers(len(tensors)))]
        tensors[k] = np.full_like(tensors[k], np.nan)
    elif choice == 3:  # a missing tensor
        tensors.pop(list(tensors)[int(rng.integers(len(tensors)))])
    else:  # hostile metadata values
        key = {"model": "config", "ood": "spec", "checkpoint": "info"}[kind]
        record = json.loads(meta[key])
        fields = list(record) or ["x"]
        field = fields[int(rng.integers(len(fields)))]
        values = [10**6, 10**9, -1, 0, None, "abc", [10**6, 16], [-3], float("nan"), {"a": 1}, [], 10**5]
        record[field] = values[int(rng.integers(len(values)))]
        meta[key] = json.dumps(record) if choice != 6 else "{not json"
    save_file(tensors, str(dest), metadata=meta)
    return dest


# ---------------------------------------------------------------- one case

def digest(paths) -> dict[str, str]:
    out = {}
    for root in paths:
        for p in ([root] if root.is_file() else sorted(root.rglob("*"))):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def non_finite_outputs(folder: Path, planted: dict[str, str]) -> list[str]:
    """Files under `folder` written by the command (not `planted` there before it, unchanged) that hold
    NaN or infinite values."""
    bad = []
    now = digest([folder])
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or planted.get(str(p)) == now.get(str(p)):
            continue
        try:
            if p.suffix == ".npy":
                a = np.load(p, allow_pickle=False)
                ok = not np.issubdtype(a.dtype, np.floating) or np.isfinite(a).all()
            elif p.suffix in (".tif", ".tiff"):
                import tifffile

                a = tifffile.imread(p)
                ok = not np.issubdtype(a.dtype, np.floating) or np.isfinite(a).all()
            elif p.suffix == ".csv":
                ok = not any(tok.strip().lower() in ("nan", "inf", "-inf") for tok in p.read_text().replace("\n", ",").split(","))
            elif p.suffix == ".safetensors":
                from safetensors.numpy import load_file

                ok = all(not np.issubdtype(v.dtype, np.floating) or np.isfinite(v).all() for v in load_file(str(p)).values())
            else:
                ok = True  # 8/16-bit images hold integers
        except Exception:  # noqa: BLE001 - an unreadable output is counted too
            ok = False
        if not ok:
            bad.append(str(p))
    return bad


class Fixtures:
    """Tiny models, an OOD model, a checkpoint and good images, made once."""

    def __init__(self, root: Path):
        import torch
        from typer.testing import CliRunner

        from scoretool.cli import app
        from scoretool.io import Image, write_image
        from scoretool.nets import EDMPrecond, UNetConfig
        from scoretool.weights import save_model

        self.root, self.runner, self.app = root, CliRunner(), app
        root.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        cfg = dict(widths=[8, 16], blocks_per_level=1, embed_dim=16)
        self.model = root / "prior.safetensors"
        save_model(self.model, EDMPrecond(UNetConfig(channels=1, **cfg)), {"kind": "prior", "sigma_min": 0.002, "sigma_max": 10.0})
        self.n2s = root / "n2s.safetensors"
        save_model(self.n2s, EDMPrecond(UNetConfig(channels=1, **cfg)),
                   {"kind": "noise2score", "sigma_min": 0.001, "sigma_max": 0.1, "noise": {"family": "gaussian", "sigma": 25}})
        rng = np.random.default_rng(1)
        self.good = root / "good"
        self.good.mkdir(exist_ok=True)
        for i in range(12):
            write_image(self.good / f"g{i:02d}.png", Image(rng.random((1, 20, 24, 1)).astype(np.float32), np.dtype(np.uint8), None, (0, 255)))
        self.ood = root / "ood.safetensors"
        self.run(["ood", "fit", str(self.good), "-o", str(self.ood), "--weights", str(self.model), "--method", "knn",
                  "--levels", "2", "--crop", "16", "--patch", "8", "--crops", "2"], check=True)
        self.ckpt_model = root / "ck.safetensors"
        self.run(["train", str(self.good), "-o", str(self.ckpt_model), "--steps", "2", "--patch", "16", "--batch", "2",
                  "--widths", "8,16", "--blocks", "1", "--precision", "fp32", "--checkpoint-minutes", "0"], check=True)
        self.ckpt = root / "ck.ckpt.safetensors"
        self.seeds = seed_files(root)

    def run(self, args: list[str], check: bool = False):
        res = self.runner.invoke(self.app, ["--max-pixels", str(BENCH_MAX_PIXELS), *args])
        if check and res.exit_code != 0:
            raise RuntimeError(f"fixture command failed: {args}: {res.output}")
        return res


def command_args(name: str, fx: Fixtures, inp: Path, out: Path, model: Path | None = None, ood: Path | None = None) -> list[str]:
    m = str(model or fx.model)
    return {
        "denoise": ["denoise", str(inp), "-o", str(out / "den"), "--sigma", "10", "--weights", m],
        "noise": ["noise", str(inp), "--weights", str(model or fx.n2s)],
        "restore-sr": ["restore", str(inp), "-o", str(out / "sr"), "--task", "sr", "--scale", "2", "--steps", "2", "--weights", m],
        "restore-inpaint": ["restore", str(inp), "-o", str(out / "inp"), "--task", "inpaint", "--mask-random", "0.5",
                            "--steps", "2", "--weights", m],
        "restore-deblur": ["restore", str(inp), "-o", str(out / "deb"), "--task", "deblur", "--kernel", "gaussian:1",
                           "--steps", "2", "--weights", m],
        "uncertainty": ["uncertainty", str(inp), "-o", str(out / "unc"), "--sigma", "10", "--probes", "1", "--weights", m],
        "evaluate-sure": ["evaluate", str(inp), "--sure", "--sigma", "10", "--weights", m, "--csv", str(out / "e.csv")],
        "evaluate-clean": ["evaluate", str(inp), "--clean", str(fx.good), "--csv", str(out / "e.csv")],
        "ood-score": ["ood", "score", str(inp), "--model", str(ood or fx.ood), "--csv", str(out / "s.csv")],
        "ood-eval": ["ood", "eval", "--model", str(ood or fx.ood), "--inliers", str(fx.good), "--outliers", str(inp),
                     "--plot", str(out / "h.png")],
        "train": ["train", str(inp), "-o", str(out / "t.safetensors"), "--steps", "2", "--patch", "16", "--batch", "2",
                  "--widths", "8,16", "--blocks", "1", "--precision", "fp32"],
        "weights": ["weights", m],
    }[name]


def make_case(i: int, rng: np.random.Generator, fx: Fixtures, work: Path) -> tuple[str, list[str], list[Path], Path]:
    """(kind, CLI arguments, input paths to hash, output folder) of case i."""
    case = work / f"c{i}"
    inp, out = case / "in", case / "out"
    inp.mkdir(parents=True)
    out.mkdir()
    shutil.copy(fx.good / "g00.png", inp / "g00.png")
    roll = rng.random()
    if roll < 0.55:
        bad = bad_image(rng, fx.seeds, inp, i)
        name = IMAGE_COMMANDS[rng.integers(len(IMAGE_COMMANDS))]
        target = inp if rng.random() < 0.7 else bad
        return f"image:{name}", command_args(name, fx, target, out), [inp], out
    if roll < 0.70:
        model = hostile_safetensors(rng, fx.model, case / "model.safetensors", "model")
        name = ["denoise", "restore-sr", "uncertainty", "evaluate-sure", "weights"][rng.integers(5)]
        return f"model:{name}", command_args(name, fx, inp, out, model=model), [inp, model], out
    if roll < 0.80:
        ood = hostile_safetensors(rng, fx.ood, case / "ood.safetensors", "ood")
        name = ["ood-score", "ood-eval"][rng.integers(2)]
        return f"ood:{name}", command_args(name, fx, inp, out, ood=ood), [inp, ood], out
    if roll < 0.83:
        shutil.copy(fx.ckpt_model, out / "t.safetensors")
        hostile_safetensors(rng, fx.ckpt, out / "t.ckpt.safetensors", "checkpoint")
        args = command_args("train", fx, fx.good, out) + ["--resume", "--checkpoint-minutes", "0"]
        args[args.index("--steps") + 1] = "4"
        return "checkpoint:train", args, [fx.good], out
    name = list(FLAGS)[rng.integers(len(FLAGS))]
    flag = FLAGS[name][rng.integers(len(FLAGS[name]))]
    value = HOSTILE[rng.integers(len(HOSTILE))]
    args = command_args(name, fx, fx.good if name == "train" else inp, out)
    if flag in args:
        args[args.index(flag) + 1] = value
    elif flag in ("--zeta", "--k"):
        args[args.index("--sigma"): args.index("--sigma") + 2] = [flag, value]
    else:
        args += [flag, value]
    return f"flag:{name}{flag}", args, [inp, fx.good], out


def run_cases(n: int, seed: int, work: Path, fx: Fixtures | None = None) -> dict:
    """Run n generated cases in-process; returns counts and the failing cases."""
    fx = fx or Fixtures(work / "fixtures")
    rng = np.random.default_rng(seed)
    counts, exits, problems = Counter(), Counter(), []
    t0 = time.perf_counter()
    for i in range(n):
        kind, args, inputs, out = make_case(i, rng, fx, work)
        before, planted = digest(inputs), digest([out])
        res = fx.run(args)
        counts[kind.split(":")[0]] += 1
        exits[res.exit_code] += 1
        issue = []
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            issue.append(f"traceback: {type(res.exception).__name__}: {res.exception}")
        if "Traceback" in res.output:
            issue.append("traceback in output")
        if res.exit_code not in (0, 1, 2):
            issue.append(f"exit {res.exit_code}")
        if digest(inputs) != before:
            issue.append("input changed")
        bad = non_finite_outputs(out, planted)
        if bad:
            issue.append(f"non-finite output {bad}")
        if issue:
            problems.append({"case": i, "kind": kind, "args": args, "issues": issue, "output": res.output[-500:]})
        shutil.rmtree(work / f"c{i}", ignore_errors=True)
    return {"cases": n, "seed": seed, "by_kind": dict(counts), "exit_codes": {str(k): v for k, v in sorted(exits.items())},
            "tracebacks": sum(any(s.startswith("traceback") for s in p["issues"]) for p in problems),
            "bad_exit_codes": sum(any(s.startswith("exit") for s in p["issues"]) for p in problems),
            "inputs_changed": sum("input changed" in p["issues"] for p in problems),
            "non_finite_outputs_written": sum(any(s.startswith("non-finite") for s in p["issues"]) for p in problems),
            "problems": problems, "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_gb_in_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def _shard(job: tuple[int, int, str]) -> dict:
    n, seed, work = job
    return run_cases(n, seed, Path(work))


def run_parallel(n: int, seed: int, work: Path, jobs: int) -> dict:
    """run_cases split over `jobs` processes (seeds seed, seed+1, …; each makes its own fixtures); merged counts."""
    from multiprocessing import get_context

    sizes = [n // jobs + (k < n % jobs) for k in range(jobs)]
    with get_context("spawn").Pool(jobs) as pool:
        parts = pool.map(_shard, [(m, seed + k, str(work / f"shard{k}")) for k, m in enumerate(sizes)])
    merged = {"cases": n, "seeds": [seed + k for k in range(jobs)], "by_kind": Counter(), "exit_codes": Counter(), "problems": []}
    for part in parts:
        merged["by_kind"].update(part["by_kind"])
        merged["exit_codes"].update(part["exit_codes"])
        merged["problems"] += part["problems"]
    for key in ("tracebacks", "bad_exit_codes", "inputs_changed", "non_finite_outputs_written"):
        merged[key] = sum(p[key] for p in parts)
    merged["seconds"] = max(p["seconds"] for p in parts)
    merged["peak_rss_gb_in_process"] = max(p["peak_rss_gb_in_process"] for p in parts)
    merged["by_kind"], merged["exit_codes"] = dict(merged["by_kind"]), dict(sorted(merged["exit_codes"].items()))
    return merged


def rss_slice(work: Path, fx: Fixtures, count: int) -> dict:
    """Bombs (real PNG and TIFF zlib bombs, header bombs) through fresh processes with the default pixel
    budget; peak RSS over all of them (RUSAGE_CHILDREN) and each exit code."""
    bombs = work / "bombs"
    bombs.mkdir()
    shutil.copy(fx.good / "g00.png", bombs / "g00.png")
    files = [png_bomb(bombs / "png16-30000.png", 30000, 16, real=True), tiff_bomb(bombs / "tiff-40960.tif", 40960),
             npy_bomb(bombs / "npy-40960.npy", 40960), jpeg_bomb(bombs / "jpeg-65000.jpg", 65000)]
    small = fx.good / "g01.png"
    runs = [["denoise", str(bombs), "-o", str(work / "bomb-out"), "--sigma", "10", "--weights", str(fx.model), "--json"],
            ["restore", str(small), "-o", str(work / "sr1000.png"), "--task", "sr", "--scale", "1000", "--steps", "2",
             "--weights", str(fx.model)],
            ["restore", str(small), "-o", str(work / "k.png"), "--task", "deblur", "--kernel", "gaussian:1e6", "--weights", str(fx.model)]]
    runs += [["noise", str(f), "--weights", str(fx.n2s)] for f in files]
    rows = []
    for args in runs[:count]:
        r = subprocess.run([sys.executable, "-m", "scoretool", *args], capture_output=True, text=True, timeout=600)
        rows.append({"args": " ".join(args[:2]) + " …", "exit_code": r.returncode, "stderr": r.stderr.strip()[-300:]})
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return {"runs": rows, "bomb_sizes_bytes": {f.name: f.stat().st_size for f in files},
            "peak_rss_gb": round(peak, 3), "ok": peak <= 2.0 and all(r["exit_code"] in (1, 2) for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rss-cases", type=int, default=7)
    ap.add_argument("--jobs", type=int, default=1, help="processes sharing the cases (seeds seed, seed+1, …)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        fx = Fixtures(work / "fixtures")
        if args.jobs > 1:
            result = run_parallel(args.cases, args.seed, work, args.jobs)
        else:
            result = run_cases(args.cases, args.seed, work, fx)
        print(json.dumps({k: v for k, v in result.items() if k != "problems"}, indent=2), flush=True)
        for p in result["problems"][:20]:
            print(p, flush=True)
        rss = rss_slice(work, fx, args.rss_cases)
        print(json.dumps(rss, indent=2), flush=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import save_results

    save_results("fuzz", {"bench": "fuzz", "command": "python " + " ".join(sys.argv),
                          "in_process_max_pixels": BENCH_MAX_PIXELS, **result, "rss_slice": rss})


if __name__ == "__main__":
    main()
