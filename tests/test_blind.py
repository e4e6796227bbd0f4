"""Blind noise models for a clean prior (scoretool/blind.py) and their CLI defaults."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from scoretool.blind import (
    anscombe,
    count_lattice,
    describe_noise,
    estimate_poisson_gaussian,
    estimate_sigma,
    inverse_anscombe,
    patch_stride,
    pd_denoise,
    pg_denoise,
    pixel_shuffle,
    pixel_unshuffle,
    prior_variance_fit,
    weak_texture_sigma,
)
from scoretool.cli import app
from scoretool.errors import ScoretoolError

runner = CliRunner()


def scene(h=160, w=150, channels=0, seed=0):
    """A piecewise-smooth test image on [0.2, 0.8]: gradients, a disc and a few edges (texture-poor areas
    and textured ones, as in photographs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    x = 0.3 + 0.3 * xx + 0.1 * np.sin(6 * yy)
    x[(yy - 0.5) ** 2 + (xx - 0.4) ** 2 < 0.05] = 0.75
    x[:, w // 2: w // 2 + 8] = 0.25
    x += 0.02 * np.sign(np.sin(40 * xx * yy))  # some fine texture
    if channels:
        x = np.stack([x * (0.8 + 0.2 * c) + 0.05 * rng.random() for c in range(channels)], -1)
    return x.clip(0.2, 0.8)


@pytest.mark.parametrize("sigma", [2, 5, 15, 50])
@pytest.mark.parametrize("channels", [0, 3])
def test_weak_texture_sigma_known_level(sigma, channels, rng):
    x = scene(channels=channels)
    y = x + sigma / 255 * rng.standard_normal(x.shape)
    assert weak_texture_sigma(y) * 255 == pytest.approx(sigma, rel=0.05)


def test_weak_texture_sigma_clipped_8bit(rng):
    """Clipping to [0,1] shrinks the noise near the ends; those patches are left out."""
    x = np.clip(scene() * 1.6 - 0.3, 0, 1)  # reaches 0 and 1
    y = np.round(np.clip(x + 40 / 255 * rng.standard_normal(x.shape), 0, 1) * 255) / 255
    assert weak_texture_sigma(y) * 255 == pytest.approx(40, rel=0.05)
    assert weak_texture_sigma(y, clipped=False) * 255 < 38  # the bias it removes


def test_estimate_sigma_frames_and_floor(rng):
    x = scene(channels=3)
    frames = np.stack([x + 0.04 * rng.standard_normal(x.shape) for _ in range(3)])
    assert estimate_sigma(frames) == pytest.approx(0.04, rel=0.05)
    assert estimate_sigma(x) >= 0.002  # a clean image: the prior's smallest σ, not 0


@pytest.mark.parametrize("shape", [(37, 31), (37, 31, 3)])
def test_pixel_shuffle_round_trip(shape, rng):
    img = rng.random(shape)
    parts = pixel_shuffle(img, 2)
    assert len(parts) == 4 and parts[0].shape[:2] == (19, 16) and parts[3].shape[:2] == (18, 15)
    assert np.array_equal(pixel_unshuffle(parts, 2, img.shape), img)


def test_pd_denoise_calls_each_sub_image_at_its_sigma(rng):
    """Sub-images of a colour image with white noise of std 0.05 are each estimated near 0.05; the
    second pass runs at refine × their mean."""
    x = scene(channels=3)
    y = (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)
    calls = []

    def fake(img, s):
        calls.append((img.shape, s))
        return img

    out, rep = pd_denoise(fake, y, stride=2, refine=0.5)
    assert np.array_equal(out, y)
    assert [c[0] for c in calls[:4]] == [p.shape for p in pixel_shuffle(y, 2)] and calls[4][0] == y.shape
    assert np.allclose(rep["sigmas"], 0.05, rtol=0.1)
    assert rep["sigma_refine"] == pytest.approx(0.5 * np.mean(rep["sigmas"]))


# ---------------------------------------------------------------- CLI defaults


def _json(r):
    return json.loads(r.stdout)


def test_denoise_without_sigma_is_blind(tiny_model, tmp_path, rng):
    y = (scene() + 0.06 * rng.standard_normal((160, 150))).astype(np.float32)
    np.save(tmp_path / "a.npy", y)
    for extra in ([], ["--sigma", "auto"]):
        out = tmp_path / f"o{len(extra)}.npy"
        r = runner.invoke(app, ["denoise", str(tmp_path / "a.npy"), "-o", str(out), "--weights", str(tiny_model(1)),
                                "--json", *extra])
        assert r.exit_code == 0, r.output
        row = _json(r)["results"][0]
        assert row["estimated"] and row["noise"] == "gaussian" and row["sigma"] == pytest.approx(0.06, rel=0.05)
        assert "estimated gaussian noise" in r.stderr and out.exists()


def test_8bit_colour_photo_defaults_to_real_noise_unless_the_noise_is_white(tiny_model, tmp_path, rng):
    """Low-passed noise (like JPEG'd camera noise): the real-noise mode; white noise: the blind Gaussian path
    (the real-noise mode would smooth it at 3× its σ); --real-noise / --no-real-noise force either."""
    from scipy.ndimage import gaussian_filter

    x = scene(channels=3)
    n = gaussian_filter(rng.standard_normal(x.shape), (1.5, 1.5, 0))
    for name, noise in (("c", n / n.std()), ("w", rng.standard_normal(x.shape))):
        Image.fromarray(np.round(np.clip(x + 0.03 * noise, 0, 1) * 255).astype(np.uint8)).save(tmp_path / f"{name}.png")

    def run(name, *extra):
        r = runner.invoke(app, ["denoise", str(tmp_path / f"{name}.png"), "-o", str(tmp_path / f"o{name}{''.join(extra)}.png"),
                                "--weights", str(tiny_model(3)), "--json", *extra])
        assert r.exit_code == 0, r.output
        return _json(r)["results"][0], r.stderr

    row, err = run("c")
    assert row["method"].startswith("pixel-shuffle") and len(row["camera"]["sigmas_input_units"]) == 4
    assert "real-noise mode" in err
    row, err = run("w")
    assert row["method"] == "prior D(y, sigma)" and row["white_noise"] == pytest.approx(0.03 * 255, rel=0.1)
    assert "white noise of 2 grey levels" in err
    assert run("w", "--real-noise")[0]["method"].startswith("pixel-shuffle")
    row, err = run("w", "--no-real-noise")
    assert row["method"] == "prior D(y, sigma)" and row["estimated"] and row["sigma"] == pytest.approx(0.03 * 255, rel=0.1)
    assert "white_noise" not in row and "white noise of 2" not in err


def test_noise_level_of_an_image_too_small_for_it_is_refused(rng, tiny_model, tmp_path):
    """16² gives 100 patches of 7×7 (392 needed): refused, where it used to give σ̂ at its floor, so that
    denoising did nothing. 30² is read at every pixel; its 15² sub-images are too small for sigma_pd, which
    `scoretool noise` reports as n/a."""
    with pytest.raises(ScoretoolError, match="too small to estimate its noise level"):
        estimate_sigma(0.5 + 0.05 * rng.standard_normal((16, 16)))
    y = (0.5 + 0.05 * rng.standard_normal((30, 30))).astype(np.float32)
    assert estimate_sigma(y) == pytest.approx(0.05, rel=0.15)
    d = describe_noise(y)
    assert d["sigma_pd"] is None and d["pd_ratio"] is None and d["correlated"] is None
    np.save(tmp_path / "y.npy", y)
    r = runner.invoke(app, ["noise", str(tmp_path / "y.npy"), "--weights", str(tiny_model(1))])
    assert r.exit_code == 0 and "sigma_pd=n/a" in r.stdout, r.output
    np.save(tmp_path / "t.npy", y[:16, :16])
    r = runner.invoke(app, ["denoise", str(tmp_path / "t.npy"), "-o", str(tmp_path / "o.npy"), "--weights", str(tiny_model(1))])
    assert r.exit_code == 2 and "too small" in r.stderr and not (tmp_path / "o.npy").exists()
    r = runner.invoke(app, ["denoise", str(tmp_path / "y.npy"), "-o", str(tmp_path / "p.npy"), "--weights", str(tiny_model(1)),
                            "--real-noise"])  # 30²: its 15² sub-images are too small
    assert r.exit_code == 2 and "sub-images (15×15)" in r.stderr and not (tmp_path / "p.npy").exists()


def test_grey_saved_as_rgb_is_denoised_as_grey(rng):
    """Three equal channels: the grey prior, and grey comes back (the colour prior tinted it and lost 1.7 dB)."""
    from scoretool.api import denoise_image

    y = np.round(np.clip(scene(48, 48) + 0.05 * rng.standard_normal((48, 48)), 0, 1) * 255) / 255
    out, report = denoise_image(np.repeat(y[..., None], 3, -1), eight_bit=True)
    grey, grey_report = denoise_image(y[..., None], eight_bit=True)
    assert report["grey_in_colour"] and report["weights"] == grey_report["weights"] == "prior-gray"
    np.testing.assert_array_equal(out, np.repeat(grey, 3, -1))


def test_white_noise_sigma(rng):
    """σ̂ where the finest scale shows noise of 2 grey levels or more; None for fainter noise, and for noise
    low-passed like JPEG'd camera noise (a Gaussian blur of std 1.5 pixels, 7.65 grey levels in all)."""
    from scipy.ndimage import gaussian_filter

    from scoretool.blind import white_noise_sigma

    x = scene(channels=3)
    assert white_noise_sigma(x + 0.03 * rng.standard_normal(x.shape)) == pytest.approx(0.03, rel=0.1)
    assert white_noise_sigma(x + 0.004 * rng.standard_normal(x.shape)) is None
    n = gaussian_filter(rng.standard_normal(x.shape), (1.5, 1.5, 0))
    assert white_noise_sigma(x + 0.03 * n / n.std()) is None


@pytest.mark.parametrize("args,msg", [(["--sigma", "abc"], "auto"), (["--real-noise", "--sigma", "5"], "--real-noise"),
                                      (["--sigma", "auto", "--noise", "poisson"], "auto")])
def test_blind_bad_options(tiny_model, tmp_path, rng, args, msg):
    np.save(tmp_path / "a.npy", rng.random((37, 31)).astype(np.float32))
    r = runner.invoke(app, ["denoise", str(tmp_path / "a.npy"), "-o", str(tmp_path / "o.npy"), "--weights",
                            str(tiny_model(1)), *args])
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output


def test_describe_noise_sees_correlation(rng):
    """pd_ratio ≈ 1 for white noise; noise blurred over neighbours (correlated) gives a larger ratio."""
    from scipy.ndimage import uniform_filter

    from scoretool.blind import describe_noise

    x = scene(channels=3)
    white = describe_noise(x + 0.03 * rng.standard_normal(x.shape))
    assert white["pd_ratio"] == pytest.approx(1.0, abs=0.15) and not white["correlated"] and white["white"]
    n = uniform_filter(rng.standard_normal(x.shape), size=(2, 2, 1))
    corr = describe_noise(x + 0.03 * n / n.std())
    assert corr["pd_ratio"] > 1.3 and corr["correlated"] and corr["white"]  # strong enough to show at the finest scale too


def poisson_gaussian(x, a, b, rng):
    """y with Var[y | x] = a·x + b (a = 0: Gaussian)."""
    return (a * rng.poisson(x / a) if a else x) + np.sqrt(b) * rng.standard_normal(np.shape(x))


@pytest.mark.parametrize("x0", [0.02, 0.1, 0.5])
def test_inverse_anscombe_is_unbiased_where_the_algebraic_inverse_is_not(x0, rng):
    a, b = 0.04, 1e-4  # 0.5 to 12.5 photons: the low-count regime
    d = anscombe(poisson_gaussian(np.full(400_000, x0), a, b, rng), a, b).mean()  # E[f(y) | x0]
    assert inverse_anscombe(d, a, b) == pytest.approx(x0, rel=0.01)
    if x0 < 0.2:
        assert abs(a * (d**2 / 4 - 0.375 - b / a**2) / x0 - 1) > 0.05  # the bias the exact inverse removes
    t = anscombe(poisson_gaussian(np.full(400_000, x0), a, b, rng), a, b)
    assert t.std() == pytest.approx(1, abs=0.05 if x0 > 0.05 else 0.25)  # stabilised


def test_pg_denoise_of_a_flat_image_with_its_mean_as_denoiser(rng):
    """A flat image's best denoiser in the stabilised domain is the mean, E[f(y)]: the unbiased inverse
    brings it back to x0 (the algebraic inverse would give 0.0168 here)."""
    a, b, x0 = 0.04, 1e-4, 0.025
    y = poisson_gaussian(np.full((300, 300), x0), a, b, rng)
    out, rep = pg_denoise(lambda t, s: np.full_like(t, t.mean()), y, a, b)
    assert out.mean() == pytest.approx(x0, rel=0.02) and rep["sigma_stabilised"] > 0


def pg_scene(a, b, seed=3, top=1.0):
    """Poisson–Gaussian noise (a, b) on a scene spanning top·[0.05, 0.95]: gradients, flat areas and edges."""
    yy, xx = np.mgrid[0:384, 0:384] / 384
    x = (0.05 + 0.9 * xx).clip(0, 1)
    x[100:200, 50:300] = 0.5
    x[250:300] = 0.05 + 0.9 * yy[250:300] ** 2
    return poisson_gaussian(top * x, a, b, np.random.default_rng(seed))


@pytest.mark.parametrize("a,b", [(0.01, 0.0004), (0.002, 0.0025), (0.04, 0.0001), (0.0, 0.0016)])
def test_estimate_poisson_gaussian_known_pair(a, b):
    """Known (a, b): within 10% where that part of the variance is at least a fifth of the total at
    mid-grey."""
    y = pg_scene(a, b)
    a_hat, b_hat = estimate_poisson_gaussian(y)
    total = a * 0.5 + b
    assert a * 0.5 < 0.2 * total or a_hat == pytest.approx(a, rel=0.1)
    assert b < 0.2 * total or b_hat == pytest.approx(b, rel=0.1)
    assert (a_hat * 0.5 + b_hat) == pytest.approx(total, rel=0.05)
    assert a or a_hat * 0.5 < 0.1 * b  # Gaussian noise is found to be Gaussian
    assert estimate_poisson_gaussian(np.stack([y, y], -1))[0] == pytest.approx(a_hat, rel=0.05)  # channels pooled


def region_denoiser(labels, tau2=0.0, means=None):
    """The posterior mean for a scene of regions (labels) whose pixels are their region's mean plus i.i.d.
    N(0, tau2) texture, under Gaussian noise of the std it is given: m + τ²/(τ² + s²)·(t − m), with m the
    region's mean (`means`, or the mean of t over the region: the posterior mean of a flat region)."""
    counts = np.bincount(labels.ravel())

    def denoise(t, s):
        m = means[labels] if means is not None else (np.bincount(labels.ravel(), t.ravel()) / counts)[labels]
        return m + tau2 / (tau2 + s * s) * (t - m)
    return denoise


def test_prior_variance_fit_reads_the_variance_line_of_a_posterior_mean_denoiser(monkeypatch):
    """With the posterior mean as denoiser the residual identity E[(y − x̂)²] = v·(1 − J) is exact. Flat
    stripes at 16 intensities under Poisson–Gaussian noise, denoised by their stabilised mean, from a
    start 30% off in a and 2× in b: (a, b) within a few percent. I.i.d. Gaussian texture under Gaussian
    noise, shrunk by its posterior mean (J ≈ ½), every pixel kept (the smoother half of pure i.i.d. texture
    is where the noise happens to be weaker): b within 5% (the residual alone, without 1 − J, would give
    b/2); from a start 1.5× too high the fit moves towards b, not past it (0.72·b without 1 − J)."""
    labels = np.repeat(np.arange(16), 32)[None, :].repeat(512, 0)
    levels = np.linspace(0.02, 0.9, 16)
    a, b = 0.01, 0.0004
    y = poisson_gaussian(levels[labels], a, b, np.random.default_rng(0))
    a_hat, b_hat = prior_variance_fit(region_denoiser(labels), y, 1.3 * a, 2 * b)
    assert a_hat == pytest.approx(a, rel=0.05) and b_hat == pytest.approx(b, rel=0.1)
    import scoretool.blind as blind

    monkeypatch.setattr(blind, "PRIOR_FIT_KEEP", 1.0)
    rng = np.random.default_rng(1)
    tau2, b = 0.03**2, 0.03**2
    x = levels[labels] + np.sqrt(tau2) * rng.standard_normal(labels.shape)
    y = x + np.sqrt(b) * rng.standard_normal(labels.shape)
    shrink = region_denoiser(labels, tau2, levels)
    assert prior_variance_fit(shrink, y, 0.0, b)[1] == pytest.approx(b, rel=0.05)
    assert b < prior_variance_fit(shrink, y, 0.0, 1.5 * b)[1] < 1.45 * b  # towards b, not past it


def test_estimate_poisson_gaussian_refines_with_a_denoiser_unless_the_count_lattice_answers():
    """The prior's fit runs where the lattice is hidden, and is not asked where the lattice gives (a, b)."""
    calls = []

    def counting(t, s):
        calls.append(s)
        return t

    estimate_poisson_gaussian(pg_scene(0.04, 0.0001), denoise=counting)
    assert calls == []
    estimate_poisson_gaussian(pg_scene(0.01, 0.0004), denoise=counting)
    assert len(calls) == 2  # x̂(y) and x̂(y + εp)


def test_patch_budget_widens_the_stride_and_keeps_the_estimates(monkeypatch):
    """Under a small patch budget the weak-texture estimates read the image at a wider stride, stay
    within the budget, and still find the noise (σ within 5%, (a, b) total variance within 10%)."""
    import scoretool.blind as blind

    y = pg_scene(0.0, 0.0004)
    assert patch_stride([y[..., None].shape], minimum=2) == 2  # the default budget: every 2nd pixel here
    monkeypatch.setattr(blind, "PATCH_BUDGET", 20000)
    stride = patch_stride([y[..., None].shape], minimum=2)
    assert stride > 2 and blind._patch_count([y[..., None].shape], 7, stride) <= 20000
    assert weak_texture_sigma(y) == pytest.approx(0.02, rel=0.05)
    a_hat, b_hat = estimate_poisson_gaussian(pg_scene(0.01, 0.0004))
    assert a_hat * 0.5 + b_hat == pytest.approx(0.0054, rel=0.1)


def test_count_lattice_reads_the_minor_term_that_a_variance_fit_cannot():
    """a = 0.04, b = 10⁻⁴: b is 0.5% of the variance at mid-grey, out of a variance fit's reach; the count
    lattice gives both within a few percent, from float data and from clipped 8-bit data. At a = 3.3 grey
    levels, b = (a/4)², the quantisation damping is 13% of b: taken out, b stays within 5%."""
    y = pg_scene(0.04, 0.0001)
    a_hat, b_hat = estimate_poisson_gaussian(y)
    assert a_hat == pytest.approx(0.04, rel=0.01) and b_hat == pytest.approx(0.0001, rel=0.05)
    y8 = np.round(np.clip(y, 0, 1) * 255) / 255
    a8, b8 = count_lattice(y8, 0.8 * 0.04, 0.0001)  # from a rough variance fit
    assert a8 == pytest.approx(0.04, rel=0.01) and b8 == pytest.approx(0.0001, rel=0.05)
    a, b = 3.3 / 255, (3.3 / 255 / 4) ** 2
    fine = count_lattice(np.round(np.clip(pg_scene(a, b), 0, 1) * 255) / 255, a, b)
    assert fine[0] == pytest.approx(a, rel=0.01) and fine[1] == pytest.approx(b, rel=0.05)


def test_count_lattice_refuses_what_is_not_a_count_lattice(rng):
    """None where read noise hides the lattice (√b = 2a), for Gaussian noise even when the variance fit
    reports a spurious a, and for the gaps of stretched 8-bit histograms: values on every third grey level,
    and an 8-bit image stretched ×2.5 (gaps 2.5 levels apart, given the stretched pair as a variance fit
    would)."""
    assert count_lattice(pg_scene(0.01, 0.0004), 0.01, 0.0004) is None
    assert count_lattice(pg_scene(0.0, 0.0004), 0.01, 0.0004) is None
    thirds = np.clip(np.round((0.5 + 0.02 * rng.standard_normal((256, 256))) * 85) * 3 / 255, 0, 1)
    assert count_lattice(thirds, 3 / 255, 0.0) is None
    dark = np.round(np.clip(pg_scene(0.004, 0.0001, top=0.4), 0, 1) * 255) / 255
    stretched = np.round(np.clip(dark * 2.5, 0, 1) * 255) / 255
    assert count_lattice(stretched, 0.004 * 2.5, 0.0001 * 2.5**2) is None


def test_cli_poisson_gaussian_estimates_reports_and_refuses(tmp_path, random_model):
    yy, xx = np.mgrid[0:256, 0:256] / 256
    x = 0.05 + 0.9 * xx
    np.save(tmp_path / "raw.npy", poisson_gaussian(x, 0.01, 0.0004, np.random.default_rng(1)).astype(np.float32))
    model = str(random_model(1))
    res = runner.invoke(app, ["denoise", str(tmp_path / "raw.npy"), "-o", str(tmp_path / "est.npy"), "--noise",
                              "poisson-gaussian", "-w", model, "--json"])
    assert res.exit_code == 0, res.output
    pg = json.loads(res.stdout)["results"][0]["poisson_gaussian"]
    assert pg["estimated"] and pg["a"] == pytest.approx(0.01, rel=0.1) and np.load(tmp_path / "est.npy").shape == (256, 256)
    res = runner.invoke(app, ["denoise", str(tmp_path / "raw.npy"), "-o", str(tmp_path / "given.npy"), "--a", "0.02",
                              "--b", "0.001", "-w", model, "--json"])  # --a/--b name the family
    row = json.loads(res.stdout)["results"][0]
    assert res.exit_code == 0 and row["noise"] == "poisson-gaussian" and row["parameter"] == [0.02, 0.001]
    for bad, msg in ((["--a", "0.01"], "give both --a and --b"), (["--a", "0.01", "--b", "0", "--sigma", "5"], "not --sigma"),
                     (["--a", "0.01", "--b", "0", "--noise", "poisson"], "poisson-gaussian parameters"),
                     (["--a", "-0.01", "--b", "0.001"], "both must be ≥ 0"), (["--a", "nan", "--b", "0.001"], "finite number")):
        res = runner.invoke(app, ["denoise", str(tmp_path / "raw.npy"), "-o", str(tmp_path / "bad.npy"), *bad, "-w", model])
        assert res.exit_code == 2 and msg in res.output and res.output.count("\n") == 1 and not (tmp_path / "bad.npy").exists()
    res = runner.invoke(app, ["noise", str(tmp_path / "raw.npy"), "--json"])
    assert json.loads(res.stdout)["results"][0]["poisson_gaussian"]["a"] == pytest.approx(0.01, rel=0.1)


def test_camera_denoise_light_pass_uses_the_fast_sibling(tiny_model, rng):
    """The grid-removing second pass runs prior-rgb-fast after the default prior-rgb, and the given model
    itself for any other weights."""
    from scoretool.api import camera_denoise

    y = np.clip(scene(channels=3)[:48, :40] + 0.02 * rng.standard_normal((48, 40, 3)), 0, 1).astype(np.float32)
    _, report = camera_denoise(y, device="cpu")
    assert (report["weights"], report["refine_weights"]) == ("prior-rgb", "prior-rgb-fast")
    _, report = camera_denoise(y, weights=str(tiny_model(3)), device="cpu")
    assert report["refine_weights"] == report["weights"]
