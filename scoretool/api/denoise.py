"""Gaussian denoising with a score prior: x̂ = E[x | y] = D(y, σ) by Tweedie's formula (Efron, *Tweedie's
formula and selection bias*, JASA 2011), blind camera-noise denoising, and the choice among the
denoisers that `scoretool denoise` makes for each image."""

from __future__ import annotations

import math

import numpy as np

from ..bigtiff import denoise_tiff, out_of_core_range
from ..blind import anscombe_floor, estimate_poisson_gaussian, pd_denoise, pg_denoise, white_noise_sigma
from ..errors import ScoretoolError
from ..model import as_batch, channels_of, from_batch, grey_content, loaded
from ..weights import FAST_SIBLING
from .models import check_sigma_a, model_channels
from .noise import check_finite, tweedie_denoise

__all__ = ["camera_denoise", "denoise", "denoise_image", "denoise_tiff", "out_of_core_range", "poisson_gaussian_denoise"]


def denoise(image: np.ndarray, sigma: float | None = None, *, weights: str | None = None, device: str = "auto",
            precision: str = "auto", tile: int = 512, progress=None, noise: str = "gaussian",
            zeta: float | None = None, k: float | None = None, negative: str = "error", ensemble: int = 1) -> np.ndarray:
    """Gaussian denoising by Tweedie's formula with a prior, x̂ = E[x | y] = D(y, σ).

    Args:
        image: noisy image on the [0,1] scale, (H, W), (H, W, C) or a stack (F, H, W, C); not clipped.
        sigma: noise std on the same [0,1] scale (25/255 for σ = 25 grey levels).
        weights: bundled model name or .safetensors path; default prior-gray / prior-rgb.
        noise, zeta, k, negative: other noise families and Noise2Score models: see `tweedie_denoise`
            (which also returns the report: estimates, guards).
        ensemble: 1, 2, 4 or 8 flips/rotations averaged (Gaussian with a prior; more passes, higher PSNR).
    Returns:
        The posterior-mean estimate, same shape, float32, not clipped.
    """
    model = loaded(weights, channels_of(image), device, precision, tile)
    if noise != "gaussian" or sigma is None or model.kind == "noise2score":
        param = {"gaussian": sigma, "poisson": zeta, "gamma": k}.get(noise)
        return tweedie_denoise(image, noise, param, weights=weights, device=device, precision=precision, tile=tile,
                               negative=negative, progress=progress)[0]
    x, shape = as_batch(image)
    return from_batch(model.configured(progress=progress, ensemble=ensemble)(x, float(sigma)), shape)


def camera_denoise(image: np.ndarray, *, weights: str | None = None, device: str = "auto", precision: str = "auto",
                   tile: int = 512, stride: int = 2, progress=None) -> tuple[np.ndarray, dict]:
    """Blind denoising of real camera noise (signal-dependent, spatially and chromatically correlated by
    demosaicing and JPEG) with a clean prior: pixel-shuffle down-sampling (Zhou et al., AAAI 2020),
    blind.pd_denoise. The light second pass runs the bundled prior's smaller sibling (weights.FAST_SIBLING)
    when the bundled prior is used.

    Args:
        image: (H, W) or (H, W, C) on [0,1]; a stack (F, H, W, C) is done frame by frame.
    Returns:
        (x̂ same shape float32, report: method, weights, stride, sigmas (per sub-image and frame, [0,1]),
        sigma_refine, sigma (their mean)).
    """
    model = loaded(weights, channels_of(image), device, precision, tile).configured(progress=progress)
    sibling = FAST_SIBLING.get(weights or model.info["name"])  # a bundled prior by name (or the default)
    light = loaded(sibling, channels_of(image), device, precision, tile).configured(progress=progress) if sibling else model
    out, reports = _frame_by_frame(lambda f: pd_denoise(model.denoise, f, stride, refine_denoise=light.denoise), image)
    sigmas = [s for r in reports for s in r["sigmas"]]
    report = {"method": f"pixel-shuffle {stride}x{stride} + prior D(y, sigma)", "weights": model.info["name"],
              "refine_weights": light.info["name"],
              "stride": stride, "sigmas": sigmas, "sigma_refine": float(np.mean([r["sigma_refine"] for r in reports])),
              "sigma": float(np.mean(sigmas))}
    return out, report


PG_FLOOR_STDS = 4.0
"""Poisson–Gaussian data lie above −PG_FLOOR_STDS·√b (read noise around a black level of 0) or, where that is
less, above the transform's own floor (blind.anscombe_floor); more than 0.1% of the values below both means the data's
zero is not its black level (too large an offset subtracted, or a wrong --range), which the transform would
clip to 0."""


def poisson_gaussian_denoise(image: np.ndarray, a: float | None = None, b: float | None = None, *,
                             weights: str | None = None, device: str = "auto", precision: str = "auto",
                             tile: int = 512, negative: str = "error", progress=None) -> tuple[np.ndarray, dict]:
    """Denoising of signal-dependent noise Var[y | x] = a·x + b (shot plus read noise) with a clean prior:
    the generalised Anscombe transform, D(·, σ) and its exact unbiased inverse (Mäkitalo & Foi, IEEE TIP
    2013; blind.pg_denoise). A pair left out is estimated from each frame
    (blind.estimate_poisson_gaussian; Foi et al., IEEE TIP 2008), refined with the prior's residuals
    (blind.prior_variance_fit: two more passes over at most a 512² crop).

    Args:
        image: (H, W), (H, W, C) or frames (F, H, W, C) on the [0,1] scale, unclipped (raw linear data).
        a, b: the noise on the [0,1] scale; both or neither.
        negative: more than 0.1% of a frame's values below the floor (PG_FLOOR_STDS): "error" (the default) raises,
            "clip" sets those values to 0 and counts them.
    Returns:
        (x̂ same shape float32, report: method, weights, a, b (per frame), estimated, sigma_stabilised,
        negative_clipped (values set to 0, all frames)).
    """
    if (a is None) != (b is None):
        raise ScoretoolError("give both a and b of Var[y|x] = a·x + b, or neither (then both are estimated)")
    if a is not None and not (a >= 0 and b >= 0 and a + b > 0):
        raise ScoretoolError(f"a = {a}, b = {b}: must be ≥ 0 and not both 0")
    model = loaded(weights, channels_of(image), device, precision, tile).configured(progress=progress)
    fit_denoise = model.configured(precision="fp32").denoise  # the residual fit differentiates by a small step

    def frame_denoise(frame):
        pair = (a, b) if a is not None else estimate_poisson_gaussian(frame, denoise=fit_denoise)
        floor = -PG_FLOOR_STDS * math.sqrt(pair[1])
        floor = min(floor, anscombe_floor(*pair)) if pair[0] > 0 else floor
        below = frame < floor
        count, clipped = int(below.sum()), 0
        if count > 1e-3 * frame.size:
            if negative != "clip":
                raise ScoretoolError(f"{count} of {frame.size} values lie below {floor:.4g}, further under 0 than read noise "
                                     f"reaches (minimum {float(frame.min()):.4g}): Poisson–Gaussian data have their black level "
                                     "at 0 — shift them so (too large an offset subtracted?), check --range, or pass "
                                     "--negative clip to set them to 0")
            frame, clipped = np.where(below, 0.0, frame), count
        out, rep = pg_denoise(model.denoise, frame, *pair)
        return out, {**rep, "negative_clipped": clipped}

    out, reports = _frame_by_frame(frame_denoise, image)
    per_frame = {key: [r[key] for r in reports] if len(reports) > 1 else reports[0][key]
                 for key in ("a", "b", "sigma_stabilised")}
    report = {"method": "generalised Anscombe + prior D(y, sigma) + exact unbiased inverse", "weights": model.info["name"],
              "estimated": a is None, **per_frame, "negative_clipped": sum(r["negative_clipped"] for r in reports)}
    return out, report


def _frame_by_frame(method, image: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """A blind method `method(frame) → (x̂, report)`, which estimates its noise per image, applied to each
    frame of (H, W, C) or (F, H, W, C) finite pixels: (x̂ float32 of image's shape, one report per frame)."""
    check_finite(image)
    arr = np.asarray(image, np.float32)
    outs, reports = zip(*(method(f) for f in (arr if arr.ndim == 4 else arr[None])))
    return np.stack(outs).reshape(arr.shape).astype(np.float32), list(reports)


def denoise_image(image: np.ndarray, *, noise: str | None = None, parameter: float | None = None,
                  real_noise: bool | None = None, eight_bit: bool = False, weights: str | None = None,
                  device: str = "auto", precision: str = "auto", tile: int = 512, ensemble: int = 1,
                  sigma_a: float | None = None, negative: str = "error", seed: int = 0,
                  a: float | None = None, b: float | None = None) -> tuple[np.ndarray, dict]:
    """The denoiser `scoretool denoise` uses for one image, and its result.

    A colour image whose channels are all equal (grey saved as RGB) is denoised as grey with the default
    prior or a grey model given, by the rules for grey images (no real-noise default), and returned with three equal channels
    (report: grey_in_colour). Camera noise (`camera_denoise`) when `real_noise`, or by default for an 8-bit (`eight_bit`) colour
    image with a clean prior and no noise named, unless its first frame's noise is white (blind.white_noise_sigma:
    then the blind Gaussian path, and the report's white_noise holds that σ̂); a clean prior's D(y, σ) (`denoise`) for a given Gaussian
    σ; `poisson_gaussian_denoise` for noise poisson-gaussian (a, b given or estimated); else
    `tweedie_denoise` (Noise2Score models, other families, parameters to estimate).

    Args:
        image: noisy image on the [0,1] scale, (H, W, C) or (F, H, W, C).
        noise: gaussian, poisson, gamma, poisson-gaussian, auto, or None (a Noise2Score model's training
            family, else gaussian).
        parameter: σ, ζ or k on the [0,1] scale; None: estimated.
    Returns:
        (x̂ float32, report: weights, method, family, parameter_name, parameter, estimated, guards, and as
        the method gives them camera, estimate, negative_clipped, white_noise).
    """
    check_finite(image)
    if grey_content(image, weights):
        out, report = denoise_image(np.asarray(image)[..., :1], noise=noise, parameter=parameter, real_noise=real_noise,
                                    eight_bit=eight_bit, weights=weights, device=device, precision=precision, tile=tile, ensemble=ensemble,
                                    sigma_a=sigma_a, negative=negative, seed=seed, a=a, b=b)
        return np.repeat(out, 3, axis=-1), {**report, "grey_in_colour": True}
    ch = channels_of(image)
    model = loaded(weights, model_channels(weights, ch), device, precision, tile)
    clean_prior = model.kind != "noise2score"
    check_sigma_a(sigma_a, weights)
    if ensemble > 1 and not (clean_prior and parameter is not None and noise in (None, "gaussian") and not real_noise):
        raise ScoretoolError("ensemble (--ensemble) averages a clean prior over flips for Gaussian noise of a given σ "
                             "(--sigma); this image takes another path")
    opts = {"weights": weights, "device": device, "precision": precision, "tile": tile}
    camera = real_noise if real_noise is not None else (noise is None and clean_prior and ch == 3 and eight_bit)
    white = white_noise_sigma(np.asarray(image)[0] if np.ndim(image) == 4 else image) if camera and real_noise is None else None
    camera = camera and white is None
    if camera:
        if not clean_prior:
            raise ScoretoolError(f"--real-noise needs a clean prior; {model.info['name']} is a Noise2Score model")
        out, cam = camera_denoise(image, **opts)
        return out, {"weights": model.info["name"], "method": cam["method"], "family": "gaussian", "parameter_name": "sigma",
                     "parameter": cam["sigma"], "estimated": True, "guards": None, "camera": cam}
    family = noise or (None if clean_prior else (model.info.get("noise") or {}).get("family")) or "gaussian"
    if family == "poisson-gaussian":
        if not clean_prior:
            raise ScoretoolError(f"--noise poisson-gaussian needs a clean prior; {model.info['name']} is a Noise2Score model")
        out, pg = poisson_gaussian_denoise(image, a, b, negative=negative, **opts)
        return out, {"weights": pg["weights"], "method": pg["method"], "family": family, "parameter_name": "a,b",
                     "parameter": [pg["a"], pg["b"]], "estimated": pg["estimated"], "guards": None, "poisson_gaussian": pg,
                     "negative_clipped": pg["negative_clipped"]}
    if family == "gaussian" and parameter is not None and clean_prior:
        out = denoise(image, parameter, ensemble=ensemble, **opts)
        return out, {"weights": model.info["name"], "method": "prior D(y, sigma)", "family": "gaussian",
                     "parameter_name": "sigma", "parameter": parameter, "estimated": False, "guards": None}
    out, report = tweedie_denoise(image, family, parameter, sigma_a=sigma_a, negative=negative, seed=seed, **opts)
    return out, report if white is None else {**report, "white_noise": white}
