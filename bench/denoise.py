"""Gaussian denoising with the bundled priors beside BM3D and scikit-image, in the same run.

    python bench/denoise.py                  # BSD68, Set12 (grey), CBSD68 (colour) at σ = 15, 25, 50
    python bench/denoise.py --quick          # 3 images per set, σ = 25
    python bench/denoise.py --sets BSD68 --sigmas 25 --peer-images 10

Protocol: x on [0,1], y = x + σn in float without clipping (seed = image
index), PSNR with data range 1 after clamping the estimate to [0,1]; seconds per megapixel, warm.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, gaussian_noisy, load_set, print_table, psnr, save_results  # noqa: E402

import scoretool  # noqa: E402


def method_table(sigma: float, colour: bool, weights: str | None, precision: str):
    import bm3d
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

    axis = -1 if colour else None
    return {
        "scoretool": lambda y: scoretool.denoise(y, sigma, weights=weights, precision=precision),
        "scoretool-x8": lambda y: scoretool.denoise(y, sigma, weights=weights, precision=precision, ensemble=8),
        "BM3D": (lambda y: bm3d.bm3d_rgb(y, sigma)) if colour else (lambda y: bm3d.bm3d(y, sigma)),
        "NL-means": lambda y: denoise_nl_means(y, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5,
                                               patch_distance=6, channel_axis=axis),
        "TV": lambda y: denoise_tv_chambolle(y, weight=0.08 * sigma / (25 / 255), channel_axis=axis),
        "noisy": lambda y: y,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="BSD68,Set12,CBSD68")
    ap.add_argument("--sigmas", default="15,25,50", help="noise std in grey levels (of 255)")
    ap.add_argument("--images", type=int, default=None, help="first N images per set")
    ap.add_argument("--peer-images", type=int, default=None, help="run BM3D/NL-means/TV on the first N only")
    ap.add_argument("--methods", default="scoretool,BM3D,NL-means,TV,noisy")
    ap.add_argument("--precision", default="auto", help="scoretool network arithmetic: auto, fp32, bf16")
    ap.add_argument("--gray-weights", default=None, help="default: bundled prior-gray")
    ap.add_argument("--rgb-weights", default=None, help="default: bundled prior-rgb")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="denoise")
    ap.add_argument("--record", action="store_true", help="write the measured PSNR into the bundled models' metadata")
    args = ap.parse_args()
    if args.quick:
        args.images, args.sigmas = args.images or 3, "25"
    methods = args.methods.split(",")
    if "scoretool-x8" in methods and "scoretool" not in methods:
        methods.insert(0, "scoretool")
    rows = []
    for set_name in args.sets.split(","):
        images = load_set(set_name, args.images)
        colour = images[0][1].ndim == 3
        weights = args.rgb_weights if colour else args.gray_weights
        try:
            scoretool.load(weights, 3 if colour else 1, "auto", args.precision, 512)
        except Exception as e:  # a missing bundled model is reported, the peers still run
            print(f"[{set_name}] scoretool skipped: {e}")
            methods_here = [m for m in methods if not m.startswith("scoretool")]
        else:
            methods_here = methods
        if "scoretool" in methods_here:  # warm-up so timings are steady-state
            scoretool.denoise(images[0][1], 0.1, weights=weights, precision=args.precision)
        for s in (float(v) for v in args.sigmas.split(",")):
            sigma = s / 255
            table = method_table(sigma, colour, weights, args.precision)
            for m in methods_here:
                n = len(images) if m.startswith("scoretool") or m == "noisy" or args.peer_images is None else min(args.peer_images, len(images))
                scores, seconds, mpix = [], 0.0, 0.0
                for i, (_name, x) in enumerate(images[:n]):
                    y = gaussian_noisy(x, sigma, seed=i)
                    with Timer() as t:
                        est = table[m](y)
                    seconds += t.seconds
                    mpix += x.shape[0] * x.shape[1] / 1e6
                    scores.append(psnr(np.asarray(est, np.float32), x))
                row = {"set": set_name, "colour": colour, "sigma": s, "method": m, "images": n, "psnr": float(np.mean(scores)),
                       "s_per_mp": seconds / mpix if m != "noisy" else None, "psnr_per_image": scores}
                rows.append(row)
                print(f"{set_name:7s} σ={s:4.0f} {m:10s} {row['psnr']:.3f} dB  n={n}  "
                      f"{row['s_per_mp'] or 0:.2f} s/MP", flush=True)
                if args.peer_images and n > args.peer_images:  # the same images as the peers, for like-with-like tables
                    k = args.peer_images
                    rows.append({**row, "images": k, "psnr": float(np.mean(scores[:k])), "psnr_per_image": scores[:k]})
    print()
    print_table(rows, ["set", "sigma", "method", "images", "psnr", "s_per_mp"])
    save_results(args.out, {"bench": "denoise", "args": vars(args), "rows": rows})
    if args.record:
        record(rows, args)


def record(rows: list[dict], args) -> None:
    """measured_psnr = {"SET σ=S": dB} in the metadata of the models that produced the rows."""
    from scoretool.weights import resolve_weights, update_info

    for colour, weights in ((False, args.gray_weights), (True, args.rgb_weights)):
        whole = [r for r in rows if r["method"] == "scoretool" and r["colour"] == colour and r["images"] >= 12]
        whole.sort(key=lambda r: r["images"])  # the row over the most images wins
        measured = {f"{r['set']} σ={r['sigma']:g}": round(r["psnr"], 2) for r in whole}
        if measured:
            path = resolve_weights(weights, 3 if colour else 1)
            update_info(path, measured_psnr=measured, measured_by="python bench/denoise.py (float noise, seed = image index)")
            print(f"recorded {measured} in {path}")


if __name__ == "__main__":
    main()
