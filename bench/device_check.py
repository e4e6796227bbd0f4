"""Same answer on every device: denoise and restore a test image on CPU and on the accelerator.

    python bench/device_check.py [--device cuda]

Prints the largest difference between the devices' outputs (float tolerance expected: bf16 autocast
on both) and the accelerator's seconds per megapixel; exit 1 if a difference is above tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, gaussian_noisy  # noqa: E402

from scoretool import api  # noqa: E402


def timed(fn, repeat=3):
    """(result, mean seconds of `repeat` warm calls)."""
    fn()
    with Timer() as t:
        for _ in range(repeat):
            out = fn()
    return out, t.seconds / repeat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    clean = skimage.data.camera()[:256, :320].astype(np.float32) / 255
    noisy = gaussian_noisy(clean, 25 / 255, seed=0)
    rows = {}
    for precision in ("fp32", "auto"):
        outs = {}
        for dev in ("cpu", args.device):
            outs[dev], sec = timed(lambda d=dev, p=precision: api.denoise(noisy, 25 / 255, device=d, precision=p))
            rows[f"denoise {precision} {dev} s/MP"] = sec / (clean.size / 1e6)
        rows[f"denoise {precision} max |cpu-{args.device}|"] = float(np.abs(outs["cpu"] - outs[args.device]).max())
    low = clean.reshape(64, 4, 80, 4).mean(axis=(1, 3))
    outs = {dev: api.restore(low, "sr", scale=4, steps=20, device=dev, precision="fp32", seed=3)[0]
            for dev in ("cpu", args.device)}
    rows[f"restore sr fp32 max |cpu-{args.device}|"] = float(np.abs(outs["cpu"] - outs[args.device]).max())
    print(json.dumps(rows, indent=1))
    ok = rows[f"denoise fp32 max |cpu-{args.device}|"] < 1e-3 and rows[f"denoise auto max |cpu-{args.device}|"] < 2e-2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
