"""Image-quality metrics with and without clean images: PSNR/SSIM, uMSE/uPSNR, the 2×2 polyphase
split, and SURE (Stein 1981; Ramani, Blu & Unser 2008).

All values are on the scale of the arrays given (scoretool works on [0,1]); every PSNR takes an
explicit `data_range` M (1.0 on the [0,1] scale, 255 for 8-bit grey levels).

- PSNR = 10·log10(M² / MSE);  SSIM: scikit-image's `structural_similarity` (Wang et al. 2004).
- uMSE (Marcos-Morales et al., "Evaluating unsupervised denoising requires unsupervised metrics",
  ICML 2023): from three noisy references a, b, c of the same clean image, independent of each other
  and of the denoiser's input y, with zero-mean noise of any distribution,
      uMSE = (1/n) Σ_i [ (a_i − f(y)_i)² − ½ (b_i − c_i)² ],   E[uMSE | y] = (1/n)‖x − f(y)‖².
  Per-pixel terms give a normal-approximation confidence interval mean ± z·std/√n.
- SURE (Stein 1981; Monte-Carlo divergence: Ramani, Blu & Unser, IEEE TIP 2008): for y = x + σn,
      SURE = (1/N)‖y − f(y)‖² − σ² + (2σ²/N)·div f(y),  E[SURE] = E[(1/N)‖x − f(y)‖²],
  with div f(y) ≈ bᵀ(f(y + εb) − f(y))/ε for random probes b.

Nothing here prints; problems are raised as ScoretoolError with a message naming the cause.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import torch

from .errors import ScoretoolError

SPLIT_BIAS_NOTE = (
    "split references are the 2×2 polyphase sub-images (y = top-left, a = top-right, b = bottom-left, "
    "c = bottom-right): they sample neighbouring, not identical, clean pixels, so uMSE is biased by "
    "mean[(x_a − f)² − (x_y − f)² − ½(x_b − x_c)²] (usually positive, i.e. uPSNR too low, at edges and texture; ~0 on smooth areas), "
    "and it measures the denoiser on the half-resolution sub-image y"
)


def _as_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_shapes(names_arrays: dict[str, np.ndarray]) -> None:
    shapes = {name: arr.shape for name, arr in names_arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {tuple(s)}" for name, s in shapes.items())
        raise ScoretoolError(f"images have different sizes: {listed}")


def _check_range(data_range: float) -> float:
    data_range = float(data_range)
    if not math.isfinite(data_range) or data_range <= 0:
        raise ScoretoolError(f"data range {data_range}: must be a positive number")
    return data_range


def psnr_from_mse(mse: float, data_range: float) -> float:
    """PSNR = 10·log10(M²/MSE) in dB; +inf when MSE ≤ 0 (never a NaN or a log of a negative)."""
    data_range = _check_range(data_range)
    if not mse > 0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def mse(estimate, reference) -> float:
    """Mean squared error (1/N)‖estimate − reference‖² over all pixels and channels."""
    est, ref = _as_array(estimate), _as_array(reference)
    _check_shapes({"estimate": est, "reference": ref})
    return float(np.mean((est - ref) ** 2))


def psnr(estimate, reference, data_range: float) -> float:
    """Peak signal-to-noise ratio 10·log10(M²/MSE) in dB, with an explicit data range M (1.0 on [0,1]).

    Identical images give +inf.
    """
    return psnr_from_mse(mse(estimate, reference), data_range)


SSIM_WINDOW = 11
"""The side of `ssim`'s Gaussian window (σ = 1.5 truncated at 3.5σ, as scikit-image builds it)."""


def ssim(estimate, reference, data_range: float, channel_axis: int | None = None) -> float:
    """Structural similarity (Wang et al. 2004) by `skimage.metrics.structural_similarity`,
    Gaussian-weighted 11×11 window (σ = 1.5) as in the paper, with an explicit data range.

    Args:
        estimate, reference: (H, W) or (H, W, C) arrays (give `channel_axis=-1` for colour).
    """
    from skimage.metrics import structural_similarity

    est, ref = _as_array(estimate), _as_array(reference)
    _check_shapes({"estimate": est, "reference": ref})
    data_range = _check_range(data_range)
    if channel_axis is None and est.ndim == 3 and est.shape[-1] == 1:
        est, ref = est[..., 0], ref[..., 0]
    if min(est.shape[:2]) < SSIM_WINDOW:
        raise ScoretoolError(f"SSIM needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW} pixels (got {est.shape[1]}×{est.shape[0]})")
    return float(structural_similarity(est, ref, data_range=data_range, channel_axis=channel_axis,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


@dataclass
class MSEEstimate:
    """An estimate of the MSE of a denoiser, with a confidence interval and PSNR views.

    `mse` may be ≤ 0 for an unbiased estimator when the true MSE is small against the noise; then
    `psnr` is +inf and `psnr_text` reads "> X dB", X from the interval's upper MSE bound.
    """

    mse: float
    ci_low: float
    ci_high: float
    data_range: float
    n: int
    std_error: float
    confidence: float = 0.95
    notes: list[str] = field(default_factory=list)

    @property
    def psnr(self) -> float:
        return psnr_from_mse(self.mse, self.data_range)

    @property
    def psnr_ci(self) -> tuple[float, float]:
        """(low, high) PSNR from the MSE interval (high is +inf when the lower MSE bound is ≤ 0)."""
        return psnr_from_mse(self.ci_high, self.data_range), psnr_from_mse(self.ci_low, self.data_range)

    @property
    def psnr_lower_bound(self) -> float | None:
        """When mse ≤ 0: the PSNR the image is known to exceed (from ci_high, or the standard error)."""
        if self.mse > 0:
            return None
        top = self.ci_high if self.ci_high > 0 else self.std_error
        return psnr_from_mse(top, self.data_range) if top > 0 else None

    @property
    def psnr_text(self) -> str:
        if self.mse > 0:
            return f"{self.psnr:.2f}"
        bound = self.psnr_lower_bound
        return f"> {bound:.2f}" if bound is not None else "> (unbounded)"

    def as_dict(self, prefix: str = "") -> dict:
        lo, hi = self.psnr_ci
        finite = lambda v: None if not math.isfinite(v) else round(v, 4)  # noqa: E731  JSON has no inf
        return {
            f"{prefix}mse": self.mse, f"{prefix}mse_ci": [self.ci_low, self.ci_high], "std_error": self.std_error,
            f"{prefix}psnr": finite(self.psnr), f"{prefix}psnr_ci": [finite(lo), finite(hi)],
            f"{prefix}psnr_text": self.psnr_text, f"{prefix}mse_nonpositive": not self.mse > 0,
            "confidence": self.confidence, "n_values": self.n, "data_range": self.data_range,
        }


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ScoretoolError(f"confidence {confidence}: must be between 0 and 1")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def umse_terms(denoised, a, b, c) -> np.ndarray:
    """Per-pixel uMSE terms t_i = (a_i − f_i)² − ½(b_i − c_i)² (float64, flattened)."""
    f, a, b, c = (_as_array(v) for v in (denoised, a, b, c))
    _check_shapes({"denoised": f, "reference A": a, "reference B": b, "reference C": c})
    for name, arr in (("denoised", f), ("A", a), ("B", b), ("C", c)):
        if not np.isfinite(arr).all():
            raise ScoretoolError(f"{name} has NaN or infinite values")
    refs = {"A": a, "B": b, "C": c}
    names = list(refs)
    for i in range(3):
        for j in range(i + 1, 3):
            if np.array_equal(refs[names[i]], refs[names[j]]):
                raise ScoretoolError(
                    f"references {names[i]} and {names[j]} are identical (zero variance between them): uMSE needs "
                    "three independent noisy copies of the same image")
    return ((a - f) ** 2 - 0.5 * (b - c) ** 2).ravel()


def umse(denoised, a, b, c, data_range: float = 1.0, confidence: float = 0.95) -> MSEEstimate:
    """Unsupervised MSE from three noisy references (Marcos-Morales et al., ICML 2023):

        uMSE = (1/n) Σ_i [ (a_i − f(y)_i)² − ½ (b_i − c_i)² ],   CI = uMSE ± z·std(t)/√n.

    a, b, c: noisy images of the same clean x, independent of each other and of the denoiser's input
    y, zero-mean noise (any distribution, also signal-dependent). Unbiased: E[uMSE | y] = (1/n)‖x − f(y)‖².
    Conditionally on y the terms are independent across pixels (for pixel-independent noise), so the
    interval is a CLT interval; the sample std includes the spread of (x_i − f_i)², which makes it
    conservative.

    Raises ScoretoolError for different sizes, non-finite values or identical references.
    """
    data_range = _check_range(data_range)
    t = umse_terms(denoised, a, b, c)
    n = t.size
    mean = float(t.mean())
    se = float(t.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    half = _z(confidence) * se
    notes = []
    if mean <= 0:
        notes.append("uMSE ≤ 0: the error is below what the references' noise can resolve; PSNR shown as a lower bound")
    return MSEEstimate(mean, mean - half, mean + half, data_range, n, se, confidence, notes)


def polyphase_split(y) -> tuple:
    """The four 2×2 polyphase sub-images (y, a, b, c) = (top-left, top-right, bottom-left, bottom-right)
    of an image (..., H, W) for a torch tensor, or (H, W[, C]) for a numpy array; odd sizes lose their
    last row/column. For pixel-independent noise the four have independent noise, but their clean
    images are neighbouring pixels, not the same ones: see SPLIT_BIAS_NOTE.
    """
    if isinstance(y, torch.Tensor):
        h, w = (y.shape[-2] // 2) * 2, (y.shape[-1] // 2) * 2
        y = y[..., :h, :w]
        return y[..., 0::2, 0::2], y[..., 0::2, 1::2], y[..., 1::2, 0::2], y[..., 1::2, 1::2]
    arr = np.asarray(y)
    h, w = (arr.shape[0] // 2) * 2, (arr.shape[1] // 2) * 2
    arr = arr[:h, :w]
    return arr[0::2, 0::2], arr[0::2, 1::2], arr[1::2, 0::2], arr[1::2, 1::2]


def split_umse(noisy: torch.Tensor, denoiser: Callable[[torch.Tensor], torch.Tensor], data_range: float = 1.0,
               confidence: float = 0.95) -> tuple[MSEEstimate, torch.Tensor]:
    """Single-image uMSE: split the noisy (B=1, C, H, W) image into its 2×2 polyphase sub-images
    (y, a, b, c), denoise y and score it against a, b, c (Marcos-Morales et al., ICML 2023). Biased: see
    SPLIT_BIAS_NOTE.

    Args:
        noisy: (1, C, H, W) tensor (or (C, H, W) / (H, W)); H and W ≥ 16.
        denoiser: f(z) → x̂ for tensors of the sub-image's shape (for scoretool: lambda z: D(z, σ)).
    Returns:
        (the estimate, with the bias note, and the denoised sub-image f(y)).
    """
    if min(noisy.shape[-2:]) < 16:
        raise ScoretoolError(f"the 2×2 split needs an image of at least 16×16 pixels (got {noisy.shape[-1]}×{noisy.shape[-2]})")
    ys, a, b, c = polyphase_split(noisy)
    with torch.no_grad():
        f = denoiser(ys.contiguous())
    est = umse(f, a, b, c, data_range, confidence)
    est.notes.append(SPLIT_BIAS_NOTE)
    return est, f


def divergence_mc(denoiser: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, fy: torch.Tensor | None = None,
                  epsilon: float = 1e-3, probes: int = 1, probe: str = "rademacher",
                  generator: torch.Generator | None = None) -> tuple[float, float]:
    """Monte-Carlo divergence div f(y) = tr(∂f/∂y) ≈ mean_k b_kᵀ(f(y + ε b_k) − f(y))/ε
    (Ramani, Blu & Unser 2008), probes b with E[b bᵀ] = I: Rademacher (±1; lower variance, exact
    for a diagonal Jacobian) or Gaussian N(0, I).

    Returns (divergence estimate, its standard error over the probes; 0 with one probe).
    """
    if probe not in ("rademacher", "gaussian"):
        raise ScoretoolError(f"probe {probe}: expected rademacher or gaussian")
    if probes < 1:
        raise ScoretoolError(f"probes {probes}: at least 1 is needed")
    if not epsilon > 0:
        raise ScoretoolError(f"epsilon {epsilon}: must be positive")
    with torch.no_grad():
        fy = denoiser(y) if fy is None else fy
        values = []
        for _ in range(probes):
            if probe == "gaussian":
                b = torch.randn(y.shape, generator=generator, dtype=y.dtype, device="cpu").to(y.device)
            else:
                b = (torch.randint(0, 2, y.shape, generator=generator, device="cpu") * 2 - 1).to(y.device, y.dtype)
            diff = denoiser(y + epsilon * b) - fy
            values.append(float((b.double() * diff.double()).sum()) / epsilon)
    v = np.asarray(values)
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0
    return float(v.mean()), se


@dataclass
class SUREResult:
    estimate: MSEEstimate
    divergence: float
    residual_mse: float
    denoised: torch.Tensor


def sure(noisy: torch.Tensor, denoiser: Callable[[torch.Tensor], torch.Tensor], sigma: float,
         data_range: float = 1.0, epsilon: float | None = None, probes: int = 1, probe: str = "rademacher",
         generator: torch.Generator | None = None) -> SUREResult:
    """Stein's unbiased risk estimate of the per-pixel MSE of `denoiser` on one Gaussian-noisy image:

        SURE = (1/N)‖y − f(y)‖² − σ² + (2σ²/N)·div f(y),   E[SURE] = E[(1/N)‖x − f(y)‖²]  (Stein 1981),

    divergence by `divergence_mc` (Ramani et al. 2008). Needs y = x + σn with n ~ N(0, I), known σ,
    and an f that is weakly differentiable; use it in float32 (bf16 spoils the finite difference).

    Args:
        noisy: tensor of any shape (for scoretool (1, C, H, W)), on the scale of σ.
        denoiser: f(z) → x̂, same shape (for a scoretool prior: lambda z: D(z, σ)).
        sigma: noise std on the tensor's scale. epsilon: probe step (default σ/100, at least 1e-4).
    Returns:
        SUREResult; its `estimate` interval is ± z·(2σ²/N)·(probe standard error), i.e. only the
        Monte-Carlo part of the uncertainty (none with one probe); SURE's own noise is not included.
    """
    if not sigma > 0:
        raise ScoretoolError(f"sigma {sigma}: must be positive")
    y = noisy.float()
    if not torch.isfinite(y).all():
        raise ScoretoolError("the noisy image has NaN or infinite values")
    eps = float(epsilon) if epsilon is not None else max(sigma / 100, 1e-4)
    with torch.no_grad():
        fy = denoiser(y).float()
    if fy.shape != y.shape:
        raise ScoretoolError(f"the denoiser returned shape {tuple(fy.shape)} for input {tuple(y.shape)}")
    n = y.numel()
    residual = float(((y.double() - fy.double()) ** 2).mean())
    div, div_se = divergence_mc(denoiser, y, fy, eps, probes, probe, generator)
    value = residual - sigma**2 + 2 * sigma**2 * div / n
    if not math.isfinite(value):  # values beyond float range, or a denoiser that returned NaN/inf
        raise ScoretoolError(f"SURE is not finite (residual {residual:.3g}, divergence {div:.3g}): the image's values "
                             f"are out of the denoiser's range")
    half = _z(0.95) * 2 * sigma**2 * div_se / n
    notes = []
    if value <= 0:
        notes.append("SURE ≤ 0: the error is below what SURE can resolve at this noise level; PSNR shown as a lower bound")
    est = MSEEstimate(value, value - half, value + half, _check_range(data_range), n, 2 * sigma**2 * div_se / n, 0.95, notes)
    return SUREResult(est, div, residual, fy)
