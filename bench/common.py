"""Shared bench helpers: data sets, seeded float noise, PSNR, tables and JSON results."""

from __future__ import annotations

import datetime
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from scoretool.train import git_revision

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"


SKIMAGE_COLOUR_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle")
"""scikit-image's bundled colour photographs (no microscopy, astronomy or drawings): an unseen collection."""


def load_set(name: str, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """(file name, float32 H×W or H×W×3 image on [0,1]) for a benchmark set, sorted by name.
    `skimage-colour` is scikit-image's colour photographs (SKIMAGE_COLOUR_PHOTOS), shipped with the package."""
    from scoretool.files import list_images
    from scoretool.io import read_image

    if name == "skimage-colour":
        import skimage.data

        photos = [(n, getattr(skimage.data, n)()) for n in SKIMAGE_COLOUR_PHOTOS[:limit]]
        return [(n, (im[0] if isinstance(im, tuple) else im).astype(np.float32) / 255) for n, im in photos]
    files, _ = list_images(DATA / name)
    out = []
    for f in files[:limit]:
        px = read_image(f).pixels[0]
        out.append((f.name, px[..., 0] if px.shape[-1] == 1 else px))
    return out


def gaussian_noisy(x: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """y = x + σ·n in float, not clipped or quantised (the papers' protocol)."""
    return (x + sigma * np.random.default_rng(seed).standard_normal(x.shape)).astype(np.float32)


def psnr(estimate: np.ndarray, clean: np.ndarray) -> float:
    """PSNR with data range 1 after clamping the estimate to [0,1]."""
    from scoretool.metrics import psnr as psnr_range

    return psnr_range(np.clip(estimate, 0, 1), clean, 1.0)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max([len(c)] + [len(fmt(r.get(c))) for r in rows]) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return "–" if v is None else str(v)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def save_results(name: str, payload: dict) -> Path:
    """Write bench/results/NAME.json: the payload after what reproduces it (machine, command, git revision, date)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"machine": {"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__},
               "command": shlex.join(["python", *sys.argv]),
               "git_revision": git_revision(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {path}")
    return path
