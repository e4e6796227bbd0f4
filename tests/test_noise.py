"""Known-answer tests of scoretool.noise: Tweedie posterior means on conjugate priors with exact
noisy-density scores, the guards, and parameter / family estimation from exact scores."""

import math

import numpy as np
import pytest
import torch
from scipy import special

from scoretool import noise
from scoretool.errors import ScoretoolError

H, W = 37, 31


# ---------------------------------------------------------------- sampling

@pytest.mark.parametrize("family,param,var", [("gaussian", 0.1, lambda x: 0.01 + 0 * x), ("poisson", 0.01, lambda x: 0.01 * x),
                                              ("gamma", 100.0, lambda x: x * x / 100)])
def test_add_noise_moments(family, param, var):
    x = np.full((200, 200), 0.4)
    y = noise.add_noise(x, family, param, seed=1)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert abs(y.mean() - 0.4) < 3e-3
    assert abs(y.var() / var(0.4) - 1) < 0.03
    assert np.array_equal(y, noise.add_noise(x, family, param, seed=1))  # seeded


def test_add_noise_unclipped_gaussian():
    y = noise.add_noise(np.zeros((50, 50)), "gaussian", 0.1, seed=0)
    assert y.min() < 0  # float, not clipped


# ---------------------------------------------------------------- Tweedie on conjugate priors

def test_gaussian_prior_gaussian_noise_equals_closed_form():
    mu, tau, sigma = 0.4, 0.2, 0.1
    y = torch.linspace(-0.3, 1.2, H * W, dtype=torch.float64).reshape(1, 1, H, W)
    s = -(y - mu) / (tau**2 + sigma**2)  # exact score of y ~ N(mu, tau² + σ²)
    xhat, rep = noise.tweedie_posterior_mean(y, s, "gaussian", sigma)
    exact = mu + tau**2 / (tau**2 + sigma**2) * (y - mu)
    assert torch.allclose(xhat, exact, atol=1e-12) and rep.fired == 0


def _gamma_case(k, alpha=3.0, beta=1.2):
    """x = 1/w, w ~ Gamma(α, rate β) (inverse-gamma prior); y = x·G. Marginal ∝ y^{k−1}/(k·y + β)^{k+α}."""
    y = torch.linspace(0.05, 1.5, H * W, dtype=torch.float64).reshape(1, 1, H, W)
    s = (k - 1) / y - k * (k + alpha) / (k * y + beta)
    posterior_mean = (k * y + beta) / (k + alpha - 1)  # E[1/w], w | y ~ Gamma(α + k, β + k·y)
    harmonic = (k * y + beta) / (k + alpha)  # 1 / E[w | y]
    return y, s, posterior_mean, harmonic


def test_gamma_formula_exact_identity_and_posterior_mean():
    y, s, mean, harmonic = _gamma_case(k=100)
    xhat, rep = noise.tweedie_posterior_mean(y, s, "gamma", 100)
    assert rep.fired == 0
    assert torch.allclose(xhat, harmonic, rtol=1e-10)  # exactly 1/E[1/x | y]
    # the documented bias against E[x|y]: relative 1/(k + α − 1)
    assert torch.allclose(mean / xhat - 1, torch.full_like(xhat, 1 / (100 + 3 - 1)), atol=1e-10)


def test_gamma_formula_matches_posterior_mean_to_1e3():
    y, s, mean, _ = _gamma_case(k=2000)
    xhat, _ = noise.tweedie_posterior_mean(y, s, "gamma", 2000)
    assert float((xhat - mean).abs().max()) < 1e-3


def _poisson_case(zeta, a=4.0, b_over_zeta=2.0):
    """λ = x/ζ ~ Gamma(a, rate b) (conjugate); n = y/ζ ~ negative binomial, continuous in y via Γ:
    log p(y) = lnΓ(n + a) − lnΓ(n + 1) − n·ln(b + 1) + const."""
    b = b_over_zeta * zeta  # prior mean of x = ζ·a/b = a/b_over_zeta = 2
    n = torch.arange(1, H * W + 1, dtype=torch.float64).reshape(1, 1, H, W) * (1.2 / zeta) / (H * W) + 10
    y = zeta * n
    s = torch.from_numpy(special.digamma(n.numpy() + a) - special.digamma(n.numpy() + 1) - math.log(b + 1)) / zeta
    mean = zeta * (n + a) / (b + 1)
    geometric = zeta * torch.from_numpy(np.exp(special.digamma(n.numpy() + a))) / (b + 1)  # exp E[log x | y]
    return y, s, mean, geometric


def test_poisson_formula_is_geometric_posterior_mean():
    zeta = 0.01
    y, s, mean, geometric = _poisson_case(zeta)
    xhat, rep = noise.tweedie_posterior_mean(y, s, "poisson", zeta)
    assert rep.fired == 0
    assert float(((xhat - geometric) / geometric).abs().max()) < 5e-4  # Stirling ψ(n+1) ≈ ln(n + ½), n ≥ 10
    # documented bias against E[x|y]: ≈ ζ/2/(b + 1) below it
    assert float((mean - xhat).abs().max()) < zeta / 2 * 1.05


def test_poisson_formula_matches_posterior_mean_to_1e3():
    y, s, mean, _ = _poisson_case(0.001)
    xhat, _ = noise.tweedie_posterior_mean(y, s, "poisson", 0.001)
    assert float((xhat - mean).abs().max()) < 1e-3


# ---------------------------------------------------------------- guards and bad input

def test_guards_fire_are_counted_and_fall_back_to_y():
    y = torch.full((1, 1, 8, 8), 0.5)
    s = torch.zeros_like(y)
    s[0, 0, 0, :3] = 1e6  # Gamma denominator < 0, Poisson exp overflow
    s[0, 0, 1, 0] = float("nan")
    xg, rg = noise.tweedie_posterior_mean(y, s, "gamma", 100)
    xp, rp = noise.tweedie_posterior_mean(y, s, "poisson", 0.01)
    for x, r, name in ((xg, rg, "gamma_denominator"), (xp, rp, "exp_overflow")):
        assert torch.isfinite(x).all()
        assert getattr(r, name) == 3 and r.nonfinite_score == 1 and r.fired == 4
        assert torch.equal(x[0, 0, 0, :3], y[0, 0, 0, :3]) and x[0, 0, 1, 0] == 0.5
    assert rg.as_dict()["guarded"] == 4


def test_negative_values():
    y = torch.tensor([0.2, -0.05, 0.3])
    with pytest.raises(ScoretoolError, match="negative"):
        noise.check_nonnegative(y, "poisson")
    clipped, n = noise.check_nonnegative(y, "gamma", "clip")
    assert n == 1 and clipped.min() == 0
    assert noise.check_nonnegative(y, "gaussian")[1] == 0


def test_bad_parameters():
    with pytest.raises(ScoretoolError):
        noise.check_parameter("gamma", 1.0)
    with pytest.raises(ScoretoolError):
        noise.check_parameter("poisson", -0.1)
    with pytest.raises(ScoretoolError):
        noise.check_family("laplace")


# ---------------------------------------------------------------- the score of a denoiser

def test_noisy_score_from_gaussian_denoiser():
    """A denoiser of a Gaussian-noise density N(m, v): D(y, σa) = m + v/(v + σa²)(y − m) — the AR-DAE of
    the noisy data. s(y, σa) → −(y − m)/v; Richardson removes the σa² term."""
    m, v = 0.5, 0.01
    y = torch.rand(1, 1, H, W, dtype=torch.float64)

    def den(z, sig):
        sa2 = sig.double()[:, None, None, None] ** 2
        return m + v / (v + sa2) * (z - m)

    exact = -(y - m) / v
    s1 = noise.noisy_score(den, y, 0.005)
    s2 = noise.noisy_score(den, y, 0.005, richardson=True)
    assert float(((s1 - exact) / exact).abs().max()) < 3e-3
    assert float(((s2 - exact) / exact).abs().max()) < 5e-5  # O(σa⁴) left


def test_heteroscedastic_denoise_gaussian_prior():
    """With a Gaussian prior and constant variance the blend reduces to D(y, σ)."""
    mu, tau, sigma = 0.4, 0.2, 0.05

    def den(z, sig):
        s2 = sig.double()[:, None, None, None] ** 2
        return mu + tau**2 / (tau**2 + s2) * (z - mu)

    y = torch.rand(1, 1, H, W, dtype=torch.float64)
    out = noise.heteroscedastic_denoise(den, y, noise.prior_variance_fn("gaussian", sigma))
    assert torch.allclose(out, den(y, torch.tensor([sigma])), atol=1e-9)
    out2 = noise.heteroscedastic_denoise(den, y, noise.prior_variance_fn("poisson", 0.01))
    assert torch.isfinite(out2).all() and out2.shape == y.shape


# ---------------------------------------------------------------- estimation

def _mixture_gaussian_score(centres, sigma):
    c = torch.tensor(centres, dtype=torch.float64)

    def score(y):
        d = y[..., None] - c
        r = torch.softmax(-d**2 / (2 * sigma**2), dim=-1)
        return -(r * d).sum(-1) / sigma**2

    return score


def test_sigma_estimator_recovers_sigma_from_exact_score():
    """x from 5 well-separated point masses, y = x + σn: exact mixture score; σ̂ within 3%."""
    g = torch.Generator().manual_seed(0)
    centres = [0.1, 0.3, 0.5, 0.7, 0.9]
    sigma = 0.025
    x = torch.tensor(centres, dtype=torch.float64)[torch.randint(0, 5, (1, 1, 64, 64), generator=g)]
    y = x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
    est = noise.estimate_noise(_mixture_gaussian_score(centres, sigma), y, generator=g)
    assert est.family == "gaussian"
    assert abs(est.parameter / sigma - 1) < 0.03


def _oracle_score(family, param, x):
    """Exact score of y | x per pixel (a perfectly sharp prior: the clean value is known)."""
    if family == "gaussian":
        return lambda y: (x - y) / param**2
    if family == "poisson":
        lam = x / param
        return lambda y: (lam.log() - torch.special.digamma(y.clamp_min(0) / param + 1)) / param
    return lambda y: (param - 1) / y - param / x


@pytest.mark.parametrize("family,param", [("gaussian", 15 / 255), ("gaussian", 50 / 255), ("poisson", 0.01),
                                          ("poisson", 0.05), ("gamma", 50.0), ("gamma", 100.0)])
def test_family_and_parameter_from_exact_score(family, param):
    g = torch.Generator().manual_seed(1)
    x = 0.05 + 0.9 * torch.rand(1, 1, 48, 48, generator=g, dtype=torch.float64)
    y = torch.from_numpy(noise.add_noise(x.numpy(), family, param, seed=2)).double()
    if family == "gamma":
        y = y.clamp_min(1e-6)
    est = noise.estimate_noise(_oracle_score(family, param, x), y, eps=1e-4, generator=g)
    assert est.family == family, est.as_dict()
    assert abs(est.parameter / param - 1) < 0.05, est.as_dict()
    assert abs(est.power - noise.POWER[family]) < 0.3


def test_estimate_with_given_family():
    g = torch.Generator().manual_seed(3)
    x = 0.05 + 0.9 * torch.rand(1, 1, 32, 32, generator=g, dtype=torch.float64)
    y = torch.from_numpy(noise.add_noise(x.numpy(), "poisson", 0.02, seed=4)).double()
    est = noise.estimate_noise(_oracle_score("poisson", 0.02, x), y, family="poisson", eps=1e-4, generator=g)
    assert est.family_given and est.family == "poisson" and abs(est.parameter / 0.02 - 1) < 0.05


def test_smoothed_score_gaussian_is_posterior_mean_at_the_wider_level():
    """A score read at σ_a is that of N(μ, τ² + σ² + σ_a²); with the smoothing correction the Tweedie
    output is exactly the posterior mean at level √(σ² + σ_a²)."""
    mu, tau, sigma, sa = 0.4, 0.2, 0.1, 0.03
    y = torch.linspace(-0.3, 1.2, H * W, dtype=torch.float64).reshape(1, 1, H, W)
    s = -(y - mu) / (tau**2 + sigma**2 + sa**2)
    xhat, _ = noise.tweedie_posterior_mean(y, s, "gaussian", sigma, sigma_a=sa)
    level2 = sigma**2 + sa**2
    assert torch.allclose(xhat, mu + tau**2 / (tau**2 + level2) * (y - mu), atol=1e-12)
    plain, _ = noise.tweedie_posterior_mean(y, s, "gaussian", sigma)
    assert not torch.allclose(plain, xhat, atol=1e-3)  # the correction matters


@pytest.mark.parametrize("family,param", [("gaussian", 25 / 255), ("poisson", 0.01), ("gamma", 100.0)])
def test_smoothing_correction_in_noise_estimation(family, param):
    """Oracle score of y | x smoothed at σ_a (local variance V → V + σ_a²): the estimate with sigma_a given
    recovers the parameter; without the correction it is off by more than 10%."""
    sa = 0.05
    g = torch.Generator().manual_seed(5)
    x = 0.2 + 0.7 * torch.rand(1, 1, 48, 48, generator=g, dtype=torch.float64)
    y = torch.from_numpy(noise.add_noise(x.numpy(), family, param, seed=6)).double().clamp_min(1e-6)
    var = noise.noise_variance(x, family, param)

    def smoothed(z):  # Gaussian-approximate score of the smoothed density around the true x
        return (x - z) / (var + sa**2)

    good = noise.estimate_noise(smoothed, y, family=family, eps=1e-4, generator=g, sigma_a=sa)
    bad = noise.estimate_noise(smoothed, y, family=family, eps=1e-4, generator=g)
    assert abs(good.parameter / param - 1) < 0.1, good.as_dict()
    assert abs(bad.parameter / param - 1) > 0.1, bad.as_dict()


def test_auto_sigma_a_is_a_fraction_of_the_noise_std_within_bounds():
    y = torch.full((1, 1, 8, 8), 0.5)
    assert noise.auto_sigma_a(y, "gaussian", 0.1, (0.001, 0.1)) == pytest.approx(0.03)
    assert noise.auto_sigma_a(y, "poisson", 0.01, (0.001, 0.1)) == pytest.approx(0.3 * math.sqrt(0.005))
    assert noise.auto_sigma_a(y, "gamma", 100.0, (0.02, 0.1)) == pytest.approx(0.02)  # 0.015 clamped


def test_flat_pixels_remove_the_texture_bias():
    """Textured pixels inflate −1/s′ (posterior variance); the flat-pixel median recovers σ exactly."""
    sigma = 0.05
    g = torch.Generator().manual_seed(0)
    xx = torch.arange(128.0)
    clean = torch.full((1, 1, 128, 128), 0.5)
    clean[..., 32:] = 0.5 + 0.3 * torch.sin(xx[32:] / 2)[None, :]  # right three quarters: strong texture
    y = clean + sigma * torch.randn(clean.shape, generator=g)
    s_prime = torch.full_like(y, -1 / sigma**2)
    s_prime[..., 32:] = -1 / (1.6 * sigma**2)  # −1/s′ = V/(1 − Var[x|y]/V) > V where textured
    mask = noise.flat_pixels(y, s_prime)
    assert mask[..., :28].float().mean() > 0.8 and mask[..., 40:].float().mean() < 0.02
    assert noise.estimate_parameters(y, s_prime)["sigma"] > 1.1 * sigma  # the bias without the mask
    assert noise.estimate_parameters(y, s_prime, mask)["sigma"] == pytest.approx(sigma, rel=1e-6)


def test_prior_sigma_is_a_fixed_point_of_the_mmse_denoiser():
    """Gaussian prior x ~ N(μ, τ²) per pixel, y = x + σ·n, exact MMSE denoiser D(y, s) = μ + τ²/(τ²+s²)·(y − μ):
    F(s)² = ‖y − D‖²/(N − div D) ≈ (τ² + σ²)·s²/(τ² + s²), whose only fixed point is s = σ. From a guess
    twice too large (or too small) the secant steps reach σ; a guess within `tol` is kept as it is."""
    mu, tau, sigma = 0.5, 0.1, 0.08
    g = torch.Generator().manual_seed(0)
    y = mu + tau * torch.randn(1, 1, 256, 256, generator=g) + sigma * torch.randn(1, 1, 256, 256, generator=g)

    def mmse(x, s):
        s = s.view(-1, 1, 1, 1)
        return mu + tau**2 / (tau**2 + s**2) * (x - mu)

    for guess in (2 * sigma, 0.5 * sigma):
        est, evaluations = noise.prior_sigma(mmse, y, guess, generator=torch.Generator().manual_seed(1))
        assert est == pytest.approx(sigma, rel=0.03) and 2 <= evaluations <= 5
    assert noise.prior_sigma(mmse, y, 1.02 * sigma, generator=torch.Generator().manual_seed(1)) == (1.02 * sigma, 1)
    assert noise.prior_sigma(mmse, y, 0.5 * sigma, bounds=(0.0, 0.5 * sigma), generator=torch.Generator().manual_seed(1)) == (0.5 * sigma, 1)
    # a denoiser that removes nothing (D = y) is consistent with no noise: F(s) = 0, the guess halves each time
    low, evaluations = noise.prior_sigma(lambda x, s: x, y, sigma, generator=torch.Generator().manual_seed(1))
    assert low < 0.1 * sigma and evaluations == 5
    with pytest.raises(ValueError, match="positive first guess"):  # F would divide by ε·0
        noise.prior_sigma(mmse, y, 0.0)


def test_noise2score_model_on_other_noise_is_reported():
    """n2s-gaussian-gray knows σ = 25 grey levels and reads about that in any noise: an image with σ = 5 is
    reported (its σ and the weak-texture σ̂ differ > NOISE_MISMATCH×), one with σ = 25 is not."""
    from scoretool.api.noise import tweedie_denoise

    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(0.2, 0.8, 96, dtype=np.float32), (96, 1))
    reports = {s: tweedie_denoise(clean + s / 255 * rng.standard_normal(clean.shape).astype(np.float32),
                                  weights="n2s-gaussian-gray", device="cpu")[1] for s in (5, 25)}
    assert reports[5]["noise_mismatch"] is not None and reports[5]["noise_mismatch"]["image_sigma"] < 8 / 255
    assert reports[25]["noise_mismatch"] is None
