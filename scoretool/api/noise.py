"""Noise2Score (Kim & Ye, *Noise2Score: Tweedie's approach to self-supervised image denoising without
clean images*, NeurIPS 2021): posterior-mean denoising for Gaussian, Poisson and Gamma noise, and the noise
family and parameter estimated from a model's score alone (maths in scoretool.noise)."""

from __future__ import annotations

import numpy as np
import torch

from .. import noise as nz
from ..blind import SIGMA_FLOOR, describe_noise, estimate_sigma, is_clipped
from ..errors import ScoretoolError
from ..model import Model, as_batch, channels_of, from_batch, grey_content, loaded
from .models import is_noise2score, model_channels

__all__ = ["describe_noise", "estimate_noise", "image_noise", "tweedie_denoise"]


def check_finite(image: np.ndarray) -> None:
    """Refuse NaN or infinite pixels (one line naming how many)."""
    bad = int((~np.isfinite(image)).sum())
    if bad:
        raise ScoretoolError(f"{bad} pixel(s) are NaN or infinite")


def _frames(image: np.ndarray, model: Model) -> tuple[torch.Tensor, tuple]:
    """(F, C, H, W) frames of `image` for `model`: a grey model takes each channel of a colour image as one
    grey frame (F·C, 1, H, W); and the original shape."""
    y, shape = as_batch(image)
    return (y.reshape(-1, 1, *y.shape[-2:]) if model.channels != y.shape[1] else y), shape


def _noise2score(model: Model, purpose: str) -> Model:
    """The model, fp32 (D − y is of order σ_a²·s, lost in bf16); a clear error for a clean prior."""
    if model.kind != "noise2score":
        raise ScoretoolError(f"{purpose} needs a Noise2Score model (the score of noisy images, kind noise2score); "
                             f"{model.info['name']} is a {model.kind} (e.g. --weights n2s-gaussian-gray)")
    return model.configured(precision="fp32")


def _sigma_a(sigma_a: float | None, info: dict, y: torch.Tensor, family: str | None, parameter: float | None) -> float:
    """The σ_a to read a Noise2Score score at: as given, else noise.auto_sigma_a for the family and
    parameter (those of the model's training data when not known yet), within the model's σ range."""
    if sigma_a is not None:
        return float(sigma_a)
    bounds = (float(info.get("sigma_min", 0.001)), float(info.get("sigma_max", 0.1)))
    if family is None or parameter is None:
        trained = info.get("noise") or {}
        family = trained.get("family")
        value = trained.get(nz.PARAM_NAME.get(family or "", ""), None)
        parameter = (value / 255 if family == "gaussian" else value) if value is not None else None
    if family is None or parameter is None:
        return max(0.01, bounds[0])
    return nz.auto_sigma_a(y, family, float(parameter), bounds)


def _estimate(model: Model, y: torch.Tensor, family: str | None, sigma_a: float | None, seed: int) -> dict:
    """noise.estimate_noise on frames y with the fp32 Noise2Score `model`, read at σ_a."""
    sigma_a = _sigma_a(sigma_a, model.info, y, None, None)
    gen = torch.Generator().manual_seed(seed)
    est = nz.estimate_noise(nz.score_from_denoiser(model, sigma_a), y, family, generator=gen, sigma_a=sigma_a)
    return {**est.as_dict(), "sigma_a": sigma_a}


def estimate_noise(image: np.ndarray, *, weights: str | None = None, family: str | None = None,
                   sigma_a: float | None = None, device: str = "auto", tile: int = 512, seed: int = 0) -> dict:
    """Noise family and parameter of a noisy image from a Noise2Score model's score s alone: the Tweedie
    power p of Var[y | x] ∝ x^p from s′ (p ≈ 0 Gaussian, 1 Poisson, 2 Gamma), then its dispersion (Kim & Ye 2021).

    Args:
        image: noisy image on the [0,1] scale, (H, W), (H, W, C) or (F, H, W, C) (all frames pooled).
        family: gaussian/poisson/gamma to estimate only the parameter; None also estimates the family
            from the Tweedie power p.
    Returns:
        dict: family, parameter_name, parameter (σ, ζ or k on the [0,1] scale), power, dispersion,
        parameters (the estimate under each family), family_given, sigma_a.
    """
    check_finite(image)
    model = loaded(weights, model_channels(weights, channels_of(image)), device, "fp32", tile)
    model = _noise2score(model, "noise estimation")
    return _estimate(model, _frames(image, model)[0], family, sigma_a, seed)


def image_noise(image: np.ndarray, *, weights: str | None = None, family: str | None = None,
                sigma_a: float | None = None, device: str = "auto", tile: int = 512, seed: int = 0) -> dict:
    """The noise of one image as `scoretool noise` reports it. With a Noise2Score model: `estimate_noise`.
    Otherwise the blind Gaussian model of the first frame (blind.describe_noise: σ from weak-texture
    patches, and pd_ratio = σ of the 2×2 pixel-shuffled sub-images / σ, ≈ 1 for white noise), σ checked
    against the prior as `scoretool denoise` does (`blind_sigma`; the weak-texture value is `classical`),
    the Poisson–Gaussian pair refined with the prior's residuals as `denoise --noise poisson-gaussian` does,
    with power 0 and the other families' parameters NaN.

    Returns:
        dict with at least family, parameter_name, parameter, power and parameters (σ, ζ, k on the [0,1] scale).
    """
    if is_noise2score(weights):
        return estimate_noise(image, weights=weights, family=family, sigma_a=sigma_a, device=device, tile=tile, seed=seed)
    frame = np.asarray(image)
    frame = frame[0] if frame.ndim == 4 else frame
    frame = frame[..., :1] if grey_content(frame, weights) else frame  # as denoise_image reads it
    model = loaded(weights, model_channels(weights, channels_of(frame)), device, "fp32", tile)
    est = describe_noise(frame[..., 0] if frame.ndim == 3 and frame.shape[-1] == 1 else frame, denoise=model.denoise)
    checked = blind_sigma(model, _frames(frame, model)[0], est["parameter"], seed)
    est = {**est, "parameter": checked["parameter"], "classical": est["parameter"], "prior_evaluations": checked["prior_evaluations"]}
    return {**est, "power": 0.0, "parameters": {"sigma": est["parameter"], "zeta": float("nan"), "k": float("nan")}}


PRIOR_CHECK_SIDE = 128  # blind_sigma checks σ̂ against the prior on a central crop of this side


def blind_sigma(model: Model, y: torch.Tensor, classical: float, seed: int = 0) -> dict:
    """Blind Gaussian σ with a clean prior: the weak-texture estimate (blind.estimate_sigma), checked and if
    need be lowered to the σ the prior is consistent with (noise.prior_sigma) on a central crop of the
    first frame (at most PRIOR_CHECK_SIDE², so the check costs a fraction of one pass on a large image).
    The prior may only lower σ̂, to half at most: the weak-texture estimate errs upwards (faint texture
    counted as noise), and a poorly trained prior must not inflate it. A crop with more than 1% of its
    values at (or past) 0 or 1 is not checked: clipping shrinks the residual the identity counts on, by
    about half that share in σ (BSD68 σ = 50, clipped 8-bit, ~10% of the crop clipped: σ̂ 8% low)."""
    h, w = y.shape[-2:]
    top, left = max(0, (h - PRIOR_CHECK_SIDE) // 2), max(0, (w - PRIOR_CHECK_SIDE) // 2)
    crop = y[:1, :, top:top + PRIOR_CHECK_SIDE, left:left + PRIOR_CHECK_SIDE]
    sigma, evaluations = classical, 0
    if not is_clipped(crop.cpu().numpy(), fraction=0.01):
        sigma, evaluations = nz.prior_sigma(model.configured(precision="fp32"), crop, classical,
                                            bounds=(0.5 * classical, classical), generator=torch.Generator().manual_seed(seed))
    return {"family": "gaussian", "parameter": max(sigma, SIGMA_FLOOR), "classical": classical,
            "prior_evaluations": evaluations,
            "method": "weak-texture PCA (blind.weak_texture_sigma), checked against the prior (noise.prior_sigma)"}


NOISE_MISMATCH = 1.5
"""A Noise2Score model's σ and the image's weak-texture σ̂ further apart than this factor are reported."""


def tweedie_denoise(image: np.ndarray, noise: str = "gaussian", parameter: float | None = None, *,
                    weights: str | None = None, device: str = "auto", precision: str = "auto", tile: int = 512,
                    sigma_a: float | None = None, negative: str = "error", seed: int = 0,
                    progress=None) -> tuple[np.ndarray, dict]:
    """Posterior-mean denoising x̂ = E[x | y] for Gaussian, Poisson or Gamma noise, with a report.

    With a Noise2Score model (kind noise2score): Tweedie's formula on the noisy score
    s = (D(y, σ_a) − y)/σ_a² (fp32), noise.tweedie_posterior_mean (Kim & Ye 2021); guards are counted in
    the report. With a clean prior: Gaussian x̂ = D(y, σ); Poisson/Gamma by the Gaussian approximation
    σ_eff² = ζ·x or x²/k (noise.heteroscedastic_denoise).

    Args:
        image: noisy image on the [0,1] scale (H, W), (H, W, C) or (F, H, W, C), unclipped float.
        noise: gaussian, poisson, gamma, or auto (family and parameter estimated; Noise2Score models only).
        parameter: σ (gaussian), ζ (poisson) or k (gamma) on the [0,1] scale; None → estimated
            (a Gaussian σ with a clean prior: `blind_sigma`; any family with a Noise2Score model).
        negative: poisson/gamma data with values < 0: "error" (default) or "clip" (set to 0, counted).
    Returns:
        (x̂ same shape float32 unclipped, report dict: method, family, parameter_name, parameter, estimated,
        estimate, guards, negative_clipped, sigma_a, weights, model_noise, channelwise, noise_mismatch: for a
        Noise2Score model and Gaussian noise with σ estimated, {model_sigma, image_sigma} when its σ and the weak-texture σ̂ of
        the image differ by more than NOISE_MISMATCH×, else None).
    """
    check_finite(image)
    noise = str(noise).lower()
    if noise != "auto":
        nz.check_family(noise)
    model = loaded(weights, model_channels(weights, channels_of(image)), device, precision, tile)
    n2s = model.kind == "noise2score"
    if n2s:
        model = model.configured(precision="fp32")
    y, shape = _frames(image, model)
    estimate = None
    if not n2s and noise == "gaussian" and parameter is None:
        estimate = blind_sigma(model, y, estimate_sigma(image), seed)
        parameter = estimate["parameter"]
    elif noise == "auto" or parameter is None:
        if not n2s:
            what = "--noise auto" if noise == "auto" else f"a missing {nz.PARAM_NAME[noise]}"
            raise ScoretoolError(f"{what}: estimating this noise needs a Noise2Score model; {model.info['name']} is a clean "
                                 f"prior, which estimates only a Gaussian σ (give --{'sigma' if noise == 'auto' else nz.PARAM_NAME[noise]}, "
                                 "or --weights n2s-…)")
        estimate = _estimate(model, y, None if noise == "auto" else noise, sigma_a, seed)
        noise, parameter = estimate["family"], estimate["parameter"]
        if not (parameter and np.isfinite(parameter)):
            raise ScoretoolError(f"could not estimate the {noise} noise parameter of this image (the score gives no "
                                 "usable curvature); give it explicitly")
    parameter = nz.check_parameter(noise, parameter)
    y, clipped = nz.check_nonnegative(y, noise, negative)
    guards, mismatch = nz.GuardReport(), None
    tiled = model.configured(progress=progress)
    if n2s:
        sigma_a = _sigma_a(sigma_a, model.info, y, noise, parameter)
        out, guards = nz.tweedie_posterior_mean(y, nz.noisy_score(tiled, y, sigma_a), noise, parameter, sigma_a)
        method = "noise2score tweedie"
    elif noise == "gaussian":
        out = tiled(y, parameter)
        method = "prior D(y, sigma)"
    else:
        out = nz.heteroscedastic_denoise(tiled, y, nz.prior_variance_fn(noise, parameter))
        method = "prior gaussian approximation"
    if n2s and noise == "gaussian" and estimate is not None:
        # A Noise2Score model knows only the noise it was trained on, and reads that σ in other noise too: check
        # its σ against the weak-texture estimate of this image's white noise.
        seen = estimate_sigma(image)
        if not 1 / NOISE_MISMATCH <= parameter / seen <= NOISE_MISMATCH:
            mismatch = {"model_sigma": parameter, "image_sigma": seen}
    report = {"method": method, "weights": model.info["name"], "family": noise, "parameter_name": nz.PARAM_NAME[noise],
              "parameter": parameter, "estimated": estimate is not None, "estimate": estimate, "noise_mismatch": mismatch,
              "guards": guards.as_dict(), "negative_clipped": clipped, "sigma_a": sigma_a if n2s else None,
              "model_noise": model.info.get("noise") or None, "channelwise": model.channels != channels_of(image)}
    return from_batch(out.reshape(-1, channels_of(image), *out.shape[-2:]), shape), report
