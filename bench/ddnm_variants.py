"""DDNM sampler settings side by side (σ schedule, start level, η, Heun) on the tasks of bench/restore.py.

    python bench/ddnm_variants.py --set Set12 --images 6 --crop 128 --tasks sr4,inpaint50,inpaint80,deblur \
        --configs '[{"steps": 100, "sigma_max": 1}, {"steps": 25, "sigma_max": 0.5}]' --name ddnm-variants

Each config is a dict of `edm_sigmas` settings (steps, sigma_max, sigma_min, rho) and `ddnm_sample`
settings (eta, travel, start, cycle_dihedral). Degraded inputs, seeds and PSNR are bench/restore.py's
(same image index → same mask and noise); every config sees the same inputs. Prints PSNR per task and
config with network evaluations and seconds per image, and writes bench/results/NAME.json.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from common import Timer, load_set, print_table, psnr, save_results
from restore import from_t, shape_of, to_t

import scoretool
from scoretool.ddnm import ddnm_sample, edm_sigmas
from scoretool.operators import AvgPoolSR, Blur, Inpaint, gaussian_kernel

SCHEDULE_KEYS = ("steps", "sigma_max", "sigma_min", "rho")


def degrade(task: str, x: np.ndarray, idx: int):
    """(operator, measurements y, σ_y) as bench/restore.py makes them for image index idx."""
    rng = np.random.default_rng(idx)
    shape = shape_of(x)
    if task == "sr4":
        op = AvgPoolSR(4, shape)
        return op, op.A(to_t(x)).float(), 0.0
    if task in ("inpaint50", "inpaint80"):
        missing = rng.random(x.shape[:2]) < (0.5 if task == "inpaint50" else 0.8)
        op = Inpaint(torch.from_numpy((~missing).astype(np.float32)), shape)
        return op, op.A(to_t(x)).float(), 0.0
    if task == "deblur":
        op = Blur(gaussian_kernel(2.0), shape)
        y = from_t(op.A(to_t(x))) + 0.01 * rng.standard_normal(x.shape)
        return op, to_t(y).float(), 0.01
    raise SystemExit(f"unknown task {task}")


def run(cfg: dict, model, op, y, sigma_y: float, seed: int) -> tuple[torch.Tensor, int]:
    sched = {k: cfg[k] for k in SCHEDULE_KEYS if k in cfg}
    kw = {k: v for k, v in cfg.items() if k not in SCHEDULE_KEYS}
    sigmas = edm_sigmas(**{"steps": 25, "sigma_max": 1.0, "sigma_min": 0.005, **sched})
    return ddnm_sample(model, op, y, sigmas, sigma_y=sigma_y, generator=torch.Generator().manual_seed(seed), **kw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="Set12")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--crop", type=int, default=0, help="centre crop side, a multiple of 4 (0 = whole image)")
    ap.add_argument("--tasks", default="sr4,inpaint50,inpaint80,deblur")
    ap.add_argument("--configs", default='[{"steps": 100}, {"steps": 25}]', help="JSON list of config dicts")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--name", default="ddnm-variants")
    args = ap.parse_args()
    configs = json.loads(args.configs)
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = args.tasks.split(",")
    labels = [json.dumps(c, sort_keys=True) for c in configs]
    images = load_set(args.set, args.images)
    model = scoretool.load(channels=3 if images[0][1].ndim == 3 else 1, device="cpu")
    rows = []
    for idx, (name, full) in enumerate(images):
        crop = args.crop or min(full.shape[:2])
        h, w = (min(crop, full.shape[0]) // 4 * 4, min(crop, full.shape[1]) // 4 * 4) if args.crop else \
            (full.shape[0] // 4 * 4, full.shape[1] // 4 * 4)
        top, left = (full.shape[0] - h) // 2, (full.shape[1] - w) // 2
        x = full[top:top + h, left:left + w]
        for task in tasks:
            op, y, sigma_y = degrade(task, x, idx)
            for label, cfg in zip(labels, configs):
                with Timer() as t:
                    out, nfe = run(cfg, model, op, y, sigma_y, idx)
                rows.append({"image": name, "task": task, "config": label, "psnr": psnr(from_t(out), x),
                             "nfe": nfe, "seconds": t.seconds})
            print(name, task, " ".join(f"{r['psnr']:.2f}" for r in rows[-len(configs):]), flush=True)
    summary = []
    for task in tasks:
        for label in labels:
            sel = [r for r in rows if r["task"] == task and r["config"] == label]
            summary.append({"task": task, "config": label, "psnr": float(np.mean([r["psnr"] for r in sel])),
                            "nfe": sel[0]["nfe"], "s/image": float(np.mean([r["seconds"] for r in sel]))})
    print(f"\nDDNM variants, {args.set}, first {args.images} images" + (f", {args.crop}² centre crops" if args.crop else ""))
    print_table(summary, ["task", "config", "psnr", "nfe", "s/image"])
    save_results(args.name, {"config": vars(args), "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
