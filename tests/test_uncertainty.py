"""Posterior uncertainty: known answers from a Gaussian prior (linear MMSE denoiser), tiling, CLI."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from scoretool.cli import app
from scoretool.uncertainty import jacobian_vector_product, posterior_variance, principal_components, std_map_image

SIGMA = 0.1
SIDE = 8


def smooth_covariance(side: int = SIDE, lengths=(1.6, 1.0), tau: float = 0.03, nugget: float = 1e-4) -> np.ndarray:
    """Anisotropic squared-exponential covariance on a side×side grid with a varying amplitude, plus a
    small diagonal: smooth, non-diagonal, and without symmetries (distinct eigenvalues)."""
    r, c = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    r, c = r.ravel().astype(float), c.ravel().astype(float)
    d2 = ((r[:, None] - r[None]) / lengths[0]) ** 2 + ((c[:, None] - c[None]) / lengths[1]) ** 2
    amp = 1 + 0.5 * r / side + 0.3 * (c / side) ** 2
    return tau**2 * amp[:, None] * np.exp(-d2 / 2) * amp[None] + nugget * np.eye(side * side)


def linear_denoiser(mu: np.ndarray, matrix: np.ndarray):
    """D(y) = μ + M (y − μ) on (B, 1, side, side) tensors; M = C(C + σ²I)⁻¹ is the Gaussian MMSE one."""
    m = torch.from_numpy(matrix)
    mu_t = torch.from_numpy(mu.ravel())
    side = int(round(np.sqrt(matrix.shape[0])))

    def d(x, sigma):
        flat = x.reshape(x.shape[0], -1).double() - mu_t
        return (mu_t + flat @ m.T).float().reshape(x.shape[0], 1, side, side)

    return d


@pytest.fixture
def gaussian_case(rng):
    cov = smooth_covariance()
    n = cov.shape[0]
    mu = 0.5 + 0.05 * rng.standard_normal(n)
    gain = cov @ np.linalg.inv(cov + SIGMA**2 * np.eye(n))
    post = SIGMA**2 * gain  # closed-form posterior covariance σ²·C(C+σ²I)⁻¹
    x = rng.multivariate_normal(mu, cov)
    y = torch.from_numpy(x + SIGMA * rng.standard_normal(n)).float().reshape(1, 1, SIDE, SIDE)
    return linear_denoiser(mu, gain), y, post, gain


@pytest.mark.parametrize("method", ["fd", "forward", "jvp"])
def test_exact_variance_with_basis_probes(gaussian_case, method):
    """stride = image side and stride² probes: the probes are (signed) basis vectors → exact diagonal."""
    denoiser, y, post, _ = gaussian_case
    res = posterior_variance(denoiser, y, SIGMA, probes=SIDE * SIDE, stride=SIDE, method=method)
    got = res.variance.numpy().ravel()
    want = np.diag(post)
    assert np.max(np.abs(got - want) / want) <= 1e-2
    assert res.negative == 0
    expected_mean = denoiser(y, SIGMA).numpy()
    np.testing.assert_allclose(res.mean.numpy(), expected_mean, atol=1e-5)


def test_hutchinson_converges_to_closed_form(gaussian_case):
    """Plain Rademacher probes: per-pixel error shrinks like √(Σ_{j≠i} J_ij² / P)."""
    denoiser, y, post, gain = gaussian_case
    probes = 4096
    res = posterior_variance(denoiser, y, SIGMA, probes=probes, stride=1, method="forward", seed=3, probe_batch=1024)
    got = res.variance.numpy().ravel()
    want = np.diag(post)
    off = gain - np.diag(np.diag(gain))
    expected_err = SIGMA**2 * np.sqrt((off**2).sum(1) / probes)
    assert np.all(np.abs(got - want) <= 5 * expected_err)
    assert abs(got.sum() / want.sum() - 1) <= 1e-2  # the trace, averaged over 64 pixels
    few = posterior_variance(denoiser, y, SIGMA, probes=4, stride=1, seed=3).variance.numpy().ravel()
    assert np.abs(few - want).mean() > 3 * np.abs(got - want).mean()


def _compare_components(comp, eigvals, eigvecs, k):
    got_vals = comp.eigenvalues.numpy()
    assert np.max(np.abs(got_vals - eigvals[:k]) / eigvals[:k]) <= 1e-2, (got_vals, eigvals[:k])
    vecs = comp.vectors.reshape(k, -1).numpy()
    cos = np.abs((vecs * eigvecs[:, :k].T).sum(1)) / np.linalg.norm(vecs, axis=1)
    assert np.all(cos >= 0.99), cos


@pytest.mark.parametrize("method", ["forward", "fd", "jvp"])
def test_principal_components_whole_image(gaussian_case, method):
    denoiser, y, post, _ = gaussian_case
    w, v = np.linalg.eigh(post)
    order = np.argsort(w)[::-1]
    w, v = w[order], v[:, order]
    k = 3
    comp = principal_components(denoiser, y, SIGMA, k=k, iterations=300, tol=1e-4, method=method)
    _compare_components(comp, w, v, k)
    assert comp.iterations < 300 and np.all(comp.residuals.numpy() <= 1e-4)
    np.testing.assert_allclose(comp.mean.numpy(), denoiser(y, SIGMA).numpy(), atol=1e-5)


def test_principal_components_of_region_are_marginal_covariance(gaussian_case):
    """A region's components = eigenvectors of the posterior covariance restricted to its pixels."""
    denoiser, y, post, _ = gaussian_case
    x0, y0, rw, rh = 2, 1, 5, 4
    idx = np.array([r * SIDE + c for r in range(y0, y0 + rh) for c in range(x0, x0 + rw)])
    sub = post[np.ix_(idx, idx)]
    w, v = np.linalg.eigh(sub)
    order = np.argsort(w)[::-1]
    comp = principal_components(denoiser, y, SIGMA, k=2, region=(x0, y0, rw, rh), margin=SIDE,
                                iterations=300, tol=1e-4)
    assert comp.vectors.shape == (2, 1, rh, rw)
    _compare_components(comp, w[order], v[:, order], 2)


def test_symmetric_option_uses_symmetric_part():
    """A non-symmetric linear J = S + A (A antisymmetric): symmetric=True finds the eigenpairs of S."""
    g = np.random.default_rng(1)
    q, _ = np.linalg.qr(g.standard_normal((36, 36)))
    s = q @ np.diag(np.linspace(1.0, 0.01, 36)) @ q.T
    a = 0.3 * g.standard_normal((36, 36))
    a = a - a.T
    denoiser = linear_denoiser(np.zeros(36), s + a)
    y = torch.zeros(1, 1, 6, 6)
    comp = principal_components(denoiser, y, SIGMA, k=2, iterations=300, tol=1e-6, symmetric=True, method="jvp")
    w, v = np.linalg.eigh(s)
    _compare_components(comp, SIGMA**2 * w[::-1], v[:, ::-1], 2)


def conv_denoiser(kernel: torch.Tensor):
    """D(y) = k * y (zero padding): J's diagonal is the kernel's centre weight at every pixel."""

    def d(x, sigma):
        return torch.nn.functional.conv2d(x, kernel[None, None], padding=kernel.shape[-1] // 2)

    return d


def test_tiled_variance_exact_for_local_jacobian():
    """37×31 image in 16-pixel tiles; a 3×3 kernel is seen exactly by lattice probes of stride 3."""
    kernel = torch.tensor([[0.05, 0.1, 0.02], [0.1, 0.4, 0.12], [0.03, 0.1, 0.08]])
    y = torch.rand(1, 1, 37, 31, generator=torch.Generator().manual_seed(0))
    res = posterior_variance(conv_denoiser(kernel), y, SIGMA, probes=9, stride=3, tile=16, overlap=8)
    assert res.variance.shape == (1, 1, 37, 31)
    np.testing.assert_allclose(res.variance.numpy(), SIGMA**2 * 0.4, rtol=1e-3)
    np.testing.assert_allclose(res.mean.numpy(), conv_denoiser(kernel)(y, SIGMA).numpy(), atol=1e-5)
    # reproducible with a seed, different with another seed (plain Hutchinson is random)
    a = posterior_variance(conv_denoiser(kernel), y, SIGMA, probes=2, tile=16, overlap=8, seed=5).variance
    b = posterior_variance(conv_denoiser(kernel), y, SIGMA, probes=2, tile=16, overlap=8, seed=5).variance
    c = posterior_variance(conv_denoiser(kernel), y, SIGMA, probes=2, tile=16, overlap=8, seed=6).variance
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_negative_estimates_are_clamped_and_counted():
    kernel = torch.tensor([[0.0, 0.0, 0.0], [0.0, -0.5, 0.0], [0.0, 0.0, 0.0]])
    y = torch.rand(1, 1, 9, 11)
    res = posterior_variance(conv_denoiser(kernel), y, SIGMA, probes=2)
    assert res.negative == 9 * 11
    assert torch.all(res.variance == 0)


def test_jvp_methods_agree_on_a_network(tiny_model):
    from scoretool.weights import load_model

    net, _ = load_model(str(tiny_model(1)), 1)
    y = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    v = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    _, exact = jacobian_vector_product(net, y, 0.1, v, "jvp")
    _, fd = jacobian_vector_product(net, y, 0.1, v, "fd")
    assert float((fd - exact).norm() / exact.norm()) < 1e-3
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast around the call is switched off inside
        _, inside = jacobian_vector_product(net, y, 0.1, v, "jvp")
    assert inside.dtype == torch.float32 and float((inside - exact).norm() / exact.norm()) < 1e-5


def test_std_map_picture():
    """The map is drawn pixel for pixel in viridis from 0 to the 99.5th percentile (clipped above), with the
    colour bar beside it."""
    from matplotlib import colormaps

    std = np.linspace(0, 2, 50 * 40).reshape(50, 40)
    pic = std_map_image(std)
    assert pic.shape[0] == 50 and pic.shape[1] > 40 and pic.shape[2] == 3
    viridis = colormaps["viridis"]
    np.testing.assert_allclose(pic[0, 0], viridis(0.0)[:3], atol=2 / 255)
    np.testing.assert_allclose(pic[-1, 39], viridis(1.0)[:3], atol=2 / 255)
    np.testing.assert_allclose(pic[25, 20], viridis(std[25, 20] / np.percentile(std, 99.5))[:3], atol=0.03)
    assert (pic[:, 40:] < 0.1).all(axis=-1).any()  # the bar's dark labels


def test_cli_writes_maps_components_and_json(tmp_path, tiny_model, rng):
    src = tmp_path / "in"
    src.mkdir()
    img = (rng.random((31, 37)) * 255).astype(np.uint8)
    iio.imwrite(src / "a.png", img)
    (src / "bad.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["uncertainty", str(src / "a.png"), "-o", str(out), "--sigma", "25",
                                 "--weights", str(tiny_model(1)), "--probes", "2", "--components", "2",
                                 "--region", "4,3,10,8", "--iterations", "5", "--smooth", "1", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    row = payload["results"][0]
    assert row["status"] == "ok" and len(row["components"]) == 2
    assert row["components"][0]["eigenvalue"] >= row["components"][1]["eigenvalue"]
    std = tifffile.imread(out / "a_std.tif")
    assert std.dtype == np.float32 and std.shape == (31, 37) and np.all(std >= 0)
    for name in ("a_std.png", "a_mean.png", "a_pc1_minus.png", "a_pc1_plus.png", "a_pc2_plus.png"):
        assert (out / name).exists(), name
    assert iio.imread(out / "a_pc1_plus.png").shape[:2] == (8, 10)
    # a folder with one broken file: the good one is done, the bad one named, exit 1
    r = CliRunner().invoke(app, ["uncertainty", str(src), "-o", str(tmp_path / "out2"), "--sigma", "25",
                                 "--weights", str(tiny_model(1)), "--probes", "1"])
    assert r.exit_code == 1
    assert "bad.png" in r.output and "Traceback" not in r.output
    assert (tmp_path / "out2" / "a_std.tif").exists()


@pytest.mark.parametrize("args", [["--sigma", "0"], ["--sigma", "25", "--region", "30,0,10,10"],
                                  ["--sigma", "25", "--region", "1,2,3"], ["--sigma", "25", "--probes", "0"]])
def test_cli_usage_errors(tmp_path, tiny_model, rng, args):
    iio.imwrite(tmp_path / "a.png", (rng.random((31, 37)) * 255).astype(np.uint8))
    r = CliRunner().invoke(app, ["uncertainty", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"),
                                 "--weights", str(tiny_model(1)), "--components", "1", *args])
    assert r.exit_code == 2, r.output
    assert "Error" in r.output and "Traceback" not in r.output


def test_cli_missing_input(tmp_path):
    r = CliRunner().invoke(app, ["uncertainty", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o"), "--sigma", "5"])
    assert r.exit_code == 2 and "nope.png" in r.output


def test_smooth_variance_keeps_constants_and_reduces_noise():
    from scoretool.uncertainty import smooth_variance

    const = torch.full((1, 1, 23, 19), 0.3)
    torch.testing.assert_close(smooth_variance(const, 1.5), const)
    noise = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    sm = smooth_variance(noise, 2.0)
    # white noise through a normalised Gaussian of std s: variance × 1/(4π s²) ≈ 0.02
    assert 0.01 < float(sm[..., 8:-8, 8:-8].var()) < 0.04


def test_cli_colour_image_and_symmetric(tmp_path, tiny_model, rng):
    iio.imwrite(tmp_path / "c.png", (rng.random((20, 27, 3)) * 255).astype(np.uint8))
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["uncertainty", str(tmp_path / "c.png"), "-o", str(out), "--sigma", "10",
                                 "--weights", str(tiny_model(3)), "--probes", "1", "--components", "1",
                                 "--iterations", "2", "--symmetric", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)["results"][0]
    assert row["region"] == [0, 0, 27, 20] and row["symmetric"] is True
    assert tifffile.imread(out / "c_std.tif").shape == (20, 27, 3)
    assert iio.imread(out / "c_pc1_plus.png").shape == (20, 27, 3)
    assert iio.imread(out / "c_mean.png").shape == (20, 27, 3)



@pytest.mark.parametrize("extra", [["--iterations", "3"], ["--margin", "3"], ["--symmetric"], ["--region", "0,0,8,8", "--components", "0"]])
def test_cli_component_options_without_components_are_refused(tmp_path, tiny_model, rng, extra):
    """No components are computed without --region or --components: their options did nothing; refused."""
    iio.imwrite(tmp_path / "g.png", (rng.random((20, 27)) * 255).astype(np.uint8))
    r = CliRunner().invoke(app, ["uncertainty", str(tmp_path / "g.png"), "-o", str(tmp_path / "o"), "--sigma", "10",
                                 "--weights", str(tiny_model(1)), *extra])
    assert r.exit_code == 2 and "none are computed" in r.stderr and not (tmp_path / "o").exists(), r.output
