"""Unsupervised evaluation: true PSNR beside uPSNR, SURE-PSNR and split-uPSNR, in the same run.

    python bench/evaluate.py                     # Set12 and BSD68, Gaussian σ=25 and Poisson ζ=0.01
    python bench/evaluate.py --quick             # 2 images per set
    python bench/evaluate.py --sets Set12 --images 1 --weights /tmp/t.safetensors --denoisers prior,tv,identity

Protocol: x = image/255 on [0,1]; four independent float noise realisations y, a, b, c per image
(not clipped or quantised; seed from the image index); every denoiser sees y only, its estimate is
clamped to [0,1], and
- true PSNR   = 10·log10(1/MSE(f(y), x))                         (needs the clean image)
- uPSNR       from uMSE(f(y); a, b, c) with its 95% interval     (no clean image, no noise model)
- SURE-PSNR   from SURE of f at y, Monte-Carlo divergence        (Gaussian only; needs σ)
- split-uPSNR from the 2×2 polyphase split of y alone: f on the top-left sub-image, scored against the
              other three (biased at edges; its own "true" PSNR vs the clean sub-image is shown too)
Denoisers: the prior (scoretool D(y, σ), float32), BM3D (bm3d, sigma_psd), TV (skimage Chambolle),
NL-means (skimage, fast mode), identity. For Poisson noise there is no σ: every denoiser (the prior
too) is given the Gaussian approximation σ ≈ sqrt(ζ·mean(y)); SURE is not defined there (PURE is not
implemented) and is left out.
Acceptance (issue 7): per set, noise and denoiser |mean uPSNR − mean PSNR| ≤ 0.2 dB; ranking by
uPSNR = ranking by true PSNR; SURE-PSNR of the prior within 0.2 dB; 95% intervals cover the true MSE
on ≥ 90% of the images.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, load_set, print_table, save_results  # noqa: E402

from scoretool.errors import ScoretoolError  # noqa: E402
from scoretool.metrics import psnr_from_mse, split_umse, sure, umse  # noqa: E402

DENOISERS = ("prior", "bm3d", "tv", "nlm", "identity")


def realisations(x: np.ndarray, noise: str, level: float, seed: int) -> list[np.ndarray]:
    """Four independent noisy copies (y, a, b, c) of x in float64, unclipped."""
    rng = np.random.default_rng(seed)
    if noise == "gaussian":
        return [x + level * rng.standard_normal(x.shape) for _ in range(4)]
    return [level * rng.poisson(x / level).astype(np.float64) for _ in range(4)]


def make_denoisers(names: list[str], weights: str | None, device: str) -> dict:
    """name → f(y, σ) on (H, W) float arrays → (H, W) estimate (not yet clamped)."""
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

    out = {}
    for name in names:
        if name == "prior":
            import scoretool

            try:
                model = scoretool.load(weights, 1, device, "fp32", 512)
            except ScoretoolError as e:
                print(f"note: prior left out ({e})")
                continue
            print(f"prior: {model.info['name']} on {model.engine.device}")

            def prior(y, s, model=model):
                return model.denoise(np.asarray(y, np.float32), float(s)).astype(np.float64)

            out[name] = prior
        elif name == "bm3d":
            import bm3d

            out[name] = lambda y, s: np.asarray(bm3d.bm3d(y, sigma_psd=s), dtype=np.float64)
        elif name == "tv":
            out[name] = lambda y, s: denoise_tv_chambolle(y, weight=0.08 * s / (25 / 255))
        elif name == "nlm":
            out[name] = lambda y, s: denoise_nl_means(y, h=0.8 * s, sigma=s, fast_mode=True, patch_size=5, patch_distance=6)
        elif name == "identity":
            out[name] = lambda y, s: np.array(y, dtype=np.float64)
        else:
            raise SystemExit(f"unknown denoiser {name}: choose from {', '.join(DENOISERS)}")
    return out


def as_tensor_fn(f, s):
    """Array denoiser → the tensor callable scoretool.metrics takes (clamped to [0,1] like the PSNR)."""
    def fn(z: torch.Tensor) -> torch.Tensor:
        arr = z.detach().cpu().double().numpy()
        res = np.stack([np.clip(f(a, s), 0, 1) for a in arr.reshape(-1, *arr.shape[-2:])]).reshape(arr.shape)
        return torch.from_numpy(res)
    return fn


def evaluate_image(x, noise, level, seed, denoisers, sure_for, probes):
    y, a, b, c = realisations(x, noise, level, seed)
    s = level if noise == "gaussian" else math.sqrt(level * max(float(y.mean()), 1e-6))
    rows = []
    for name, f in denoisers.items():
        with Timer() as t:
            fn = as_tensor_fn(f, s)
            yt = torch.from_numpy(y)[None, None]
            fy = fn(yt)[0, 0].numpy()
            true_mse = float(np.mean((fy - x) ** 2))
            u = umse(fy, a, b, c, data_range=1.0)
            row = {"denoiser": name, "sigma_used": s, "true_mse": true_mse, "true_psnr": psnr_from_mse(true_mse, 1.0),
                   "umse": u.mse, "umse_ci": [u.ci_low, u.ci_high], "upsnr": u.psnr,
                   "covered": bool(u.ci_low <= true_mse <= u.ci_high)}
            if noise == "gaussian" and name in sure_for:
                gen = torch.Generator().manual_seed(seed)
                r = sure(yt, fn, s, data_range=1.0, probes=probes, generator=gen)
                row.update(sure_mse=r.estimate.mse, sure_psnr=r.estimate.psnr)
            est, fsub = split_umse(yt, fn, data_range=1.0)
            xs = x[: x.shape[0] // 2 * 2 : 2, : x.shape[1] // 2 * 2 : 2]
            row.update(split_umse=est.mse, split_upsnr=est.psnr,
                       split_true_psnr=psnr_from_mse(float(np.mean((fsub[0, 0].numpy() - xs) ** 2)), 1.0))
        row["seconds"] = round(t.seconds, 2)
        rows.append(row)
    return rows


def finite_mean(values) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def summarise(per_image: list[dict], set_name: str, noise: str, names: list[str]) -> tuple[list[dict], dict]:
    rows = []
    for name in names:
        rs = [r for r in per_image if r["denoiser"] == name]
        if not rs:
            continue
        row = {"set": set_name, "noise": noise, "denoiser": name, "images": len(rs),
               "PSNR": finite_mean(r["true_psnr"] for r in rs),
               "uPSNR": finite_mean(r["upsnr"] for r in rs),
               "uPSNR_nonpos": sum(not math.isfinite(r["upsnr"]) for r in rs),
               "SURE-PSNR": finite_mean(r.get("sure_psnr") for r in rs),
               "split-uPSNR": finite_mean(r["split_upsnr"] for r in rs),
               "split-true": finite_mean(r["split_true_psnr"] for r in rs),
               "CI cover": float(np.mean([r["covered"] for r in rs])),
               "s/img": float(np.mean([r["seconds"] for r in rs]))}
        for k in ("uPSNR", "SURE-PSNR", "split-uPSNR"):
            row[f"Δ{k.split('-')[0] if k != 'split-uPSNR' else 'split'}"] = (
                None if row[k] is None or row["PSNR"] is None else row[k] - row["PSNR"])
        rows.append(row)

    def ranking(key, among=None):
        have = [r for r in rows if r[key] is not None and (among is None or r["denoiser"] in among)]
        return [r["denoiser"] for r in sorted(have, key=lambda r: -r[key])]

    true_rank = ranking("PSNR")
    checks = {"set": set_name, "noise": noise, "ranking_true": true_rank}
    for key in ("uPSNR", "SURE-PSNR", "split-uPSNR"):
        rk = ranking(key)  # compared with the true ranking of the same denoisers (SURE: not all have it)
        checks[f"ranking_{key}"] = rk
        checks[f"ranking_{key}_equal"] = None if len(rk) < 2 else rk == ranking("PSNR", set(rk))
    checks["uPSNR_within_0.2dB"] = all(r["ΔuPSNR"] is not None and abs(r["ΔuPSNR"]) <= 0.2 for r in rows)
    prior = [r for r in rows if r["denoiser"] == "prior"]
    checks["SURE_prior_within_0.2dB"] = (None if not prior or prior[0]["ΔSURE"] is None
                                         else abs(prior[0]["ΔSURE"]) <= 0.2)
    checks["CI_cover_ge_0.9"] = all(r["CI cover"] >= 0.9 for r in rows)
    return rows, checks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="Set12,BSD68")
    ap.add_argument("--noises", default="gaussian,poisson")
    ap.add_argument("--sigma", type=float, default=25.0, help="Gaussian noise std in grey levels (of 255)")
    ap.add_argument("--zeta", type=float, default=0.01, help="Poisson ζ on the [0,1] scale, y = ζ·Poisson(x/ζ)")
    ap.add_argument("--denoisers", default=",".join(DENOISERS))
    ap.add_argument("--sure-for", default="prior,tv,nlm,identity",
                    help="denoisers that get SURE (Gaussian); BM3D is left out by default (slow, non-smooth block matching)")
    ap.add_argument("--probes", type=int, default=1, help="Monte-Carlo divergence probes for SURE")
    ap.add_argument("--weights", default=None, help="prior model (default: bundled prior-gray)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=None, help="first N images per set")
    ap.add_argument("--quick", action="store_true", help="2 images per set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="evaluate")
    args = ap.parse_args()
    if args.quick:
        args.images = args.images or 2
    names = args.denoisers.split(",")
    denoisers = make_denoisers(names, args.weights, args.device)
    sure_for = set(args.sure_for.split(","))
    summary, checks, details = [], [], []
    for set_name in args.sets.split(","):
        images = load_set(set_name, args.images)
        for noise in args.noises.split(","):
            level = args.sigma / 255 if noise == "gaussian" else args.zeta
            per_image = []
            for i, (fname, x) in enumerate(images):
                rows = evaluate_image(x.astype(np.float64), noise, level, args.seed * 100003 + i, denoisers, sure_for,
                                      args.probes)
                for r in rows:
                    r.update(set=set_name, noise=noise, image=fname)
                per_image += rows
                print(f"{set_name} {noise} {fname}: " + ", ".join(
                    f"{r['denoiser']} {r['true_psnr']:.2f}/{r['upsnr']:.2f}" for r in rows) + "  (true/uPSNR dB)", flush=True)
            rows, chk = summarise(per_image, set_name, noise, list(denoisers))
            summary += rows
            checks.append(chk)
            details += per_image
    print()
    print_table(summary, ["set", "noise", "denoiser", "images", "PSNR", "uPSNR", "ΔuPSNR", "SURE-PSNR", "ΔSURE",
                          "split-uPSNR", "Δsplit", "split-true", "CI cover", "uPSNR_nonpos", "s/img"])
    print()
    for c in checks:
        print(f"{c['set']} {c['noise']}: uPSNR within 0.2 dB: {c['uPSNR_within_0.2dB']}; ranking by uPSNR equal: "
              f"{c['ranking_uPSNR_equal']}; by SURE: {c['ranking_SURE-PSNR_equal']}; by split: {c['ranking_split-uPSNR_equal']}; "
              f"SURE(prior) within 0.2 dB: {c['SURE_prior_within_0.2dB']}; CI cover ≥ 0.9: {c['CI_cover_ge_0.9']}")
        print(f"    true ranking: {c['ranking_true']}")
    if args.quick:
        print("\n(--quick: 2 images per set; the 0.2 dB and coverage checks need the full sets to be meaningful)")
    clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
    save_results(args.out, {
        "settings": {**vars(args), "protocol": "float noise, 4 realisations (y,a,b,c), estimates clamped to [0,1], data range 1",
                     "poisson_sigma_for_denoisers": "sqrt(zeta * mean(y))"},
        "summary": [{k: clean(v) for k, v in r.items()} for r in summary], "checks": checks,
        "per_image": [{k: clean(v) for k, v in r.items()} for r in details]})


if __name__ == "__main__":
    main()
