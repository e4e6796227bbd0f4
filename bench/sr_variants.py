"""DDNM ×4 SR sampler variants side by side on centre crops, beside bicubic, in one run.

    python bench/sr_variants.py --set CBSD68 --images 8 --crop 160 \
        --configs '[{}, {"cycle_dihedral": false}, {"steps": 30}, {"travel": 5}]' --name sr-variants

Each config is a dict of `scoretool.ddnm.ddnm_sample` settings (steps, sigma_max, rho, eta, travel,
cycle_dihedral) plus `samples` (average N chains), `precision` (auto|fp32) and `sigma_scale` (hand the
prior c·σ instead of σ: c > 1 over-smooths, c < 1 under-smooths; 1 is the calibrated prior). The operator
is 4×4 average pooling; the input, bicubic baseline and PSNR are bench/restore.py's (dB on [0,1]). Prints a table and writes bench/results/NAME.json.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from common import Timer, load_set, print_table, psnr, save_results
from restore import bicubic_up, from_t, shape_of, to_t

import scoretool
from scoretool.ddnm import ddnm_sample, edm_sigmas
from scoretool.operators import AvgPoolSR

BENCH_KEYS = ("samples", "precision", "sigma_scale")
SCHEDULE_KEYS = ("steps", "sigma_max", "sigma_min", "rho")  # edm_sigmas; the rest goes to ddnm_sample


def run_config(cfg: dict, y: torch.Tensor, op, engines: dict, channels: int, seed: int) -> torch.Tensor:
    """Mean of `samples` DDNM chains under one config (seeded like `scoretool restore`)."""
    precision, samples, scale = cfg.get("precision", "auto"), cfg.get("samples", 1), cfg.get("sigma_scale", 1.0)
    if precision not in engines:
        engines[precision] = scoretool.load(channels=channels, device="cpu", precision=precision)
    engine = engines[precision]
    kw = {k: v for k, v in cfg.items() if k not in BENCH_KEYS + SCHEDULE_KEYS}
    sigmas = edm_sigmas(**{"steps": 100, "sigma_max": 1.0, **{k: cfg[k] for k in SCHEDULE_KEYS if k in cfg}})
    gen = torch.Generator().manual_seed(seed)
    out = sum(ddnm_sample(lambda x, s: engine(x, s * scale), op, y, sigmas, generator=gen, **kw)[0]
              for _ in range(samples))
    return out / samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="CBSD68")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--crop", type=int, default=160, help="centre crop side (a multiple of 4)")
    ap.add_argument("--configs", default='[{}, {"cycle_dihedral": false}]', help="JSON list of config dicts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="sr-variants")
    args = ap.parse_args()
    configs = json.loads(args.configs)
    torch.set_num_threads(1)
    engines: dict = {}
    labels = ["bicubic"] + [json.dumps(c, sort_keys=True) for c in configs]
    per_image = []
    for name, full in load_set(args.set, args.images):
        top, left = (full.shape[0] - args.crop) // 2, (full.shape[1] - args.crop) // 2
        x = full[top:top + args.crop, left:left + args.crop]
        op = AvgPoolSR(4, shape_of(x))
        y = op.A(to_t(x)).float()
        row = {"image": name, "bicubic": psnr(bicubic_up(from_t(y), x.shape), x), "seconds": {}}
        for label, cfg in zip(labels[1:], configs):
            with Timer() as t:
                out = run_config(cfg, y, op, engines, shape_of(x)[0], args.seed)
            row[label] = psnr(from_t(out), x)
            row["seconds"][label] = t.seconds
        per_image.append(row)
        print(name, " ".join(f"{row[k]:.2f}" for k in labels), flush=True)
    base = float(np.mean([r["bicubic"] for r in per_image]))
    summary = [{"config": k, "psnr": float(np.mean([r[k] for r in per_image])),
                "vs bicubic": float(np.mean([r[k] for r in per_image])) - base,
                "s/image": float(np.mean([r["seconds"][k] for r in per_image])) if k != "bicubic" else None}
               for k in labels]
    print(f"\n×4 SR (average pooling), {args.set}, first {args.images} images, {args.crop}² centre crops")
    print_table(summary, ["config", "psnr", "vs bicubic", "s/image"])
    save_results(args.name, {"config": vars(args), "summary": summary, "images": per_image})


if __name__ == "__main__":
    main()
