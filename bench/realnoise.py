"""Blind and real-noise denoising with the bundled priors, beside BM3D in the same run.

    python bench/realnoise.py blind                 # BSD68 + CBSD68 first 20, σ = 5..50, float and clipped 8-bit
    python bench/realnoise.py camera                # PolyU-Canon (all 55), no noise flags, CBM3D, grid oracle
    python bench/realnoise.py camera-noise          # PolyU-Canon noise: std, correlations, the blind σ̂ of it
    python bench/realnoise.py route                 # default path on white 8-bit colour noise; its choice on real photos
    python bench/realnoise.py blind --images 3 --sigmas 25     # quick
    python bench/realnoise.py montage               # noisy | CBM3D | scoretool crops, PolyU-Canon and RNI15
    python bench/realnoise.py pg                    # Poisson–Gaussian: BSD68 + CBSD68 first 12, three (a, b)
    python bench/realnoise.py pg-cost               # blind against given (a, b) on small images and a 1920×1600 mosaic
    python bench/realnoise.py adapt                 # self-training on two Canon bodies, tested on the third (40 min)

blind: σ̂ of `scoretool denoise` without --sigma (api.tweedie_denoise: blind.estimate_sigma, lowered where
the prior disagrees, api.noise.blind_sigma) on y = x + σn (float, or clipped to [0,1] and quantised to 8 bits);
the median and largest relative error of σ̂ (and the largest of the weak-texture σ̂ alone), the PSNR of
D(y, σ̂) beside D(y, σ) (seed = image index); seconds per megapixel of the blind path (estimate + denoise)
and of the given-σ one, warm.
camera: PolyU-Canon noisy JPEGs with their references (the mean of ~500 shots): the noisy input, the
default `scoretool denoise` path for 8-bit colour (api.denoise_image: the real-noise mode,
api.camera_denoise, unless the noise is white), the blind Gaussian σ
(--no-real-noise), CBM3D and scoretool given skimage.restoration.estimate_sigma's σ, and an oracle:
scoretool's best single σ from a grid chosen against the reference (not a method: a bound for any
single σ). PSNR (data range 1) and SSIM. The peers run on the first --peer-images crops, CBM3D alone
on the first --cbm3d-images when that is given.
camera-noise: the noise of each PolyU-Canon crop (noisy − reference): its std (grey levels), its
correlation with itself 1 pixel across and down, 2 and 4 across, and between colours; beside it what
`scoretool noise` reports (blind.describe_noise: σ, sigma_pd, pd_ratio, the correlated flag) and the
weak-texture σ̂ before the floor. Medians per camera body, and the rank correlation of pd_ratio with the
lag-1 correlation (does the blind measure order the crops as the true correlation does?).
route: the default path for 8-bit colour images (api.denoise_image, no noise flags) on CBSD68 (first
--images, default 12) with white Gaussian noise, clipped and quantised to 8 bits, beside the real-noise mode
forced (api.camera_denoise) and D(y, σ) with the true σ; then which images of PolyU-Canon and RNI15 the
default sends to the blind Gaussian path (blind.white_noise_sigma).
pg: y = a·Poisson(x/a) + √b·n on [0,1] (float, unclipped; seed = image index): (â, b̂) as
api.poisson_gaussian_denoise estimates them (blind.estimate_poisson_gaussian refined by the prior's
residuals, blind.prior_variance_fit; median relative errors; the weak-texture fit alone beside them; beside them the median Cramér–Rao relative std
of a variance-based estimator that knows the clean image, `oracle_relative_std`: an estimator at that
bound would have a median |error| of 0.67 × it), and the PSNR of the noisy image, of the
generalised Anscombe transform + BM3D (CBM3D for colour) with the true (a, b) and the exact unbiased
inverse, and of scoretool (the same transform and inverse around the prior, blind.pg_denoise) with the
estimated and with the true (a, b); the time of the first over the second.
pg-cost: the same timing on one 1920×1600 mosaic of BSD68 images (the prior's fit reads a 512² crop, so its
share of the time falls as images grow).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, Timer, gaussian_noisy, load_set, print_table, psnr, save_results  # noqa: E402

import scoretool  # noqa: E402
from scoretool.api import camera_denoise, denoise_image, tweedie_denoise  # noqa: E402
from scoretool.metrics import ssim  # noqa: E402


def quantise(y: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(y, 0, 1) * 255) / 255).astype(np.float32)


def bench_blind(args) -> list[dict]:
    rows = []
    for set_name in args.sets.split(","):
        images = load_set(set_name, args.images)
        scoretool.denoise(images[0][1], 0.1)  # warm-up
        for s in (float(v) for v in args.sigmas.split(",")):
            for clipped in (False, True):
                err, err_classical, p_hat, p_true, t_blind, t_given, mpix = [], [], [], [], 0.0, 0.0, 0.0
                for i, (_, x) in enumerate(images):
                    y = gaussian_noisy(x, s / 255, seed=i)
                    y = quantise(y) if clipped else y
                    with Timer() as tb:
                        out, rep = tweedie_denoise(y)  # no σ: blind
                    with Timer() as tg:
                        ref = scoretool.denoise(y, s / 255)
                    err.append(rep["parameter"] * 255 / s - 1)
                    err_classical.append(rep["estimate"]["classical"] * 255 / s - 1)
                    p_hat.append(psnr(out, x))
                    p_true.append(psnr(ref, x))
                    t_blind, t_given = t_blind + tb.seconds, t_given + tg.seconds
                    mpix += x.shape[0] * x.shape[1] / 1e6
                row = {"set": set_name, "sigma": s, "noise": "clipped 8-bit" if clipped else "float", "images": len(images),
                       "median_rel_err": float(np.median(err)), "median_abs_rel_err": float(np.median(np.abs(err))),
                       "max_abs_rel_err": float(np.max(np.abs(err))),
                       "max_abs_rel_err_classical": float(np.max(np.abs(err_classical))),
                       "psnr_blind": float(np.mean(p_hat)), "psnr_true_sigma": float(np.mean(p_true)),
                       "psnr_gap": float(np.mean(p_hat) - np.mean(p_true)),
                       "s_per_mp_blind": t_blind / mpix, "s_per_mp_given": t_given / mpix}
                row["cost_ratio"] = row["s_per_mp_blind"] / row["s_per_mp_given"]
                rows.append(row)
                print(f"{set_name:7s} σ={s:4.0f} {row['noise']:13s} err {row['median_rel_err']:+.3f}  "
                      f"PSNR {row['psnr_blind']:.3f} vs {row['psnr_true_sigma']:.3f}  cost ×{row['cost_ratio']:.2f}", flush=True)
    print()
    print_table(rows, ["set", "sigma", "noise", "images", "median_rel_err", "max_abs_rel_err", "max_abs_rel_err_classical", "psnr_blind", "psnr_true_sigma", "psnr_gap",
                       "s_per_mp_blind", "s_per_mp_given", "cost_ratio"])
    return rows


def lag_correlation(noise: np.ndarray, dy: int, dx: int) -> float:
    """Correlation of an (H, W, C) noise image with itself shifted by (dy, dx) ≥ 0, mean over channels."""
    h, w = noise.shape[:2]
    return float(np.mean([np.corrcoef(noise[:h - dy, :w - dx, c].ravel(), noise[dy:, dx:, c].ravel())[0, 1]
                          for c in range(noise.shape[2])]))


def bench_route(args) -> tuple[list[dict], dict]:
    """The default `scoretool denoise` path for 8-bit colour (api.denoise_image, no noise flags) on white
    Gaussian noise, beside the real-noise mode forced (the default for every 8-bit colour image before
    blind.white_noise_sigma) and the true σ; and which mode the default takes on PolyU-Canon and RNI15."""
    from scoretool.blind import white_noise_sigma
    from scoretool.files import list_images
    from scoretool.io import read_image

    rows = []
    images = load_set("CBSD68", args.images)
    for s in (float(v) for v in args.sigmas.split(",")):
        cols = {k: [] for k in ("noisy", "default", "real_noise", "true_sigma")}
        white = 0
        for i, (_, x) in enumerate(images):
            y = quantise(gaussian_noisy(x, s / 255, seed=i))
            out, rep = denoise_image(y, eight_bit=True)
            white += "white_noise" in rep
            est = {"noisy": y, "default": out, "real_noise": camera_denoise(y)[0], "true_sigma": scoretool.denoise(y, s / 255)}
            for k, o in est.items():
                cols[k].append(psnr(np.clip(o, 0, 1), x))
        row = {"set": "CBSD68", "sigma": s, "noise": "clipped 8-bit", "images": len(images), "routed_white": white,
               **{f"psnr_{k}": float(np.mean(v)) for k, v in cols.items()}}
        rows.append(row)
        print(f"CBSD68 σ={s:4.0f}  white {white}/{len(images)}  default {row['psnr_default']:.2f}  "
              f"real-noise mode {row['psnr_real_noise']:.2f}  true σ {row['psnr_true_sigma']:.2f}", flush=True)
    routes = {}
    for folder in (DATA / "PolyU-Canon" / "noisy", DATA / "RNI15"):
        files, _ = list_images(folder)
        routes[folder.name if folder.name != "noisy" else "PolyU-Canon"] = {
            f.name: white_noise_sigma(read_image(f).pixels[0]) for f in files}
    for name, r in routes.items():
        print(f"{name}: blind Gaussian path (white noise) for {sum(v is not None for v in r.values())} of {len(r)}: "
              + ", ".join(f"{k} (σ̂ {v * 255:.1f})" for k, v in r.items() if v is not None))
    print_table(rows, list(rows[0]))
    return rows, {"white_noise_sigma": {n: {k: (v * 255 if v is not None else None) for k, v in r.items()} for n, r in routes.items()}}


def bench_camera_noise(args) -> tuple[list[dict], dict]:
    """The noise of the PolyU-Canon crops (noisy − reference) beside what the blind estimators see of it."""
    from scipy.stats import spearmanr

    from scoretool.blind import describe_noise, weak_texture_sigma
    from scoretool.files import list_images
    from scoretool.io import read_image

    root = DATA / "PolyU-Canon"
    files, _ = list_images(root / "noisy")
    rows = []
    for f in files[: args.images]:
        y = read_image(f).pixels[0]
        noise = y - read_image(root / "clean" / f.name).pixels[0]
        blind = describe_noise(y)
        rows.append({"image": f.name, "body": f.name.split("_")[0], "noise_std": float(noise.std() * 255),
                     **{f"corr_lag_{dy}{dx}": lag_correlation(noise, dy, dx) for dy, dx in ((0, 1), (1, 0), (0, 2), (0, 4))},
                     "corr_channels": float(np.mean(np.corrcoef(noise.reshape(-1, 3).T)[np.triu_indices(3, 1)])),
                     "weak_texture_sigma": weak_texture_sigma(y) * 255, "sigma": blind["parameter"] * 255,
                     "sigma_pd": blind["sigma_pd"] * 255, "pd_ratio": blind["pd_ratio"], "correlated": blind["correlated"]})
    columns = ["noise_std", "corr_lag_01", "corr_lag_10", "corr_lag_02", "corr_lag_04", "corr_channels", "sigma_pd", "pd_ratio"]
    summary = []
    for body in sorted({r["body"] for r in rows}) + ["all"]:
        part = [r for r in rows if body in ("all", r["body"])]
        summary.append({"body": body, "crops": len(part), **{f"median_{c}": float(np.median([r[c] for r in part])) for c in columns},
                        "weak_texture_sigma_zero": sum(r["weak_texture_sigma"] == 0 for r in part),
                        "flagged_correlated": sum(r["correlated"] for r in part)})
    print_table(summary, list(summary[0]))
    rank = spearmanr([r["pd_ratio"] for r in rows], [r["corr_lag_01"] for r in rows])
    print(f"Spearman rank correlation of pd_ratio with the lag-1 noise correlation: {rank.statistic:.2f}")
    return rows, {"summary": summary, "spearman_pd_ratio_lag1": float(rank.statistic)}


def bench_camera(args) -> tuple[list[dict], dict]:
    import bm3d
    from skimage.restoration import estimate_sigma as sk_sigma

    from scoretool.files import list_images
    from scoretool.io import read_image

    root = DATA / "PolyU-Canon"
    files, _ = list_images(root / "noisy")
    files = files[: args.images]
    grid = [g / 255 for g in (1, 2, 3, 4, 5, 6, 8, 10, 12)]
    per = {m: [] for m in ("noisy", "scoretool", "scoretool-gaussian", "scoretool-sk-sigma", "CBM3D-sk-sigma", "oracle")}
    rows, seconds, mpix, mpix_given = [], {"scoretool": 0.0, "scoretool_peers": 0.0, "given": 0.0}, 0.0, 0.0
    cbm3d_images = args.peer_images if args.cbm3d_images is None else args.cbm3d_images
    warm = read_image(files[0]).pixels[0][:64, :64]  # load the models before anything is timed
    denoise_image(warm, eight_bit=True)
    scoretool.denoise(warm, 0.01)
    for i, f in enumerate(files):
        y = read_image(f).pixels[0]
        x = read_image(root / "clean" / f.name).pixels[0]
        s_sk = float(np.mean(sk_sigma(y, channel_axis=-1)))
        with Timer() as t:
            out, rep = denoise_image(y, eight_bit=True)
        seconds["scoretool"] += t.seconds
        mpix += y.shape[0] * y.shape[1] / 1e6
        est = {"noisy": y, "scoretool": out}
        if i < args.peer_images:  # the peers, the blind Gaussian path and the oracle on the first N
            with Timer() as tg:
                est["scoretool-sk-sigma"] = scoretool.denoise(y, max(s_sk, 0.002))
            seconds["given"] += tg.seconds
            seconds["scoretool_peers"] += t.seconds
            mpix_given += y.shape[0] * y.shape[1] / 1e6
            est["scoretool-gaussian"] = tweedie_denoise(y)[0]
            est["oracle"] = max((scoretool.denoise(y, g) for g in grid), key=lambda o: psnr(o, x))
        if i < cbm3d_images:
            est["CBM3D-sk-sigma"] = bm3d.bm3d_rgb(y, max(s_sk, 1e-4))
        noise = y - x
        row = {"image": f.name, "noise_std": float(noise.std() * 255), "lag1_corr": lag_correlation(noise, 0, 1),
               "sk_sigma": s_sk * 255,
               "sigma_hat": rep["parameter"] * 255}
        for m, o in est.items():
            o = np.clip(o, 0, 1)
            row[f"psnr_{m}"] = psnr(o, x)
            row[f"ssim_{m}"] = ssim(o, x, 1.0, channel_axis=-1)
            per[m].append(i)
        rows.append(row)
        print(f"{f.name[:36]:36s} noisy {row['psnr_noisy']:.2f}  scoretool {row['psnr_scoretool']:.2f}"
              + (f"  CBM3D {row['psnr_CBM3D-sk-sigma']:.2f}" if "CBM3D-sk-sigma" in est else "")
              + (f"  oracle {row['psnr_oracle']:.2f}" if "oracle" in est else ""),
              flush=True)
    def summary_row(label: str, m: str, idx: list[int]) -> dict:
        """Means of method m's PSNR, SSIM and gains over the images idx (over CBM3D: where it ran)."""
        vs_cbm3d = [rows[i][f"psnr_{m}"] - rows[i]["psnr_CBM3D-sk-sigma"] for i in idx if "psnr_CBM3D-sk-sigma" in rows[i]]
        return {"method": label, "images": len(idx), "psnr": float(np.mean([rows[i][f"psnr_{m}"] for i in idx])),
                "ssim": float(np.mean([rows[i][f"ssim_{m}"] for i in idx])),
                "gain_over_noisy": float(np.mean([rows[i][f"psnr_{m}"] - rows[i]["psnr_noisy"] for i in idx])),
                "gain_over_cbm3d": float(np.mean(vs_cbm3d)) if vs_cbm3d else None}

    summary = []
    for m, idx in per.items():
        if idx:
            summary.append(summary_row(m, m, idx))
        if m == "scoretool" and per["oracle"] and len(per["oracle"]) < len(idx):  # like for like with the peers
            summary.append(summary_row(f"scoretool (first {len(per['oracle'])})", m, per["oracle"]))
    print()
    print_table(summary, ["method", "images", "psnr", "ssim", "gain_over_noisy", "gain_over_cbm3d"])
    speed = {"s_per_mp_scoretool": seconds["scoretool"] / mpix,
             "s_per_mp_given_sigma": seconds["given"] / mpix_given if mpix_given else None,
             # the default path against a given σ on the same (peer) images, each pair timed back to back
             "cost_ratio_same_images": seconds["scoretool_peers"] / seconds["given"] if seconds["given"] else None}
    print(speed)
    return rows, {"summary": summary, **speed}


PG_PAIRS = ((0.01, 0.0004), (0.04, 0.0001), (0.002, 0.0025))


def oracle_relative_std(x: np.ndarray, a: float, b: float) -> tuple[float, float]:
    """Cramér–Rao bound on the relative std of (â, b̂) for an estimator that knows the clean image x and
    reads only the variance (y_i ~ N(x_i, a·x_i + b), Fisher information ½·Σ [x², x; x, 1]/v²): the best
    any variance-based estimator can do on this image; the count lattice (blind.count_lattice) is not
    in this model."""
    x = np.asarray(x, np.float64).ravel()
    v2 = (a * x + b) ** 2
    info = 0.5 * np.array([[np.sum(x * x / v2), np.sum(x / v2)], [np.sum(x / v2), np.sum(1 / v2)]])
    cov = np.linalg.inv(info)
    return float(np.sqrt(cov[0, 0]) / a), float(np.sqrt(cov[1, 1]) / b)


def bench_pg(args) -> list[dict]:
    import bm3d

    from scoretool.api import poisson_gaussian_denoise
    from scoretool.blind import estimate_poisson_gaussian, pg_denoise

    def bm3d_denoise(img, sigma):
        return bm3d.bm3d_rgb(img, sigma) if img.ndim == 3 else bm3d.bm3d(img, sigma)

    rows = []
    for set_name in args.sets.split(","):
        images = load_set(set_name, args.images)
        for a, b in PG_PAIRS:
            cols = {k: [] for k in ("a_err", "b_err", "a_weak_texture_err", "b_weak_texture_err", "a_oracle", "b_oracle",
                                    "noisy", "bm3d_true", "scoretool_est", "scoretool_true")}
            seconds = {"estimated": 0.0, "given": 0.0}
            for i, (_, x) in enumerate(images):
                rng = np.random.default_rng(i)
                y = (a * rng.poisson(x / a) + np.sqrt(b) * rng.standard_normal(x.shape)).astype(np.float32)
                with Timer() as timer:
                    estimated, report = poisson_gaussian_denoise(y)
                seconds["estimated"] += timer.seconds
                with Timer() as timer:
                    given = poisson_gaussian_denoise(y, a, b)[0]
                seconds["given"] += timer.seconds
                for key, (a_hat, b_hat) in (("", (report["a"], report["b"])), ("_weak_texture", estimate_poisson_gaussian(y))):
                    cols[f"a{key}_err"].append(a_hat / a - 1)
                    cols[f"b{key}_err"].append(b_hat / b - 1)
                for k, v in zip(("a_oracle", "b_oracle"), oracle_relative_std(x, a, b)):
                    cols[k].append(v)
                cols["noisy"].append(psnr(y, x))
                cols["bm3d_true"].append(psnr(pg_denoise(bm3d_denoise, y, a, b)[0], x))
                cols["scoretool_est"].append(psnr(estimated, x))
                cols["scoretool_true"].append(psnr(given, x))
            row = {"set": set_name, "a": a, "b": b, "images": len(images),
                   "median_abs_rel_err_a": float(np.median(np.abs(cols["a_err"]))),
                   "median_abs_rel_err_b": float(np.median(np.abs(cols["b_err"]))),
                   "median_abs_rel_err_a_weak_texture": float(np.median(np.abs(cols["a_weak_texture_err"]))),
                   "median_abs_rel_err_b_weak_texture": float(np.median(np.abs(cols["b_weak_texture_err"]))),
                   "oracle_rel_std_a": float(np.median(cols["a_oracle"])), "oracle_rel_std_b": float(np.median(cols["b_oracle"])),
                   **{f"psnr_{k}": float(np.mean(v)) for k, v in cols.items() if not k.endswith(("err", "oracle"))}}
            row["margin_over_bm3d"] = row["psnr_scoretool_est"] - row["psnr_bm3d_true"]
            row["cost_estimated_over_given"] = seconds["estimated"] / seconds["given"]
            rows.append(row)
            print(f"{set_name:7s} a={a:g} b={b:g}  |Δa| {row['median_abs_rel_err_a']:.3f} |Δb| {row['median_abs_rel_err_b']:.3f}  "
                  f"(oracle std {row['oracle_rel_std_a']:.3f} / {row['oracle_rel_std_b']:.3f})  "
                  f"BM3D {row['psnr_bm3d_true']:.2f}  ours {row['psnr_scoretool_est']:.2f} (true a,b {row['psnr_scoretool_true']:.2f})",
                  flush=True)
    print()
    print_table(rows, ["set", "a", "b", "images", "median_abs_rel_err_a", "median_abs_rel_err_b", "oracle_rel_std_a",
                       "oracle_rel_std_b", "psnr_noisy",
                       "psnr_bm3d_true", "psnr_scoretool_est", "psnr_scoretool_true", "margin_over_bm3d",
                       "cost_estimated_over_given"])
    return rows


def bench_pg_cost(args) -> list[dict]:
    """Blind against given (a, b), (a, b) = PG_PAIRS[0], on a quiet machine: seconds per image over the first
    4 BSD68 and CBSD68 images (beside the weak-texture fit and lattice search alone, blind.estimate_poisson_gaussian
    without a denoiser), and on one larger image, the first 30 BSD68 images cut to 320² in a 1920×1600 mosaic;
    each path after a warm-up."""
    from scoretool.api import poisson_gaussian_denoise
    from scoretool.blind import estimate_poisson_gaussian

    a, b = PG_PAIRS[0]
    rows = []
    for set_name in ("BSD68", "CBSD68"):
        ys = []
        for i, (_, x) in enumerate(load_set(set_name, 4)):
            rng = np.random.default_rng(i)
            ys.append((a * rng.poisson(x / a) + np.sqrt(b) * rng.standard_normal(x.shape)).astype(np.float32))
        poisson_gaussian_denoise(ys[0], a, b)
        poisson_gaussian_denoise(ys[0])
        seconds = {"given": 0.0, "estimated": 0.0, "weak_texture_fit": 0.0}
        for y in ys:
            for key, run, pair in (("given", poisson_gaussian_denoise, (a, b)), ("estimated", poisson_gaussian_denoise, ()),
                                   ("weak_texture_fit", estimate_poisson_gaussian, ())):
                with Timer() as timer:
                    run(y, *pair)
                seconds[key] += timer.seconds
        rows.append({"image": f"{set_name} first {len(ys)}", "a": a, "b": b,
                     **{f"seconds_{k}": v / len(ys) for k, v in seconds.items()},
                     "cost_estimated_over_given": seconds["estimated"] / seconds["given"]})
    tiles = [x for _, x in load_set("BSD68", 30)]  # each at least 321 × 321
    x = np.concatenate([np.concatenate([t[:320, :320] for t in tiles[r * 6:(r + 1) * 6]], 1) for r in range(5)])
    rng = np.random.default_rng(0)
    y = (a * rng.poisson(x / a) + np.sqrt(b) * rng.standard_normal(x.shape)).astype(np.float32)
    poisson_gaussian_denoise(y[:64, :64], a, b)
    with Timer() as given:
        poisson_gaussian_denoise(y, a, b)
    with Timer() as blind:
        _, report = poisson_gaussian_denoise(y)
    rows.append({"image": f"BSD68 mosaic {x.shape[1]}×{x.shape[0]}", "a": a, "b": b, "seconds_given": given.seconds,
                 "seconds_estimated": blind.seconds, "cost_estimated_over_given": blind.seconds / given.seconds,
                 "rel_err_a": report["a"] / a - 1, "rel_err_b": report["b"] / b - 1})
    print_table(rows, list(rows[-1]) + ["seconds_weak_texture_fit"])
    return rows


def montage(args) -> None:
    """A PNG of 128² crops, rows: two PolyU-Canon and two RNI15 images; columns: noisy | CBM3D given
    skimage's σ | scoretool (no noise flags: the path the default takes for the whole photo, api.denoise_image)."""
    import bm3d
    from PIL import Image
    from skimage.restoration import estimate_sigma as sk_sigma

    from scoretool.blind import white_noise_sigma
    from scoretool.io import read_image

    picks = [(DATA / "PolyU-Canon" / "noisy" / "Canon5D2_5_160_6400_reciever_4.JPG", (200, 200)),
             (DATA / "PolyU-Canon" / "noisy" / "Canon5D2_5_200_3200_toy_3.JPG", (150, 250)),
             (DATA / "RNI15" / "Dog.png", (60, 60)), (DATA / "RNI15" / "Frog.png", (60, 60))]
    rows = []
    for path, (r, c) in picks:
        photo = read_image(path).pixels[0]
        photo = np.repeat(photo, 3, -1) if photo.shape[-1] == 1 else photo
        y = photo[r:r + 128, c:c + 128]
        s = max(float(np.mean(sk_sigma(y, channel_axis=-1))), 1e-4)
        rows.append(np.concatenate([y, np.full((128, 4, 3), 1.0), bm3d.bm3d_rgb(y, s), np.full((128, 4, 3), 1.0),
                                    denoise_image(y, real_noise=white_noise_sigma(photo) is None)[0]], 1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 1.0))
    grid = np.clip(np.concatenate(rows[:-1]), 0, 1)
    out = Path(__file__).resolve().parent / "results" / "realnoise-montage.png"
    Image.fromarray((grid * 255 + 0.5).astype(np.uint8)).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(out)
    print(f"wrote {out}")


CANON_BODIES = ("Canon5D2", "Canon600D", "Canon80D")
ADAPT_BLOCK = 16


def bench_adapt(args) -> tuple[list[dict], dict]:
    """Self-training of the colour prior on real noise without references (a pilot, not a feature): the
    real-noise mode (api.camera_denoise, the teacher) gives x̂ for every noisy crop of the training bodies;
    its residual y − x̂ in the flatter half of the 16² blocks (8-pixel grid, so JPEG's blocks stay whole) is
    taken as samples of the camera's noise, spatial and colour correlation included; prior-rgb is fine-tuned
    on pseudo-pairs D(x̂ + n', 3·σ̂_PD) → x̂ (n' = 16² residual blocks of the same image, tiled at random;
    σ̂_PD as the teacher's, so the student needs no teacher at test time) for --minutes, and applied to the
    held-out body at full resolution, beside the teacher."""
    import math

    from scoretool.files import list_images
    from scoretool.io import read_image
    from scoretool.weights import load_model

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    root = DATA / "PolyU-Canon"
    files, _ = list_images(root / "noisy")
    prepared = {}
    for f in files:
        y = read_image(f).pixels[0]
        x_hat, rep = camera_denoise(y)
        prepared[f.name] = (y, x_hat, 3 * rep["sigma"])
    train = []
    for name, (y, x_hat, sigma) in prepared.items():
        if name.startswith(args.test_body):
            continue
        corners = [(i, j) for i in range(0, y.shape[0] - ADAPT_BLOCK + 1, 8) for j in range(0, y.shape[1] - ADAPT_BLOCK + 1, 8)]
        spread = np.array([x_hat[i:i + ADAPT_BLOCK, j:j + ADAPT_BLOCK].std(axis=(0, 1)).mean() for i, j in corners])
        flat = [c for c, v in zip(corners, spread) if v <= np.median(spread)]
        train.append((x_hat, y - x_hat, flat, sigma))
    p, batch = 64, 8

    def pair():
        x_hat, residual, flat, sigma = train[rng.integers(len(train))]
        i, j = rng.integers(x_hat.shape[0] - p + 1), rng.integers(x_hat.shape[1] - p + 1)
        target = x_hat[i:i + p, j:j + p]
        noise = np.empty_like(target)
        for a in range(0, p, ADAPT_BLOCK):
            for b in range(0, p, ADAPT_BLOCK):
                bi, bj = flat[rng.integers(len(flat))]
                noise[a:a + ADAPT_BLOCK, b:b + ADAPT_BLOCK] = residual[bi:bi + ADAPT_BLOCK, bj:bj + ADAPT_BLOCK]
        k, flip = rng.integers(4), rng.integers(2)
        target, noise = np.rot90(target, k), np.rot90(noise, k)
        if flip:
            target, noise = target[:, ::-1], noise[:, ::-1]
        return target.transpose(2, 0, 1).copy(), noise.transpose(2, 0, 1).copy(), sigma

    net, _ = load_model("prior-rgb")
    ema, _ = load_model("prior-rgb")
    net.train()
    ema.requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    t0, step, limit = time.perf_counter(), 0, args.minutes * 60
    while time.perf_counter() - t0 < limit:
        targets, noises, sigmas = zip(*(pair() for _ in range(batch)))
        target = torch.from_numpy(np.stack(targets))
        fraction = (time.perf_counter() - t0) / limit
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1, (step + 1) / 50) * (0.02 + 0.49 * (1 + math.cos(math.pi * fraction)))
        loss = ((net(target + torch.from_numpy(np.stack(noises)), torch.tensor(sigmas)) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - min(0.995, (1 + step) / (10 + step)))
        step += 1
        if step % 100 == 0:
            print(f"step {step}  {time.perf_counter() - t0:.0f} s  pseudo-pair PSNR {-10 * math.log10(loss.item()):.2f}", flush=True)
    rows = []
    with torch.no_grad():
        for name, (y, x_hat, sigma) in prepared.items():
            if not name.startswith(args.test_body):
                continue
            x = read_image(root / "clean" / name).pixels[0]
            student = ema.eval()(torch.from_numpy(y.transpose(2, 0, 1))[None], torch.tensor([sigma]))[0].numpy().transpose(1, 2, 0)
            rows.append({"image": name, "psnr_noisy": psnr(y, x), "psnr_teacher": psnr(x_hat, x), "psnr_student": psnr(student, x)})
            print(f"{name[:36]:36s} noisy {rows[-1]['psnr_noisy']:.2f}  teacher {rows[-1]['psnr_teacher']:.2f}  "
                  f"student {rows[-1]['psnr_student']:.2f}", flush=True)
    summary = {key: float(np.mean([r[key] for r in rows])) for key in ("psnr_noisy", "psnr_teacher", "psnr_student")}
    summary.update(margin_over_teacher=summary["psnr_student"] - summary["psnr_teacher"], steps=step,
                   training_images=len(train), test_images=len(rows))
    print(summary)
    return rows, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["blind", "camera", "camera-noise", "route", "montage", "pg", "pg-cost", "adapt"])
    ap.add_argument("--sets", default="BSD68,CBSD68")
    ap.add_argument("--sigmas", default="5,10,15,25,50", help="noise std in grey levels (of 255)")
    ap.add_argument("--images", type=int, default=None, help="first N images (default: 20 for blind, 12 for route and pg, "
                    "all for camera and camera-noise)")
    ap.add_argument("--peer-images", type=int, default=12, help="camera: CBM3D, the blind Gaussian path and the "
                    "σ-grid oracle on the first N only")
    ap.add_argument("--cbm3d-images", type=int, default=None, help="camera: CBM3D on the first N (default: --peer-images)")
    ap.add_argument("--out", default=None, help="results name (default realnoise-blind / -camera-polyu / -camera-noise-polyu / -route / -poisson-gaussian / -adapt-polyu)")
    ap.add_argument("--test-body", default="Canon600D", choices=CANON_BODIES, help="adapt: the body held out")
    ap.add_argument("--minutes", type=float, default=40.0, help="adapt: fine-tuning time")
    ap.add_argument("--lr", type=float, default=1e-4, help="adapt: peak Adam learning rate")
    args = ap.parse_args()
    if args.part == "blind":
        args.images = args.images or 20
        rows = bench_blind(args)
        save_results(args.out or "realnoise-blind", {"bench": "realnoise blind", "args": vars(args), "rows": rows})
    elif args.part == "montage":
        montage(args)
    elif args.part == "pg":
        args.images = args.images or 12
        rows = bench_pg(args)
        save_results(args.out or "realnoise-poisson-gaussian", {"bench": "realnoise pg", "args": vars(args), "rows": rows})
    elif args.part == "pg-cost":
        save_results(args.out or "realnoise-poisson-gaussian-cost", {"bench": "realnoise pg-cost", "args": vars(args),
                                                                     "rows": bench_pg_cost(args)})
    elif args.part == "route":
        args.images = args.images or 12
        rows, routes = bench_route(args)
        save_results(args.out or "realnoise-route", {"bench": "realnoise route", "args": vars(args), "rows": rows, **routes})
    elif args.part == "adapt":
        rows, summary = bench_adapt(args)
        save_results(args.out or "realnoise-adapt-polyu", {"bench": "realnoise adapt", "args": vars(args), **summary, "rows": rows})
    elif args.part == "camera-noise":
        rows, summary = bench_camera_noise(args)
        save_results(args.out or "realnoise-camera-noise-polyu", {"bench": "realnoise camera-noise", "args": vars(args),
                                                                  **summary, "rows": rows})
    else:
        rows, summary = bench_camera(args)
        save_results(args.out or "realnoise-camera-polyu", {"bench": "realnoise camera", "args": vars(args), **summary,
                                                            "rows": rows})


if __name__ == "__main__":
    main()
