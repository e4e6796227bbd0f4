"""Out-of-core denoising of a large 16-bit TIFF (scoretool.bigtiff.denoise_tiff): time and peak memory.

Writes a W×H uint16 grey TIFF (smooth pattern plus Gaussian noise of std --sigma grey levels) band by band
into --dir (not the repository), denoises it in a child process (`scoretool denoise`, which goes band by
band above bigtiff.OUT_OF_CORE_PIXELS, or with --api the library function itself, for any size), and
reports seconds, s/MP, the child's peak RSS (resource.getrusage(RUSAGE_CHILDREN).ru_maxrss), the PSNR
of the noisy and denoised file on a central crop against the clean pattern, and the largest difference
between a crop of the result and in-memory tiling of that crop's neighbourhood (crop_check).

    python bench/bigtiff.py [--width 6000] [--height 5000] [--weights prior-gray] [--tile 512] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, print_table, psnr, save_results  # noqa: E402

from scoretool.bigtiff import OUT_OF_CORE_PIXELS, TiffLayout, tiff_layout  # noqa: E402
from scoretool.engine import tile_grid  # noqa: E402
from scoretool.nets import EDMPrecond, UNetConfig  # noqa: E402
from scoretool.weights import save_model  # noqa: E402


def pattern(r0: int, r1: int, width: int) -> np.ndarray:
    """The clean image's rows [r0, r1) on [0,1]: smooth waves and a few sharp bars."""
    y, x = np.mgrid[r0:r1, 0:width].astype(np.float32)
    img = 0.5 + 0.25 * np.sin(x / 37.0) * np.cos(y / 53.0) + 0.15 * ((x // 97 + y // 89) % 2 - 0.5)
    return np.clip(img, 0, 1)


def write_input(path: Path, width: int, height: int, sigma: float, band: int = 256) -> None:
    """Noisy uint16 TIFF, written band by band (never the whole image in memory)."""
    import tifffile

    made = tifffile.memmap(path, shape=(height, width), dtype=np.uint16, photometric="minisblack")
    layout = TiffLayout(int(made.offset), (height, width), made.dtype)
    del made
    rng = np.random.default_rng(0)
    for r0 in range(0, height, band):
        r1 = min(height, r0 + band)
        noisy = pattern(r0, r1, width) * 65535 + sigma * rng.standard_normal((r1 - r0, width), dtype=np.float32)
        rows = layout.rows(path, r0, r1, "r+")
        rows[...] = np.clip(np.rint(noisy), 0, 65535)
        rows.flush()
        del rows


def crop_psnr(noisy: Path, denoised: Path, size: int = 512) -> tuple[float, float]:
    """PSNR of the noisy and the denoised file against the clean pattern on a central size² crop."""
    h, w = tiff_layout(noisy).shape
    r0, c0 = (h - size) // 2, (w - size) // 2
    clean = pattern(r0, r0 + size, w)[:, c0 : c0 + size]
    out = []
    for path in (noisy, denoised):
        rows = tiff_layout(path).rows(path, r0, r0 + size)
        out.append(psnr(np.asarray(rows[:, c0 : c0 + size], np.float32) / 65535, clean))
        del rows
    return out[0], out[1]


def crop_check(noisy: Path, denoised: Path, weights: str, sigma: float, tile: int, tiles: int = 3) -> dict:
    """The out-of-core result on a crop near the centre against the same tiles computed in memory: the
    whole image's tiles (`tile_grid`, blend weights `_axis_weight` of the whole image) that lie in a
    neighbourhood of `tiles` + 1 tiles a side; the crop leaves out one tile at each side (where tiles
    outside the neighbourhood would also contribute). Both are rounded to 16 bits. Returns the crop (row,
    column, height, width) and the largest difference in 16-bit levels."""
    import scoretool
    from scoretool.engine import _axis_weight

    model = scoretool.load(weights, channels=1, tile=tile)
    engine = model.engine
    h, w = tiff_layout(noisy).shape
    th, tw, ys, xs = tile_grid(h, w, tile, engine.overlap, engine.tile_multiple)  # the whole image's grid
    j, i = (max(0, len(v) // 2 - tiles // 2) for v in (ys, xs))
    ys, xs = ys[j : j + tiles + 1], xs[i : i + tiles + 1]
    r0, c0, r1, c1 = ys[0], xs[0], ys[-1] + th, xs[-1] + tw
    y = np.asarray(tiff_layout(noisy).rows(noisy, r0, r1)[:, c0:c1], np.float32) / 65535
    out, weight = np.zeros(y.shape), np.zeros(y.shape)
    for y0 in ys:
        for x0 in xs:
            part = model.denoise(y[y0 - r0 : y0 - r0 + th, x0 - c0 : x0 - c0 + tw], sigma / 65535)
            wt = np.outer(_axis_weight(y0, th, h, engine.overlap), _axis_weight(x0, tw, w, engine.overlap))
            out[y0 - r0 : y0 - r0 + th, x0 - c0 : x0 - c0 + tw] += part * wt
            weight[y0 - r0 : y0 - r0 + th, x0 - c0 : x0 - c0 + tw] += wt
    ref = np.round(np.clip(out / weight, 0, 1) * 65535)
    got = np.asarray(tiff_layout(denoised).rows(denoised, r0, r1)[:, c0:c1], np.float64)
    inner = (slice(ys[1] - r0, ys[-1] - r0), slice(xs[1] - c0, xs[-1] - c0))
    diff = np.abs(ref[inner] - got[inner])
    return {"crop": [ys[1], xs[1], ys[-1] - ys[1], xs[-1] - xs[1]], "max_diff_16bit_levels": float(diff.max()),
            "pixels_differing": float(np.mean(diff > 0))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=5000)
    ap.add_argument("--sigma", type=float, default=25 * 257, help="noise std in 16-bit grey levels (25/255 of the range)")
    ap.add_argument("--weights", default="prior-gray",
                    help="model name or path; `tinynet`: a random-weight 8/16/32-wide U-Net made here, a probe of the "
                         "time and memory of everything but the network (its PSNR means nothing)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--dir", default="/tmp", help="folder for the generated input and the output (large files)")
    ap.add_argument("--name", default=None, help="result file bench/results/NAME.json (default: denoise-tiff-WxH)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--api", action="store_true", help="call bigtiff.denoise_tiff in the child (any size) instead of the CLI")
    args = ap.parse_args()
    mp = args.width * args.height / 1e6
    folder = Path(args.dir) / f"scoretool-bigtiff-{args.width}x{args.height}"
    folder.mkdir(parents=True, exist_ok=True)
    src, dst = folder / "noisy.tif", folder / "denoised.tif"
    weights = args.weights
    if weights == "tinynet":
        weights = str(folder / "tinynet.safetensors")
        torch.manual_seed(0)
        net = EDMPrecond(UNetConfig(channels=1, widths=[8, 16, 32], blocks_per_level=1, embed_dim=16))
        save_model(weights, net, {"kind": "prior", "training_data": "none (random weights: a time and memory probe)"})
    t0 = time.perf_counter()
    write_input(src, args.width, args.height, args.sigma)
    print(f"wrote {src} ({src.stat().st_size / 2**20:.0f} MiB, {mp:.1f} MP) in {time.perf_counter() - t0:.1f} s", flush=True)

    if args.api:
        code = ("import json, sys; from scoretool.bigtiff import denoise_tiff; "
                "r = denoise_tiff(sys.argv[1], sys.argv[2], float(sys.argv[3]) / 65535, sys.argv[4], tile=int(sys.argv[5]), "
                "overwrite=True); print(json.dumps({'results': [{**r, 'out_of_core': True}]}))")
        cmd = [sys.executable, "-c", code, str(src), str(dst), str(args.sigma), weights, str(args.tile)]
    else:
        cmd = [sys.executable, "-m", "scoretool", "denoise", str(src), "-o", str(dst), "--sigma", str(args.sigma),
               "--weights", weights, "--tile", str(args.tile), "--json", "--quiet", "--overwrite"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode:
        sys.exit(f"scoretool denoise failed ({res.returncode}): {res.stderr.strip()}")
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = json.loads(res.stdout)["results"][0]
    before, after = crop_psnr(src, dst)
    check = crop_check(src, dst, weights, args.sigma, args.tile)
    print(f"crop {check['crop']} against in-memory tiling: largest difference {check['max_diff_16bit_levels']:g} "
          f"16-bit levels ({check['pixels_differing']:.2%} of pixels differ)")
    row = {"image": f"{args.width}x{args.height} uint16", "megapixels": mp, "out_of_core": bool(result.get("out_of_core")),
           "tiles": result.get("tiles"), "seconds": wall, "s_per_mp": wall / mp, "peak_rss_mib": peak_mib,
           "input_mib": src.stat().st_size / 2**20, "psnr_noisy_crop": before, "psnr_denoised_crop": after}
    print_table([row], list(row))
    save_results(args.name or f"denoise-tiff-{args.width}x{args.height}",
                 {"command": "python bench/bigtiff.py " + " ".join(sys.argv[1:]), "child": "scoretool.bigtiff.denoise_tiff" if args.api else " ".join(cmd[1:]),
                  "weights": args.weights, "tile": args.tile, "sigma_grey_levels": args.sigma,
                  "threshold_pixels": OUT_OF_CORE_PIXELS, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                  "rows": [row], "crop_against_in_memory": check})
    if not args.keep:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
