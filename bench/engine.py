"""Network size and speed: parameters, MACs per pixel, MP/s for fp32 vs bf16, and the accuracy cost
of bf16 (max |D_bf16 − D_fp32| and PSNR change on a few BSD68 images).

    python bench/engine.py [--device cpu|cuda] [--size 256] [--weights prior-gray]
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

from scoretool.engine import Engine, bf16_available, select_device  # noqa: E402
from scoretool.nets import ScoreUNet, UNetConfig, count_parameters, macs_per_pixel  # noqa: E402
from scoretool.weights import load_model  # noqa: E402


def throughput(engine: Engine, channels: int, size: int, batch: int, repeats: int) -> float:
    x = torch.rand(batch, channels, size, size)
    engine.denoise(x, 0.1)  # warm-up
    if engine.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        engine.denoise(x, 0.1)
    if engine.device.type == "cuda":
        torch.cuda.synchronize()
    return batch * size * size * repeats / (time.perf_counter() - t0) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--weights", default="prior-gray")
    ap.add_argument("--images", type=int, default=5, help="BSD68 images for the bf16 accuracy check")
    args = ap.parse_args()
    device = select_device(args.device)
    try:
        net, info = load_model(args.weights)
    except Exception as e:
        print(f"{args.weights}: {e}; using an untrained network of the default architecture")
        net, info = ScoreUNet(UNetConfig()), {"name": "untrained"}
    ch = net.config.channels
    rows = []
    for precision in ("fp32", "bf16"):
        if precision == "bf16" and not bf16_available(device):
            continue
        engine = Engine(net, device, precision)
        rows.append({"precision": precision, "mp_per_s": throughput(engine, ch, args.size, args.batch, args.repeats)})
    accuracy = {}
    if bf16_available(device) and ch == 1 and info.get("name") != "untrained" and args.images > 0:
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
    summary = {"device": str(device), "weights": info.get("name"), "parameters": count_parameters(net),
               "macs_per_pixel": macs_per_pixel(net), "threads": torch.get_num_threads()}
    print(summary)
    print_table(rows, ["precision", "mp_per_s"])
    if accuracy:
        print("bf16 accuracy on BSD68 σ=25:", accuracy)
    save_results(f"engine-{device.type}", {"bench": "engine", **summary, "rows": rows, "bf16_accuracy": accuracy})


if __name__ == "__main__":
    main()
