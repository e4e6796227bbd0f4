"""How close denoising runs to the hardware: per model and precision, MP/s, achieved FLOP/s and the
fraction of the measured matrix-multiply peak; the cost per MP of a folder of many small images
beside one large image (per-image overhead); the accuracy cost of bf16.

    python bench/engine.py                                   # prior-gray and prior-rgb, this machine
    python bench/engine.py --weights prior-gray --small 500 --small-size 128 --large 2048
    python bench/engine.py --name engine-cpu-before          # another checkout: PYTHONPATH=... (before/after)

Peak: the best of at least 10 (N×N)·(N×N) matmuls in each precision on the same threads (a measured, not
datasheet, limit: convolutions go through the same matrix units). FLOP/s = 2 · MACs/pixel · pixels/s
(MACs of the convolutions only, `nets.macs_per_pixel`). "many small" denoises a stack of `--small`
images of `--small-size`² in one `scoretool.api.denoise` call (what a folder costs through the Python
API), "one by one" calls it per image; "one large" is one `--large`² image (tiled). `--restore N`
times an N² restoration (SR ×4 and 50% inpainting, default grey prior and sampler) per precision.
Seconds are the minimum of `--repeats` runs (interleaved for the folder rows; the machine may be shared).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import gaussian_noisy, load_set, print_table, psnr, save_results  # noqa: E402

import scoretool.api as api  # noqa: E402
from scoretool.engine import Engine, bf16_available, select_device  # noqa: E402
from scoretool.nets import count_parameters, macs_per_pixel  # noqa: E402
from scoretool.weights import load_model  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_seconds(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


PEAK_REPEATS = 10
"""Matmuls timed for the peak: on a shared or frequency-scaling CPU a best of 2 can read far below it."""


def matmul_peak(device: torch.device, precision: str, n: int, repeats: int) -> float:
    """FLOP/s of the best (n×n)·(n×n) matmul."""
    a = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    b = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    return 2 * n**3 / best_seconds(lambda: a @ b, repeats, device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--weights", default="prior-gray,prior-rgb", help="comma list of models")
    ap.add_argument("--size", type=int, default=512, help="side of the square batch item for MP/s")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peak-n", type=int, default=2048, help="matmul side for the measured peak")
    ap.add_argument("--small", type=int, default=500, help="number of small images (0 = skip)")
    ap.add_argument("--small-size", type=int, default=128)
    ap.add_argument("--large", type=int, default=2048, help="side of the one large image")
    ap.add_argument("--images", type=int, default=5, help="BSD68 images for the bf16 accuracy check")
    ap.add_argument("--restore", type=int, default=0,
                    help="side of a grey image restored by the default path of api.restore (SR ×4, 50%% inpainting), "
                         "timed per precision (0 = skip)")
    ap.add_argument("--name", default=None, help="results file bench/results/NAME.json (default engine-DEVICE)")
    args = ap.parse_args()
    device = select_device(args.device)
    precisions = ["fp32"] + (["bf16"] if bf16_available(device) else [])
    peaks = {p: matmul_peak(device, p, args.peak_n, max(args.repeats, PEAK_REPEATS)) for p in precisions}
    models, rows = [], []
    for name in args.weights.split(","):
        net, info = load_model(name)
        ch, macs = net.config.channels, macs_per_pixel(net)
        models.append({"weights": name, "channels": ch, "parameters": count_parameters(net), "macs_per_pixel": macs})
        x = torch.rand(args.batch, ch, args.size, args.size)
        for p in precisions:
            engine = Engine(net, device, p)
            sec = best_seconds(lambda e=engine, x=x: e.denoise(x, 0.1), args.repeats, device)
            mp_s = x[:, 0].numel() / sec / 1e6
            flops = 2 * macs * mp_s * 1e6
            rows.append({"weights": name, "precision": p, "s/MP": 1 / mp_s, "MP/s": mp_s, "GFLOP/s": flops / 1e9,
                         "peak GFLOP/s": peaks[p] / 1e9, "of peak": flops / peaks[p]})
    per_image = []
    if args.small:
        name = args.weights.split(",")[0]
        ch = load_model(name)[0].config.channels
        rng = np.random.default_rng(0)
        small = rng.random((args.small, args.small_size, args.small_size, ch), dtype=np.float32)
        large = rng.random((args.large, args.large, ch), dtype=np.float32)
        run = {"many small (one call)": lambda: api.denoise(small, 0.1, weights=name, device=args.device),
               "many small (one by one)": lambda: [api.denoise(im, 0.1, weights=name, device=args.device) for im in small],
               "one large": lambda: api.denoise(large, 0.1, weights=name, device=args.device)}
        mp = {"many small (one call)": small[..., 0].size, "many small (one by one)": small[..., 0].size,
              "one large": args.large**2}
        best = {k: float("inf") for k in run}
        for _ in range(args.repeats):  # interleaved
            for k, fn in run.items():
                t0 = time.perf_counter()
                fn()
                best[k] = min(best[k], time.perf_counter() - t0)
        for k in run:
            per_image.append({"weights": name, "input": k, "images": args.small if "small" in k else 1,
                              "MP": mp[k] / 1e6, "seconds": best[k], "s/MP": best[k] / (mp[k] / 1e6),
                              "vs one large": best[k] / mp[k] / (best["one large"] / mp["one large"])})
    restore_rows = []
    if args.restore:
        n = args.restore
        if n % 4:
            raise SystemExit(f"--restore {n}: the side must be a multiple of 4 (SR ×4)")
        clean = np.random.default_rng(1).random((n, n), dtype=np.float32)
        low = clean.reshape(n // 4, 4, n // 4, 4).mean(axis=(1, 3))
        holes = np.random.default_rng(2).random((n, n)) < 0.5
        tasks = {"sr ×4": lambda p: api.restore(low, "sr", scale=4, device=args.device, precision=p),
                 "inpaint 50%": lambda p: api.restore(np.where(holes, 0, clean), "inpaint", mask=holes,
                                                      device=args.device, precision=p)}
        for task, fn in tasks.items():
            for p in precisions:
                reports = []  # best_seconds's warm-up call fills it, so no run is spent on the report alone
                sec = best_seconds(lambda fn=fn, p=p, r=reports: r.append(fn(p)[1]), args.repeats, device)
                restore_rows.append({"task": task, "precision": p, "side": n, "weights": reports[0]["weights"],
                                     "seconds": sec, "evaluations": reports[0]["nfe"]})
    accuracy = {}
    if "bf16" in precisions and args.images > 0:
        net, _ = load_model(args.weights.split(",")[0])
        e32, e16 = Engine(net, device, "fp32"), Engine(net, device, "bf16")
        diffs, p32, p16 = [], [], []
        for i, (_, x) in enumerate(load_set("BSD68", args.images)):
            y = torch.from_numpy(gaussian_noisy(x, 25 / 255, i))[None, None]
            d32, d16 = e32.denoise_tiled(y, 25 / 255), e16.denoise_tiled(y, 25 / 255)
            diffs.append(float((d32 - d16).abs().max()))
            p32.append(psnr(d32[0, 0].cpu().numpy(), x))
            p16.append(psnr(d16[0, 0].cpu().numpy(), x))
        accuracy = {"images": args.images, "max_abs_diff": max(diffs), "psnr_fp32": float(np.mean(p32)),
                    "psnr_bf16": float(np.mean(p16)), "psnr_change_db": float(np.mean(p16) - np.mean(p32))}
    summary = {"device": str(device), "threads": torch.get_num_threads(), "bf16_available": "bf16" in precisions,
               "peak_gflops": {p: v / 1e9 for p, v in peaks.items()}, "size": args.size, "batch": args.batch}
    print(summary)
    print_table(models, ["weights", "channels", "parameters", "macs_per_pixel"])
    print()
    print_table(rows, ["weights", "precision", "s/MP", "MP/s", "GFLOP/s", "peak GFLOP/s", "of peak"])
    if per_image:
        print()
        print_table(per_image, ["weights", "input", "images", "MP", "seconds", "s/MP", "vs one large"])
    if restore_rows:
        print()
        print_table(restore_rows, ["task", "precision", "side", "weights", "seconds", "evaluations"])
    if accuracy:
        print("bf16 accuracy on BSD68 σ=25:", accuracy)
    save_results(args.name or f"engine-{device.type}", {"bench": "engine", **summary, "models": models, "rows": rows,
                                                        "per_image": per_image, "restore": restore_rows,
                                                        "bf16_accuracy": accuracy})


if __name__ == "__main__":
    main()
