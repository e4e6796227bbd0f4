"""DDNM / DDNM+ and plug-and-play restoration with a closed-form Gaussian-prior denoiser (no network):
known answers."""

import pytest
import torch

from scoretool import operators as ops
from scoretool.ddnm import data_consistency, ddnm_sample, edm_sigmas, geometric_sigmas, pnp_restore, smooth_start

MU, TAU = 0.5, 0.1
SHAPE = (1, 37, 31)


def gauss_denoiser(x, sigma):
    """x ~ N(μ, τ²I): D(y, σ) = μ + τ²/(τ²+σ²)·(y − μ), the exact MMSE denoiser."""
    s = sigma.view(-1, 1, 1, 1)
    return MU + TAU**2 / (TAU**2 + s**2) * (x - MU)


def _sample(n=4, c=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MU + TAU * torch.randn(n, c, *SHAPE[1:], generator=g)


def test_schedule():
    s = edm_sigmas(10, 10.0, 0.005)
    assert len(s) == 11 and s[0] == pytest.approx(10.0) and s[-2] == pytest.approx(0.005) and s[-1] == 0
    assert all(a > b for a, b in zip(s, s[1:]))
    rho = 7.0  # Karras et al. 2022, Eq. 5, at i = 4 of 10
    assert s[4] == pytest.approx((10.0 ** (1 / rho) + 4 / 9 * (0.005 ** (1 / rho) - 10.0 ** (1 / rho))) ** rho)


def test_inpainting_null_space_follows_prior():
    """Missing pixels of an iid Gaussian prior: the deterministic sampler (η = 0, 100 steps) draws them
    from N(μ, τ²) (probability-flow ODE); known pixels equal y exactly."""
    x = _sample()
    g = torch.Generator().manual_seed(5)
    known = ops.random_known_mask(SHAPE[1:], 0.5, g)
    op = ops.Inpaint(known, SHAPE)
    y = op.A(x)
    xh, nfe = ddnm_sample(gauss_denoiser, op, y, edm_sigmas(100, 10.0), eta=0.0, clip=None, generator=torch.Generator().manual_seed(1))
    assert nfe == 100
    miss = xh[(known == 0).expand_as(xh)]
    assert abs(miss.mean().item() - MU) < 0.01
    assert abs(miss.std().item() / TAU - 1) < 0.05
    assert torch.equal(xh[(known == 1).expand_as(xh)], x[(known == 1).expand_as(x)])


@pytest.mark.parametrize("name", ["sr4", "bicubic3", "inpaint", "colorize", "deblur", "cs", "blur_pool"])
def test_noise_free_output_is_data_consistent(name):
    c = 3 if name == "colorize" else 1
    shape = (c, *SHAPE[1:])
    g = torch.Generator().manual_seed(2)
    op = {"sr4": lambda: ops.AvgPoolSR(4, shape), "bicubic3": lambda: ops.BicubicSR(3, shape),
          "inpaint": lambda: ops.Inpaint(ops.random_known_mask(SHAPE[1:], 0.8, g), shape),
          "colorize": lambda: ops.Colorize(shape), "deblur": lambda: ops.Blur(ops.gaussian_kernel(2.0), shape),
          "cs": lambda: ops.CompressedSensing(0.25, shape, block=8),
          "blur_pool": lambda: ops.Blur(ops.gaussian_kernel(1.0), shape).then(ops.AvgPoolSR(2, shape))}[name]()
    x = _sample(2, c).clamp(0, 1)
    y = op.A(x)
    xh, _ = ddnm_sample(gauss_denoiser, op, y, edm_sigmas(15, 1.0), generator=torch.Generator().manual_seed(0))
    xp, _ = pnp_restore(gauss_denoiser, op, y, geometric_sigmas(15))
    for out in (xh, xp):
        assert out.shape == x.shape
        assert (data_consistency(op, out, y) <= 1e-3).all()


def test_seeded_and_time_travel_counts():
    op = ops.AvgPoolSR(2, SHAPE)
    y = op.A(_sample(1))
    a, n1 = ddnm_sample(gauss_denoiser, op, y, edm_sigmas(12, 1.0), generator=torch.Generator().manual_seed(3))
    b, _ = ddnm_sample(gauss_denoiser, op, y, edm_sigmas(12, 1.0), generator=torch.Generator().manual_seed(3))
    c, _ = ddnm_sample(gauss_denoiser, op, y, edm_sigmas(12, 1.0), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c) and n1 == 12
    _, n2 = ddnm_sample(gauss_denoiser, op, y, edm_sigmas(12, 1.0), travel=4, generator=torch.Generator().manual_seed(3))
    assert n2 == 12 + 2 * 4  # jumps back after steps 4 and 8 (not after the last one)


def test_dihedral_cycling_changes_nothing_for_an_invariant_prior_and_turns_the_network_input():
    """g⁻¹(D(g(x))) = D(x) for the pointwise Gaussian-prior denoiser, so cycling the 8 flips/rotations gives
    the same chain; the network sees both orientations of a non-square image."""
    op = ops.AvgPoolSR(2, SHAPE)
    y = op.A(_sample(1))
    seen = set()

    def recording(x, sigma):
        seen.add(tuple(x.shape[-2:]))
        return gauss_denoiser(x, sigma)

    a, _ = ddnm_sample(recording, op, y, edm_sigmas(12, 1.0), generator=torch.Generator().manual_seed(3))
    b, _ = ddnm_sample(gauss_denoiser, op, y, edm_sigmas(12, 1.0), cycle_dihedral=False, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert seen == {SHAPE[1:], SHAPE[:0:-1]}

    def leaning(x, sigma):  # a prior with a preferred direction: cycling must see it
        return gauss_denoiser(x, sigma) + 0.05 * torch.linspace(0, 1, x.shape[-1])

    c, _ = ddnm_sample(leaning, op, y, edm_sigmas(12, 1.0), generator=torch.Generator().manual_seed(3))
    d, _ = ddnm_sample(leaning, op, y, edm_sigmas(12, 1.0), cycle_dihedral=False, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(c, d, atol=1e-3)


def _noisy_inpainting():
    """Half the pixels known, observed with noise σ_y = 2τ: (x, op, y, known-pixel mask, σ_y, generator)."""
    x = _sample()
    g = torch.Generator().manual_seed(7)
    known = ops.random_known_mask(SHAPE[1:], 0.5, g)
    op = ops.Inpaint(known, SHAPE)
    sy = 2 * TAU
    return x, op, op.A(x + sy * torch.randn(x.shape, generator=g)), (known == 1).expand_as(x), sy, g


def test_ddnm_plus_beats_plain_ddnm_on_noisy_measurements():
    """Known pixels observed with noise σ_y = 2τ: DDNM copies the noise (MSE ≈ σ_y²); DDNM+ shrinks
    towards the prior (a posterior sample, MSE ≈ 2·τ²σ_y²/(τ²+σ_y²) = 0.4·σ_y²)."""
    x, op, y, k, sy, g = _noisy_inpainting()
    mse = {}
    for s in (0.0, sy):
        xh, _ = ddnm_sample(gauss_denoiser, op, y, edm_sigmas(30, 1.0), sigma_y=s, clip=None, generator=torch.Generator().manual_seed(1))
        mse[s] = ((xh - x)[k] ** 2).mean().item()
    assert mse[0.0] == pytest.approx(sy**2, rel=0.1)
    assert mse[sy] < 0.6 * sy**2


def test_deblur_ddnm_plus_limits_noise_amplification():
    shape = (1, 31, 29)
    op = ops.Blur(ops.gaussian_kernel(2.0), shape)
    x = _sample(1).clamp(0, 1)[..., :31, :29]
    g = torch.Generator().manual_seed(0)
    y = op.A(x) + 0.02 * torch.randn(1, *shape, generator=g)
    plain, _ = ddnm_sample(gauss_denoiser, op, y, edm_sigmas(20, 1.0), generator=torch.Generator().manual_seed(1))
    plus, _ = ddnm_sample(gauss_denoiser, op, y, edm_sigmas(20, 1.0), sigma_y=0.02, generator=torch.Generator().manual_seed(1))
    assert ((plus - x) ** 2).mean() < 0.1 * ((plain - x) ** 2).mean()
    assert ((plus - x) ** 2).mean() < 2.5 * TAU**2  # a prior sample alone: 2τ²


def test_colour_batch_and_bad_eta():
    op = ops.AvgPoolSR(3, (3, 37, 31))
    y = op.A(_sample(2, 3))
    xh, _ = ddnm_sample(gauss_denoiser, op, y, edm_sigmas(5, 1.0), generator=torch.Generator().manual_seed(0))
    assert xh.shape == (2, 3, 37, 31)
    assert (data_consistency(op, xh, y) < 1e-5).all()  # each image matches its own measurements
    assert (data_consistency(op, xh.flip(0), y) > 0.01).all()
    black = torch.zeros_like(y)  # ‖y‖ = 0: relative to one grey level, not to 0
    assert data_consistency(op, torch.full_like(xh, 1e-6), black).max() < 1e-3
    with pytest.raises(ValueError, match="eta"):
        ddnm_sample(gauss_denoiser, op, y, edm_sigmas(5, 1.0), eta=1.5)


def test_smooth_start_is_harmonic_completion():
    """A linear ramp is harmonic: with its border known, the smoothest completion of the holes is the ramp
    itself; the range-space part of the input is kept exactly."""
    h, w = 24, 20
    ramp = (torch.arange(h)[:, None] * 0.02 + torch.arange(w)[None, :] * 0.01).float()[None, None]
    known = ops.random_known_mask((h, w), 0.6, torch.Generator().manual_seed(0))
    known[0, :] = known[-1, :] = known[:, 0] = known[:, -1] = 1
    op = ops.Inpaint(known, (1, h, w))
    x = smooth_start(op, op.A_dagger(op.A(ramp)), iterations=200)
    torch.testing.assert_close(x, ramp, atol=1e-4, rtol=0)
    sr = ops.AvgPoolSR(4, (1, h, w))
    y = sr.A(_sample(1)[..., :h, :w])
    torch.testing.assert_close(sr.A(smooth_start(sr, sr.A_dagger(y))), y, atol=1e-5, rtol=0)


def test_schedule_checked_and_callback_sees_every_evaluation():
    op = ops.AvgPoolSR(2, SHAPE)
    y = op.A(_sample(1))
    seen = []
    _, nfe = ddnm_sample(gauss_denoiser, op, y, edm_sigmas(6, 0.5), travel=2, callback=seen.append)
    assert [d["nfe"] for d in seen] == list(range(1, nfe + 1)) and nfe == 6 + 2 * 2
    assert seen[0]["sigma"] == pytest.approx(0.5) and seen[0]["denoised"].shape == (1, *SHAPE)
    for bad in ([1.0, 0.5], [0.5, 1.0, 0.0], [1.0]):
        with pytest.raises(ValueError, match="sigmas"):
            ddnm_sample(gauss_denoiser, op, y, bad)
    with pytest.raises(ValueError, match="start"):
        ddnm_sample(gauss_denoiser, op, y, edm_sigmas(3, 0.5), start="noise")


def test_travel_schedule_redoes_each_segment_and_is_checked():
    from scoretool.ddnm import _check_travel_schedule, travel_schedule

    assert travel_schedule(4) == [0, 1, 2, 3, 4]
    assert travel_schedule(6, 2) == [0, 1, 2, 0, 1, 2, 3, 4, 2, 3, 4, 5, 6]
    assert travel_schedule(4, 2, repeat=2) == [0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="forward"):
        _check_travel_schedule([0, 2, 3], 3)
    with pytest.raises(ValueError, match="from 0 to 3"):
        _check_travel_schedule([0, 1, 2], 3)
    with pytest.raises(ValueError, match="travel"):
        travel_schedule(4, -1)


def test_one_evaluation_per_forward_move_of_the_travel_schedule():
    op = ops.Inpaint(torch.ones(1, 9, 9), (1, 9, 9))
    y = torch.rand(1, 1, 9, 9)
    seen = []
    _, nfe = ddnm_sample(gauss_denoiser, op, y, edm_sigmas(6, 1.0), travel=2, generator=torch.Generator().manual_seed(0),
                         callback=lambda info: seen.append(info["i"]))
    assert seen == [0, 1, 0, 1, 2, 3, 2, 3, 4, 5] and nfe == 10


def test_geometric_schedule():
    s = geometric_sigmas(25, 0.15, 0.005)
    assert len(s) == 25 and s[0] == pytest.approx(0.15) and s[-1] == pytest.approx(0.005)
    assert s[12] == pytest.approx((0.15 * 0.005) ** 0.5)  # log-spaced: the middle level is the geometric mean
    assert geometric_sigmas(1, 0.2) == [0.2]
    assert geometric_sigmas(3, 0.004) == [0.004] * 3  # below σ_min: one level, repeated
    with pytest.raises(ValueError, match="non-increasing"):
        pnp_restore(gauss_denoiser, ops.AvgPoolSR(2, SHAPE), torch.zeros(1, 1, 19, 16), [0.1, 0.2])


@pytest.mark.parametrize("name", ["inpaint", "sr4"])
def test_pnp_null_space_contracts_to_the_posterior_mean(name):
    """Gaussian prior, noise-free y: E[x | y] = A†y + P·μ (P = I − A†A, A† the Moore–Penrose inverse of
    these operators). Each pnp step maps the null-space part P·x − P·μ to c_k·(P·x − P·μ) with
    c_k = τ²/(τ² + σ_k²), so the result is A†y + P·μ + Π c_k·P·(x_0 − μ) exactly."""
    x = _sample()
    op = {"inpaint": lambda: ops.Inpaint(ops.random_known_mask(SHAPE[1:], 0.6, torch.Generator().manual_seed(5)), SHAPE),
          "sr4": lambda: ops.AvgPoolSR(4, SHAPE)}[name]()
    y = op.A(x)
    sigmas = geometric_sigmas(25, 0.15, 0.005)
    xh, nfe = pnp_restore(gauss_denoiser, op, y, sigmas, clip=None)
    assert nfe == 25

    def null(u):
        return u - op.A_dagger(op.A(u))

    x0 = smooth_start(op, op.A_dagger(y))
    shrink = torch.tensor([TAU**2 / (TAU**2 + s**2) for s in sigmas], dtype=torch.float64).prod().item()
    mean = op.A_dagger(y) + null(torch.full_like(x, MU))
    torch.testing.assert_close(xh, mean + shrink * null(x0 - MU), atol=1e-5, rtol=0)
    assert 1e-4 < shrink < 0.1  # the last term is small but there: the formula, not just closeness to the mean
    assert torch.equal(pnp_restore(gauss_denoiser, op, y, sigmas, clip=None)[0], xh)  # deterministic


def test_pnp_wiener_step_shrinks_noisy_measurements():
    """Known pixels observed with noise σ_y = 2τ: with σ_y = 0 the data step copies them (MSE = σ_y²);
    with the Wiener step they move towards the prior (about 0.34·σ_y² here: half-quadratic splitting on a
    falling σ is not the exact posterior mean, whose MSE on them is τ²σ_y²/(τ²+σ_y²) = 0.2·σ_y²).
    Deblurring: noise amplification stays bounded."""
    x, op, y, k, sy, g = _noisy_inpainting()
    mse = {s: ((pnp_restore(gauss_denoiser, op, y, geometric_sigmas(25), sigma_y=s, clip=None)[0] - x)[k] ** 2).mean().item()
           for s in (0.0, sy)}
    assert mse[0.0] == pytest.approx(sy**2, rel=0.1)
    assert mse[sy] < 0.4 * sy**2
    shape = (1, 31, 29)
    blur = ops.Blur(ops.gaussian_kernel(2.0), shape)
    xb = _sample(1).clamp(0, 1)[..., :31, :29]
    yb = blur.A(xb) + 0.02 * torch.randn(1, *shape, generator=g)
    plain, _ = pnp_restore(gauss_denoiser, blur, yb, geometric_sigmas(20))
    wiener, _ = pnp_restore(gauss_denoiser, blur, yb, geometric_sigmas(20), sigma_y=0.02)
    assert ((wiener - xb) ** 2).mean() < 0.1 * ((plain - xb) ** 2).mean()
    assert ((wiener - xb) ** 2).mean() < 1.2 * TAU**2  # the posterior mean's MSE is below the prior's τ²
