"""Quality without clean images: SURE (Stein 1981; divergence by Monte Carlo, Ramani, Blu & Unser 2008)
and the single-image 2×2 polyphase-split uMSE of a model's Gaussian denoiser; PSNR/SSIM and the
three-reference uMSE (maths in scoretool.metrics)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..metrics import SPLIT_BIAS_NOTE, MSEEstimate, SUREResult, psnr_from_mse, split_umse, ssim, sure, umse
from ..model import as_batch, channels_of, loaded

__all__ = ["MSEEstimate", "SPLIT_BIAS_NOTE", "evaluate_split", "evaluate_sure", "psnr_from_mse", "ssim", "umse"]


def evaluate_sure(image: np.ndarray, sigma: float, *, weights: str | None = None, device: str = "auto",
                  tile: int = 512, probes: int = 1, epsilon: float | None = None, seed: int = 0,
                  data_range: float = 1.0) -> SUREResult:
    """SURE = (1/N)‖y − f(y)‖² − σ² + (2σ²/N)·div f(y) of the model's Gaussian denoiser f = D(·, σ) on one
    noisy image y = x + σn (no clean image needed; E[SURE] = the true MSE).

    Args:
        image: noisy image on the [0,1] scale, (H, W), (H, W, C) or (F, H, W, C), unclipped.
        sigma: noise std on the [0,1] scale. probes: Monte-Carlo divergence probes (more = less noise).
    Returns:
        metrics.SUREResult: `.estimate` (MSE, PSNR, psnr_text) and `.denoised` (tensor F, C, H, W).
        Runs the network in float32 (a finite-difference divergence needs it).
    """
    model = loaded(weights, channels_of(image), device, "fp32", tile)
    y, _ = as_batch(image)
    gen = torch.Generator().manual_seed(seed)
    return sure(y, functools.partial(model, sigma=float(sigma)), float(sigma), data_range, epsilon, probes, generator=gen)


def evaluate_split(image: np.ndarray, sigma: float, *, weights: str | None = None, device: str = "auto",
                   precision: str = "auto", tile: int = 512, data_range: float = 1.0) -> MSEEstimate:
    """Single-image uMSE of the model's Gaussian denoiser from the 2×2 polyphase split (y, a, b, c) of one
    noisy image: D(y_sub, σ) scored against a, b, c. Biased at edges (metrics.SPLIT_BIAS_NOTE).

    Returns metrics.MSEEstimate (MSE, 95% interval, PSNR, psnr_text, notes).
    """
    model = loaded(weights, channels_of(image), device, precision, tile)
    y, _ = as_batch(image)
    return split_umse(y, functools.partial(model, sigma=float(sigma)), data_range)[0]
