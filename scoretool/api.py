"""The public Python API: plain functions on numpy arrays that the CLI itself calls.

    >>> import scoretool
    >>> clean = scoretool.denoise(noisy, sigma=25 / 255)          # (H, W) or (H, W, C) on [0,1]
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .engine import Engine, select_device
from .weights import load_model


@functools.lru_cache(maxsize=4)
def load_engine(weights: str | None, channels: int, device: str = "auto", precision: str = "auto",
                tile: int = 512) -> tuple[Engine, dict]:
    """A model (bundled name, path, or None for the default prior of `channels`) ready on a device."""
    net, info = load_model(weights, channels)
    return Engine(net, select_device(device), precision, tile=tile), info


def _as_batch(image: np.ndarray) -> tuple[torch.Tensor, tuple]:
    """(H, W), (H, W, C) or (F, H, W, C) float array → (F, C, H, W) tensor, and the original shape."""
    arr = np.asarray(image, dtype=np.float32)
    shape = arr.shape
    if arr.ndim == 2:
        arr = arr[None, :, :, None]
    elif arr.ndim == 3:
        arr = arr[None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))), shape


def _from_batch(x: torch.Tensor, shape: tuple) -> np.ndarray:
    return x.permute(0, 2, 3, 1).cpu().numpy().reshape(shape)


def channels_of(image: np.ndarray) -> int:
    return 1 if np.ndim(image) == 2 else int(np.shape(image)[-1])


def denoise(image: np.ndarray, sigma: float, weights: str | None = None, device: str = "auto",
            precision: str = "auto", tile: int = 512, progress=None) -> np.ndarray:
    """Gaussian denoising by Tweedie's formula with a prior, x̂ = E[x | y] = D(y, σ).

    Args:
        image: noisy image on the [0,1] scale, (H, W), (H, W, C) or a stack (F, H, W, C); not clipped.
        sigma: noise std on the same [0,1] scale (25/255 for σ = 25 grey levels).
        weights: bundled model name or .safetensors path; default prior-gray / prior-rgb.
    Returns:
        The posterior-mean estimate, same shape, float32, not clipped.
    """
    engine, _ = load_engine(weights, channels_of(image), device, precision, tile)
    x, shape = _as_batch(image)
    out = torch.cat([engine.denoise_tiled(xi[None], float(sigma), progress) for xi in x])
    return _from_batch(out, shape)


def _prior_denoiser(engine: Engine, sigma: float):
    """f(z) = D(z, σ) for (F, C, H, W) tensors, frame by frame in tiles (for the metrics module)."""
    return lambda z: torch.cat([engine.denoise_tiled(zi[None], float(sigma)) for zi in z])


def evaluate_sure(image: np.ndarray, sigma: float, weights: str | None = None, device: str = "auto",
                  tile: int = 512, probes: int = 1, epsilon: float | None = None, seed: int = 0,
                  data_range: float = 1.0):
    """SURE of the prior's Gaussian denoiser x̂ = D(y, σ) on one noisy image (no clean image needed).

    Args:
        image: noisy image on the [0,1] scale, (H, W), (H, W, C) or (F, H, W, C), y = x + σn, unclipped.
        sigma: noise std on the [0,1] scale. probes: Monte-Carlo divergence probes (more = less noise).
    Returns:
        metrics.SUREResult: `.estimate` (MSE, PSNR, psnr_text) and `.denoised` (tensor F, C, H, W).
        Runs the network in float32 (a finite-difference divergence needs it).
    """
    from .metrics import sure

    engine, _ = load_engine(weights, channels_of(image), device, "fp32", tile)
    y, _ = _as_batch(image)
    gen = torch.Generator().manual_seed(seed)
    return sure(y, _prior_denoiser(engine, sigma), float(sigma), data_range, epsilon, probes, generator=gen)


def evaluate_split(image: np.ndarray, sigma: float, weights: str | None = None, device: str = "auto",
                   precision: str = "auto", tile: int = 512, data_range: float = 1.0):
    """Single-image uMSE of the prior's denoiser from the 2×2 polyphase split (y, a, b, c) of one noisy
    image: D(y_sub, σ) scored against a, b, c. Biased at edges (metrics.SPLIT_BIAS_NOTE).

    Returns metrics.MSEEstimate (MSE, 95% interval, PSNR, psnr_text, notes).
    """
    from .metrics import split_umse

    engine, _ = load_engine(weights, channels_of(image), device, precision, tile)
    y, _ = _as_batch(image)
    est, _ = split_umse(y, _prior_denoiser(engine, sigma), data_range)
    return est
