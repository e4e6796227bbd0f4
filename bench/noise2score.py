"""Noise2Score: the bundled self-supervised models beside BM3D, Anscombe+BM3D, the clean prior and the
published numbers; noise family / parameter estimation on a grid; a montage on real noise (RNI15).

    python bench/noise2score.py                 # BSD68 + Set12, all configurations, estimation grid, montage
    python bench/noise2score.py --quick         # 1 image, σ=25 / ζ=0.01 / k=100, small grid, 2 RNI15 images
    python bench/noise2score.py --sets BSD68 --configs gaussian:25,poisson:0.01 --skip-grid --skip-montage

Protocol (Noise2Score paper): x on [0,1]; y = x + σn (σ in grey levels of 255),
y = ζ·Poisson(x/ζ) or y = x·G, G ~ Gamma(k, 1/k), float, not clipped or quantised; the seed of image i is
(seed, i); PSNR with data range 1 after clamping the estimate to [0,1]. Methods:
- n2s: the bundled model of that family, its training parameter given (only where the data's parameter
  is the one it was trained on); n2s-est: the same model with the parameter estimated from the score.
- BM3D (Gaussian), Anscombe+BM3D (Poisson; closed-form approximation of the exact unbiased inverse).
- prior: the clean prior (prior-gray), x̂ = D(y, σ) for Gaussian, Gaussian approximation otherwise.
- published: Noise2Score Table 2 (Kim & Ye, NeurIPS 2021).
Missing bundled models are skipped with a note. Estimation grid: σ ∈ {15,25,50}/255, ζ ∈ {0.01,0.05},
k ∈ {50,100}, each estimated by the model trained on that noise (bundled n2s-* or --grid-models); the
family is estimated too (acceptance: family right on ≥ 90% of images, median parameter error ≤ 10%).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, RESULTS, ROOT, Timer, load_set, print_table, psnr, save_results  # noqa: E402

sys.path.insert(0, str(ROOT))
import scoretool  # noqa: E402
from scoretool.noise import PARAM_NAME, add_noise, anscombe, inverse_anscombe  # noqa: E402

MODELS = {"gaussian": "n2s-gaussian-gray", "poisson": "n2s-poisson-gray", "gamma": "n2s-gamma-gray"}
# Noise2Score Table 2 (Kim & Ye, NeurIPS 2021): (family, parameter as written, set) → {method: PSNR}
PUBLISHED = {
    ("gaussian", 25, "BSD68"): {"BM3D": 28.59, "N2S": 29.12, "supervised": 29.20},
    ("gaussian", 25, "Set12"): {"BM3D": 29.96, "N2S": 30.13, "supervised": 30.36},
    ("gaussian", 50, "BSD68"): {"BM3D": 25.62, "N2S": 26.21, "supervised": 26.30},
    ("poisson", 0.01, "BSD68"): {"BM3D": 30.51, "N2S": 30.81, "supervised": 30.98},
    ("poisson", 0.05, "BSD68"): {"BM3D": 26.77, "N2S": 27.12, "supervised": 27.25},
    ("gamma", 100, "BSD68"): {"N2S": 32.67, "supervised": 32.93},
    ("gamma", 50, "BSD68"): {"N2S": 30.53, "supervised": 31.16},
}
GRID = [("gaussian", 15), ("gaussian", 25), ("gaussian", 50), ("poisson", 0.01), ("poisson", 0.05), ("gamma", 50), ("gamma", 100)]


def unit(family: str, value: float) -> float:
    """Parameter as written (σ in grey levels) → [0,1] scale."""
    return value / 255 if family == "gaussian" else value


def model_noise(weights: str) -> tuple[str | None, float | None]:
    """(family, parameter on [0,1]) a Noise2Score model was trained on, from its metadata."""
    from scoretool.weights import read_metadata, resolve_weights

    _, info = read_metadata(resolve_weights(weights))
    noise = info.get("noise") or {}
    fam = noise.get("family")
    if fam not in PARAM_NAME or PARAM_NAME[fam] not in noise:
        return fam, None
    return fam, unit(fam, float(noise[PARAM_NAME[fam]]))


def available(weights: str) -> str | None:
    """None when the model loads, else the reason."""
    try:
        from scoretool.weights import resolve_weights

        resolve_weights(weights, 1)
        return None
    except Exception as e:
        return str(e)


def bm3d_gaussian(y, sigma):
    import bm3d

    return bm3d.bm3d(y, sigma)


def anscombe_bm3d(y, zeta):
    import bm3d

    z = anscombe(y, zeta)
    return inverse_anscombe(bm3d.bm3d(z, 1.0), zeta)


def denoise_rows(args, notes) -> list[dict]:
    rows = []
    configs = [(c.split(":")[0], float(c.split(":")[1])) for c in filter(None, args.configs.split(","))]
    prior_missing = available(args.prior)
    if prior_missing:
        notes.append(f"clean prior {args.prior} skipped: {prior_missing}")
    for set_name in args.sets.split(","):
        images = load_set(set_name, args.images)
        for family, value in configs:
            param = unit(family, value)
            methods = {}
            model = MODELS[family]
            why = available(model)
            if why:
                notes.append(f"{set_name} {family}:{value:g}: {model} skipped ({why})")
            else:
                mfam, mparam = model_noise(model)
                if mfam == family and mparam is not None and abs(mparam / param - 1) < 0.01:
                    methods["n2s"] = lambda y, m=model, f=family, q=param: scoretool.tweedie_denoise(y, f, q, weights=m, precision="fp32",
                                                                                  sigma_a=args.sigma_a)
                else:
                    notes.append(f"{set_name} {family}:{value:g}: {model} was trained on {mfam} {mparam}; only n2s-est runs")
                methods["n2s-est"] = lambda y, m=model, f=family: scoretool.tweedie_denoise(y, f, None, weights=m, sigma_a=args.sigma_a)
            if family == "gaussian":
                methods["BM3D"] = lambda y, q=param: (bm3d_gaussian(y, q), None)
            if family == "poisson":
                methods["Anscombe+BM3D"] = lambda y, q=param: (anscombe_bm3d(y, q), None)
            if not prior_missing:
                methods["prior"] = lambda y, f=family, q=param: scoretool.tweedie_denoise(y, f, q, weights=args.prior)
            methods["noisy"] = lambda y: (y, None)
            if args.methods:
                methods = {k: v for k, v in methods.items() if k in args.methods.split(",")}
            for name, fn in methods.items():
                n = len(images) if args.peer_images is None or name not in ("BM3D", "Anscombe+BM3D") else min(args.peer_images, len(images))
                scores, seconds, guarded, estimates = [], 0.0, 0, []
                for i, (_fname, x) in enumerate(images[:n]):
                    y = add_noise(x, family, param, seed=np.random.default_rng([args.seed, i]))
                    with Timer() as t:
                        est, report = fn(y)
                    seconds += t.seconds
                    scores.append(psnr(np.asarray(est, np.float32), x))
                    if report:
                        guarded += report["guards"]["guarded"]
                        if report.get("estimated"):
                            estimates.append(report["parameter"])
                pub = PUBLISHED.get((family, value if family != "gaussian" else int(value), set_name), {})
                row = {"set": set_name, "noise": f"{family}:{value:g}", "method": name, "images": n,
                       "psnr": float(np.mean(scores)), "seconds": seconds / max(n, 1), "guarded_px": guarded,
                       "param_est": float(np.median(estimates)) if estimates else None,
                       "pub_BM3D": pub.get("BM3D"), "pub_N2S": pub.get("N2S"), "pub_sup": pub.get("supervised")}
                rows.append(row)
                print(f"{set_name:6s} {row['noise']:14s} {name:14s} {row['psnr']:.3f} dB  n={n}  {row['seconds']:.2f} s/img",
                      flush=True)
    return rows


def grid_rows(args, notes) -> tuple[list[dict], dict]:
    """Per grid point: the model trained on that noise estimates family and parameter on each image."""
    candidates = [m for m in MODELS.values() if not available(m)]
    for spec in filter(None, (args.grid_models or "").split(",")):
        candidates.append(spec)
    trained = {}
    for m in candidates:
        fam, p = model_noise(m)
        if fam and p:
            trained[(fam, round(p, 8))] = m
    images = load_set(args.grid_set, args.grid_images)
    rows, per_image = [], []
    grid = GRID if not args.quick else [("gaussian", 25), ("poisson", 0.01), ("gamma", 100)]
    for family, value in grid:
        param = unit(family, value)
        model = trained.get((family, round(param, 8)))
        if model is None:
            notes.append(f"grid {family}:{value:g}: no Noise2Score model trained on this noise (pass --grid-models PATH)")
            continue
        fams, errs = [], []
        for i, (_fname, x) in enumerate(images):
            y = add_noise(x, family, param, seed=np.random.default_rng([args.seed, 1000 + i]))
            est = scoretool.estimate_noise(y, model, sigma_a=args.sigma_a, seed=i)
            fams.append(est["family"])
            mine = est["parameters"][PARAM_NAME[family]]
            errs.append(abs(mine / param - 1) if mine and math.isfinite(mine) else float("inf"))
            per_image.append({"noise": f"{family}:{value:g}", "image": _fname, "family_est": est["family"],
                              "power": est["power"], "param_est": mine, "param_true": param})
        rows.append({"noise": f"{family}:{value:g}", "model": model, "images": len(images),
                     "family_correct": float(np.mean([f == family for f in fams])),
                     "param_median_rel_err": float(np.median(errs))})
        print(f"grid {family}:{value:g}  family right {rows[-1]['family_correct']:.0%}  "
              f"median |param error| {rows[-1]['param_median_rel_err']:.1%}", flush=True)
    summary = {}
    if rows:
        summary = {"family_correct_all": float(np.mean([r["family_est"] == r["noise"].split(":")[0] for r in per_image])),
                   "param_median_rel_err_worst": max(r["param_median_rel_err"] for r in rows)}
    return rows, {"summary": summary, "per_image": per_image}


def montage(args, notes) -> dict:
    """`scoretool noise` + `scoretool denoise --noise auto` on RNI15 (CLI, as a user runs them); a PNG of
    noisy | denoised rows."""
    from scoretool.files import list_images
    from scoretool.io import read_image

    model = args.montage_weights
    why = available(model)
    if why:
        notes.append(f"montage skipped: {model} ({why})")
        return {}
    files, _ = list_images(DATA / "RNI15")
    files = files[: args.montage_images]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for f in files:
            (src / f.name).symlink_to(f.resolve())
        cmd = [sys.executable, "-m", "scoretool"]
        r1 = subprocess.run(cmd + ["noise", str(src), "--weights", model, "--json", "--quiet"], capture_output=True, text=True)
        r2 = subprocess.run(cmd + ["denoise", str(src), "-o", str(Path(tmp) / "out"), "--weights", model, "--noise", "auto",
                                   "--format", "npy", "--json", "--quiet"], capture_output=True, text=True)
        out = {"noise_exit": r1.returncode, "denoise_exit": r2.returncode, "noise_stderr": r1.stderr[-2000:],
               "denoise_stderr": r2.stderr[-2000:]}
        try:
            out["noise"] = json.loads(r1.stdout)["overall"]
            out["denoise"] = [{k: r.get(k) for k in ("input", "status", "noise", "parameter", "estimated", "error")}
                              for r in json.loads(r2.stdout)["results"]]
        except (json.JSONDecodeError, KeyError):
            pass
        print(f"RNI15: noise exit {r1.returncode}, denoise --noise auto exit {r2.returncode}", flush=True)
        tiles = []
        for f in files:
            res = Path(tmp) / "out" / (f.stem + ".npy")
            if not res.exists():
                continue
            noisy = read_image(f).pixels[0]
            den = np.load(res)
            den = den.reshape(noisy.shape)
            pair = np.concatenate([noisy, np.full((noisy.shape[0], 4, noisy.shape[2]), 1.0), den], axis=1)
            if pair.shape[2] == 1:
                pair = np.repeat(pair, 3, axis=2)
            h = 256
            idx = np.linspace(0, pair.shape[0] - 1, h).astype(int)
            jdx = np.linspace(0, pair.shape[1] - 1, int(pair.shape[1] * h / pair.shape[0])).astype(int)
            tiles.append(pair[idx][:, jdx])
        if tiles:
            import imageio.v3 as iio

            width = max(t.shape[1] for t in tiles)
            rows = [np.pad(t, ((0, 4), (0, width - t.shape[1]), (0, 0)), constant_values=1.0) for t in tiles]
            png = RESULTS / f"{args.out}-rni15.png"
            RESULTS.mkdir(parents=True, exist_ok=True)
            iio.imwrite(png, (np.clip(np.concatenate(rows), 0, 1) * 255).round().astype(np.uint8))
            out["montage"] = str(png)
            print(f"wrote {png} (left noisy, right denoised)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="BSD68,Set12")
    ap.add_argument("--configs", default="gaussian:25,gaussian:50,poisson:0.01,poisson:0.05,gamma:100,gamma:50",
                    help="family:parameter (σ in grey levels, ζ, k)")
    ap.add_argument("--images", type=int, default=None, help="first N images per set")
    ap.add_argument("--peer-images", type=int, default=None, help="BM3D / Anscombe+BM3D on the first N only")
    ap.add_argument("--prior", default="prior-gray")
    ap.add_argument("--methods", default=None, help="only these rows, e.g. n2s,noisy (default: all)")
    ap.add_argument("--n2s", default=None, help="override models: family=NAME_OR_PATH,... (default n2s-<family>-gray)")
    ap.add_argument("--sigma-a", type=float, default=None, help="σ_a at which the Noise2Score score is read (default: the tool's auto rule)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid-set", default="BSD68")
    ap.add_argument("--grid-images", type=int, default=20)
    ap.add_argument("--grid-models", default=None, help="extra Noise2Score model paths (comma separated) for grid points")
    ap.add_argument("--montage-weights", default="n2s-gaussian-gray")
    ap.add_argument("--montage-images", type=int, default=15)
    ap.add_argument("--skip-grid", action="store_true")
    ap.add_argument("--skip-montage", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="noise2score")
    args = ap.parse_args()
    if args.quick:
        args.images = args.images or 1
        args.sets = "BSD68" if args.sets == "BSD68,Set12" else args.sets
        args.configs = "gaussian:25,poisson:0.01,gamma:100" if "gamma:50" in args.configs else args.configs
        args.grid_images = min(args.grid_images, 1)
        args.montage_images = min(args.montage_images, 2)
    for spec in filter(None, (args.n2s or "").split(",")):
        fam, _, path = spec.partition("=")
        if fam not in MODELS or not path:
            ap.error(f"--n2s {spec}: expected family=NAME_OR_PATH with family gaussian, poisson or gamma")
        MODELS[fam] = path
    notes: list[str] = []
    rows = denoise_rows(args, notes)
    grid, grid_detail = ([], {}) if args.skip_grid else grid_rows(args, notes)
    rni = {} if args.skip_montage else montage(args, notes)
    print()
    print_table(rows, ["set", "noise", "method", "images", "psnr", "param_est", "guarded_px", "pub_BM3D", "pub_N2S", "pub_sup"])
    if grid:
        print()
        print_table(grid, ["noise", "model", "images", "family_correct", "param_median_rel_err"])
        print(f"summary: {grid_detail['summary']}")
    for n in notes:
        print(f"note: {n}")
    save_results(args.out, {"bench": "noise2score", "args": vars(args), "rows": rows, "grid": grid, "grid_detail": grid_detail,
                            "rni15": rni, "notes": notes})


if __name__ == "__main__":
    main()
