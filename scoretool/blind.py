"""Blind noise models for a clean prior: the Gaussian level σ, the Poisson–Gaussian pair (a, b) and
correlated camera noise, estimated from one image without a network (the classical estimators a clean
prior needs; the Noise2Score ones are in `scoretool.noise`).

Scale: [0,1] intensities; images are numpy arrays (H, W) or (H, W, C).
"""

from __future__ import annotations

import math

import numpy as np

PATCH = 7  # patch side (Liu et al. 2013 use 7)
SIGMA_FLOOR = 0.002  # the bundled priors' smallest trained σ (half a grey level)
CORRELATED_RATIO = 1.3  # describe_noise: sub-image σ̂ over image σ̂ above this = correlated noise


def _patches(img: np.ndarray, d: int, stride: int) -> np.ndarray:
    """(N, d·d·C) patch vectors of an (H, W, C) image, taken every `stride` pixels."""
    win = np.lib.stride_tricks.sliding_window_view(img, (d, d), axis=(0, 1))[::stride, ::stride]
    return win.reshape(-1, win.shape[2] * d * d)


def _as_hwc(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    return img[..., None] if img.ndim == 2 else img


def _gradient_operator(d: int) -> np.ndarray:
    """DᵀD for the central differences [−½, 0, ½] along both axes of a d×d patch (valid part)."""
    eye = np.eye(d * d).reshape(d * d, d, d)
    dh = 0.5 * (eye[:, :, 2:] - eye[:, :, :-2]).reshape(d * d, -1).T
    dv = 0.5 * (eye[:, 2:, :] - eye[:, :-2, :]).reshape(d * d, -1).T
    return dh.T @ dh + dv.T @ dv


def weak_texture_sigma(img: np.ndarray, d: int = PATCH, stride: int = 2, iterations: int = 4,
                       confidence: float = 0.99, clipped: bool | None = None) -> float:
    """Noise std from weak-texture patches (Liu, Tanaka & Okutomi, *Single-image noise level estimation
    for blind denoising*, IEEE TIP 2013), with the eigenvalue rule of
    `_tail_variance` (Chen, Zhu & Heng, ICCV 2015) in place of the smallest eigenvalue.

    A patch of pure noise has gradient energy ξ = ‖D p‖² ~ σ²·Gamma(r/2, 2·tr(DᵀD)/r) (r = rank DᵀD);
    patches with ξ above that distribution's `confidence` quantile hold texture. Alternate: σ̂ from the
    selected patches, reselect with the threshold σ̂²·τ₀. Channels are pooled (one σ for all).
    The paper's confidence 1 − 10⁻⁶ keeps faint texture in the selection; the default 0.99 with four
    rounds does not (bench/realnoise.py measures both).
    clipped: data clipped to [0,1] (None: detected, > 0.1% of values at 0 or 1); clipping shrinks the
    noise near 0 and 1, so patches whose mean is within 2σ̂ of either end are left out.
    """
    from scipy.stats import gamma

    img = _as_hwc(img)
    if clipped is None:
        clipped = float(np.mean((img <= 0) | (img >= 1))) > 1e-3
    dtd = _gradient_operator(d)
    r = np.linalg.matrix_rank(dtd)
    tau0 = gamma.ppf(confidence, r / 2, scale=2 * np.trace(dtd) / r)
    xs, xis = [], []
    for c in range(img.shape[2]):
        ch = img[..., c]
        gh = np.zeros_like(ch)
        gv = np.zeros_like(ch)
        gh[:, 1:-1] = (0.5 * (ch[:, 2:] - ch[:, :-2])) ** 2
        gv[1:-1, :] = (0.5 * (ch[2:, :] - ch[:-2, :])) ** 2
        # ξ of each patch: the squared differences that lie wholly inside it
        xh = _patches(gh[:, :, None], d, stride).reshape(-1, d, d)[:, :, 1:-1].sum((1, 2))
        xv = _patches(gv[:, :, None], d, stride).reshape(-1, d, d)[:, 1:-1, :].sum((1, 2))
        xs.append(_patches(ch[:, :, None], d, stride))
        xis.append(xh + xv)
    x, xi = np.concatenate(xs), np.concatenate(xis)
    mean = x.mean(1)
    usable = np.ones(len(x), bool)
    sig2 = _tail_variance(x)
    for _ in range(iterations - 1 + 2 * clipped):
        if clipped:
            s = math.sqrt(max(sig2, 0.0))
            inside = (mean > 2 * s) & (mean < 1 - 2 * s)
            usable = inside if int(inside.sum()) >= 4 * x.shape[1] else usable
        sel = usable & (xi < sig2 * tau0)
        if int(sel.sum()) < 4 * x.shape[1]:
            break
        sig2 = _tail_variance(x[sel])
    return float(math.sqrt(max(sig2, 0.0)))


def _tail_variance(x: np.ndarray) -> float:
    """σ² from the covariance of patch vectors x (N, M) (Chen, Zhu & Heng, *An efficient statistical method
    for image noise level estimation*, ICCV 2015): natural-image patches lie near a low-dimensional
    subspace, so the smallest eigenvalues λ_i … λ_M are σ² alone; take the largest such tail whose mean
    τ is also its median (as many eigenvalues above as below) and return τ."""
    x = x - x.mean(0)
    lam = np.sort(np.linalg.eigvalsh(x.T @ x / len(x)))
    for n in range(len(lam), 0, -1):
        tail = lam[:n]
        tau = tail.mean()
        if np.sum(tail > tau) == np.sum(tail < tau):
            return float(tau)
    return float(lam[0])


def estimate_sigma(image: np.ndarray) -> float:
    """Blind Gaussian σ of an image on [0,1] ((H, W), (H, W, C) or frames (F, H, W, C): the median over
    frames): `weak_texture_sigma`, clipping detected, at least SIGMA_FLOOR."""
    arr = np.asarray(image)
    if arr.ndim == 4:
        return max(float(np.median([weak_texture_sigma(f) for f in arr])), SIGMA_FLOOR)
    return max(weak_texture_sigma(arr), SIGMA_FLOOR)


def pixel_shuffle(img: np.ndarray, s: int) -> list[np.ndarray]:
    """The s² sub-images img[i::s, j::s] of an (H, W, …) array (row-major in (i, j))."""
    return [img[i::s, j::s] for i in range(s) for j in range(s)]


def pixel_unshuffle(parts: list[np.ndarray], s: int, shape: tuple) -> np.ndarray:
    """Inverse of `pixel_shuffle`."""
    out = np.empty(shape, dtype=parts[0].dtype)
    for k, (i, j) in enumerate((i, j) for i in range(s) for j in range(s)):
        out[i::s, j::s] = parts[k]
    return out


def pd_denoise(denoise, image: np.ndarray, stride: int = 2, scale: float = 3.0, refine: float = 1.0) -> tuple[np.ndarray, dict]:
    """Blind denoising of spatially correlated (camera) noise by pixel-shuffle down-sampling (PD; Zhou,
    Jiao, Chen, Yang & Kwong, *When AWGN-based denoiser meets real noises*, AAAI 2020).

    Demosaicing and JPEG correlate the noise of neighbouring pixels, so a denoiser for white noise sees
    it as texture. The sub-images y[i::s, j::s] hold pixels s apart, whose noise is nearly independent:
    each is denoised at scale·σ̂_k (σ̂_k = `weak_texture_sigma` of sub-image k), the results are put back in
    place, and a light second pass D(x̂, refine·mean σ̂_k) removes the grid pattern that independent
    sub-images leave. σ̂_k measures the white part of the noise only (JPEG removes the finest-scale noise
    in flat areas, where the estimator looks), so it is below the noise std, hence scale > 1 (default 3,
    refine 1; bench/realnoise.py measures them on PolyU-Canon).

    Args:
        denoise: f(image, σ) → image, a Gaussian denoiser on [0,1] numpy arrays.
        image: (H, W) or (H, W, C) on [0,1].
    Returns:
        (x̂, report: stride, sigmas (σ̂_k per sub-image, [0,1] scale), scale, sigma_refine).
    """
    parts = pixel_shuffle(np.asarray(image, np.float32), stride)
    sigmas = [max(weak_texture_sigma(p), SIGMA_FLOOR) for p in parts]
    out = pixel_unshuffle([denoise(p, scale * s) for p, s in zip(parts, sigmas)], stride, np.shape(image))
    second = refine * float(np.mean(sigmas))
    if second > 0:
        out = denoise(out, second)
    return out, {"stride": stride, "sigmas": sigmas, "scale": scale, "sigma_refine": second}


def describe_noise(image: np.ndarray, stride: int = 2) -> dict:
    """The blind noise model of one image (H, W) or (H, W, C) on [0,1], for `scoretool noise` with a clean
    prior: sigma = `weak_texture_sigma` of the image (white Gaussian noise), sigma_pd = its mean over the
    stride² pixel-shuffled sub-images, and pd_ratio = sigma_pd / sigma. Pixels `stride` apart share less
    correlated noise, so pd_ratio ≈ 1 for independent noise and grows with the correlation between
    neighbours (demosaicing, JPEG); above CORRELATED_RATIO the real-noise path suits the image better."""
    sigma = weak_texture_sigma(image)
    sigma_pd = float(np.mean([weak_texture_sigma(p) for p in pixel_shuffle(np.asarray(image), stride)]))
    ratio = sigma_pd / max(sigma, 1e-4)  # 1e-4: a 40th of a grey level
    return {"family": "gaussian", "parameter_name": "sigma", "parameter": sigma, "sigma_pd": sigma_pd,
            "pd_ratio": ratio, "correlated": ratio > CORRELATED_RATIO, "method": "weak-texture PCA (clean prior)"}
