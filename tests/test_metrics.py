"""Known-answer tests for scoretool.metrics: PSNR/SSIM, uMSE (unbiased, CI coverage), split, SURE."""

import math

import numpy as np
import pytest
import torch

from scoretool.errors import ScoretoolError
from scoretool.metrics import (
    SPLIT_BIAS_NOTE,
    divergence_mc,
    mse,
    polyphase_split,
    psnr,
    psnr_from_mse,
    split_umse,
    ssim,
    sure,
    umse,
)

H, W = 37, 31


def smooth_image(rng, h=H, w=W):
    yy, xx = np.mgrid[0:h, 0:w]
    return 0.5 + 0.3 * np.sin(yy / 5.0) * np.cos(xx / 7.0) + 0.05 * rng.standard_normal((h, w))


# ---------------------------------------------------------------- PSNR / SSIM
def test_psnr_known_values():
    ref = np.zeros((H, W))
    assert psnr(ref + 0.1, ref, data_range=1.0) == pytest.approx(20.0)
    assert psnr(ref + 25.5, ref, data_range=255.0) == pytest.approx(20.0)
    assert psnr(ref + 0.01, ref, data_range=1.0) == pytest.approx(40.0)
    assert psnr(ref, ref, data_range=1.0) == math.inf
    assert mse(torch.ones(3, 4), torch.zeros(3, 4)) == pytest.approx(1.0)
    assert psnr_from_mse(-1e-3, 1.0) == math.inf


def test_psnr_rejects_bad_input():
    with pytest.raises(ScoretoolError, match="different sizes"):
        psnr(np.zeros((H, W)), np.zeros((W, H)), 1.0)
    with pytest.raises(ScoretoolError, match="data range"):
        psnr(np.zeros((H, W)), np.ones((H, W)), 0.0)


def test_ssim_matches_definition(rng):
    from skimage.metrics import structural_similarity

    x = smooth_image(rng)
    y = x + 0.1 * rng.standard_normal(x.shape)
    assert ssim(x, x, 1.0) == pytest.approx(1.0)
    ref = structural_similarity(y, x, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(y, x, 1.0) == pytest.approx(ref)
    # the data range matters (the reason it is explicit)
    assert ssim(y, x, 1.0) != pytest.approx(ssim(y, x, 10.0))
    # colour
    xc, yc = np.stack([x] * 3, -1), np.stack([y] * 3, -1)
    assert ssim(yc, xc, 1.0, channel_axis=-1) == pytest.approx(ref, rel=1e-6)
    # the window's side is the least image side: one line below it (scikit-image's own message was not)
    assert ssim(y[:11, :11], x[:11, :11], 1.0) <= 1
    with pytest.raises(ScoretoolError, match="at least 11×11"):
        ssim(y[:10, :40], x[:10, :40], 1.0)


# ---------------------------------------------------------------- uMSE
def _umse_draws(rng, x, f, noise, draws):
    """uMSE estimates over independent draws of the references a, b, c (f fixed)."""
    out = []
    for _ in range(draws):
        a, b, c = (noise(x) for _ in range(3))
        out.append(umse(f, a, b, c, data_range=1.0))
    return out


@pytest.mark.parametrize("kind", ["gaussian", "poisson"])
def test_umse_is_unbiased_and_ci_covers(rng, kind):
    x = np.clip(smooth_image(rng), 0.05, 1)
    f = x + 0.03 * rng.standard_normal(x.shape) + 0.01  # a fixed imperfect "denoised" image
    true = float(np.mean((f - x) ** 2))
    if kind == "gaussian":
        noise = lambda v: v + 0.1 * rng.standard_normal(v.shape)  # noqa: E731
    else:
        zeta = 0.01
        noise = lambda v: zeta * rng.poisson(v / zeta)  # noqa: E731  signal-dependent, still zero-mean
    est = _umse_draws(rng, x, f, noise, 400)
    values = np.array([e.mse for e in est])
    se = values.std(ddof=1) / math.sqrt(len(values))
    assert abs(values.mean() - true) < 3 * se, (values.mean(), true, se)
    # the per-image standard error predicts the spread across draws
    assert np.mean([e.std_error for e in est]) == pytest.approx(values.std(), rel=0.25)
    coverage = np.mean([e.ci_low <= true <= e.ci_high for e in est])
    assert 0.91 <= coverage <= 1.0, coverage


def test_umse_against_known_psnr(rng):
    """One large image: uPSNR within a few tenths of a dB of the true PSNR."""
    x = smooth_image(rng, 256, 256)
    f = x + 0.05 * rng.standard_normal(x.shape)
    a, b, c = (x + 0.1 * rng.standard_normal(x.shape) for _ in range(3))
    est = umse(f, a, b, c, data_range=1.0)
    assert abs(est.psnr - psnr(f, x, 1.0)) < 0.5
    assert est.ci_low <= mse(f, x) <= est.ci_high
    lo, hi = est.psnr_ci
    assert lo < est.psnr < hi


def test_umse_bad_input(rng):
    x = smooth_image(rng)
    a, b, c = (x + 0.1 * rng.standard_normal(x.shape) for _ in range(3))
    with pytest.raises(ScoretoolError, match="different sizes"):
        umse(x, a, b, c[:-1])
    with pytest.raises(ScoretoolError, match="identical"):
        umse(x, a, b, b.copy())
    with pytest.raises(ScoretoolError, match="identical"):
        umse(x, a, a, a)
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ScoretoolError, match="NaN"):
        umse(x, bad, b, c)


def test_umse_nonpositive_is_reported_not_crashed(rng):
    x = smooth_image(rng)
    n = 0.1 * rng.standard_normal(x.shape)
    est = umse(x, x + 1e-4, x + n, x - n, data_range=1.0)  # a ≈ x: uMSE = −½·mean((2n)²) < 0
    assert est.mse < 0
    assert est.psnr == math.inf
    assert est.psnr_text.startswith("> ")
    d = est.as_dict()
    assert d["mse_nonpositive"] is True and d["psnr"] is None
    assert all(v is None or math.isfinite(v) for v in [d["psnr"], *d["psnr_ci"], d["mse"], *d["mse_ci"]])
    assert est.notes


def test_umse_constant_references_no_nan():
    """Noise-free but different constant references: zero spread, no NaN anywhere."""
    x = np.full((H, W), 0.5)
    est = umse(x, x + 0.1, x + 0.2, x + 0.3, data_range=1.0)
    assert est.mse == pytest.approx(0.01 - 0.5 * 0.01)
    assert est.std_error == pytest.approx(0.0, abs=1e-12)
    assert math.isfinite(est.psnr)


# ---------------------------------------------------------------- 2×2 split
def test_polyphase_split_layout():
    img = np.arange(H * W, dtype=float).reshape(H, W)
    y, a, b, c = polyphase_split(img)
    assert y.shape == a.shape == b.shape == c.shape == (H // 2, W // 2)
    assert (y[0, 0], a[0, 0], b[0, 0], c[0, 0]) == (0, 1, W, W + 1)
    t = torch.from_numpy(img)[None, None]
    ty, ta, tb, tc = polyphase_split(t)
    assert torch.equal(tc[0, 0], torch.from_numpy(c))


def test_split_umse_unbiased_on_flat_image(rng):
    """On a flat image the four sub-images share the clean signal, so the split uMSE is unbiased."""
    sigma, mu, alpha = 0.1, 0.4, 0.3
    x = torch.full((1, 1, 64, 48), mu, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    f = lambda z: mu + alpha * (z - mu)  # noqa: E731
    vals, trues = [], []
    for _ in range(200):
        y = x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
        est, fy = split_umse(y, f)
        vals.append(est.mse)
        trues.append(float(((fy - mu) ** 2).mean()))
        assert SPLIT_BIAS_NOTE in est.notes
    vals = np.array(vals)
    assert abs(vals.mean() - np.mean(trues)) < 3 * vals.std(ddof=1) / math.sqrt(len(vals))
    assert np.mean(trues) == pytest.approx(alpha**2 * sigma**2, rel=0.05)
    with pytest.raises(ScoretoolError, match="16×16"):
        split_umse(torch.zeros(1, 1, 8, 40), f)


# ---------------------------------------------------------------- SURE
def wiener(mu, tau, sigma):
    alpha = tau**2 / (tau**2 + sigma**2)
    return (lambda z: mu + alpha * (z - mu)), alpha


def test_divergence_exact_for_linear_denoiser():
    f, alpha = wiener(0.5, 0.2, 0.1)
    y = 0.5 + 0.25 * torch.randn(1, 1, H, W, generator=torch.Generator().manual_seed(1))
    div, se = divergence_mc(f, y, probe="rademacher")
    assert div == pytest.approx(alpha * H * W, rel=1e-3)
    div, se = divergence_mc(f, y, probes=64, probe="gaussian", generator=torch.Generator().manual_seed(2))
    assert abs(div - alpha * H * W) < 4 * se


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_sure_matches_true_mse_for_wiener(probe):
    """x ~ N(μ, τ²) iid, y = x + σn, f = Wiener filter: E[SURE] = E[MSE] = α·σ² (closed form)."""
    mu, tau, sigma = 0.45, 0.2, 0.1
    f, alpha = wiener(mu, tau, sigma)
    g = torch.Generator().manual_seed(3)
    diffs, sures = [], []
    for _ in range(150):
        x = mu + tau * torch.randn(1, 1, H, W, generator=g)
        y = x + sigma * torch.randn(x.shape, generator=g)
        r = sure(y, f, sigma, probe=probe, generator=g)
        true = float(((r.denoised - x) ** 2).mean())
        diffs.append(r.estimate.mse - true)
        sures.append(r.estimate.mse)
    diffs = np.array(diffs)
    assert abs(diffs.mean()) < 3 * diffs.std(ddof=1) / math.sqrt(len(diffs))
    assert np.mean(sures) == pytest.approx(alpha * sigma**2, rel=0.05)


def test_sure_close_on_one_large_image():
    mu, tau, sigma = 0.45, 0.2, 0.1
    f, alpha = wiener(mu, tau, sigma)
    g = torch.Generator().manual_seed(4)
    x = mu + tau * torch.randn(1, 1, 256, 256, generator=g)
    y = x + sigma * torch.randn(x.shape, generator=g)
    r = sure(y, f, sigma, data_range=1.0)
    true = float(((r.denoised - x) ** 2).mean())
    assert r.estimate.psnr == pytest.approx(psnr_from_mse(true, 1.0), abs=0.1)
    assert r.divergence == pytest.approx(alpha * y.numel(), rel=1e-3)


def test_sure_soft_threshold_known_divergence():
    """Soft thresholding (Donoho & Johnstone 1995): div f(y) = #{|y| > λ}; SURE unbiased."""
    sigma, lam = 0.1, 0.12
    f = lambda z: torch.sign(z) * torch.clamp(z.abs() - lam, min=0)  # noqa: E731
    g = torch.Generator().manual_seed(5)
    diffs = []
    for i in range(150):
        x = torch.where(torch.rand(1, 1, H, W, generator=g) < 0.2, torch.full((1, 1, H, W), 0.6), torch.zeros(1, 1, H, W))
        y = x + sigma * torch.randn(x.shape, generator=g)
        r = sure(y, f, sigma, epsilon=1e-5, generator=g)
        if i == 0:
            assert r.divergence == pytest.approx(float((y.abs() > lam).sum()), abs=2)
        diffs.append(r.estimate.mse - float(((r.denoised - x) ** 2).mean()))
    diffs = np.array(diffs)
    assert abs(diffs.mean()) < 3 * diffs.std(ddof=1) / math.sqrt(len(diffs))


def test_sure_bad_input():
    f = lambda z: z  # noqa: E731
    with pytest.raises(ScoretoolError, match="sigma"):
        sure(torch.zeros(1, 1, H, W), f, 0.0)
    y = torch.zeros(1, 1, H, W)
    y[0, 0, 0, 0] = float("nan")
    with pytest.raises(ScoretoolError, match="NaN"):
        sure(y, f, 0.1)
    with pytest.raises(ScoretoolError, match="not finite"):  # finite values whose result overflows float32
        sure(torch.full((1, 1, H, W), 3e38), lambda z: 2 * z, 0.1)
    # identity: SURE = ‖0‖² − σ² + 2σ² = σ² exactly
    r = sure(torch.rand(1, 1, H, W), f, 0.1)
    assert r.estimate.mse == pytest.approx(0.01, rel=1e-4)
