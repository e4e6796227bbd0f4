"""The loop API: a model loaded once (`scoretool.load`) and called many times on small images.

Times N calls of `m.denoise(y, sigma)` on one 64² image each, the same N images in batches of B
(`m.denoise` on a (B, H, W, C) array: one network pass per batch), and for reference the cached
module-level function `scoretool.denoise` per image; also the load time.

    python bench/loop_api.py [--calls 1000] [--size 64] [--batch 16] [--weights prior-gray] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, save_results  # noqa: E402

import scoretool  # noqa: E402


def per_call(fn, items) -> float:
    """Seconds per call of fn over items, after one warm-up call."""
    fn(items[0])
    t0 = time.perf_counter()
    for it in items:
        fn(it)
    return (time.perf_counter() - t0) / len(items)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1000, help="images (= single calls)")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--batch", type=int, default=16, help="images per call in the batched variant")
    ap.add_argument("--weights", default="prior-gray")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sigma", type=float, default=25 / 255, help="noise std on the [0,1] scale")
    ap.add_argument("--name", default="loop-api", help="result file bench/results/NAME.json")
    args = ap.parse_args()

    t0 = time.perf_counter()
    m = scoretool.load(args.weights, device=args.device)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    shape = (args.size, args.size) if m.channels == 1 else (args.size, args.size, m.channels)
    images = rng.random((args.calls, *shape), dtype=np.float32)
    stack = images.reshape(args.calls, args.size, args.size, m.channels)  # (B, H, W, C)
    batches = [stack[i : i + args.batch] for i in range(0, args.calls, args.batch)]
    tensors = [torch.from_numpy(b).permute(0, 3, 1, 2).contiguous() for b in batches]

    s = args.sigma
    rows = []
    single = per_call(lambda y: m.denoise(y, s), images)
    rows.append({"variant": "Model.denoise, numpy, 1 image per call", "calls": args.calls, "ms_per_call": 1e3 * single,
                 "ms_per_image": 1e3 * single})
    batched = per_call(lambda y: m.denoise(y, s), batches)
    rows.append({"variant": f"Model.denoise, numpy, {args.batch} images per call", "calls": len(batches),
                 "ms_per_call": 1e3 * batched, "ms_per_image": 1e3 * batched * len(batches) / args.calls})
    batched_t = per_call(lambda y: m.denoise(y, s), tensors)
    rows.append({"variant": f"Model.denoise, torch (B,C,H,W), {args.batch} per call", "calls": len(tensors),
                 "ms_per_call": 1e3 * batched_t, "ms_per_image": 1e3 * batched_t * len(tensors) / args.calls})
    cached = per_call(lambda y: scoretool.denoise(y, s, weights=args.weights, device=args.device), images)
    rows.append({"variant": "scoretool.denoise (cached), 1 image per call", "calls": args.calls, "ms_per_call": 1e3 * cached,
                 "ms_per_image": 1e3 * cached})
    for r in rows:
        r["images_per_s"] = 1e3 / r["ms_per_image"]
    print(f"{args.weights} on {m.engine.device}, {args.size}² images, σ = {s:.4f}; load {load_s:.3f} s; "
          f"torch threads {torch.get_num_threads()}")
    print_table(rows, ["variant", "calls", "ms_per_call", "ms_per_image", "images_per_s"])
    save_results(args.name, {"command": "python bench/loop_api.py " + " ".join(sys.argv[1:]), "weights": args.weights,
                             "device": str(m.engine.device), "size": args.size, "calls": args.calls, "batch": args.batch,
                             "sigma": s, "load_seconds": load_s, "rows": rows})


if __name__ == "__main__":
    main()
