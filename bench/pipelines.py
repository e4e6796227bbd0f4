"""Folder throughput of `scoretool denoise`: one process with 2 threads against `torchrun` with
2 processes of 1 thread each, on the same folder, and whether both write the same files; and the
per-image overhead: a folder of --small images of 128² against one image of the same pixel count
(2048² for 256 images), both with one process of 2 threads.

The folder is the first --images images of Train400 (180×180 grey) with Gaussian noise of --sigma grey
levels, written as 8-bit PNG into a temporary folder (not the repository). Each run is timed from the
command's start to its exit (wall clock: process start, model load, reading, denoising, writing).

    python bench/pipelines.py [--images 200] [--small 500] [--weights prior-gray] [--sigma 25]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, load_set, print_table, save_results  # noqa: E402

from scoretool.io import Image, write_image  # noqa: E402


def make_folder(folder: Path, count: int, sigma: float) -> float:
    """Noisy 8-bit PNGs of the first `count` Train400 images; returns their megapixels."""
    pixels = 0
    for i, (name, x) in enumerate(load_set("Train400", count)):
        y = np.clip(np.round(x * 255 + sigma * np.random.default_rng(i).standard_normal(x.shape)), 0, 255) / 255
        write_image(folder / name, Image(y[None, ..., None].astype(np.float32), np.dtype(np.uint8), None, (0, 255)))
        pixels += x.size
    return pixels / 1e6


def make_small_and_large(folder: Path, count: int, sigma: float) -> float:
    """`count` noisy 128² crops of Train400 in folder/small, and one image with their pixels side by side
    in folder/large (a near-square mosaic); returns the megapixels of each."""
    images = [x for _, x in load_set("Train400", (count + 3) // 4)]
    crops = [x[r:r + 128, c:c + 128] for x in images for r in (0, 52) for c in (0, 52)][:count]
    rng = np.random.default_rng(0)
    noisy = [np.clip(np.round(x * 255 + sigma * rng.standard_normal(x.shape)), 0, 255) / 255 for x in crops]
    for i, y in enumerate(noisy):
        write_image(folder / "small" / f"{i:04d}.png", Image(y[None, ..., None].astype(np.float32), np.dtype(np.uint8), None, (0, 255)))
    cols = int(np.ceil(np.sqrt(count)))
    rows = [np.concatenate(noisy[r * cols:(r + 1) * cols] + [np.zeros((128, 128))] * (cols - len(noisy[r * cols:(r + 1) * cols])), 1)
            for r in range(int(np.ceil(count / cols)))]
    mosaic = np.concatenate(rows, 0)
    write_image(folder / "large" / "mosaic.png", Image(mosaic[None, ..., None].astype(np.float32), np.dtype(np.uint8), None, (0, 255)))
    return count * 128 * 128 / 1e6, mosaic.size / 1e6


def run(cmd: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--weights", default="prior-gray")
    ap.add_argument("--sigma", type=float, default=25.0, help="noise std in grey levels")
    ap.add_argument("--small", type=int, default=500, help="small images (128²) against one large image")
    ap.add_argument("--name", default="pipelines-train400", help="result file bench/results/NAME.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="scoretool-pipelines-") as tmp:
        tmp = Path(tmp)
        mp = make_folder(tmp / "noisy", args.images, args.sigma)
        common = ["denoise", str(tmp / "noisy"), "--sigma", str(args.sigma), "--weights", args.weights, "--quiet"]
        variants = [
            ("1 process × 2 threads", 2, [sys.executable, "-m", "scoretool", *common, "-o", str(tmp / "one")], "one"),
            ("torchrun 2 processes × 1 thread", 1, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc-per-node", "2", "-m", "scoretool", *common,
                                                    "-o", str(tmp / "two")], "two"),
        ]
        rows = []
        for label, threads, cmd, out in variants:
            seconds = run(cmd, threads)
            rows.append({"run": label, "images": args.images, "megapixels": round(mp, 3), "seconds": round(seconds, 2),
                         "images_per_s": round(args.images / seconds, 2), "s_per_mp": round(seconds / mp, 3),
                         "outputs_sha256": digest(tmp / out)})
        same = rows[0]["outputs_sha256"] == rows[1]["outputs_sha256"]
        sizes = make_small_and_large(tmp, args.small, args.sigma)
        per_image = []
        for label, folder, mp_in in ((f"{args.small} images of 128²", "small", sizes[0]), ("one mosaic of them", "large", sizes[1])):
            cmd = [sys.executable, "-m", "scoretool", *common[:1], str(tmp / folder), *common[2:], "-o", str(tmp / (folder + "-out"))]
            seconds = run(cmd, 2)
            per_image.append({"input": label, "megapixels": round(mp_in, 3), "seconds": round(seconds, 2),
                              "s_per_mp": round(seconds / mp_in, 3)})
        for r in per_image:
            r["vs_one_large"] = round(r["s_per_mp"] / per_image[1]["s_per_mp"], 3)
    print_table(rows, ["run", "images", "megapixels", "seconds", "images_per_s", "s_per_mp"])
    print(f"same files from both runs: {same}\n")
    print_table(per_image, ["input", "megapixels", "seconds", "s_per_mp", "vs_one_large"])
    save_results(args.name, {"command": "python bench/pipelines.py " + " ".join(sys.argv[1:]), "data": "Train400",
                             "weights": args.weights, "sigma_grey_levels": args.sigma, "same_files": same, "rows": rows,
                             "per_image": per_image})


if __name__ == "__main__":
    main()
