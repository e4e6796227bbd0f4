"""OOD scoring by Multiscale Score Matching Analysis (MSMA; Mahmood, Oliva, Styner, ICLR 2021).

Features: for L geometric noise levels σ_i the score map of the *clean* image,
r_i = (D(x, σ_i) − x)/σ_i = σ_i·s(x, σ_i), on a fixed number K of crops (`crop`² pixels on a
deterministic grid, overlapping on small images), so images of any size give comparable features and
a 1 MP image costs the same as a small one. Per level (FeatureSpec says which):
- rms: log ‖r_i‖/√N over all sampled pixels — MSMA's whole-image norm, √N-normalised;
- corr: lag-1 autocorrelation of r_i — how smooth the score map is (blur, noise, JPEG);
- parity: even/odd asymmetry of the lag-1 products — pixel replication (2× nearest up-sampling) and
  block grids (JPEG) make neighbouring pairs alternate, natural images do not;
- quantiles: log quantiles of per-patch RMS norms (`patch`²), the local variant of MSMA.
The default is the MSMA norms plus one number per image, `parity_mean` (the level-averaged parity);
the per-level parities and autocorrelations are optional. `bench/ood.py` compares the recipes.

Density (scikit-learn): a GaussianMixture (standardised features, full covariance, number of
components chosen by held-out log-likelihood) with score = −log p(f), or kNN with score = mean
Euclidean distance to the k = 5 nearest training features (standardised). The reference score
distribution, against which percentiles are reported, is made of *held-out* scores (5-fold
cross-validation for the GMM, leave-one-out for kNN), so a new inlier is flagged at about the nominal
rate. Stored as safetensors (tensors + JSON metadata), no pickle.
The features and the density model over them share this module (~390 lines): the OOD score is
their composition, and the stored model records the feature recipe it was fitted on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .engine import Denoiser
from .errors import ScoretoolError
from .files import atomic_output
from .ood_recipe import (  # noqa: F401  (the recipe, re-exported: scoretool.ood.FeatureSpec)
    DEFAULT_CORR,
    DEFAULT_PARITY,
    DEFAULT_PARITY_MEAN,
    DEFAULT_QUANTILES,
    DEFAULT_RMS,
    FeatureSpec,
)

FORMAT = "scoretool-ood"
KNN_K = 5
GMM_COMPONENTS = (1, 2, 3, 4, 6, 8)


def geometric_levels(sigma_max: float = 1.0, sigma_min: float = 0.01, levels: int = 10) -> list[float]:
    """L noise levels σ_max · (σ_min/σ_max)^(i/(L−1)), i = 0..L−1 (MSMA uses 1.0 → 0.01 on [0,1])."""
    if levels < 1:
        raise ScoretoolError(f"--levels {levels}: need at least 1 level")
    if not 0 < sigma_min <= sigma_max:
        raise ScoretoolError(f"σ range {sigma_min}..{sigma_max}: need 0 < sigma_min ≤ sigma_max")
    if levels == 1:
        return [float(sigma_max)]
    return [float(v) for v in np.geomspace(sigma_max, sigma_min, levels)]


def crop_positions(h: int, w: int, crop: int, count: int) -> list[tuple[int, int]]:
    """`count` top-left corners of crop×crop windows spread evenly over an h×w image.

    The grid gy×gx = count is the factor pair closest to the image's aspect ratio; positions are
    linspace(0, side − crop), so crops overlap on small images and leave gaps on large ones.
    """
    pairs = [(a, count // a) for a in range(1, count + 1) if count % a == 0]
    gy, gx = min(pairs, key=lambda p: abs(math.log((p[1] / p[0]) / (w / h))))
    ys = np.linspace(0, max(h - crop, 0), gy).round().astype(int)
    xs = np.linspace(0, max(w - crop, 0), gx).round().astype(int)
    return [(int(y), int(x)) for y in ys for x in xs]


def score_maps(denoise: Denoiser, x: torch.Tensor, spec: FeatureSpec, batch: int = 64) -> torch.Tensor:
    """r_i = (D(x_k, σ_i) − x_k)/σ_i on the K crops x_k of one clean image (C, H, W) on [0,1].

    Args:
        denoise: D(x, σ) on (B, C, h, w) with σ of shape (B,); any callable (network or closed form).
    Returns:
        (L, K, C, h, w) tensor, h, w = min(crop, H), min(crop, W). Levels and crops are batched
        together (`batch` items per call).
    """
    c, h, w = x.shape
    ch, cw = min(spec.crop, h), min(spec.crop, w)
    pos = crop_positions(h, w, spec.crop, spec.crops)
    crops = torch.stack([x[:, y:y + ch, xx:xx + cw] for y, xx in pos])  # (K, C, ch, cw)
    k = crops.shape[0]
    sig = torch.tensor(spec.sigmas, dtype=torch.float32)
    items = crops.repeat(len(sig), 1, 1, 1)  # level-major: item j → level j // K
    sig_items = sig.repeat_interleave(k)
    out = []
    for i in range(0, items.shape[0], batch):
        xb, sb = items[i:i + batch], sig_items[i:i + batch]
        out.append((denoise(xb, sb).float().cpu() - xb) / sb[:, None, None, None])
    return torch.cat(out).reshape(len(sig), k, c, ch, cw)


def norms_of_maps(r: torch.Tensor, patch: int) -> torch.Tensor:
    """(L, K, C, h, w) score maps → (L, P) RMS norms ‖r‖/√N of the P = K·⌊h/p⌋·⌊w/p⌋ patches."""
    L, k, c, h, w = r.shape
    ph, pw = min(patch, h), min(patch, w)
    ny, nx = h // ph, w // pw
    r = r[..., : ny * ph, : nx * pw].reshape(L, k, c, ny, ph, nx, pw)
    return r.pow(2).mean(dim=(2, 4, 6)).sqrt().reshape(L, -1)


def lag1_correlation(r: torch.Tensor) -> torch.Tensor:
    """(L, K, C, h, w) → (L,): mean of horizontal and vertical Σ r·r_shifted / Σ r² over all crops."""
    r = r.double()
    num_x = (r[..., :, 1:] * r[..., :, :-1]).sum(dim=(1, 2, 3, 4))
    num_y = (r[..., 1:, :] * r[..., :-1, :]).sum(dim=(1, 2, 3, 4))
    den = r.pow(2).sum(dim=(1, 2, 3, 4)).clamp_min(1e-30)
    return (0.5 * (num_x + num_y) / den).float()


def lag1_parity(r: torch.Tensor) -> torch.Tensor:
    """(L, K, C, h, w) → (L,): |ρ_even − ρ_odd| of the lag-1 products, mean of horizontal and vertical.

    ρ_even = Σ r[2k]·r[2k+1] / Σ r², ρ_odd = Σ r[2k+1]·r[2k+2] / Σ r²: equal in expectation for natural
    images, different when pixels come in 2×2 blocks (nearest up-sampling) or other period-2 grids.
    """
    r = r.double()
    den = r.pow(2).sum(dim=(1, 2, 3, 4)).clamp_min(1e-30)
    out = 0
    for dim in (-1, -2):
        a, b = r.narrow(dim, 0, r.shape[dim] - 1), r.narrow(dim, 1, r.shape[dim] - 1)
        prod = a * b
        even = prod.narrow(dim, 0, prod.shape[dim]).index_select(dim, torch.arange(0, prod.shape[dim], 2))
        odd = prod.index_select(dim, torch.arange(1, prod.shape[dim], 2))
        out = out + 0.5 * (even.sum(dim=(1, 2, 3, 4)) - odd.sum(dim=(1, 2, 3, 4))).abs() / den
    return out.float()


def features_from_norms(norms: torch.Tensor, quantiles=DEFAULT_QUANTILES) -> np.ndarray:
    """log of the per-level quantiles of the patch norms → (L·Q,) float64, level-major."""
    q = torch.quantile(norms.double(), torch.tensor(quantiles, dtype=torch.float64), dim=1)  # (Q, L)
    return np.log(q.T.numpy().reshape(-1) + 1e-12)


def features_from_maps(r: torch.Tensor, spec: FeatureSpec) -> np.ndarray:
    """(L, K, C, h, w) score maps → the (spec.dim,) feature vector described by `spec`."""
    parts = [np.zeros((len(spec.sigmas), 0))]
    norms = norms_of_maps(r, spec.patch)
    if spec.quantiles:
        parts.append(features_from_norms(norms, spec.quantiles).reshape(len(spec.sigmas), -1))
    if spec.rms:
        parts.append(np.log(norms.double().pow(2).mean(dim=1).sqrt().numpy() + 1e-12)[:, None])
    if spec.corr:
        parts.append(lag1_correlation(r).double().numpy()[:, None])
    parity = lag1_parity(r).double().numpy() if spec.parity or spec.parity_mean else None
    if spec.parity:
        parts.append(parity[:, None])
    once = [np.log(parity.mean() + 1e-6)] if spec.parity_mean else []
    return np.concatenate([np.concatenate(parts, axis=1).reshape(-1), once])


def score_norm_features(denoise: Denoiser, x: torch.Tensor, spec: FeatureSpec, batch: int = 64) -> np.ndarray:
    """MSMA feature vector of one clean image (C, H, W) on [0,1]: see the module docstring."""
    return features_from_maps(score_maps(denoise, x, spec, batch), spec)


# ---------------------------------------------------------------------------------------------
# density models


def min_images(method: str, dim: int) -> int:
    """Fewest training images a density needs: kNN k+2 (leave-one-out); GMM a non-singular full
    covariance on the 80% split used to choose the number of components, and at least 20."""
    if method == "knn":
        return max(KNN_K + 2, 10)
    return max(20, math.ceil(1.25 * (dim + 2)))


def check_enough_images(n: int, method: str, dim: int) -> None:
    """Refuse to fit `method` on n images of `dim` features when that is fewer than min_images."""
    need = min_images(method, dim)
    if n < need:
        raise ScoretoolError(f"{n} training images are too few: the {method.upper()} density on {dim} features "
                             f"needs at least {need} (use more images or fewer --levels)")


def _gmm(n: int, seed: int):
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(n_components=n, covariance_type="full", reg_covar=1e-4, n_init=2, random_state=seed)


def choose_components(z: np.ndarray, seed: int = 0, candidates=GMM_COMPONENTS) -> tuple[int, dict[int, float]]:
    """Number of GMM components with the best mean held-out log-likelihood (80/20 split)."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(z))
    n_hold = max(2, len(z) // 5)
    hold, train = z[idx[:n_hold]], z[idx[n_hold:]]
    scores = {}
    for n in candidates:
        # each component needs more points than dimensions for its covariance
        if n * (z.shape[1] + 1) > len(train):
            break
        scores[n] = float(_gmm(n, seed).fit(train).score(hold))
    if not scores:
        raise ScoretoolError(f"{len(z)} images are too few for a GMM on {z.shape[1]} features")
    return max(scores, key=scores.get), scores


def gmm_nll(gmm, z: np.ndarray) -> np.ndarray:
    """−log p(z) of each row of z under a fitted scikit-learn GaussianMixture."""
    return -gmm.score_samples(z)


def knn_distance(reference: np.ndarray, z: np.ndarray, k: int = KNN_K, exclude_self: bool = False) -> np.ndarray:
    """Mean Euclidean distance of each row of z to its k nearest rows of `reference`."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + int(exclude_self)).fit(reference)
    dist, _ = nn.kneighbors(z)
    return dist[:, int(exclude_self):].mean(axis=1)


@dataclass
class OODModel:
    """A fitted OOD density on MSMA features, with everything needed to score new images."""

    spec: FeatureSpec
    method: str
    mean: np.ndarray
    std: np.ndarray
    reference: np.ndarray  # standardised training features (kNN reference; also the record)
    ref_scores: dict[str, np.ndarray]  # held-out training scores per method (percentile reference)
    gmm_weights: np.ndarray | None = None
    gmm_means: np.ndarray | None = None
    gmm_covariances: np.ndarray | None = None
    prior: dict = field(default_factory=dict)  # name, sha256, channels, sigma range of the prior
    info: dict = field(default_factory=dict)

    # -- fitting ---------------------------------------------------------------------------------
    @classmethod
    def fit(cls, features: np.ndarray, spec: FeatureSpec, method: str = "gmm", prior: dict | None = None,
            seed: int = 0, folds: int = 5) -> OODModel:
        """Fit both densities (the stored `method` is the one `score` uses) on (n, d) features."""
        if method not in ("gmm", "knn"):
            raise ScoretoolError(f"--method {method}: expected gmm or knn")
        f = np.asarray(features, dtype=np.float64)
        n, d = f.shape
        check_enough_images(n, method, d)
        if not np.all(np.isfinite(f)):
            raise ScoretoolError("training features are not finite (constant or empty images?)")
        mean, std = f.mean(0), f.std(0)
        std = np.where(std > 1e-8, std, 1.0)
        z = (f - mean) / std
        model = cls(spec=spec, method=method, mean=mean, std=std, reference=z, ref_scores={}, prior=prior or {})
        model.ref_scores["knn"] = knn_distance(z, z, exclude_self=True)
        info = {"images": n, "features": d, "seed": seed}
        if n >= min_images("gmm", d):
            k, heldout = choose_components(z, seed)
            gmm = _gmm(k, seed).fit(z)
            model.gmm_weights, model.gmm_means, model.gmm_covariances = gmm.weights_, gmm.means_, gmm.covariances_
            info.update(gmm_components=k, gmm_heldout_loglik={str(a): round(b, 4) for a, b in heldout.items()})
            # held-out (cross-validated) reference scores: in-sample NLL is optimistic and over-flags
            cv = np.empty(n)
            order = np.random.default_rng(seed).permutation(n)
            for fold in np.array_split(order, min(folds, n)):
                rest = np.setdiff1d(order, fold)
                cv[fold] = gmm_nll(_gmm(k, seed).fit(z[rest]), z[fold])
            model.ref_scores["gmm"] = cv
        model.info = info
        return model

    # -- scoring ---------------------------------------------------------------------------------
    def _sk_gmm(self):
        from sklearn.mixture import GaussianMixture
        from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

        gmm = GaussianMixture(n_components=len(self.gmm_weights), covariance_type="full")
        gmm.weights_, gmm.means_, gmm.covariances_ = self.gmm_weights, self.gmm_means, self.gmm_covariances
        gmm.precisions_cholesky_ = _compute_precision_cholesky(self.gmm_covariances, "full")
        return gmm

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """(f − mean)/std with the training features' statistics; refuses another feature length."""
        f = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if f.shape[1] != len(self.mean):
            raise ScoretoolError(f"feature vector has {f.shape[1]} values, the OOD model expects {len(self.mean)}")
        return (f - self.mean) / self.std

    def score(self, features: np.ndarray, method: str | None = None) -> np.ndarray:
        """OOD score of (n, d) features (higher = more unusual): GMM −log p or mean 5-NN distance."""
        method = method or self.method
        z = self.standardise(features)
        if method == "gmm":
            if self.gmm_weights is None:
                raise ScoretoolError("this OOD model has no GMM (too few training images); use the kNN method")
            return gmm_nll(self._sk_gmm(), z)
        if method == "knn":
            return knn_distance(self.reference, z)
        raise ScoretoolError(f"method {method}: expected gmm or knn")

    def percentile(self, scores: np.ndarray, method: str | None = None) -> np.ndarray:
        """Percent of held-out training scores strictly below each score (0–100)."""
        ref = np.sort(self.ref_scores[method or self.method])
        return 100.0 * np.searchsorted(ref, np.asarray(scores), side="left") / len(ref)

    def threshold(self, percentile: float = 95.0, method: str | None = None) -> float:
        """The score at the given percentile of the held-out training scores; flag above it."""
        return float(np.percentile(self.ref_scores[method or self.method], percentile))

    # -- storage ---------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the model as safetensors (arrays) with JSON metadata, atomically."""
        from safetensors.numpy import save_file

        t = {"mean": self.mean, "std": self.std, "reference": self.reference}
        t.update({f"ref_scores.{k}": v for k, v in self.ref_scores.items()})
        if self.gmm_weights is not None:
            t.update({"gmm.weights": self.gmm_weights, "gmm.means": self.gmm_means, "gmm.covariances": self.gmm_covariances})
        meta = {"format": FORMAT, "method": self.method, "prior": json.dumps(self.prior), "info": json.dumps(self.info),
                "spec": json.dumps(self.spec.to_dict())}
        with atomic_output(path) as tmp:
            save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in t.items()}, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path) -> OODModel:
        """Read a model written by `save`; a damaged or foreign file raises ScoretoolError."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ScoretoolError(f"{path}: no such OOD model file")
        try:
            with safe_open(str(path), framework="numpy") as fh:
                meta = fh.metadata() or {}
                t = {k: fh.get_tensor(k) for k in fh.keys()}
        except Exception as e:  # safetensors raises several types for damaged files
            raise ScoretoolError(f"{path}: not a readable OOD model ({e})") from None
        if meta.get("format") != FORMAT:
            raise ScoretoolError(f"{path}: not a scoretool OOD model (made by `scoretool ood fit`)")
        try:
            spec = FeatureSpec.from_dict(json.loads(meta["spec"]))
            return cls(spec=spec, method=meta["method"], mean=t["mean"], std=t["std"], reference=t["reference"],
                       ref_scores={k.split(".", 1)[1]: v for k, v in t.items() if k.startswith("ref_scores.")},
                       gmm_weights=t.get("gmm.weights"), gmm_means=t.get("gmm.means"),
                       gmm_covariances=t.get("gmm.covariances"), prior=json.loads(meta.get("prior", "{}")),
                       info=json.loads(meta.get("info", "{}")))
        except (KeyError, ValueError, TypeError) as e:
            raise ScoretoolError(f"{path}: OOD model metadata is damaged ({e})") from None


# ---------------------------------------------------------------------------------------------
# evaluation


def detection_metrics(inlier_scores: np.ndarray, outlier_scores: np.ndarray) -> dict:
    """AUROC, AUPR with the outliers as the positive class, and FPR at 95% TPR (linearly interpolated
    on the ROC curve). Scores: higher = more likely an outlier."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    s_in, s_out = np.asarray(inlier_scores, float), np.asarray(outlier_scores, float)
    if not len(s_in) or not len(s_out):
        raise ScoretoolError("need at least one inlier and one outlier score")
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    s = np.r_[s_in, s_out]
    fpr, tpr, _ = roc_curve(y, s)
    return {"auroc": float(roc_auc_score(y, s)), "aupr": float(average_precision_score(y, s)),
            "fpr_at_95_tpr": float(np.interp(0.95, tpr, fpr)), "positive_class": "outliers",
            "inliers": int(len(s_in)), "outliers": int(len(s_out))}


def histogram_image(inlier_scores, outlier_scores, threshold: float | None = None, bins: int = 40,
                    size: tuple[int, int] = (360, 640)) -> np.ndarray:
    """An RGB uint8 picture of `size` (height, width): normalised histograms of the two score sets on
    shared bins (inliers and outliers), and the threshold as a black vertical line."""
    from .plots import figure, rgb_array

    s_in, s_out = np.asarray(inlier_scores, float), np.asarray(outlier_scores, float)
    every = np.r_[s_in, s_out] if threshold is None else np.r_[s_in, s_out, threshold]
    lo, hi = float(np.min(every)), float(np.max(every))
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    fig = figure(size[1], size[0])
    ax = fig.add_subplot()
    ax.hist(s_in, edges, alpha=0.6, density=True, label="inliers")
    ax.hist(s_out, edges, alpha=0.6, density=True, label="outliers")
    if threshold is not None:
        ax.axvline(threshold, color="k", label="threshold")
    ax.set_xlabel("OOD score")
    ax.legend()
    fig.tight_layout()
    return rgb_array(fig)
