"""Write noisy float .npy versions of a folder of clean images (Noise2Score training and test sets).

    python bench/make_noisy.py ../shared/data/Train400 -o data/train400-gaussian25 --noise gaussian --sigma 25
    python bench/make_noisy.py ../shared/data/Train400 -o data/train400-poisson001 --noise poisson --zeta 0.01
    python bench/make_noisy.py ../shared/data/Train400 -o data/train400-gamma100 --noise gamma --k 100

Protocol (Noise2Score paper, Kim & Ye, NeurIPS 2021): x = image on [0,1]; y = x + σn (σ in grey levels
of 255), y = ζ·Poisson(x/ζ), or y = x·G with G ~ Gamma(k, 1/k); float32, not clipped or quantised.
Image i (sorted by name) uses the seed (--seed, i), so the output is reproducible file by file. A
manifest `noise.json` records the family, parameter and seed. Colour images stay colour unless --gray.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scoretool.files import list_images  # noqa: E402
from scoretool.io import read_image  # noqa: E402
from scoretool.noise import add_noise, check_parameter  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="folder (or file) of clean images")
    ap.add_argument("-o", "--output", type=Path, required=True, help="output folder for the .npy files")
    ap.add_argument("--noise", required=True, choices=["gaussian", "poisson", "gamma"])
    ap.add_argument("--sigma", type=float, help="Gaussian std in grey levels of 255 (25 → 25/255 on [0,1])")
    ap.add_argument("--zeta", type=float, help="Poisson scale ζ on [0,1] (paper: 0.01, 0.05)")
    ap.add_argument("--k", type=float, help="Gamma shape k (paper: 100, 50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gray", action="store_true", help="convert colour images to grey (channel mean)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    value = {"gaussian": args.sigma, "poisson": args.zeta, "gamma": args.k}[args.noise]
    if value is None:
        ap.error(f"--noise {args.noise} needs --{ {'gaussian': 'sigma', 'poisson': 'zeta', 'gamma': 'k'}[args.noise]}")
    param = value / 255 if args.noise == "gaussian" else value
    check_parameter(args.noise, param)
    files, _ = list_images(args.src)
    if not files:
        ap.error(f"{args.src}: no images")
    args.output.mkdir(parents=True, exist_ok=True)
    written = 0
    for i, f in enumerate(files):
        dest = args.output / (f.stem + ".npy")
        if dest.exists() and not args.overwrite:
            continue
        x = read_image(f).pixels[0]  # (H, W, C) on [0,1]
        if args.gray and x.shape[-1] == 3:
            x = x.mean(axis=-1, keepdims=True)
        y = add_noise(x, args.noise, param, seed=np.random.default_rng([args.seed, i]))
        np.save(dest, y[..., 0] if y.shape[-1] == 1 else y)
        written += 1
    manifest = {"source": str(args.src), "family": args.noise, "parameter_name": {"gaussian": "sigma", "poisson": "zeta",
                "gamma": "k"}[args.noise], "parameter": param, "sigma_grey_levels": args.sigma if args.noise == "gaussian" else None,
                "seed": args.seed, "seed_rule": "numpy default_rng([seed, index in sorted file list])", "images": len(files),
                "clipped": False, "gray": args.gray}
    (args.output / "noise.json").write_text(json.dumps(manifest, indent=2))
    print(f"wrote {written} noisy .npy file(s) to {args.output} ({args.noise}, {manifest['parameter_name']}={param:.6g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
