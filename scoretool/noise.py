"""Noise families (Gaussian, Poisson, Gamma, Tweedie power p): sampling, Tweedie posterior means from
the score of the noisy density, and parameter / family estimation from that score.

References: Kim & Ye, "Noise2Score: Tweedie's approach to self-supervised image denoising without clean
images", NeurIPS 2021 (the posterior means); Kim, Kwon & Ye, "Noise distribution adaptive
self-supervised image denoising using Tweedie distribution and score matching", CVPR 2022 (the power p
and the parameter estimates).

Scale: everything on the [0,1] intensity scale. Parameters: Gaussian σ (std), Poisson ζ
(y = ζ·Poisson(x/ζ)), Gamma k (y = x·G, G ~ Gamma(shape k, scale 1/k)). Dispersion φ of the Tweedie
family Var[y | x] = φ·x^p: Gaussian p = 0, φ = σ²; Poisson p = 1, φ = ζ; Gamma p = 2, φ = 1/k.

What the Noise2Score formulas are exact for (conjugate priors, tests/test_noise.py):
- Gaussian: x̂ = y + σ²·s is exactly E[x | y].
- Gamma: x̂ = k·y/((k − 1) − y·s) is exactly 1/E[1/x | y] (the harmonic posterior mean); it is below
  E[x | y] by a relative ≈ 1/k (0.5% at k = 100 for a flat prior).
- Poisson: x̂ = (y + ζ/2)·exp(ζ·s) is exp(E[log x | y]) up to Stirling's ψ(n+1) ≈ log(n + ½), the
  geometric posterior mean; it is below E[x | y] by ≈ ζ/2 for a flat prior.
Methods take a score / denoiser *callable* and tensors; no network is needed to test them.
One module (~400 lines) holds every noise family's sampling, posterior mean and estimation, so a
family is read in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import kornia.filters as kf
import numpy as np
import torch
import torch.nn.functional as nnf

from .errors import ScoretoolError

FAMILIES = ("gaussian", "poisson", "gamma")
PARAM_NAME = {"gaussian": "sigma", "poisson": "zeta", "gamma": "k"}
POWER = {"gaussian": 0.0, "poisson": 1.0, "gamma": 2.0}
# classification thresholds on the estimated power p: the midpoints between 0, 1 and 2 (the CVPR 2022
# paper's 0.9 / 1.9 are tuned for its own estimator of p)
P_THRESHOLDS = (0.5, 1.5)
EXP_MAX = 10.0  # Poisson guard: ζ·s above this (x̂ > e^10·(y + ζ/2)) is treated as a failed score
GAMMA_MIN_DENOMINATOR = 0.05  # Gamma guard: (k − 1) − y·s below this fraction of (k − 1)

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""s(y): (B, C, H, W) noisy images → the score ∇_y log p_Y(y), same shape."""


def check_family(family: str) -> str:
    """The family name in lower case; an unknown one raises ScoretoolError."""
    family = str(family).lower()
    if family not in FAMILIES:
        raise ScoretoolError(f"noise family {family!r}: expected one of {', '.join(FAMILIES)}")
    return family


def check_parameter(family: str, param: float) -> float:
    """Validate a noise parameter on the [0,1] scale (σ > 0, ζ > 0, k > 1)."""
    family = check_family(family)
    name = PARAM_NAME[family]
    if param is None or not math.isfinite(float(param)):
        raise ScoretoolError(f"{name}={param}: must be a finite number")
    if family == "gamma" and not float(param) > 1:
        raise ScoretoolError(f"k={param}: the Gamma shape must be greater than 1 (k = 100 is the paper's)")
    if not float(param) > 0:
        raise ScoretoolError(f"{name}={param}: must be positive")
    return float(param)


def dispersion(family: str, param: float) -> float:
    """φ of Var[y|x] = φ·x^p: σ², ζ or 1/k."""
    family = check_family(family)
    return {"gaussian": lambda v: v * v, "poisson": lambda v: v, "gamma": lambda v: 1.0 / v}[family](float(param))


# ---------------------------------------------------------------- sampling

def add_noise(x: np.ndarray, family: str, param: float, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Noisy float32 copy of clean `x` (any shape, [0,1] scale), not clipped or quantised.

    gaussian: y = x + σ·n;  poisson: y = ζ·Poisson(x/ζ) (rate from max(x, 0));
    gamma: y = x·G, G ~ Gamma(shape k, scale 1/k) (mean x, Var = x²/k). Noise2Score paper protocol.
    """
    family = check_family(family)
    param = check_parameter(family, param)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float64)
    if family == "gaussian":
        y = x + param * rng.standard_normal(x.shape)
    elif family == "poisson":
        y = param * rng.poisson(np.maximum(x, 0.0) / param)
    else:
        y = x * rng.gamma(param, 1.0 / param, size=x.shape)
    return y.astype(np.float32)


# ---------------------------------------------------------------- Tweedie posterior means

@dataclass
class GuardReport:
    """How many pixels each guard caught; a caught pixel falls back to the noisy value y
    (an unbiased estimate of x for all three families)."""

    pixels: int = 0
    nonfinite_score: int = 0
    exp_overflow: int = 0  # Poisson: ζ·s > EXP_MAX
    gamma_denominator: int = 0  # Gamma: (k − 1) − y·s ≤ GAMMA_MIN_DENOMINATOR·(k − 1)
    invalid_base: int = 0  # no formula of the three families sets it; kept so reports keep their keys

    @property
    def fired(self) -> int:
        return self.nonfinite_score + self.exp_overflow + self.gamma_denominator + self.invalid_base

    def as_dict(self) -> dict:
        return {"pixels": self.pixels, "guarded": self.fired, "nonfinite_score": self.nonfinite_score,
                "exp_overflow": self.exp_overflow, "gamma_denominator": self.gamma_denominator,
                "invalid_base": self.invalid_base}


def _fallback(y: torch.Tensor, xhat: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    return torch.where(bad, y, xhat)


def noise_variance(y: torch.Tensor, family: str, param: float, floor: float = 0.02) -> torch.Tensor:
    """Var[y | x] at x ≈ max(y, floor): σ², ζ·x or x²/k (the floor keeps dark pixels finite)."""
    family = check_family(family)
    if family == "gaussian":
        return torch.full_like(y, param**2)
    x = y.clamp_min(floor)
    return param * x if family == "poisson" else x * x / param


def smoothing_correction(y: torch.Tensor, family: str, param: float, sigma_a: float) -> torch.Tensor:
    """Factor 1 + σ_a²/Var[y | x] that turns a score smoothed at σ_a back into the noisy score, to first
    order: locally the noise is Gaussian with variance V, the smoothed score is V/(V + σ_a²) times the
    posterior-mean residual over V, so s_Y ≈ s_σa·(V + σ_a²)/V. Exact for Gaussian noise, where
    y + σ²·s_Y·(1 + σ_a²/σ²) = y + (σ² + σ_a²)·s_σa is the posterior mean at level √(σ² + σ_a²)."""
    return 1 + sigma_a**2 / noise_variance(y, family, param)


def auto_sigma_a(y: torch.Tensor, family: str, param: float, bounds: tuple[float, float],
                 fraction: float = 0.3) -> float:
    """σ_a at which to read an AR-DAE score: `fraction` of the noise std (rms over the image), clamped to
    the model's trained σ range. Smaller σ_a has less smoothing bias, but the network's error in
    (D(y, σ_a) − y)/σ_a² grows as 1/σ_a; 0.3 leaves a bias that smoothing_correction removes to first order."""
    std = float(noise_variance(y, family, param).mean().sqrt())
    return float(min(max(fraction * std, bounds[0]), bounds[1]))


def tweedie_posterior_mean(y: torch.Tensor, score: torch.Tensor, family: str, param: float,
                           sigma_a: float = 0.0) -> tuple[torch.Tensor, GuardReport]:
    """Noise2Score's Tweedie posterior mean from s = ∇ log p_Y(y) (Kim & Ye, NeurIPS 2021).

    gaussian: x̂ = y + σ²·s
    poisson:  x̂ = (y + ζ/2)·exp(ζ·s)
    gamma:    x̂ = k·y / ((k − 1) − y·s)
    A score read at σ_a > 0 is that of p_Y smoothed by N(0, σ_a²); it is first rescaled by
    smoothing_correction (for Gaussian noise this makes x̂ = y + (σ² + σ_a²)·s, exactly the posterior
    mean at noise level √(σ² + σ_a²)).
    Guards (counted in the report, pixel falls back to y): non-finite s; ζ·s > EXP_MAX; Gamma
    denominator ≤ GAMMA_MIN_DENOMINATOR·(k − 1). y must be ≥ 0 for poisson/gamma (see check_nonnegative).
    """
    family = check_family(family)
    param = check_parameter(family, param)
    report = GuardReport(pixels=y.numel())
    finite = torch.isfinite(score)
    report.nonfinite_score = int((~finite).sum())
    s = torch.where(finite, score, torch.zeros_like(score))
    if sigma_a > 0:
        s = s * smoothing_correction(y, family, param, sigma_a)
    if family == "gaussian":
        xhat = y + param**2 * s
        bad = ~finite
    elif family == "poisson":
        e = param * s
        over = e > EXP_MAX
        report.exp_overflow = int((over & finite).sum())
        xhat = (y + param / 2) * torch.exp(e.clamp(max=EXP_MAX))
        bad = over | ~finite
    else:
        k = param
        den = (k - 1) - y * s
        small = den <= GAMMA_MIN_DENOMINATOR * (k - 1)
        report.gamma_denominator = int((small & finite).sum())
        xhat = k * y / torch.where(small, torch.ones_like(den), den)
        bad = small | ~finite
    return _fallback(y, xhat, bad), report


def check_nonnegative(y: torch.Tensor, family: str, negative: str = "error") -> tuple[torch.Tensor, int]:
    """Poisson and Gamma data are ≥ 0. negative="error" raises (naming the count and minimum);
    "clip" sets negative values to 0 and returns how many were changed. Gaussian data pass as they are."""
    if family == "gaussian":
        return y, 0
    neg = y < 0
    count = int(neg.sum())
    if count and negative == "error":
        raise ScoretoolError(f"{count} of {y.numel()} values are negative (minimum {float(y.min()):.4g}); {family} noise "
                             "needs y ≥ 0 — check --range, or pass --negative clip to set them to 0")
    if negative not in ("error", "clip"):
        raise ScoretoolError(f"negative={negative!r}: expected error or clip")
    return (y.clamp_min(0) if count else y), count


# ---------------------------------------------------------------- the noisy score from a Noise2Score model

def noisy_score(denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y: torch.Tensor,
                sigma_a: float = 0.002, richardson: bool = False) -> torch.Tensor:
    """s_Y(y) ≈ s(y, σ_a) = (D(y, σ_a) − y)/σ_a² from an AR-DAE (Noise2Score) model
    (Lim et al., "AR-DAE: towards unbiased neural entropy gradient estimation", ICML 2020).

    richardson=True: s(y, σ_a) = s_Y + c·σ_a² + O(σ_a⁴), so (4·s(σ_a) − s(2σ_a))/3 removes the σ_a² term
    (costs a second network pass, and amplifies network error by ≈ 1.5). Call with an fp32 denoiser:
    D − y is of order σ_a²·s, lost in bf16.
    """
    def s_at(sig: float) -> torch.Tensor:
        sb = torch.full((y.shape[0],), sig, dtype=torch.float32, device=y.device)
        return (denoiser(y, sb).to(y.dtype) - y) / sig**2

    if not richardson:
        return s_at(sigma_a)
    return (4 * s_at(sigma_a) - s_at(2 * sigma_a)) / 3


def score_from_denoiser(denoiser, sigma_a: float = 0.002, richardson: bool = False) -> ScoreFn:
    """The score function y ↦ `noisy_score`(denoiser, y, σ_a) of a Noise2Score model."""
    return lambda y: noisy_score(denoiser, y, sigma_a, richardson)


# ---------------------------------------------------------------- Gaussian approximation with a clean prior

def heteroscedastic_denoise(denoiser, y: torch.Tensor, variance: Callable[[torch.Tensor], torch.Tensor],
                            levels: int = 6) -> torch.Tensor:
    """Posterior mean with a *clean* prior D(z, σ) under signal-dependent noise, Gaussian approximation:
    y ≈ x + σ_eff(x)·n with σ_eff² = variance(x) (Poisson ζ·x, Gamma x²/k; an Anscombe-like local
    approximation, not the exact likelihood). A pilot D(y, σ_rms) gives x̃; D(y, σ_j) is computed on a
    geometric grid of `levels` σ_j spanning σ_eff(x̃), and each pixel interpolates in log σ.
    Cost: levels + 1 denoiser passes.
    """
    def d(z, sig):
        return denoiser(z, torch.full((z.shape[0],), float(sig), dtype=torch.float32, device=z.device))

    floor = 1e-3
    rms = float(variance(y.clamp_min(0)).clamp_min(floor**2).mean().sqrt())
    pilot = d(y, rms)
    sig_map = variance(pilot.clamp(1e-3, None)).clamp_min(floor**2).sqrt()
    lo, hi = float(torch.quantile(sig_map.flatten()[:1_000_000], 0.005)), float(sig_map.max())
    lo = max(lo, floor)
    if hi / lo < 1.05:
        return d(y, float(sig_map.mean()))
    grid = np.geomspace(lo, hi, levels)
    outs = torch.stack([d(y, g) for g in grid])  # (L, B, C, H, W)
    t = (sig_map.clamp(lo, hi).log() - math.log(lo)) / (math.log(hi) - math.log(lo)) * (levels - 1)
    i0 = t.floor().long().clamp(0, levels - 2)
    w = (t - i0).to(outs.dtype)
    a = torch.gather(outs, 0, i0[None])[0]
    b = torch.gather(outs, 0, (i0 + 1)[None])[0]
    return (1 - w) * a + w * b


def prior_variance_fn(family: str, param: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """σ_eff²(x) of the Gaussian approximation: σ², ζ·x, x²/k (noise_variance without a floor)."""
    family = check_family(family)
    return lambda x: noise_variance(x, family, param, floor=0.0)


# ---------------------------------------------------------------- Gaussian σ that a clean prior agrees with

def prior_sigma(denoiser, y: torch.Tensor, sigma0: float, *, bounds: tuple[float, float] = (0.0, math.inf),
                tol: float = 0.05, evaluations: int = 5, generator: torch.Generator | None = None,
                eps: float = 1e-3) -> tuple[float, int]:
    """The noise std σ of y = x + σ·n that an MMSE denoiser D(·, σ) is consistent with, from a first guess.

    Tweedie's second-order identity Cov[x | y] = σ²·∇D(y) gives E‖x − D‖² = σ²·E[div D], and Stein's lemma
    E[(y − x)ᵀ(D − x)] = σ²·E[div D]; together E‖y − D(y, σ)‖² = σ²·(N − E[div D(y, σ)]). So the true σ is a
    fixed point of F(σ) = √(‖y − D(y, σ)‖² / (N − div D(y, σ))), div D from one Hutchinson probe b
    (bᵀ(D(y + ε·σ·b) − D(y))/(ε·σ); the same b throughout). A guess with |F(σ0) − σ0| ≤ tol·σ0 is kept;
    otherwise F(σ) = σ is solved by the secant method (first step σ0 → F(σ0)) until a step is below 0.5%
    or after `evaluations` values of F (two network passes each). A classical σ̂ counts faint texture as noise on
    images with little flat area; the prior sees the texture as signal (BSD68 test001 at σ = 5: weak-texture
    σ̂ = 1.71·σ). Every step moves by at most ×2 and stays within `bounds`; a guess at a bound that F would
    move past it is returned after one evaluation. Call with an fp32 denoiser: the probe's difference is small.
    Returns (σ, values of F computed).
    """
    if not sigma0 > 0:
        raise ValueError(f"prior_sigma needs a positive first guess, got {sigma0}")
    b = torch.randn(y.shape, generator=generator).to(y)

    def f(s: float) -> float:
        sb = torch.full((y.shape[0],), s, dtype=torch.float32, device=y.device)
        d = denoiser(y, sb).to(y.dtype)
        div = float((b * (denoiser(y + eps * s * b, sb).to(y.dtype) - d)).sum()) / (eps * s)
        return math.sqrt(float(((y - d) ** 2).sum()) / max(y.numel() - div, 1.0))

    lo, hi = bounds

    def move(s: float, to: float) -> float:
        return min(max(to, 0.5 * s, lo), 2 * s, hi)

    s, h = sigma0, f(sigma0) - sigma0
    if abs(h) <= tol * s or (h > 0 and s >= hi) or (h < 0 and s <= lo):
        return s, 1
    s_prev, h_prev, s = s, h, move(s, s + h)
    n = 1
    while n < evaluations:
        h, n = f(s) - s, n + 1
        step = h * (s - s_prev) / (h - h_prev) if h != h_prev else -h  # flat: the plain step s → F(s)
        s_prev, h_prev, s = s, h, move(s, s - step)
        if abs(step) <= 0.005 * s:
            break
    return s, n


# ---------------------------------------------------------------- Anscombe (for the Anscombe+BM3D peer)

def anscombe(y, zeta: float):
    """Generalised Anscombe transform of y = ζ·Poisson(x/ζ): 2·√(y/ζ + 3/8), std ≈ 1."""
    return 2 * np.sqrt(np.maximum(np.asarray(y, np.float64) / zeta, 0) + 3 / 8)


def inverse_anscombe(z, zeta: float):
    """Closed-form approximation of the exact unbiased inverse (Mäkitalo & Foi, IEEE TIP 2011), times ζ."""
    z = np.maximum(np.asarray(z, np.float64), 0.8)
    r = math.sqrt(1.5)
    n = 0.25 * z**2 + 0.25 * r / z - 1.375 / z**2 + 0.625 * r / z**3 - 0.125
    return zeta * np.maximum(n, 0)


# ---------------------------------------------------------------- estimation from the score alone

def score_derivative(score_fn: ScoreFn, y: torch.Tensor, eps: float = 0.005,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-pixel s′ ≈ ∂s_i/∂y_i by a central difference along a random Rademacher direction v:
    s′_i ≈ v_i·(s(y + εv) − s(y − εv))_i / (2ε)  (diagonal + zero-mean off-diagonal terms; CVPR 2022 code
    uses a random direction too)."""
    v = torch.randint(0, 2, y.shape, generator=generator).to(y.device, y.dtype) * 2 - 1
    return v * (score_fn(y + eps * v) - score_fn(y - eps * v)) / (2 * eps)


def _median(t: torch.Tensor) -> float:
    t = t[torch.isfinite(t)]
    return float(t.median()) if t.numel() else float("nan")


def flat_pixels(y: torch.Tensor, s_prime: torch.Tensor, fraction: float = 0.25, window: int = 7) -> torch.Tensor:
    """Mask of the `fraction` of pixels with the least image texture, where the estimators are unbiased.

    The curvature of the noisy density mixes noise and image: for Gaussian noise
    −1/s′ = V/(1 − Var[x|y]/V) ≥ V, so textured pixels (large posterior variance) inflate σ̂ and ζ̂ and
    shrink k̂. As in weak-texture noise estimation (Liu, Tanaka & Okutomi, IEEE TIP 2013), we keep the
    pixels where t = local std of the blurred image (Gaussian std 1.5, `window`²) over the local noise
    std √median(−1/s′) is smallest. (y, s′: (B, C, H, W).)"""
    b, c, h, w = y.shape
    yy = y.double().reshape(b * c, 1, h, w)
    var = (-1 / s_prime.double()).nan_to_num(1.0).clamp(0, 1).reshape(b * c, 1, h, w)
    yb = kf.gaussian_blur2d(yy, (9, 9), (1.5, 1.5), border_type="reflect")
    pad = window // 2
    mean = nnf.avg_pool2d(yb, window, 1, pad, count_include_pad=False)
    local_var = nnf.avg_pool2d(yb**2, window, 1, pad, count_include_pad=False) - mean**2
    texture = local_var.clamp_min(0).sqrt() / (kf.median_blur(var, window).sqrt() + 1e-4)
    threshold = torch.quantile(texture.flatten()[:: max(1, texture.numel() // 1_000_000)], fraction)
    return (texture <= threshold).reshape(y.shape)


def estimate_parameters(y: torch.Tensor, s_prime: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, float]:
    """The parameter of each family from s′ (medians over pixels; Kim, Kwon & Ye, CVPR 2022):
    σ̂² = median(clamp(−1/s′, 0, 1));  ζ̂ = median(−y + √(y² − 2/s′));  1/k̂ = median(1/(1 − y²·s′)).
    Exact for a point-mass prior: s′ = −1/σ², −1/(ζ(y + ζ/2)) (Stirling) and −(k − 1)/y².
    Pixels with s′ ≥ 0 (prior curvature dominates) are left out of the Poisson/Gamma medians; `mask`
    (e.g. flat_pixels) restricts the medians to those pixels.
    """
    if mask is not None and int(mask.sum()) >= 100:
        y, s_prime = y[mask], s_prime[mask]
    y, sp = y.double().flatten(), s_prime.double().flatten()
    neg = sp < 0
    sigma2 = _median((-1 / sp).clamp(0, 1).where(neg, torch.zeros_like(sp)))
    yn, spn = y[neg & (y >= 0)], sp[neg & (y >= 0)]
    zeta = _median(-yn + (yn**2 - 2 / spn).sqrt())
    inv_k = _median(1 / (1 - yn**2 * spn))
    # a median of 0 means most pixels had s′ ≥ 0: no usable curvature, no estimate
    return {"sigma": math.sqrt(sigma2) if math.isfinite(sigma2) and sigma2 > 0 else float("nan"), "zeta": zeta,
            "k": 1 / inv_k if inv_k > 0 else float("nan")}


def estimate_power(y: torch.Tensor, s_prime: torch.Tensor, bins: int = 12, min_y: float = 0.02) -> tuple[float, float]:
    """Tweedie power p and dispersion φ from −s′ ≈ y^{−p}/φ (saddle-point density with a sharp prior):
    a line through the per-bin medians of log(−s′) against log y (bins = quantiles of y; our robust
    variant of the paper's estimator). Returns (p, φ); nan when y spans too narrow a range."""
    y, sp = y.double().flatten(), s_prime.double().flatten()
    keep = (sp < 0) & (y > min_y) & torch.isfinite(sp)
    if int(keep.sum()) < 50:
        return float("nan"), float("nan")
    ly, ls = y[keep].log(), (-sp[keep]).log()
    edges = torch.quantile(ly[: 2_000_000], torch.linspace(0, 1, bins + 1, dtype=ly.dtype))
    xs, zs, ws = [], [], []
    for a, b in zip(edges[:-1], edges[1:]):
        m = (ly >= a) & (ly <= b)
        if int(m.sum()) >= 20:
            xs.append(float(ly[m].median()))
            zs.append(float(ls[m].median()))
            ws.append(float(m.sum()))
    if len(xs) < 3 or max(xs) - min(xs) < 0.3:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.array(xs), np.array(zs), 1, w=np.sqrt(ws))
    return float(-slope), float(math.exp(-intercept))


def classify_power(p: float, thresholds: tuple[float, float] = P_THRESHOLDS) -> str | None:
    """Family from the power p: Gaussian (p ≈ 0), Poisson (p ≈ 1), Gamma (p ≈ 2); None if p is nan."""
    if not math.isfinite(p):
        return None
    return "gaussian" if p < thresholds[0] else "poisson" if p < thresholds[1] else "gamma"


@dataclass
class NoiseEstimate:
    family: str | None  # the estimated (or given) family
    parameter: float  # σ, ζ or k on the [0,1] scale
    power: float  # estimated Tweedie power p
    dispersion: float  # estimated φ of the power fit
    parameters: dict = field(default_factory=dict)  # the estimate under each family
    family_given: bool = False

    def as_dict(self) -> dict:
        return {"family": self.family, "parameter_name": PARAM_NAME.get(self.family or "", None),
                "parameter": self.parameter, "power": self.power, "dispersion": self.dispersion,
                "parameters": dict(self.parameters), "family_given": self.family_given}


def estimate_noise(score_fn: ScoreFn, y: torch.Tensor, family: str | None = None, eps: float = 0.005,
                   generator: torch.Generator | None = None, sigma_a: float = 0.0) -> NoiseEstimate:
    """Estimate the noise family (unless given) and its parameter from the noisy-density score alone.

    A score read at σ_a has curvature −1/(V + σ_a²) where the noisy one has −1/V, so σ_a² is taken off
    the local variance −1/s′ first (pixels left with V ≤ 0 drop out)."""
    sp = score_derivative(score_fn, y, eps, generator)
    if sigma_a > 0:
        v = -1 / sp - sigma_a**2
        sp = torch.where((sp < 0) & (v > 0), -1 / v, torch.full_like(sp, float("nan")))
    params = estimate_parameters(y, sp, flat_pixels(y, sp))
    p, phi = estimate_power(y, sp)
    fam = check_family(family) if family else classify_power(p)
    if fam is None:  # too narrow an intensity range to tell: Gaussian is the safe assumption
        fam = "gaussian"
    return NoiseEstimate(fam, params[PARAM_NAME[fam]], p, phi, params, family_given=bool(family))
