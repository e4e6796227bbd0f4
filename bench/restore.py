"""Restoration with the bundled priors — DDNM / DDNM+ sampling and the pnp sampler — beside simple
baselines, in the same run.

    python bench/restore.py                         # Set12, BSD68 (grey), CBSD68 (colour); all tasks; ddnm
    python bench/restore.py --samplers pnp,ddnm     # both samplers side by side (scoretool restore --sampler)
    python bench/restore.py --quick                 # 2 Set12 images, 20 steps
    python bench/restore.py --sets Set12 --tasks sr4,inpaint50 --images 6 --samplers ddnm --steps 25 --sigma-max 0.25 --start smooth
    python bench/restore.py --big 2048 --big-steps 3 --sets none   # 2048² colour SR×2 → 4096²: memory, s/MP

Protocol: clean x on [0,1] (cropped to a multiple of 4 for SR), degraded input made here with the
same operator the restoration uses, noise in float (seed = image index), PSNR (data range 1) and SSIM
after clamping to [0,1]. Tasks and peers:
  sr4         ×4 average pooling, noise-free: each sampler vs bicubic upsampling (skimage resize order 3) and A†y
  sr4_noisy   the same with σ_y = 0.05: each sampler given σ_y (ddnm: DDNM+) and ignoring it, bicubic
  inpaint50/80  50% / 80% of pixels missing at random: each sampler vs skimage inpaint_biharmonic and A†y
  colorize    colour sets only: each sampler vs A†y (grey copied to RGB); residual ‖mean_c(x̂) − y‖/‖y‖; montage PNG
  deblur      Gaussian kernel std 2, circular, σ_y = 0.01: each sampler given σ_y vs skimage Wiener and
              Richardson–Lucy (both with their best parameter from a small grid per image: an oracle in their favour)
  deblur8     the same blur, no added noise, rounded to 8 bits like a saved file: each sampler given σ_y = the
              rounding std (io.ROUNDING_STD, what `scoretool restore` takes for an integer file) and σ_y = 0, same peers
The `residual` column is ‖A·x̂ − y‖/‖y‖ (noise-free tasks: ≤ 1e-3 expected). Seconds are per image.
--steps and --sigma-max default to each sampler's own (scoretool.api.SAMPLERS); --eta, --travel,
--samples and --start go to ddnm only.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, load_set, print_table, psnr, save_results  # noqa: E402

import scoretool.api as api  # noqa: E402
from scoretool.io import ROUNDING_STD  # noqa: E402
from scoretool.operators import AvgPoolSR, Blur, gaussian_kernel  # noqa: E402

ALL_TASKS = ["sr4", "sr4_noisy", "inpaint50", "inpaint80", "colorize", "deblur", "deblur8"]
COLOUR_SETS = {"CBSD68"}


def ssim(est: np.ndarray, clean: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.clip(est, 0, 1), clean, data_range=1.0,
                                       channel_axis=-1 if clean.ndim == 3 else None))


def to_t(x: np.ndarray):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    return (t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None])


def from_t(t) -> np.ndarray:
    a = t[0].permute(1, 2, 0).numpy().astype(np.float32)
    return a[..., 0] if a.shape[-1] == 1 else a


def shape_of(x):
    return (1, *x.shape) if x.ndim == 2 else (x.shape[2], x.shape[0], x.shape[1])


def bicubic_up(lr: np.ndarray, shape) -> np.ndarray:
    from skimage.transform import resize

    return resize(lr, shape, order=3, mode="symmetric", anti_aliasing=False).astype(np.float32)


def wiener_best(y, psf, clean):
    from skimage.restoration import wiener

    best = None
    for bal in (0.003, 0.01, 0.03, 0.1):
        chans = [y] if y.ndim == 2 else [y[..., c] for c in range(3)]
        est = [wiener(ch, psf, balance=bal, clip=False) for ch in chans]
        est = est[0] if y.ndim == 2 else np.stack(est, -1)
        p = psnr(est, clean)
        if best is None or p > best[0]:
            best = (p, est, bal)
    return best[1], f"balance={best[2]}"


def rl_best(y, psf, clean):
    from skimage.restoration import richardson_lucy

    best = None
    for it in (10, 30, 60):
        chans = [y] if y.ndim == 2 else [y[..., c] for c in range(3)]
        est = [richardson_lucy(np.clip(ch, 1e-6, None), psf, num_iter=it, clip=False) for ch in chans]
        est = est[0] if y.ndim == 2 else np.stack(est, -1)
        p = psnr(est, clean)
        if best is None or p > best[0]:
            best = (p, est, it)
    return best[1], f"num_iter={best[2]}"


def run_task(task, name, x, idx, weights, args, montage):
    """Rows (one per method) for one task on one clean image x."""
    rng = np.random.default_rng(idx)
    common = dict(steps=args.steps, sigma_max=args.sigma_max, cycle_dihedral=not args.no_dihedral, weights=weights,
                  device=args.device, precision=args.precision, tile=args.tile, seed=args.seed + idx)
    ddnm_only = {k: getattr(args, k) for k in ("eta", "travel", "start", "samples") if getattr(args, k) is not None}
    rows = []

    def add(method, est, seconds=None, nfe=None, residual=None, note=None):
        rows.append({"task": task, "image": name, "method": method, "psnr": psnr(est, x), "ssim": ssim(est, x),
                     "seconds": seconds, "nfe": nfe, "residual": residual, "note": note})

    def restore(label, y, **kw):
        """One row per sampler (method "SAMPLER LABEL"); returns the first sampler's output."""
        outs = []
        for sampler in args.samplers.split(","):
            t0 = time.perf_counter()
            out, info = api.restore(y, **kw, **common, sampler=sampler, **(ddnm_only if sampler == "ddnm" else {}))
            add(f"{sampler} {label}".strip(), out, time.perf_counter() - t0, info["nfe"], info["residual"])
            outs.append(out)
        return outs[0]

    if task in ("sr4", "sr4_noisy"):
        h, w = x.shape[0] // 4 * 4, x.shape[1] // 4 * 4
        x = x[:h, :w]
        op = AvgPoolSR(4, shape_of(x))
        lr = from_t(op.A(to_t(x)))
        sy = 0.05 if task == "sr4_noisy" else 0.0
        lr = (lr + sy * rng.standard_normal(lr.shape)).astype(np.float32)
        if sy:
            restore("(σ_y=0.05)", lr, task="sr", scale=4, sigma_y=sy)
            restore("(σ_y ignored)", lr, task="sr", scale=4)
        else:
            restore("", lr, task="sr", scale=4)
        t0 = time.perf_counter()
        add("bicubic", bicubic_up(lr, x.shape), time.perf_counter() - t0)
        add("A†y", from_t(op.A_dagger(to_t(lr))), 0.0)
    elif task in ("inpaint50", "inpaint80"):
        from skimage.restoration import inpaint_biharmonic

        frac = 0.5 if task == "inpaint50" else 0.8
        missing = rng.random(x.shape[:2]) < frac
        y = x.copy()
        y[missing] = 0
        restore("", y, task="inpaint", mask=missing)
        t0 = time.perf_counter()
        add("inpaint_biharmonic", inpaint_biharmonic(y, missing, channel_axis=-1 if x.ndim == 3 else None),
            time.perf_counter() - t0)
        add("A†y", y, 0.0)
    elif task == "colorize":
        if x.ndim != 3:
            return rows
        grey = x.mean(-1).astype(np.float32)
        out = restore("", grey, task="colorize")
        add("A†y (grey copy)", np.repeat(grey[..., None], 3, -1), 0.0)
        if len(montage) < args.montage_images:
            montage.append(np.concatenate([np.repeat(grey[..., None], 3, -1), np.clip(out, 0, 1), x], 1))
    elif task in ("deblur", "deblur8"):
        k = gaussian_kernel(2.0)
        op = Blur(k, shape_of(x))
        if task == "deblur":
            y = (from_t(op.A(to_t(x))) + 0.01 * rng.standard_normal(x.shape)).astype(np.float32)
            restore("(σ_y=0.01)", y, task="deblur", kernel=k, sigma_y=0.01)
        else:
            y = (np.round(np.clip(from_t(op.A(to_t(x))), 0, 1) * 255) / 255).astype(np.float32)
            restore("(σ_y = rounding std)", y, task="deblur", kernel=k, sigma_y=ROUNDING_STD / 255)
            restore("(σ_y = 0)", y, task="deblur", kernel=k)
        for label, fn in (("Wiener (best balance)", wiener_best), ("Richardson–Lucy (best iters)", rl_best)):
            t0 = time.perf_counter()
            est, note = fn(y, k, x)
            add(label, est, time.perf_counter() - t0, note=note)
        add("blurred input", y, 0.0)
    else:
        raise SystemExit(f"unknown task {task}; expected {', '.join(ALL_TASKS)}")
    return rows


def big_run(size: int, args) -> dict:
    """SR ×2 of a size² colour image (a CBSD68 image tiled) → (2·size)²: seconds, s/MP, peak memory."""
    imgs = load_set("CBSD68", 1)
    base = imgs[0][1]
    reps = (size // base.shape[0] + 1, size // base.shape[1] + 1, 1)
    lr = np.tile(base, reps)[:size, :size].astype(np.float32)
    t0 = time.perf_counter()
    out, info = api.restore(lr, "sr", scale=2, steps=args.big_steps, weights=args.weights_rgb, device=args.device,
                            precision=args.precision, tile=args.tile, seed=args.seed)
    seconds = time.perf_counter() - t0
    mp = out.shape[0] * out.shape[1] / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB → GiB
    return {"lr": [size, size, 3], "out": list(out.shape), "steps": args.big_steps, "nfe": info["nfe"],
            "seconds": seconds, "seconds_per_megapixel_per_step": seconds / mp / info["nfe"],
            "peak_rss_gib": peak, "residual": info["residual"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="Set12,BSD68,CBSD68", help="comma list of ../shared/data sets, or none")
    ap.add_argument("--tasks", default=",".join(ALL_TASKS), help=f"comma list of {', '.join(ALL_TASKS)}")
    ap.add_argument("--images", type=int, default=None, help="first N images per set (default all)")
    ap.add_argument("--quick", action="store_true", help="2 Set12 images, 20 steps (unless given)")
    ap.add_argument("--samplers", default="ddnm", help="comma list of pnp, ddnm (scoretool restore --sampler)")
    ap.add_argument("--steps", type=int, default=None, help="network evaluations (default: each sampler's, 25 pnp, 100 ddnm)")
    ap.add_argument("--eta", type=float, default=None, help="ddnm only (default 1)")
    ap.add_argument("--travel", type=int, default=None, help="ddnm only (default 0)")
    ap.add_argument("--samples", type=int, default=None, help="ddnm only: average N posterior samples per image")
    ap.add_argument("--no-dihedral", action="store_true", help="same orientation at every step (off: cycle the 8 flips/rotations)")
    ap.add_argument("--sigma-max", type=float, default=None, help="first level on [0,1] (default: each sampler's, 0.15 pnp, 1 ddnm)")
    ap.add_argument("--start", default=None, help="ddnm only: smooth (null space filled smoothly) or pinv (A†y, default)")
    ap.add_argument("--weights-gray", default="prior-gray")
    ap.add_argument("--weights-rgb", default="prior-rgb")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--montage-images", type=int, default=4)
    ap.add_argument("--big", type=int, default=0, help="also SR×2 a BIG² colour image (e.g. 2048): memory and s/MP")
    ap.add_argument("--big-steps", type=int, default=3)
    ap.add_argument("--name", default="restore", help="results file bench/results/NAME.json")
    args = ap.parse_args()
    if args.quick:
        args.images = args.images or 2
        if args.sets == ap.get_default("sets"):
            args.sets = "Set12"
        args.steps = args.steps or 20
    sets = [s for s in args.sets.split(",") if s and s != "none"]
    tasks = [t for t in args.tasks.split(",") if t]
    for t in tasks:
        if t not in ALL_TASKS:
            raise SystemExit(f"unknown task {t}; expected {', '.join(ALL_TASKS)}")

    rows, skipped, montage = [], [], []
    for set_name in sets:
        weights = args.weights_rgb if set_name in COLOUR_SETS else args.weights_gray
        try:
            api.load(weights, 3 if set_name in COLOUR_SETS else 1, args.device, args.precision, args.tile)
        except Exception as e:  # noqa: BLE001 - a missing prior skips its sets, the rest goes on
            skipped.append(f"{set_name}: weights {weights} unavailable ({e})")
            print(f"skipping {set_name}: {e}", file=sys.stderr)
            continue
        for idx, (name, x) in enumerate(load_set(set_name, args.images)):
            for task in tasks:
                for r in run_task(task, name, x, idx, weights, args, montage):
                    r["set"] = set_name
                    rows.append(r)
                    print(f"{set_name} {name} {task} {r['method']}: {r['psnr']:.2f} dB", file=sys.stderr)

    summary = []
    for key in dict.fromkeys((r["set"], r["task"], r["method"]) for r in rows):
        sel = [r for r in rows if (r["set"], r["task"], r["method"]) == key]
        secs = [r["seconds"] for r in sel if r["seconds"] is not None]
        res = [r["residual"] for r in sel if r["residual"] is not None]
        summary.append({"set": key[0], "task": key[1], "method": key[2], "images": len(sel),
                        "psnr": float(np.mean([r["psnr"] for r in sel])), "ssim": float(np.mean([r["ssim"] for r in sel])),
                        "s/image": float(np.mean(secs)) if secs else None,
                        "nfe": sel[0]["nfe"], "max residual": max(res) if res else None})
    summary.sort(key=lambda r: (r["set"], r["task"], -r["psnr"]))
    print(f"\nRestoration, samplers {args.samplers}, steps {args.steps or 'default'}, σ_max {args.sigma_max or 'default'}, "
          f"ddnm η={args.eta}, travel={args.travel}, start={args.start}, samples={args.samples}, dihedral={not args.no_dihedral}")
    print_table(summary, ["set", "task", "method", "images", "psnr", "ssim", "s/image", "nfe", "max residual"])
    big = None
    if args.big:
        big = big_run(args.big, args)
        print(f"\nbig: {big}")
    if montage:
        import imageio.v3 as iio

        h = min(m.shape[0] for m in montage)
        w = min(m.shape[1] for m in montage)
        path = RESULTS / f"{args.name}-colorize-montage.png"
        RESULTS.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, (np.concatenate([m[:h, :w] for m in montage], 0) * 255).round().astype(np.uint8))
        print(f"montage (grey input | DDNM | truth): {path}")
    for s in skipped:
        print(f"skipped {s}")
    save_results(args.name, {"config": {k: v for k, v in vars(args).items()}, "summary": summary, "rows": rows,
                             "big": big, "skipped": skipped})


if __name__ == "__main__":
    main()
