"""Out-of-distribution scoring by multiscale score norms (MSMA; Mahmood, Lopez & Fuchs, *Denoising score
matching for out-of-distribution detection*, ICLR 2021): features of ‖s(x, σ_i)‖ over noise levels σ_i,
a density fitted on training images, scores as its negative log-likelihood. Maths in scoretool.ood."""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from ..errors import ScoretoolError
from ..model import Model, as_batch, channels_of, loaded
from ..ood import (
    FeatureSpec,
    OODModel,
    check_enough_images,
    detection_metrics,
    geometric_levels,
    histogram_image,
    score_norm_features,
)
from ..weights import bundled_models, read_metadata, resolve_weights

__all__ = ["OODModel", "detection_metrics", "histogram_image", "ood_check_prior", "ood_features", "ood_fit",
           "ood_prior", "ood_score", "ood_spec"]

FP32_BELOW = 0.005
"""σ below which OOD features are computed in fp32 (bench/ood.py measures bf16 vs fp32 features:
differences ≤ 0.015 of the training features' std above it)."""


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, mtime: float) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def ood_prior(*, weights: str | None = None, channels: int = 1, device: str = "auto",
              precision: str = "auto") -> tuple[Model, dict]:
    """(the prior's denoiser D(x, σ) for OOD features, fp32 below FP32_BELOW; the prior's record stored with
    a fitted density: name, path, sha256, channels, σ range)."""
    model = loaded(weights, channels, device, precision).configured(fp32_below=FP32_BELOW)
    path = resolve_weights(weights, channels)
    info = model.info
    prior = {"name": info["name"], "path": str(path), "sha256": _file_sha256(str(path), path.stat().st_mtime),
             "channels": channels, "sigma_min": info.get("sigma_min"), "sigma_max": info.get("sigma_max")}
    return model, prior


def ood_spec(*, weights: str | None = None, channels: int = 1, levels: int = 10, sigma_max: float = 1.0,
             sigma_min: float = 0.003, **opts) -> FeatureSpec:
    """The OOD feature recipe (ood.FeatureSpec; `opts`: crop, patch, crops, quantiles, rms, corr, parity, parity_mean):
    L geometric σ levels clipped to the prior's trained σ range."""
    _, info = read_metadata(resolve_weights(weights, channels))
    lo, hi = info.get("sigma_min") or sigma_min, info.get("sigma_max") or sigma_max
    return FeatureSpec(geometric_levels(min(sigma_max, hi), max(sigma_min, lo), levels), **opts)


def ood_features(image: np.ndarray, spec: FeatureSpec, *, weights: str | None = None, device: str = "auto",
                 precision: str = "auto") -> np.ndarray:
    """MSMA features of a clean image on [0,1] ((H, W), (H, W, C) or (F, H, W, C)) → (frames, L·Q)."""
    model, _ = ood_prior(weights=weights, channels=channels_of(image), device=device, precision=precision)
    x, _ = as_batch(image)
    return np.stack([score_norm_features(model, xi, spec) for xi in x])


def ood_fit(images, *, weights: str | None = None, method: str = "gmm", levels: int = 10, sigma_max: float = 1.0,
            sigma_min: float = 0.003, device: str = "auto", precision: str = "auto", seed: int = 0, progress=None,
            **spec_opts) -> OODModel:
    """Fit an OOD density (ood.OODModel: a Gaussian mixture, or k nearest neighbours) on the MSMA features
    of clean training images on [0,1]."""
    images = list(images)
    if not images:
        raise ScoretoolError("no training images")
    ch = channels_of(images[0])
    spec = ood_spec(weights=weights, channels=ch, levels=levels, sigma_max=sigma_max, sigma_min=sigma_min, **spec_opts)
    frames = sum(np.shape(img)[0] if np.ndim(img) == 4 else 1 for img in images)
    check_enough_images(frames, method, spec.dim)  # before the network passes, not after them
    feats = []
    for img in images:
        if channels_of(img) != ch:
            raise ScoretoolError(f"training images mix {ch}- and {channels_of(img)}-channel images")
        feats.append(ood_features(img, spec, weights=weights, device=device, precision=precision))
        if progress:
            progress(1)
    _, prior = ood_prior(weights=weights, channels=ch, device=device, precision=precision)
    return OODModel.fit(np.concatenate(feats), spec, method, prior, seed)


def ood_check_prior(model: OODModel, channels: int, weights: str | None = None) -> str:
    """The prior (name or path) to score with: `weights` or the one the model was fitted with; refuses
    another channel count or a different prior file (compared by SHA-256)."""
    p = model.prior
    if channels != p.get("channels"):
        raise ScoretoolError(f"the OOD model was fitted on {p.get('channels')}-channel images (prior {p.get('name')}), "
                             f"this image has {channels}")
    name = weights or (p.get("name") if p.get("name") in bundled_models() else p.get("path"))
    try:
        path = resolve_weights(name, channels)
    except ScoretoolError:
        raise ScoretoolError(f"the OOD model's prior {name!r} is not available here; pass --weights PATH") from None
    if _file_sha256(str(path), path.stat().st_mtime) != p.get("sha256"):
        raise ScoretoolError(f"--weights {name}: not the prior the OOD model was fitted with ({p.get('name')}, "
                             f"sha256 {str(p.get('sha256'))[:12]}…); refit with `scoretool ood fit`")
    return str(path)


def ood_score(image: np.ndarray, model: OODModel, *, weights: str | None = None, device: str = "auto",
              precision: str = "auto", threshold_percentile: float = 95.0, method: str | None = None) -> list[dict]:
    """OOD score per frame of a clean image on [0,1]: score (higher = more unusual), percentile among
    the held-out training scores, and flag (score above the `threshold_percentile` training score)."""
    prior = ood_check_prior(model, channels_of(image), weights)
    f = ood_features(image, model.spec, weights=prior, device=device, precision=precision)
    scores = model.score(f, method)
    pct = model.percentile(scores, method)
    thr = model.threshold(threshold_percentile, method)
    return [{"score": float(s), "percentile": float(q), "flag": bool(s > thr), "threshold": thr} for s, q in zip(scores, pct)]
