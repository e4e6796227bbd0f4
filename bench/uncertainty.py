"""Posterior uncertainty: does the predicted std map match the actual error, and how fast is it?

    python bench/uncertainty.py                       # Set12, σ = 25, strides 1, 2, 3, timings
    python bench/uncertainty.py --quick               # 2 images (one 256², one 512²), stride 1, timings
    python bench/uncertainty.py --weights /tmp/t.safetensors --quick

Protocol: x on [0,1], y = x + σn in float without clipping (seed = image index); x̂ = D(y, σ) and
std = σ·√diag(∂D/∂y) (Hutchinson). Per image: Spearman correlation between std and |x̂ − x|
(scipy.stats.spearmanr), calibration = fraction of pixels with |x̂ − x| ≤ 2·std (a Gaussian posterior
would give 95.4%), and PSNR of x̂. Beside it in the same run, two reference predictors of |error|:
"edges" (gradient magnitude of x̂, Gaussian-smoothed: a naive "unsure at edges" map) and
"smooth1", "smooth2" (the raw variance estimate Gaussian-smoothed, std 1 and 2 px, then clamped: less
probe noise, less detail; --smooth in the CLI); strides 2 and 3 are lattice probes (--stride in the CLI);
"const-rmse" is the calibration of a constant std equal to the image's true RMSE (an oracle).
Timings (wall and CPU seconds of this process; the machine may be shared): one 512×512 std map
with 8 probes, and 3 principal components of the central 64×64 region of a 512×512 image.
Acceptance (issue 8): mean Spearman ≥ 0.3; 85–99% within 2 std; std map < 30 s; components < 60 s.
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

import scoretool  # noqa: E402
from scoretool.api import posterior_components, posterior_std  # noqa: E402
from scoretool.uncertainty import posterior_variance, smooth_variance  # noqa: E402


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    r = spearmanr(a.ravel(), b.ravel()).statistic
    return float(r) if np.isfinite(r) else float("nan")


def edge_map(xhat: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    gy, gx = np.gradient(xhat.astype(np.float64))
    return ndimage.gaussian_filter(np.hypot(gx, gy), 1.0)


class Clock:
    """Wall and CPU (this process, all threads) seconds of a block."""

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w0, time.process_time() - self.c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="Set12")
    ap.add_argument("--sigma", type=float, default=25.0, help="noise std in grey levels (of 255)")
    ap.add_argument("--weights", default=None, help="default: bundled prior-gray")
    ap.add_argument("--probes", type=int, default=8)
    ap.add_argument("--strides", default="1,2,3", help="probe lattice periods to compare (1 = plain Hutchinson)")
    ap.add_argument("--smooth", default="1,2", help="also score the variance smoothed by Gaussians of these std (px)")
    ap.add_argument("--method", default="forward", help="forward, fd or jvp")
    ap.add_argument("--images", default=None, help="comma-separated file names (default: all)")
    ap.add_argument("--components", type=int, default=3)
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--quick", action="store_true", help="2 images (01.png 256², 08.png 512²), stride 1")
    ap.add_argument("--out", default="uncertainty")
    args = ap.parse_args()
    if args.quick:
        args.images, args.strides = args.images or "01.png,08.png", "1"
    sigma = args.sigma / 255
    images = load_set(args.set)
    if args.images:
        wanted = args.images.split(",")
        images = [im for im in images if im[0] in wanted]
    model = scoretool.load(args.weights, 1, "auto", "fp32", 512)
    engine, info = model.engine, model.info
    strides = [int(s) for s in args.strides.split(",")]
    rows, per_image = [], []
    smooths = [float(v) for v in args.smooth.split(",") if float(v) > 0]
    denoiser = model.configured(differentiable=True)
    for stride in strides:
        probes = max(args.probes, stride * stride)
        label = "hutchinson" if stride == 1 else f"lattice-{stride}"
        keys = ["spearman", "calib", *[f"{m}_smooth{v:g}" for v in smooths for m in ("spearman", "calib")],
                "spearman_edges", "calib_rmse", "psnr", "negative"]
        acc = {k: [] for k in keys}
        for i, (name, x) in enumerate(images):
            y = gaussian_noisy(x, sigma, seed=i)
            with Clock() as clk:
                res = posterior_variance(denoiser, torch.from_numpy(y)[None, None], sigma, probes, stride, args.method,
                                         seed=i, tile=engine.tile, overlap=engine.overlap,
                                         multiple=engine.tile_multiple, device=engine.device)
            mean, std = res.mean[0, 0].numpy(), res.std[0, 0].numpy()
            err = np.abs(mean - x)
            rmse = float(np.sqrt(np.mean(err**2)))
            row = {"variant": label, "image": name, "shape": list(x.shape), "probes": probes,
                   "spearman": spearman(std, err), "calib": float(np.mean(err <= 2 * std))}
            for v in smooths:
                sm = smooth_variance(res.raw, v).clamp_min(0).sqrt()[0, 0].numpy()
                row[f"spearman_smooth{v:g}"] = spearman(sm, err)
                row[f"calib_smooth{v:g}"] = float(np.mean(err <= 2 * sm))
            row.update({"spearman_edges": spearman(edge_map(mean), err), "calib_rmse": float(np.mean(err <= 2 * rmse)),
                        "psnr": psnr(mean, x), "negative": res.negative, "mean_std": float(std.mean()), "rmse": rmse,
                        "wall_s": clk.wall, "cpu_s": clk.cpu})
            per_image.append(row)
            for k in acc:
                acc[k].append(row[k])
            print(f"  {label} {name}: spearman {row['spearman']:.3f} calib {row['calib']:.3f} "
                  f"(mean std {row['mean_std'] * 255:.2f}, rmse {rmse * 255:.2f} grey levels) {clk.wall:.1f} s", flush=True)
        rows.append({"variant": label, "probes": probes, "images": len(images),
                     **{k: float(np.mean(v)) for k, v in acc.items()}})
    print(f"\n{args.set}, σ = {args.sigma:g}, weights {info['name']}, method {args.method} (mean over images)")
    print_table(rows, ["variant", "probes", "images", *[k for k in rows[0] if k not in ("variant", "probes", "images")]])

    timing = {}
    if not args.no_timing:
        big = next((im for im in images if im[1].shape == (512, 512)), None)
        x = big[1] if big else np.random.default_rng(0).random((512, 512)).astype(np.float32)
        y = gaussian_noisy(x, sigma, seed=99)
        done = next((r for r in per_image if r["shape"] == [512, 512] and r["probes"] == 8 and r["variant"] == "hutchinson"), None)
        if done:  # already measured above
            timing["std_map_512_probes8"] = {"wall_s": done["wall_s"], "cpu_s": done["cpu_s"], "target_s": 30}
        else:
            with Clock() as clk:
                posterior_std(y, sigma, weights=args.weights, probes=8, stride=1, method=args.method, seed=0)
            timing["std_map_512_probes8"] = {"wall_s": clk.wall, "cpu_s": clk.cpu, "target_s": 30}
        region = (224, 224, 64, 64)
        with Clock() as clk:
            comp = posterior_components(y, sigma, k=args.components, region=region, weights=args.weights, method=args.method)
        timing["components"] = {"k": args.components, "region": list(region), "wall_s": clk.wall, "cpu_s": clk.cpu,
                                "target_s": 60, "iterations": comp.iterations,
                                "eigenvalues_grey2": [float(v) * 255**2 for v in comp.eigenvalues],
                                "residuals": [float(v) for v in comp.residuals]}
        print("\ntimings (this machine, shared):")
        print_table([{"task": "std map 512² × 8 probes", "wall_s": timing["std_map_512_probes8"]["wall_s"],
                      "cpu_s": timing["std_map_512_probes8"]["cpu_s"], "target_s": 30},
                     {"task": f"{args.components} components, 64² region", "wall_s": timing["components"]["wall_s"],
                      "cpu_s": timing["components"]["cpu_s"], "target_s": 60}], ["task", "wall_s", "cpu_s", "target_s"])
        print(f"components: {comp.iterations} iterations, eigenvalues (grey levels²) "
              f"{', '.join(f'{v:.1f}' for v in timing['components']['eigenvalues_grey2'])}, "
              f"residuals {', '.join(f'{v:.2g}' for v in timing['components']['residuals'])}")
    save_results(args.out if not args.quick else f"{args.out}-quick",
                 {"set": args.set, "sigma": args.sigma, "weights": info["name"], "method": args.method,
                  "summary": rows, "images": per_image, "timing": timing,
                  "acceptance": {"spearman_min": 0.3, "calib_range": [0.85, 0.99], "std_map_s": 30, "components_s": 60}})


if __name__ == "__main__":
    main()
