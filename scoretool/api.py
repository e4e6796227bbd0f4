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


def denoise(image: np.ndarray, sigma: float | None = None, weights: str | None = None, device: str = "auto",
            precision: str = "auto", tile: int = 512, progress=None, *, noise: str = "gaussian",
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
    engine, info = load_engine(weights, channels_of(image), device, precision, tile)
    if noise != "gaussian" or sigma is None or info.get("kind") == "noise2score":
        param = {"gaussian": sigma, "poisson": zeta, "gamma": k}.get(noise)
        return tweedie_denoise(image, noise, param, weights, device, precision, tile, negative=negative,
                               progress=progress)[0]
    x, shape = _as_batch(image)
    return _from_batch(engine.denoise_tiled(x, float(sigma), progress, ensemble), shape)


def _model_denoiser(sigma: float, weights, device, precision, tile):
    """f(z) = the model's Gaussian denoiser (`denoise`) on (F, C, H, W) tensors (for the metrics module)."""
    def f(z: torch.Tensor) -> torch.Tensor:
        arr = z.detach().float().permute(0, 2, 3, 1).cpu().numpy()
        out = denoise(arr, float(sigma), weights, device, precision, tile)
        return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))
    return f


def evaluate_sure(image: np.ndarray, sigma: float, weights: str | None = None, device: str = "auto",
                  tile: int = 512, probes: int = 1, epsilon: float | None = None, seed: int = 0,
                  data_range: float = 1.0):
    """SURE of the model's Gaussian denoiser x̂ = denoise(y, σ) (a prior: D(y, σ)) on one noisy image (no clean image needed).

    Args:
        image: noisy image on the [0,1] scale, (H, W), (H, W, C) or (F, H, W, C), y = x + σn, unclipped.
        sigma: noise std on the [0,1] scale. probes: Monte-Carlo divergence probes (more = less noise).
    Returns:
        metrics.SUREResult: `.estimate` (MSE, PSNR, psnr_text) and `.denoised` (tensor F, C, H, W).
        Runs the network in float32 (a finite-difference divergence needs it).
    """
    from .metrics import sure

    y, _ = _as_batch(image)
    gen = torch.Generator().manual_seed(seed)
    f = _model_denoiser(sigma, weights, device, "fp32", tile)
    return sure(y, f, float(sigma), data_range, epsilon, probes, generator=gen)


def evaluate_split(image: np.ndarray, sigma: float, weights: str | None = None, device: str = "auto",
                   precision: str = "auto", tile: int = 512, data_range: float = 1.0):
    """Single-image uMSE of the model's Gaussian denoiser from the 2×2 polyphase split (y, a, b, c) of one noisy
    image: D(y_sub, σ) scored against a, b, c. Biased at edges (metrics.SPLIT_BIAS_NOTE).

    Returns metrics.MSEEstimate (MSE, 95% interval, PSNR, psnr_text, notes).
    """
    from .metrics import split_umse

    y, _ = _as_batch(image)
    est, _ = split_umse(y, _model_denoiser(sigma, weights, device, precision, tile), data_range)
    return est


def network_denoiser(engine: Engine):
    """D(x, σ) of the engine's network in float32, no autocast, differentiable (for Jacobian products)."""

    def d(x: torch.Tensor, sigma) -> torch.Tensor:
        x = x.to(engine.device, torch.float32)
        if engine.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return engine.net(x, sigma).float().contiguous()

    return d


def posterior_std(image: np.ndarray, sigma: float, weights: str | None = None, probes: int = 8, stride: int = 1,
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
        info = {"negative": count of clamped negative variance estimates, "probes", "stride", "method"}.
    """
    from .uncertainty import posterior_variance

    engine, _ = load_engine(weights, channels_of(image), device, "fp32", tile)
    y, shape = _as_batch(image)
    if y.shape[0] != 1:
        raise ValueError("posterior_std takes one image (H, W) or (H, W, C), not a stack")
    res = posterior_variance(network_denoiser(engine), y, float(sigma), probes, stride, method, seed=seed,
                             tile=engine.tile, overlap=engine.overlap, multiple=max(8, engine.multiple),
                             device=engine.device, smooth=smooth, progress=progress)
    info = {"negative": res.negative, "probes": probes, "stride": stride, "method": method, "smooth": smooth}
    return _from_batch(res.std, shape), _from_batch(res.mean, shape), info


def posterior_components(image: np.ndarray, sigma: float, k: int = 3, region: tuple[int, int, int, int] | None = None,
                         weights: str | None = None, iterations: int = 50, margin: int = 32, symmetric: bool = False,
                         method: str = "forward", seed: int = 0, device: str = "auto"):
    """Top-k principal components of the posterior covariance σ²·∂D/∂y on a region (x, y, width, height).

    Args:
        image: one noisy image on the [0,1] scale, (H, W) or (H, W, C). sigma: noise std, same scale.
        region: pixels (x, y, width, height); default the whole image (fine only for small images).
    Returns:
        uncertainty.Components: .eigenvalues (k,) posterior variances on the [0,1]² scale, .vectors
        (k, C, h, w) unit-norm, .mean (1, C, h, w), .residuals, .iterations.
    """
    from .uncertainty import principal_components

    engine, _ = load_engine(weights, channels_of(image), device, "fp32")
    y, _ = _as_batch(image)
    if y.shape[0] != 1:
        raise ValueError("posterior_components takes one image (H, W) or (H, W, C), not a stack")
    return principal_components(network_denoiser(engine), y.to(engine.device), float(sigma), k, region, margin,
                                iterations, symmetric=symmetric, method=method, seed=seed, multiple=engine.multiple)


def restore(image: np.ndarray, task: str, *, scale: int = 4, sr_kernel: str = "avgpool", mask: np.ndarray | None = None,
            kernel: np.ndarray | None = None, ratio: float = 0.25, sigma_y: float = 0.0, steps: int = 100,
            eta: float = 1.0, travel: int = 0, sigma_max: float = 1.0, start: str = "pinv", samples: int = 1,
            cycle_dihedral: bool = True,
            weights: str | None = None, device: str = "auto", precision: str = "auto", tile: int = 512, seed: int = 0,
            progress=None) -> tuple[np.ndarray, dict]:
    """Zero-shot restoration by DDNM / DDNM+ with a prior (methods.md §3; maths in scoretool.ddnm).

    Args:
        image: the degraded image y on the [0,1] scale, (H, W) or (H, W, C), unclipped: the low-resolution
            image (sr; output is scale× larger), the image with holes (inpaint), the grey image (colorize;
            output has 3 channels), the blurred image (deblur), or for cs an image whose measurements
            y = A·image are taken (A from ratio and seed; A†y itself gives the same y).
        task: sr | inpaint | colorize | deblur | cs. mask: (H, W), non-zero = missing pixel (inpaint).
        kernel: 2-D blur kernel (deblur; circular boundary). sigma_y: measurement noise std on the [0,1]
            scale (> 0: DDNM+). steps, sigma_max: the σ schedule (`edm_sigmas`); eta, travel, start,
            cycle_dihedral: sampler settings (scoretool.ddnm, where the defaults are measured).
        samples: average this many posterior samples (one chain each, ×samples time). One DDNM chain is
            a sample from p(x | y); the average tends to the posterior mean E[x | y], the MSE-optimal
            estimate (higher PSNR, less invented detail). Each sample is data-consistent, so is the mean.
    Returns:
        (x̂ float32 unclipped, same layout as the input with the output's size and channels,
         info {"nfe", "residual" = ‖A·x̂ − y‖/‖y‖, "x_shape"}).
    """
    from .ddnm import data_consistency, ddnm_sample, edm_sigmas
    from .operators import build_operator

    if samples < 1:
        raise ValueError(f"samples {samples}: must be ≥ 1")
    y_img, _ = _as_batch(image)
    if y_img.shape[0] != 1:
        raise ValueError("restore takes one image (H, W) or (H, W, C), not a stack")
    _, c, h, w = y_img.shape
    if task == "sr":
        if not isinstance(scale, (int, np.integer)) or isinstance(scale, bool) or scale < 1:
            raise ValueError(f"scale {scale!r}: must be a positive integer")
        x_shape = (c, h * int(scale), w * int(scale))
    elif task == "colorize":
        if c != 1:
            raise ValueError(f"colourisation takes a grey image, got {c} channels")
        x_shape = (3, h, w)
    else:
        x_shape = (c, h, w)
    known = None
    if task == "inpaint":
        if mask is None:
            raise ValueError("inpainting needs a mask")
        m = np.asarray(mask)
        if m.ndim == 3 and m.shape[-1] in (1, 3, 4):
            m = m[..., :3].max(-1)
        if m.shape != (h, w):
            raise ValueError(f"mask size {m.shape[1] if m.ndim > 1 else '?'}×{m.shape[0]} does not match the image {w}×{h}")
        known = torch.from_numpy((m == 0).astype(np.float32))
    op = build_operator(task, x_shape, scale=scale, sr_kernel=sr_kernel, mask=known, kernel=kernel, ratio=ratio, seed=seed)
    engine, info = load_engine(weights, x_shape[0], device, precision, tile)
    small = x_shape[1] <= engine.tile and x_shape[2] <= engine.tile
    work = engine.device if small else torch.device("cpu")
    y = y_img.to(work)
    if task in ("cs", "inpaint"):  # measurements: the known pixels / the block coefficients
        y = op.A(y)

    def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if small:
            return engine.denoise(x, sigma.to(engine.device))
        return torch.cat([engine.denoise_tiled(xi[None], float(s)) for xi, s in zip(x, sigma)])

    gen = torch.Generator().manual_seed(seed)
    x, nfe = None, 0
    for _ in range(samples):
        xk, n = ddnm_sample(denoiser, op, y, edm_sigmas(steps, sigma_max), eta=eta, sigma_y=sigma_y, travel=travel,
                            start=start, cycle_dihedral=cycle_dihedral, generator=gen, callback=progress and (lambda _: progress(1)))
        x = xk if x is None else x + xk
        nfe += n
    x = x / samples
    residual = float(data_consistency(op, x, y)[0])
    out = x.permute(0, 2, 3, 1).cpu().numpy()[0]
    if np.ndim(image) == 2 and out.shape[-1] == 1:
        out = out[..., 0]
    return out.astype(np.float32), {"nfe": nfe, "residual": residual, "x_shape": list(x_shape), "weights": info.get("name")}


# ---- OOD scoring (MSMA multiscale score norms; maths in scoretool/ood.py) ----

@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, mtime: float) -> str:
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _ood_prior(weights: str | None, channels: int, device: str, precision: str):
    """(denoiser callable, prior record) for OOD features: the engine's precision, except fp32 for σ < 0.005
    (bench/ood.py measures bf16 vs fp32 features: differences ≤ 0.015 of the training features' std)."""
    from .weights import resolve_weights

    engine, info = load_engine(weights, channels, device, precision)
    fine = Engine(engine.net, engine.device, "fp32") if precision != "fp32" else engine
    path = resolve_weights(weights, channels)

    def d(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        lo = s < 0.005
        if not bool(lo.any()):
            return engine.denoise(x, s)
        if bool(lo.all()):
            return fine.denoise(x, s)
        out = torch.empty_like(x)
        out[lo], out[~lo] = fine.denoise(x[lo], s[lo]).cpu(), engine.denoise(x[~lo], s[~lo]).cpu()
        return out

    prior = {"name": info["name"], "path": str(path), "sha256": _file_sha256(str(path), path.stat().st_mtime), "channels": channels,
             "sigma_min": info.get("sigma_min"), "sigma_max": info.get("sigma_max")}
    return d, prior


def ood_spec(weights: str | None = None, channels: int = 1, levels: int = 10, sigma_max: float = 1.0,
             sigma_min: float = 0.003, **opts):
    """The OOD feature recipe (ood.FeatureSpec; `opts`: crop, patch, crops, quantiles, rms, corr, parity, parity_mean):
    L geometric σ levels clipped to the prior's trained σ range."""
    from .ood import FeatureSpec, geometric_levels
    from .weights import read_metadata, resolve_weights

    _, info = read_metadata(resolve_weights(weights, channels))
    lo, hi = info.get("sigma_min") or sigma_min, info.get("sigma_max") or sigma_max
    return FeatureSpec(geometric_levels(min(sigma_max, hi), max(sigma_min, lo), levels), **opts)


def ood_features(image: np.ndarray, spec, weights: str | None = None, device: str = "auto",
                 precision: str = "auto") -> np.ndarray:
    """MSMA features of a clean image on [0,1] ((H, W), (H, W, C) or (F, H, W, C)) → (frames, L·Q)."""
    from .ood import score_norm_features

    den, _ = _ood_prior(weights, channels_of(image), device, precision)
    x, _ = _as_batch(image)
    return np.stack([score_norm_features(den, xi, spec) for xi in x])


def ood_fit(images, weights: str | None = None, method: str = "gmm", levels: int = 10, sigma_max: float = 1.0,
            sigma_min: float = 0.003, device: str = "auto", precision: str = "auto", seed: int = 0, progress=None,
            **spec_opts):
    """Fit an OOD density (ood.OODModel) on the MSMA features of clean training images on [0,1]."""
    from .errors import ScoretoolError
    from .ood import OODModel

    images = list(images)
    if not images:
        raise ScoretoolError("no training images")
    ch = channels_of(images[0])
    spec = ood_spec(weights, ch, levels, sigma_max, sigma_min, **spec_opts)
    feats = []
    for img in images:
        if channels_of(img) != ch:
            raise ScoretoolError(f"training images mix {ch}- and {channels_of(img)}-channel images")
        feats.append(ood_features(img, spec, weights, device, precision))
        if progress:
            progress(1)
    _, prior = _ood_prior(weights, ch, device, precision)
    return OODModel.fit(np.concatenate(feats), spec, method, prior, seed)


def ood_check_prior(model, channels: int, weights: str | None = None) -> str:
    """The prior (name or path) to score with: `weights` or the one the model was fitted with; refuses
    another channel count or a different prior file (compared by SHA-256)."""
    from .errors import ScoretoolError
    from .weights import bundled_models, resolve_weights

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


def ood_score(image: np.ndarray, model, weights: str | None = None, device: str = "auto", precision: str = "auto",
              threshold_percentile: float = 95.0, method: str | None = None) -> list[dict]:
    """OOD score per frame of a clean image on [0,1]: score (higher = more unusual), percentile among
    the held-out training scores, and flag (score above the `threshold_percentile` training score)."""
    prior = ood_check_prior(model, channels_of(image), weights)
    f = ood_features(image, model.spec, prior, device, precision)
    scores = model.score(f, method)
    pct = model.percentile(scores, method)
    thr = model.threshold(threshold_percentile, method)
    return [{"score": float(s), "percentile": float(q), "flag": bool(s > thr), "threshold": thr} for s, q in zip(scores, pct)]


# ---------------------------------------------------------------- Noise2Score (noise.py)

def _is_noise2score(info: dict) -> bool:
    return info.get("kind") == "noise2score"


def _tiled_denoiser(engine: Engine, progress=None):
    """D(z, σ) for (F, C, H, W) tensors and σ of shape (F,) (or a float), frame by frame in tiles."""
    def d(z: torch.Tensor, sigma) -> torch.Tensor:
        sig = torch.as_tensor(sigma, dtype=torch.float32).flatten()
        return torch.cat([engine.denoise_tiled(zi[None], float(sig[min(i, sig.numel() - 1)]), progress)
                          for i, zi in enumerate(z)])
    return d


def _noise2score_engine(weights, channels, device, tile, purpose):
    """The fp32 engine of a Noise2Score model; a clear error for a clean prior."""
    engine, info = load_engine(weights, channels, device, "fp32", tile)
    if not _is_noise2score(info):
        from .errors import ScoretoolError
        raise ScoretoolError(f"{purpose} needs a Noise2Score model (the score of noisy images, kind noise2score); "
                             f"{info['name']} is a {info.get('kind', 'prior')} (e.g. --weights n2s-gaussian-gray)")
    return engine, info


def model_channels(weights: str | None, channels: int) -> int:
    """Channels of the model `weights` would load for `channels`-channel input (a grey Noise2Score model is
    applied channel by channel to colour input: each channel is one grey image)."""
    if weights is None:
        return channels
    from .weights import read_metadata, resolve_weights

    config, info = read_metadata(resolve_weights(weights, channels))
    return config.channels if config.channels == 1 and channels == 3 and _is_noise2score(info) else channels


def _grey_frames(y: torch.Tensor) -> torch.Tensor:
    """(F, C, H, W) → (F·C, 1, H, W)."""
    return y.reshape(-1, 1, *y.shape[-2:])


def _check_finite(image: np.ndarray) -> None:
    bad = int((~np.isfinite(image)).sum())
    if bad:
        from .errors import ScoretoolError
        raise ScoretoolError(f"{bad} pixel(s) are NaN or infinite")


def _sigma_a(sigma_a: float | None, info: dict, y: torch.Tensor, family: str | None, parameter: float | None) -> float:
    """The σ_a to read a Noise2Score score at: as given, else noise.auto_sigma_a for the family and
    parameter (those of the model's training data when not known yet), within the model's σ range."""
    from . import noise as nz

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


def estimate_noise(image: np.ndarray, weights: str | None = None, family: str | None = None,
                   sigma_a: float | None = None, device: str = "auto", tile: int = 512, seed: int = 0) -> dict:
    """Noise family and parameter of a noisy image from a Noise2Score model's score alone (methods.md §2).

    Args:
        image: noisy image on the [0,1] scale, (H, W), (H, W, C) or (F, H, W, C) (all frames pooled).
        family: gaussian/poisson/gamma to estimate only the parameter; None also estimates the family
            from the Tweedie power p.
    Returns:
        dict: family, parameter_name, parameter (σ, ζ or k on the [0,1] scale), power, dispersion,
        parameters (the estimate under each family), family_given, sigma_a.
    """
    from . import noise as nz

    _check_finite(image)
    ch = model_channels(weights, channels_of(image))
    engine, info = _noise2score_engine(weights, ch, device, tile, "noise estimation")
    y, _ = _as_batch(image)
    if ch != y.shape[1]:
        y = _grey_frames(y)
    gen = torch.Generator().manual_seed(seed)
    sigma_a = _sigma_a(sigma_a, info, y, None, None)
    est = nz.estimate_noise(nz.score_from_denoiser(_tiled_denoiser(engine), sigma_a), y, family, generator=gen,
                            sigma_a=sigma_a)
    return {**est.as_dict(), "sigma_a": sigma_a}


def tweedie_denoise(image: np.ndarray, noise: str = "gaussian", parameter: float | None = None,
                    weights: str | None = None, device: str = "auto", precision: str = "auto", tile: int = 512,
                    sigma_a: float | None = None, negative: str = "error", seed: int = 0, progress=None) -> tuple[np.ndarray, dict]:
    """Posterior-mean denoising for Gaussian, Poisson or Gamma noise, with a report.

    With a Noise2Score model (kind noise2score): Tweedie from the noisy score s = (D(y, σ_a) − y)/σ_a²
    (fp32), noise.tweedie_posterior_mean; guards are counted in the report. With a clean prior:
    Gaussian x̂ = D(y, σ); Poisson/Gamma by the Gaussian approximation σ_eff² = ζ·x or x²/k
    (noise.heteroscedastic_denoise).

    Args:
        image: noisy image on the [0,1] scale (H, W), (H, W, C) or (F, H, W, C), unclipped float.
        noise: gaussian, poisson, gamma, or auto (family and parameter estimated; Noise2Score models only).
        parameter: σ (gaussian), ζ (poisson) or k (gamma) on the [0,1] scale; None → estimated
            (a Gaussian σ with a clean prior: blind.estimate_sigma; any family with a Noise2Score model).
        negative: poisson/gamma data with values < 0: "error" (default) or "clip" (set to 0, counted).
    Returns:
        (x̂ same shape float32 unclipped, report dict: method, family, parameter_name, parameter, estimated,
        estimate, guards, negative_clipped, sigma_a, weights).
    """
    from . import noise as nz
    from .errors import ScoretoolError

    _check_finite(image)
    ch = model_channels(weights, channels_of(image))
    noise = str(noise).lower()
    if noise != "auto":
        nz.check_family(noise)
    engine, info = load_engine(weights, ch, device, precision, tile)
    n2s = _is_noise2score(info)
    estimate = None
    if not n2s and noise == "gaussian" and parameter is None:
        from .blind import estimate_sigma

        parameter = estimate_sigma(image)
        estimate = {"family": "gaussian", "parameter": parameter, "method": "weak-texture PCA (blind.weak_texture_sigma)"}
    elif noise == "auto" or parameter is None:
        if not n2s:
            what = "--noise auto" if noise == "auto" else f"a missing {nz.PARAM_NAME[noise]}"
            raise ScoretoolError(f"{what}: estimating this noise needs a Noise2Score model; {info['name']} is a clean "
                                 f"prior, which estimates only a Gaussian σ (give --{'sigma' if noise == 'auto' else nz.PARAM_NAME[noise]}, "
                                 "or --weights n2s-…)")
        estimate = estimate_noise(image, weights, None if noise == "auto" else noise, sigma_a, device, tile, seed)
        noise, parameter = estimate["family"], estimate["parameter"]
        if not (parameter and np.isfinite(parameter)):
            raise ScoretoolError(f"could not estimate the {noise} noise parameter of this image (the score gives no "
                                 "usable curvature); give it explicitly")
    parameter = nz.check_parameter(noise, parameter)
    y, shape = _as_batch(image)
    frames = y.shape
    if ch != y.shape[1]:
        y = _grey_frames(y)
    y, clipped = nz.check_nonnegative(y, noise, negative)
    guards = nz.GuardReport()
    if n2s:
        engine, _ = load_engine(weights, ch, device, "fp32", tile)
        sigma_a = _sigma_a(sigma_a, info, y, noise, parameter)
        s = nz.noisy_score(_tiled_denoiser(engine, progress), y, sigma_a)
        out, guards = nz.tweedie_posterior_mean(y, s, noise, parameter, sigma_a)
        method = "noise2score tweedie"
    elif noise == "gaussian":
        out = torch.cat([engine.denoise_tiled(yi[None], parameter, progress) for yi in y])
        method = "prior D(y, sigma)"
    else:
        out = nz.heteroscedastic_denoise(_tiled_denoiser(engine, progress), y, nz.prior_variance_fn(noise, parameter))
        method = "prior gaussian approximation"
    report = {"method": method, "weights": info["name"], "family": noise, "parameter_name": nz.PARAM_NAME[noise],
              "parameter": parameter, "estimated": estimate is not None, "estimate": estimate,
              "guards": guards.as_dict(), "negative_clipped": clipped, "sigma_a": sigma_a if n2s else None,
              "model_noise": info.get("noise") or None, "channelwise": ch != frames[1]}
    return _from_batch(out.reshape(frames), shape), report


def camera_denoise(image: np.ndarray, weights: str | None = None, device: str = "auto", precision: str = "auto",
                   tile: int = 512, stride: int = 2, progress=None) -> tuple[np.ndarray, dict]:
    """Blind denoising of real camera noise (signal-dependent, spatially and chromatically correlated by
    demosaicing and JPEG) with a clean prior: pixel-shuffle down-sampling, blind.pd_denoise.

    Args:
        image: (H, W) or (H, W, C) on [0,1]; a stack (F, H, W, C) is done frame by frame.
    Returns:
        (x̂ same shape float32, report: method, weights, stride, sigmas (per sub-image and frame, [0,1]),
        sigma_refine, sigma (their mean)).
    """
    from .blind import pd_denoise

    _check_finite(image)
    engine, info = load_engine(weights, channels_of(image), device, precision, tile)

    def d(img: np.ndarray, sigma: float) -> np.ndarray:
        x, shape = _as_batch(img)
        return _from_batch(engine.denoise_tiled(x, float(sigma), progress), shape)

    frames = np.asarray(image, np.float32)
    stack = frames.ndim == 4
    outs, reports = zip(*(pd_denoise(d, f, stride) for f in (frames if stack else [frames])))
    sigmas = [s for r in reports for s in r["sigmas"]]
    report = {"method": f"pixel-shuffle {stride}x{stride} + prior D(y, sigma)", "weights": info["name"],
              "stride": stride, "sigmas": sigmas, "sigma_refine": float(np.mean([r["sigma_refine"] for r in reports])),
              "sigma": float(np.mean(sigmas))}
    return (np.stack(outs) if stack else outs[0]).astype(np.float32), report
