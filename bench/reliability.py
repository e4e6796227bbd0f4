"""Slow reliability checks (fast ones are in tests/test_reliability.py).

    python bench/reliability.py            # both checks
    python bench/reliability.py --skip-memory

1. Peak memory (max RSS of the process) of `scoretool denoise` on a 4000×3000 RGB image (target < 4 GB),
   with the bundled prior-rgb (or, if absent, an untrained model of the same architecture).
2. `scoretool train` killed with SIGKILL midway, then `--resume`d, ends with the same weights and step
   count as an uninterrupted run of the same length.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save_results  # noqa: E402

from scoretool.io import Image, write_image  # noqa: E402
from scoretool.nets import EDMPrecond, UNetConfig  # noqa: E402
from scoretool.weights import bundled_models, load_model, save_model  # noqa: E402

SCORETOOL = [sys.executable, "-m", "scoretool"]


def peak_memory(tmp: Path) -> dict:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:3000, 0:4000].astype(np.float32)
    base = 0.5 + 0.3 * np.sin(x / 97)[..., None] * np.cos(y / 61)[..., None] * np.array([1, 0.7, 0.4], np.float32)
    noisy = base + 0.1 * rng.standard_normal(base.shape).astype(np.float32)
    src = tmp / "big.png"
    write_image(src, Image(noisy[None], np.dtype(np.uint8), None, (0, 255)))
    weights = "prior-rgb"
    if weights not in bundled_models():
        weights = str(tmp / "untrained-rgb.safetensors")
        save_model(weights, EDMPrecond(UNetConfig(channels=3)), {"sigma_min": 0.002, "sigma_max": 10.0})
    code = ("import resource, subprocess, sys, time; t = time.time(); "
            f"r = subprocess.run({SCORETOOL + ['denoise', str(src), '-o', str(tmp / 'big_out.png'), '--sigma', '25', '--weights', weights, '--quiet']!r}); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.time() - t, r.returncode)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    peak_gb, seconds, rc = int(out[0]) / 2**20, float(out[1]), int(out[2])
    return {"image": "4000x3000 RGB", "weights": Path(weights).stem, "peak_rss_gb": round(peak_gb, 3),
            "seconds": round(seconds, 1), "exit_code": rc, "ok": rc == 0 and peak_gb < 4}


def train_kill_resume(tmp: Path) -> dict:
    data = tmp / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        np.save(data / f"{i}.npy", rng.random((48, 48)).astype(np.float32))
    args = ["train", str(data), "--steps", "40", "--patch", "32", "--batch", "4", "--widths", "8,16",
            "--checkpoint-minutes", "0", "--precision", "fp32", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full, part = tmp / "full.safetensors", tmp / "part.safetensors"
    subprocess.run(SCORETOOL + args + ["-o", str(full)], env=env, check=True)
    proc = subprocess.Popen(SCORETOOL + args + ["-o", str(part)], env=env)
    ckpt = tmp / "part.ckpt.safetensors"
    while not ckpt.exists() and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_before_end = not part.exists()
    subprocess.run(SCORETOOL + args + ["-o", str(part), "--resume"], env=env, check=True)
    a, ia = load_model(str(full))
    b, ib = load_model(str(part))
    diff = max(float((va - vb).abs().max()) for va, vb in zip(a.state_dict().values(), b.state_dict().values()))
    return {"killed_before_end": killed_before_end, "steps_full": ia["steps"], "steps_resumed": ib["steps"],
            "max_weight_diff": diff, "ok": ia["steps"] == ib["steps"] and diff < 1e-5}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results["train_kill_resume"] = train_kill_resume(tmp)
        print("train SIGKILL + --resume:", results["train_kill_resume"], flush=True)
        if not args.skip_memory:
            results["peak_memory"] = peak_memory(tmp)
            print("peak memory, denoise 4000×3000 RGB:", results["peak_memory"], flush=True)
    save_results("reliability", {"bench": "reliability", "torch_threads": torch.get_num_threads(), **results})


if __name__ == "__main__":
    main()
