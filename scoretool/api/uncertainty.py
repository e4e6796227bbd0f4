"""Posterior uncertainty of Gaussian denoising: Cov[x | y] = σ²·∂D/∂y for an MMSE denoiser D (Tweedie's
second-order identity; Manor & Michaeli, *On the posterior distribution in denoising: application to
uncertainty quantification*, ICLR 2024). Maths in scoretool.uncertainty."""

from __future__ import annotations

import numpy as np

from ..model import as_batch, channels_of, from_batch, loaded
from ..uncertainty import METHODS, Components, posterior_variance, principal_components, std_map_image

__all__ = ["METHODS", "posterior_components", "posterior_std", "std_map_image"]


def _one_image(image: np.ndarray, what: str):
    """(1, C, H, W) tensor of one image, and its shape; a stack is refused."""
    y, shape = as_batch(image)
    if y.shape[0] != 1:
        raise ValueError(f"{what} takes one image (H, W) or (H, W, C), not a stack")
    return y, shape


def posterior_std(image: np.ndarray, sigma: float, *, weights: str | None = None, probes: int = 8, stride: int = 1,
                  method: str = "forward", seed: int = 0, device: str = "auto", tile: int = 512,
                  smooth: float = 1.0, progress=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per-pixel posterior standard deviation √Var[x | y] ≈ σ·√diag(∂D/∂y) (Hutchinson probes, tiled).

    Args:
        image: one noisy image on the [0,1] scale, (H, W) or (H, W, C), y = x + σn, unclipped.
        sigma: noise std on the same scale. probes: Rademacher probes per tile (more = less noise);
        stride: lattice period of the probes (1 = plain Hutchinson; needs probes ≥ stride²).
        method: J·b by "forward" (one-sided difference, default), "fd" (central, twice the cost) or "jvp".
        smooth: Gaussian smoothing (std, pixels) of the variance estimate before clamping; 0 = none.
    Returns:
        (std, mean, info): std and the posterior mean D(y, σ), same shape as image, on the [0,1] scale;
        info = {"negative": count of clamped negative variance estimates, "probes", "stride", "method",
        "smooth", "weights"}.
    """
    model = loaded(weights, channels_of(image), device, "fp32", tile)
    e = model.engine
    y, shape = _one_image(image, "posterior_std")
    res = posterior_variance(model.configured(differentiable=True), y, float(sigma), probes, stride, method, seed=seed,
                             tile=e.tile, overlap=e.overlap, multiple=max(8, e.multiple), device=e.device,
                             smooth=smooth, progress=progress)
    info = {"negative": res.negative, "probes": probes, "stride": stride, "method": method, "smooth": smooth,
            "weights": model.info["name"]}
    return from_batch(res.std, shape), from_batch(res.mean, shape), info


def posterior_components(image: np.ndarray, sigma: float, *, k: int = 3,
                         region: tuple[int, int, int, int] | None = None, weights: str | None = None,
                         iterations: int = 50, margin: int = 32, symmetric: bool = False, method: str = "forward",
                         seed: int = 0, device: str = "auto", tile: int = 512) -> Components:
    """Top-k principal components of the posterior covariance σ²·∂D/∂y on a region (x, y, width, height).

    Args:
        image: one noisy image on the [0,1] scale, (H, W) or (H, W, C). sigma: noise std, same scale.
        region: pixels (x, y, width, height); default the whole image (fine only for small images).
    Returns:
        uncertainty.Components: .eigenvalues (k,) posterior variances on the [0,1]² scale, .vectors
        (k, C, h, w) unit-norm, .mean (1, C, h, w), .residuals, .iterations.
    """
    model = loaded(weights, channels_of(image), device, "fp32", tile)
    y, _ = _one_image(image, "posterior_components")
    return principal_components(model.configured(differentiable=True), y.to(model.engine.device), float(sigma), k,
                                region, margin, iterations, symmetric=symmetric, method=method, seed=seed,
                                multiple=model.engine.multiple)
