"""OOD scoring (MSMA): features with a closed-form denoiser, densities, storage, metrics and the CLI."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from scoretool.cli import app
from scoretool.errors import ScoretoolError
from scoretool.io import read_image, write_image
from scoretool.nets import EDMPrecond, UNetConfig
from scoretool.ood import (
    FeatureSpec,
    OODModel,
    crop_positions,
    detection_metrics,
    features_from_norms,
    geometric_levels,
    histogram_image,
    min_images,
    norms_of_maps,
    score_maps,
    score_norm_features,
)
from scoretool.weights import save_model

MU, TAU = 0.4, 0.2


def gaussian_denoiser(x, sigma):
    """Exact MMSE denoiser for the prior x ~ N(μ, τ²) per pixel: D(y, σ) = μ + τ²/(τ²+σ²)·(y − μ)."""
    s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
    return MU + TAU**2 / (TAU**2 + s**2) * (x - MU)


def test_geometric_levels():
    s = geometric_levels(1.0, 0.01, 5)
    assert np.allclose(s, [1.0, 10**-0.5, 0.1, 10**-1.5, 0.01])
    with pytest.raises(ScoretoolError):
        geometric_levels(0.1, 1.0, 3)


@pytest.mark.parametrize("h,w,crop,count", [(37, 31, 16, 8), (321, 481, 64, 8), (180, 180, 64, 6), (20, 20, 64, 4)])
def test_crop_positions_cover_and_count(h, w, crop, count):
    pos = crop_positions(h, w, crop, count)
    assert len(pos) == count
    assert all(0 <= y <= max(h - crop, 0) and 0 <= x <= max(w - crop, 0) for y, x in pos)
    ys, xs = zip(*pos)
    assert min(ys) == 0 and max(ys) == max(h - crop, 0) or len(set(ys)) == 1
    assert max(xs) == max(w - crop, 0)


def test_patch_norms_of_score_maps_closed_form(rng):
    """(D(x,σ) − x)/σ = −σ/(τ²+σ²)·(x − μ): patch RMS norms are known exactly."""
    x = torch.from_numpy(rng.random((2, 37, 31), dtype=np.float32))
    spec = FeatureSpec(sigmas=[0.5, 0.05, 0.01], crop=16, patch=8, crops=4)
    norms = norms_of_maps(score_maps(gaussian_denoiser, x, spec, batch=5), spec.patch)
    assert norms.shape == (3, 4 * 4)
    for i, s in enumerate(spec.sigmas):
        expect = []
        for y, xx in crop_positions(37, 31, 16, 4):
            c = x[:, y:y + 16, xx:xx + 16] - MU
            for py in range(2):
                for px in range(2):
                    p = c[:, py * 8:(py + 1) * 8, px * 8:(px + 1) * 8]
                    expect.append(s / (TAU**2 + s**2) * p.pow(2).mean().sqrt())
        assert torch.allclose(norms[i], torch.stack(expect), rtol=1e-4)


def test_features_constant_image():
    """A constant image c has every patch norm σ|c−μ|/(τ²+σ²): each quantile equals it."""
    spec = FeatureSpec(sigmas=[0.3, 0.03], crop=16, patch=8, crops=2, quantiles=(0.1, 0.5, 0.9, 1.0), rms=False,
                       corr=False, parity=False, parity_mean=False)
    f = score_norm_features(gaussian_denoiser, torch.full((1, 20, 24), 0.9), spec)
    expect = np.repeat([np.log(s * 0.5 / (TAU**2 + s**2)) for s in spec.sigmas], len(spec.quantiles))
    assert f.shape == (spec.dim,) and np.allclose(f, expect, atol=1e-5)
    assert len(spec.names()) == spec.dim


@pytest.mark.parametrize("block,corr,parity", [(1, -15 / 16, 1 / 16), (2, 1 / 16, 15 / 16)])
def test_corr_parity_rms_known_answer(block, corr, parity):
    """Checkerboard of ±a in block×block cells around μ: the score map is the same pattern, so the lag-1
    autocorrelation and its even/odd asymmetry are known counts of equal and opposite neighbour pairs."""
    a = 0.1
    cells = (np.indices((16 // block, 16 // block)).sum(0) % 2) * 2 - 1
    img = MU + a * np.kron(cells, np.ones((block, block)))
    spec = FeatureSpec(sigmas=[0.1, 0.01], crop=16, patch=8, crops=1, quantiles=(), rms=True, corr=True, parity=True,
                       parity_mean=True)
    out = score_norm_features(gaussian_denoiser, torch.from_numpy(img[None].astype(np.float32)), spec)
    assert out.shape == (spec.dim,) == (7,)
    f = out[:6].reshape(2, 3)
    assert np.allclose(f[:, 0], [np.log(s * a / (TAU**2 + s**2)) for s in spec.sigmas], atol=1e-4)
    assert np.allclose(f[:, 1], corr, atol=1e-5) and np.allclose(f[:, 2], parity, atol=1e-5)
    assert np.isclose(out[6], np.log(parity + 1e-6), atol=1e-5)  # parity_mean: once per image
    assert spec.names()[:3] == ["s0.1_rms", "s0.1_corr", "s0.1_parity"] and spec.names()[-1] == "parity_mean"


def test_features_comparable_across_sizes(rng):
    """Fixed crop count and √N normalisation: white noise of different sizes gives nearly the same features."""
    spec = FeatureSpec(sigmas=[0.2, 0.02], crop=32, patch=16, crops=8, quantiles=(0.5, 0.9), rms=True, corr=True,
                       parity=True, parity_mean=True)
    assert spec.dim == 2 * 5 + 1
    a = score_norm_features(gaussian_denoiser, torch.from_numpy(rng.random((1, 64, 80), dtype=np.float32)), spec)
    b = score_norm_features(gaussian_denoiser, torch.from_numpy(rng.random((1, 300, 200), dtype=np.float32)), spec)
    assert np.abs(a - b)[:-1].max() < 0.1
    # parity_mean is the log of a near-zero sampling fluctuation for white noise: compare it unlogged
    assert abs(np.exp(a[-1]) - np.exp(b[-1])) < 0.01


def test_features_from_norms_quantiles():
    norms = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [10.0, 10.0, 10.0, 10.0, 10.0]])
    f = features_from_norms(norms, (0.5, 1.0))
    assert np.allclose(np.exp(f), [3.0, 5.0, 10.0, 10.0])


def synthetic(rng, n, shift=0.0, d=6):
    """Correlated Gaussian features; outliers shifted by `shift`·(e1 − e2) (Mahalanobis distance √2·shift)."""
    cov = np.eye(d) + 0.5
    mean = np.zeros(d)
    mean[:2] = shift, -shift
    return rng.multivariate_normal(mean, cov, size=n)


@pytest.mark.parametrize("method", ["gmm", "knn"])
def test_density_separates_and_calibrates(rng, method):
    spec = FeatureSpec(sigmas=[1.0, 0.1, 0.01], quantiles=(0.5, 1.0))
    train = synthetic(rng, 300)
    model = OODModel.fit(train, spec, method, prior={"name": "x", "channels": 1}, seed=0)
    s_in, s_out = model.score(synthetic(rng, 400)), model.score(synthetic(rng, 100, shift=4.0))
    m = detection_metrics(s_in, s_out)
    assert m["auroc"] > 0.97 and m["positive_class"] == "outliers"
    flagged = np.mean(s_in > model.threshold(95))
    assert 0.01 < flagged < 0.10, flagged  # held-out reference scores: close to the nominal 5%
    pct = model.percentile(s_out)
    assert np.median(pct) > 95 and pct.max() <= 100 and model.percentile(np.array([-1e9]))[0] == 0


def test_gmm_chooses_two_components(rng):
    spec = FeatureSpec(sigmas=[1.0, 0.1], quantiles=(0.5,))
    train = np.r_[rng.normal(-4, 0.5, (150, 2)), rng.normal(4, 0.5, (150, 2))]
    model = OODModel.fit(train, spec, "gmm")
    assert model.info["gmm_components"] >= 2
    # the gap between the clusters is unlikely under the mixture
    assert model.score(np.array([[0.0, 0.0]]))[0] > model.threshold(99)


def test_too_few_images(rng):
    spec = FeatureSpec(sigmas=[1.0, 0.1, 0.01], quantiles=(0.5, 1.0))
    with pytest.raises(ScoretoolError, match="too few"):
        OODModel.fit(synthetic(rng, min_images("gmm", 6) - 1), spec, "gmm")
    with pytest.raises(ScoretoolError, match="too few"):
        OODModel.fit(synthetic(rng, 5), spec, "knn")


def test_round_trip(rng, tmp_path):
    spec = FeatureSpec(sigmas=[1.0, 0.1, 0.01], quantiles=(0.5,), crop=48, patch=16, crops=6, corr=True)
    model = OODModel.fit(synthetic(rng, 120), spec, "gmm", prior={"name": "p", "channels": 3, "sha256": "ab"})
    path = tmp_path / "m.safetensors"
    model.save(path)
    back = OODModel.load(path)
    test = synthetic(rng, 20, 1.0)
    for method in ("gmm", "knn"):
        assert np.allclose(back.score(test, method), model.score(test, method))
        assert np.allclose(back.ref_scores[method], model.ref_scores[method])
    assert back.spec == model.spec and back.prior == model.prior and back.method == "gmm"
    assert path.read_bytes()[8:9] == b"{"  # safetensors header (JSON), no pickle
    with pytest.raises(ScoretoolError, match="feature"):
        back.score(np.zeros((1, 5)))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(ScoretoolError, match="bad.safetensors"):
        OODModel.load(bad)


def test_detection_metrics_known_answer():
    m = detection_metrics([0, 1, 2, 3], [1.5, 2.5, 3.5, 4.5])
    assert m["auroc"] == pytest.approx(13 / 16)
    perfect = detection_metrics([0, 1, 2], [5, 6, 7])
    assert perfect["auroc"] == 1 and perfect["aupr"] == 1 and perfect["fpr_at_95_tpr"] == 0
    # outliers all above inliers except one: TPR 0.95 needs interpolation between ROC points
    m = detection_metrics(np.arange(10.0), np.r_[np.arange(10.0, 19.0), 4.5])
    assert 0 < m["fpr_at_95_tpr"] <= 0.5


def test_histogram_image():
    """Two separated score sets and the threshold between them: bars of two colours, and a black vertical
    line between them."""
    img = histogram_image(np.zeros(10), np.ones(10), threshold=0.5, size=(300, 400))
    assert img.shape == (300, 400, 3) and img.dtype == np.uint8
    black_columns = np.flatnonzero((img.max(-1) < 40).sum(0) > 100)
    assert len(black_columns) > 0 and 150 < black_columns.mean() < 250  # the threshold, mid-plot
    colours = {tuple(c) for c in img[150, 40:380] if np.ptp(c) > 40}
    assert len(colours) >= 2


# ---------------------------------------------------------------------------------------------- CLI

runner = CliRunner()


def _folder(path, rng, n, channels=1, shape=(37, 31), smooth=False):
    path.mkdir()
    for i in range(n):
        img = rng.random(shape + ((channels,) if channels > 1 else ()))
        if smooth:
            img = np.full_like(img, 0.1 + 0.8 * i / max(n, 1))
        write_image(path / f"im{i:02d}.png", read_image_like(img))
    return path


def read_image_like(arr):
    from scoretool.io import Image

    return Image(pixels=arr.reshape((1,) + arr.shape[:2] + (-1,)).astype(np.float32), dtype=np.dtype(np.uint8),
                 grey_2d=arr.ndim == 2)


FIT = ["--levels", "2", "--crop", "16", "--patch", "8", "--crops", "2", "--device", "cpu"]


@pytest.fixture
def fitted(tmp_path, rng, tiny_model):
    train = _folder(tmp_path / "train", rng, 22)
    model = tmp_path / "ood.safetensors"
    res = runner.invoke(app, ["ood", "fit", str(train), "-o", str(model), "--weights", str(tiny_model(1)), "--json", *FIT])
    assert res.exit_code == 0, res.output
    return model, json.loads(res.stdout), train


def test_cli_fit_score_eval(fitted, tmp_path, rng):
    model, summary, train = fitted
    assert summary["images"] == 22 and summary["features"] == 2 * 1 + 1 and summary["channels"] == 1
    res = runner.invoke(app, ["ood", "score", str(train), "--model", str(model), "--json", "--csv", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["results"]
    assert len(rows) == 22 and {"score", "percentile", "flag", "seconds"} <= set(rows[0])
    assert (tmp_path / "s.csv").read_text().count("\n") == 23
    outl = _folder(tmp_path / "out", rng, 4, smooth=True)
    res = runner.invoke(app, ["ood", "eval", "--model", str(model), "--inliers", str(train), "--outliers", str(outl),
                              "--plot", str(tmp_path / "h.png"), "--json", "--method", "knn"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["metrics"]
    assert {"auroc", "aupr", "fpr_at_95_tpr", "inliers_flagged"} <= set(m) and m["positive_class"] == "outliers"
    assert read_image(tmp_path / "h.png").pixels.shape[1:3] == (360, 640)  # api.histogram_image's picture


def test_cli_score_takes_a_value_range_for_float_data(fitted, tmp_path):
    """Float data on another scale (0..1000) scored as if on [0,1] is flagged for its scale alone; --range maps it,
    as every command reading float files does."""
    model, _, train = fitted
    pixels = read_image(train / "im00.png").pixels[0, ..., 0]
    np.save(tmp_path / "unit.npy", pixels)
    np.save(tmp_path / "wide.npy", pixels * 1000)
    scores = {}
    for name, extra in (("unit", []), ("wide", ["--range", "0,1000"])):
        res = runner.invoke(app, ["ood", "score", str(tmp_path / f"{name}.npy"), "--model", str(model), "--json", *extra])
        assert res.exit_code == 0, res.output
        scores[name] = json.loads(res.stdout)["results"][0]["score"]
    assert scores["wide"] == pytest.approx(scores["unit"], rel=1e-4)


def test_cli_bad_inputs(fitted, tmp_path, rng, tiny_model):
    model, _, train = fitted
    colour = _folder(tmp_path / "colour", rng, 2, channels=3)
    res = runner.invoke(app, ["ood", "score", str(colour), "--model", str(model)])
    assert res.exit_code == 2 and "im00.png" in res.output and "1-channel" in res.output
    assert "Traceback" not in res.output
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.png").write_bytes((colour / "im00.png").read_bytes())
    (mixed / "b.png").write_bytes((train / "im00.png").read_bytes())
    res = runner.invoke(app, ["ood", "score", str(mixed), "--model", str(model)])
    assert res.exit_code == 1 and "a.png" in res.output
    # another prior with the same channel count
    torch.manual_seed(99)
    other = tmp_path / "other.safetensors"
    save_model(other, EDMPrecond(UNetConfig(channels=1, widths=[8, 16], blocks_per_level=1, embed_dim=16)),
               {"kind": "prior", "sigma_min": 0.002, "sigma_max": 10.0})
    res = runner.invoke(app, ["ood", "score", str(train), "--model", str(model), "--weights", str(other)])
    assert res.exit_code == 2 and "not the prior" in res.output
    # a model file that is not an OOD model, and an existing output
    res = runner.invoke(app, ["ood", "score", str(train), "--model", str(tiny_model(1))])
    assert res.exit_code == 2 and "not a scoretool OOD model" in res.output
    res = runner.invoke(app, ["ood", "fit", str(train), "-o", str(model), *FIT])
    assert res.exit_code == 2 and "exists" in res.output
    # one folder as both classes of an evaluation
    res = runner.invoke(app, ["ood", "eval", "--model", str(model), "--inliers", str(train), "--outliers", str(train)])
    assert res.exit_code == 2 and "share 22 image(s)" in res.output and "Traceback" not in res.output


def test_fit_refuses_too_few_images_before_the_network_runs(tmp_path, rng, tiny_model, monkeypatch):
    import scoretool.api.ood

    monkeypatch.setattr(scoretool.api.ood, "ood_features", lambda *a, **k: pytest.fail("features computed for too few images"))
    few = _folder(tmp_path / "few", rng, 3)
    res = runner.invoke(app, ["ood", "fit", str(few), "-o", str(tmp_path / "f.safetensors"), "--weights",
                              str(tiny_model(1)), *FIT])
    assert res.exit_code == 2 and "3 training images are too few" in res.output


def test_spec_of_an_older_model_file_keeps_its_recipe():
    """OOD files written before `parity_mean` existed have no such key: they keep per-level features only."""
    old = {"sigmas": [0.5, 0.05], "crop": 16, "patch": 8, "crops": 2, "quantiles": [], "rms": True, "corr": True,
           "parity": True}
    spec = FeatureSpec.from_dict(old)
    assert not spec.parity_mean and spec.dim == 2 * 3
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert FeatureSpec(sigmas=[0.5, 0.05]).dim == 2 * 1 + 1  # today's default: rms per level + parity_mean
