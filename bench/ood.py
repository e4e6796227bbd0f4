"""OOD scoring (MSMA multiscale score norms): AUROC/AUPR/FPR95 per outlier set, GMM and kNN, grey and colour.

    python bench/ood.py                        # Train400 → BSD68 (prior-gray), CBSD432 → CBSD68 (prior-rgb)
    python bench/ood.py --quick                # 56 training images, 3 inliers, grey only
    python bench/ood.py --sigma-mins 0.01,0.003 --max-train 200

Fit on the prior's training set; inliers = the held-out test set; outlier sets made here from the
inliers (Gaussian noise σ=10/255, Gaussian blur std 2, JPEG quality 10, 2× nearest up-sampling of the
central half-size crop, all clipped and quantised to 8 bits like saved files) and non-photographs
(scikit-image text, page, checkerboard, binary blobs, Shepp–Logan phantom; uniform noise; constant
images). Feature variants side by side, from the same network passes (scoretool.ood.FeatureSpec):
  default     — the recipe `scoretool ood fit` uses by default: global norms + one parity number (parity-mean);
  global      — one √N-normalised norm per level over the sampled crops (the MSMA recipe);
  local       — quantiles 0.1/0.5/0.9/max of per-patch (32²) RMS score norms per level;
  +corr+parity — adds the lag-1 autocorrelation of the score map and its even/odd asymmetry per level
                (global+corr+parity was the `ood fit` default before parity-mean);
  +q0.1       — adds the 10% quantile of the per-patch norms (the flattest patches: aimed at added noise);
  +parity-mean — adds the log of the level-averaged even/odd asymmetry, once per image.
Positive class = outliers. Calibration = fraction of inliers flagged above the 95th percentile of
the held-out (cross-validated) training scores, beside the in-sample GMM reference.
Also: seconds per 1 MP image (features + density, warm) and bf16 vs fp32 feature differences.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, load_set, print_table, save_results  # noqa: E402

from scoretool import api  # noqa: E402
from scoretool.errors import ScoretoolError  # noqa: E402
from scoretool.ood import FeatureSpec, OODModel, detection_metrics, features_from_maps, min_images, score_maps  # noqa: E402


def quantise(x: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(x, 0, 1) * 255) / 255).astype(np.float32)


def jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255


def nearest2x(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[:2]
    c = x[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2]
    return np.repeat(np.repeat(c, 2, axis=0), 2, axis=1)


def degraded_sets(inliers: list[np.ndarray], colour: bool, seed: int = 0) -> dict[str, list[np.ndarray]]:
    from skimage.filters import gaussian

    rng = np.random.default_rng(seed)
    return {
        "noise σ=10": [quantise(x + 10 / 255 * rng.standard_normal(x.shape)) for x in inliers],
        "blur std 2": [quantise(gaussian(x, sigma=2, channel_axis=-1 if colour else None)) for x in inliers],
        "JPEG q10": [jpeg(x, 10) for x in inliers],
        "nearest 2×": [nearest2x(x) for x in inliers],
    }


def non_photos(colour: bool, shape=(321, 481), seed: int = 0, quick: bool = False) -> list[np.ndarray]:
    from skimage import data, util

    rng = np.random.default_rng(seed)
    greys = [util.img_as_float32(data.text()), util.img_as_float32(data.page()), util.img_as_float32(data.checkerboard()),
             data.binary_blobs(length=256, rng=seed).astype(np.float32), data.shepp_logan_phantom().astype(np.float32)]
    greys += [rng.random(shape, dtype=np.float32) for _ in range(1 if quick else 3)]
    greys += [np.full(shape, v, np.float32) for v in ((0.5,) if quick else (0.2, 0.5, 0.8))]
    out = [quantise(np.repeat(g[..., None], 3, axis=-1)) if colour else quantise(g) for g in greys]
    if colour:
        out.append(quantise(rng.random(shape + (3,), dtype=np.float32)))
    return out


def variants(spec: FeatureSpec) -> dict[str, FeatureSpec]:
    """Feature recipes compared side by side; all computed from the same score maps."""
    base = {"sigmas": spec.sigmas, "crop": spec.crop, "patch": spec.patch, "crops": spec.crops, "parity_mean": False}
    return {"default": spec,
            "global": FeatureSpec(**base, quantiles=(), rms=True, corr=False, parity=False),
            "global+corr+parity": FeatureSpec(**base, quantiles=(), rms=True, corr=True, parity=True),
            "local": FeatureSpec(**base, quantiles=(0.1, 0.5, 0.9, 1.0), rms=False, corr=False, parity=False),
            "local+corr+parity": FeatureSpec(**base, quantiles=(0.1, 0.5, 0.9, 1.0), rms=False, corr=True, parity=True),
            "global+q0.1": FeatureSpec(**base, quantiles=(0.1,), rms=True, corr=False, parity=False),
            "global+q0.1+parity-mean": FeatureSpec(**{**base, "parity_mean": True}, quantiles=(0.1,), rms=True,
                                                   corr=False, parity=False)}


def run_config(label, train_set, test_set, weights, channels, args, sigma_min) -> tuple[list[dict], dict]:
    from scoretool.weights import resolve_weights

    try:
        resolve_weights(weights, channels)
    except ScoretoolError as e:
        print(f"[{label}] skipped: {e}")
        return [], {"skipped": str(e)}
    if not (DATA / train_set).is_dir() or not (DATA / test_set).is_dir():
        print(f"[{label}] skipped: {train_set} or {test_set} missing under {DATA}")
        return [], {"skipped": f"{train_set} or {test_set} missing"}
    spec = api.ood_spec(weights=weights, channels=channels, levels=args.levels, sigma_max=1.0, sigma_min=sigma_min,
                        crops=args.crops)
    specs = variants(spec)
    den, prior = api.ood_prior(weights=weights, channels=channels, device=args.device, precision=args.precision)

    def feats(img):
        x = torch.from_numpy(np.ascontiguousarray(np.atleast_3d(img).transpose(2, 0, 1)))
        r = score_maps(den, x, spec)
        return {k: features_from_maps(r, v) for k, v in specs.items()}

    t0 = time.perf_counter()
    train = [feats(x) for _, x in load_set(train_set, args.max_train)]
    t_train = time.perf_counter() - t0
    inl_imgs = [x for _, x in load_set(test_set, args.inliers)]
    inl = [feats(x) for x in inl_imgs]
    colour = channels == 3
    sets = degraded_sets(inl_imgs, colour)
    sets["non-photos"] = non_photos(colour, quick=args.quick)
    out_feats = {k: [feats(x) for x in v] for k, v in sets.items()}
    rows, extra = [], {"sigmas": spec.sigmas, "train_images": len(train), "inliers": len(inl),
                       "seconds_train_features": round(t_train, 1), "calibration": {}}
    models = {}
    for var, vspec in specs.items():
        ftr = np.stack([f[var] for f in train])
        method0 = "gmm" if len(ftr) >= min_images("gmm", ftr.shape[1]) else "knn"  # the GMM needs more images
        model = OODModel.fit(ftr, vspec, method0, prior, seed=0)
        models[var] = model
        fin = np.stack([f[var] for f in inl])
        for method in ("gmm", "knn"):
            if method not in model.ref_scores:
                continue
            s_in = model.score(fin, method)
            cal = {"flagged_heldout_ref": float(np.mean(s_in > model.threshold(95, method)))}
            if method == "gmm":
                insample = model.score(model.reference * model.std + model.mean, "gmm")
                cal["flagged_insample_ref"] = float(np.mean(s_in > np.percentile(insample, 95)))
                cal["components"] = model.info.get("gmm_components")
            extra["calibration"][f"{var}/{method}"] = cal
            for name, fo in out_feats.items():
                m = detection_metrics(s_in, model.score(np.stack([f[var] for f in fo]), method))
                rows.append({"config": label, "σ_min": sigma_min, "features": var, "method": method, "outliers": name,
                             "n_out": m["outliers"], "AUROC": m["auroc"], "AUPR": m["aupr"], "FPR95": m["fpr_at_95_tpr"],
                             "inl_flag@95": cal["flagged_heldout_ref"]})
    # speed: one 1 MP image through the public scoring path (features + density), warm
    big = quantise(np.resize(inl_imgs[0], (1000, 1000) + inl_imgs[0].shape[2:]))
    model = models["default"]
    api.ood_score(big, model, weights=prior["path"], device=args.device, precision=args.precision)
    times, cpu = [], []
    for _ in range(2):
        t, c = time.perf_counter(), time.process_time()
        api.ood_score(big, model, weights=prior["path"], device=args.device, precision=args.precision)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    # wall time depends on what else runs on the machine; CPU time (all threads) shows the work itself
    extra["seconds_per_1MP"], extra["cpu_seconds_per_1MP"] = round(min(times), 3), round(min(cpu), 3)
    # precision: bf16 (engine default on this CPU) vs fp32 features of the first inlier, per level
    x = torch.from_numpy(np.ascontiguousarray(np.atleast_3d(inl_imgs[0]).transpose(2, 0, 1)))
    d32, _ = api.ood_prior(weights=weights, channels=channels, device=args.device, precision="fp32")
    d16, _ = api.ood_prior(weights=weights, channels=channels, device=args.device, precision="bf16")
    f32, f16 = features_from_maps(score_maps(d32, x, spec), spec), features_from_maps(score_maps(d16, x, spec), spec)
    n_level = len(spec.sigmas) * spec.per_level  # per-level features first, then the once-per-image ones
    diff_all = np.abs(f16 - f32)
    std_all = np.stack([f["default"] for f in train]).std(0)
    rel = diff_all / np.maximum(std_all, 1e-12)
    diff = diff_all[:n_level].reshape(len(spec.sigmas), -1).max(1)
    spread = std_all[:n_level].reshape(len(spec.sigmas), -1).mean(1)
    extra["bf16_vs_fp32"] = [{"sigma": s, "max_feature_diff": float(d), "train_feature_std": float(sd)}
                             for s, d, sd in zip(spec.sigmas, diff, spread)]
    extra["bf16_vs_fp32"] += [{"feature": "parity_mean", "max_feature_diff": float(diff_all[-1]),
                               "train_feature_std": float(std_all[-1])}] if spec.parity_mean else []
    print(f"[{label} σ_min={sigma_min}] {len(train)} train images ({t_train:.0f} s), {len(inl)} inliers; "
          f"1 MP image: {extra['seconds_per_1MP']:.2f} s wall, {extra['cpu_seconds_per_1MP']:.2f} s CPU; bf16 vs fp32 feature diff ≤ {float(rel.max()):.3f} train std")
    return rows, extra


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="grey,colour")
    ap.add_argument("--gray-weights", default="prior-gray")
    ap.add_argument("--rgb-weights", default="prior-rgb")
    ap.add_argument("--levels", type=int, default=10)
    ap.add_argument("--sigma-mins", default="0.003", help="comma list of smallest σ (levels geometric from 1.0)")
    ap.add_argument("--crops", type=int, default=8)
    ap.add_argument("--max-train", type=int, default=None, help="first N training images")
    ap.add_argument("--inliers", type=int, default=None, help="first N test images")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="ood")
    args = ap.parse_args()
    if args.quick:
        args.max_train, args.inliers = args.max_train or 56, args.inliers or 3
        if args.configs == "grey,colour":
            args.configs = "grey"
    table = {"grey": ("Train400", "BSD68", args.gray_weights, 1), "colour": ("CBSD432", "CBSD68", args.rgb_weights, 3)}
    rows, extras = [], {}
    for cfg in args.configs.split(","):
        for smin in (float(v) for v in args.sigma_mins.split(",")):
            r, e = run_config(cfg, *table[cfg], args, smin)
            rows += r
            extras[f"{cfg} σ_min={smin}"] = e
    if rows:
        print_table(rows, ["config", "σ_min", "features", "method", "outliers", "n_out", "AUROC", "AUPR", "FPR95",
                           "inl_flag@95"])
        print("\nAUPR: positive class = outliers. inl_flag@95: inliers flagged above the 95th held-out training percentile.")
        for k, e in extras.items():
            if "calibration" in e:
                print(f"{k}: calibration {e['calibration']}; seconds per 1 MP image {e['seconds_per_1MP']} wall, {e['cpu_seconds_per_1MP']} CPU")
    save_results(args.out, {"args": vars(args), "rows": rows, "configs": extras})


if __name__ == "__main__":
    main()
