"""CLI tests of `scoretool noise` and `scoretool denoise --noise …` (tiny random models: plumbing, not quality)."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import scoretool.api as api
import scoretool.api.noise as noise_api
from scoretool.blind import SIGMA_FLOOR
from scoretool.cli import app
from scoretool.weights import load_model, save_model

runner = CliRunner()


@pytest.fixture
def n2s_model(tiny_model, tmp_path):
    """The tiny random-weight model re-labelled as a Noise2Score model (Poisson ζ = 0.01)."""
    net, info = load_model(str(tiny_model(1)))
    info = {k: v for k, v in info.items() if k not in ("name", "path")}
    info.update(kind="noise2score", noise={"family": "poisson", "zeta": 0.01})
    path = tmp_path / "n2s-tiny.safetensors"
    save_model(path, net, info)
    return path


@pytest.fixture
def images(tmp_path, rng):
    d = tmp_path / "in"
    d.mkdir()
    x = 0.2 + 0.6 * rng.random((37, 31))
    np.save(d / "a.npy", (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32))
    np.save(d / "b.npy", (0.01 * rng.poisson(x / 0.01)).astype(np.float32))
    return d


def _json(result):
    return json.loads(result.stdout)


def test_noise_command_json(n2s_model, images):
    r = runner.invoke(app, ["noise", str(images), "--weights", str(n2s_model), "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    out = _json(r)
    assert [row["status"] for row in out["results"]] == ["ok", "ok"]
    for row in out["results"]:
        assert row["family"] in ("gaussian", "poisson", "gamma")
        assert set(row["parameters"]) == {"sigma", "zeta", "k"}
    assert out["overall"]["images"] == 2 and out["overall"]["family"] in ("gaussian", "poisson", "gamma")


def test_noise_command_given_family_text(n2s_model, images):
    r = runner.invoke(app, ["noise", str(images / "b.npy"), "--weights", str(n2s_model), "--noise", "poisson"])
    assert r.exit_code == 0, r.output
    assert "b.npy\tpoisson\tzeta=" in r.stdout and "overall (1 images)\tpoisson" in r.stdout


def test_noise_command_with_a_clean_prior_reports_blind_gaussian(tiny_model, images, rng):
    """No Noise2Score model (the default, or a clean prior): a blind Gaussian σ and pd_ratio; the prior's
    check keeps the bundled prior's σ̂ here and may only lower it (to half at most) with an untrained one."""
    yy, xx = np.mgrid[0:64, 0:80] / 80
    np.save(images / "s.npy", (0.3 + 0.4 * xx * yy + 0.05 * rng.standard_normal(xx.shape)).astype(np.float32))
    for extra in ([], ["--weights", str(tiny_model(1))]):
        r = runner.invoke(app, ["noise", str(images / "s.npy"), "--json", *extra])
        assert r.exit_code == 0, r.output
        row = _json(r)["results"][0]
        assert row["family"] == "gaussian" and row["classical"] == pytest.approx(0.05, rel=0.15) and "pd_ratio" in row
        assert 0.5 * row["classical"] <= row["sigma"] <= row["classical"]
        if not extra:
            assert row["sigma"] == row["classical"]
    png = images / "s8.png"  # 8-bit: sigma, sigma_pd and classical all in input units (0–255)
    Image.fromarray(np.round(np.clip(np.load(images / "s.npy"), 0, 1) * 255).astype(np.uint8)).save(png)
    row = _json(runner.invoke(app, ["noise", str(png), "--json"]))["results"][0]
    assert row["classical"] == pytest.approx(0.05 * 255, rel=0.15) and row["sigma"] == row["classical"]
    r = runner.invoke(app, ["noise", str(images / "s.npy")])
    assert r.exit_code == 0 and "s.npy\tgaussian\tsigma=" in r.stdout and "pd_ratio=" in r.stdout
    r = runner.invoke(app, ["noise", str(images), "--noise", "poisson"])
    assert r.exit_code == 2 and "Noise2Score" in r.output and "Traceback" not in r.output


def test_noise_command_on_an_image_without_fine_scale_noise(images):
    """A noiseless piecewise-constant image (like JPEG'd camera noise in flat areas, where the weak-texture
    σ̂ is 0): the blind σ is the floor, so the prior's check has a σ to start from (it divided by 0)."""
    flat = np.full((64, 80), 0.4, np.float32)
    flat[16:48, 20:60] = 0.7
    np.save(images / "flat.npy", flat)
    r = runner.invoke(app, ["noise", str(images / "flat.npy"), "--json"])
    assert r.exit_code == 0, r.output
    row = _json(r)["results"][0]
    assert row["status"] == "ok" and row["classical"] == row["sigma_pd"] == pytest.approx(SIGMA_FLOOR)
    assert row["pd_ratio"] == pytest.approx(1.0) and not row["correlated"] and not row["white"]


def test_denoise_gaussian_prior_unchanged(tiny_model, images, tmp_path):
    out = tmp_path / "out.npy"
    r = runner.invoke(app, ["denoise", str(images / "a.npy"), "-o", str(out), "--sigma", "0.05", "--weights",
                            str(tiny_model(1)), "--precision", "fp32", "--json"])
    assert r.exit_code == 0, r.output
    y = np.load(images / "a.npy")
    ref = api.denoise(y, 0.05, weights=str(tiny_model(1)), precision="fp32")
    assert np.allclose(np.load(out), ref, atol=1e-6)
    assert _json(r)["results"][0]["method"] == "prior D(y, sigma)"


@pytest.mark.parametrize("family,opt", [("poisson", ["--zeta", "0.01"]), ("gamma", ["--k", "100"]),
                                        ("gaussian", ["--sigma", "0.05"])])
def test_denoise_noise2score_known_parameter(n2s_model, images, tmp_path, family, opt):
    out = tmp_path / "o"
    r = runner.invoke(app, ["denoise", str(images / "b.npy"), "-o", str(out), "--weights", str(n2s_model), "--noise", family,
                            *opt, "--json"])
    assert r.exit_code == 0, r.output
    row = _json(r)["results"][0]
    assert row["method"] == "noise2score tweedie" and row["noise"] == family and not row["estimated"]
    assert "guards" in row and row["guards"]["pixels"] == 37 * 31
    assert np.isfinite(np.load(out / "b.npy")).all()


def test_denoise_auto_reports_estimate(n2s_model, images, tmp_path, monkeypatch):
    fake = {"family": "gamma", "parameter_name": "k", "parameter": 80.0, "power": 2.1, "dispersion": 0.0125,
            "parameters": {"sigma": 0.1, "zeta": 0.02, "k": 80.0}, "family_given": False, "sigma_a": 0.002}
    monkeypatch.setattr(noise_api, "_estimate", lambda *a, **k: fake)  # the estimate tweedie_denoise uses
    r = runner.invoke(app, ["denoise", str(images / "b.npy"), "-o", str(tmp_path / "o"), "--weights", str(n2s_model),
                            "--noise", "auto", "--json"])
    assert r.exit_code == 0, r.output
    row = _json(r)["results"][0]
    assert row["estimated"] and row["noise"] == "gamma" and row["parameter"] == 80.0 and row["estimate"]["power"] == 2.1
    assert "estimated gamma noise, k = 80" in r.stderr


def test_denoise_missing_parameter_uses_model_family(n2s_model, images, tmp_path, monkeypatch):
    seen = {}

    def fake(model, y, family, *a, **k):
        seen["family"] = family
        return {"family": family, "parameter_name": "zeta", "parameter": 0.02, "power": 1.0, "dispersion": 0.02,
                "parameters": {"sigma": 0.1, "zeta": 0.02, "k": 80.0}, "family_given": True, "sigma_a": 0.002}

    monkeypatch.setattr(noise_api, "_estimate", fake)
    r = runner.invoke(app, ["denoise", str(images / "b.npy"), "-o", str(tmp_path / "o"), "--weights", str(n2s_model), "--json"])
    assert r.exit_code == 0, r.output
    assert seen["family"] == "poisson"  # from the model's metadata
    assert _json(r)["results"][0]["parameter"] == 0.02


def test_denoise_auto_with_prior_is_clear_error(tiny_model, images, tmp_path):
    r = runner.invoke(app, ["denoise", str(images / "a.npy"), "-o", str(tmp_path / "o"), "--weights", str(tiny_model(1)),
                            "--noise", "auto"])
    assert r.exit_code == 2
    assert "a.npy" in r.output and "Noise2Score" in r.output and "Traceback" not in r.output


def test_denoise_prior_poisson_gaussian_approximation(tiny_model, images, tmp_path):
    r = runner.invoke(app, ["denoise", str(images / "b.npy"), "-o", str(tmp_path / "o"), "--weights", str(tiny_model(1)),
                            "--zeta", "0.01", "--json"])
    assert r.exit_code == 0, r.output
    assert _json(r)["results"][0]["method"] == "prior gaussian approximation"
    assert np.isfinite(np.load(tmp_path / "o" / "b.npy")).all()


def test_negative_values_with_poisson(n2s_model, images, tmp_path):
    r = runner.invoke(app, ["denoise", str(images / "a.npy"), "-o", str(tmp_path / "o"), "--weights", str(n2s_model),
                            "--noise", "poisson", "--zeta", "0.01"])
    y = np.load(images / "a.npy")
    if (y < 0).any():
        assert r.exit_code == 2 and "a.npy" in r.output and "negative" in r.output
    neg = images / "neg.npy"
    np.save(neg, np.where(np.arange(y.size).reshape(y.shape) % 7 == 0, -0.02, y).astype(np.float32))
    r = runner.invoke(app, ["denoise", str(neg), "-o", str(tmp_path / "o2"), "--weights", str(n2s_model), "--k", "100"])
    assert r.exit_code == 2 and "neg.npy" in r.output and "negative" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["denoise", str(neg), "-o", str(tmp_path / "o3"), "--weights", str(n2s_model), "--k", "100",
                            "--negative", "clip", "--json"])
    assert r.exit_code == 0, r.output
    assert _json(r)["results"][0]["negative_clipped"] > 0
    assert np.isfinite(np.load(tmp_path / "o3" / "neg.npy")).all()


def test_nan_pixel_is_reported(n2s_model, images, tmp_path):
    y = np.load(images / "b.npy")
    y[3, 4] = np.nan
    np.save(images / "nan.npy", y)
    r = runner.invoke(app, ["denoise", str(images), "-o", str(tmp_path / "o"), "--weights", str(n2s_model), "--zeta", "0.01"])
    assert r.exit_code == 1  # the other files were processed
    assert "nan.npy" in r.output and "NaN" in r.output
    r = runner.invoke(app, ["noise", str(images / "nan.npy"), "--weights", str(n2s_model)])
    assert r.exit_code == 2 and "nan.npy" in r.output and "NaN" in r.output


@pytest.mark.parametrize("args,msg", [(["--noise", "gaussian", "--zeta", "0.01"], "--zeta"),
                                      (["--noise", "auto", "--sigma", "5"], "auto"),
                                      (["--sigma", "5", "--k", "10"], "one of"),
                                      (["--k", "1"], "--k"),
                                      (["--noise", "laplace"], "laplace")])
def test_denoise_bad_options(n2s_model, images, tmp_path, args, msg):
    r = runner.invoke(app, ["denoise", str(images / "b.npy"), "-o", str(tmp_path / "o"), "--weights", str(n2s_model), *args])
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output


def test_grey_noise2score_model_on_colour_input(n2s_model, tmp_path, rng):
    """A grey Noise2Score model treats each channel of a colour image as a grey image."""
    y = (0.01 * rng.poisson(0.5 / 0.01, size=(37, 31, 3))).astype(np.float32)
    np.save(tmp_path / "c.npy", y)
    r = runner.invoke(app, ["denoise", str(tmp_path / "c.npy"), "-o", str(tmp_path / "o"), "--weights", str(n2s_model),
                            "--zeta", "0.01", "--json"])
    assert r.exit_code == 0, r.output
    out = np.load(tmp_path / "o" / "c.npy")
    assert out.shape == y.shape and np.isfinite(out).all()
    r = runner.invoke(app, ["noise", str(tmp_path / "c.npy"), "--weights", str(n2s_model), "--json"])
    assert r.exit_code == 0, r.output


def test_poisson_gaussian_data_with_an_offset_is_refused_unless_clipped(tiny_model, tmp_path, rng):
    """Poisson–Gaussian data 0.3 below their black level: many values far under 0, which the transform
    would clip to 0 silently. Refused, nothing written; --negative clip sets them to 0 and counts them."""
    x = 0.05 + 0.6 * rng.random((48, 48))
    y = 0.01 * rng.poisson(x / 0.01) + 0.02 * rng.standard_normal(x.shape)
    np.save(tmp_path / "ok.npy", y.astype(np.float32))
    np.save(tmp_path / "off.npy", (y - 0.3).astype(np.float32))
    args = ["--weights", str(tiny_model(1)), "--a", "0.01", "--b", "0.0004", "--json"]
    r = runner.invoke(app, ["denoise", str(tmp_path / "ok.npy"), "-o", str(tmp_path / "o1.npy"), *args])
    assert r.exit_code == 0 and _json(r)["results"][0]["poisson_gaussian"]["negative_clipped"] == 0, r.output
    r = runner.invoke(app, ["denoise", str(tmp_path / "off.npy"), "-o", str(tmp_path / "o2.npy"), *args])
    assert r.exit_code == 2 and "black level" in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "o2.npy").exists()
    r = runner.invoke(app, ["denoise", str(tmp_path / "off.npy"), "-o", str(tmp_path / "o3.npy"), *args, "--negative", "clip"])
    expected = int((y - 0.3 < -4 * 0.02).sum())
    assert r.exit_code == 0 and _json(r)["results"][0]["negative_clipped"] == expected > 0, r.output
    faint = 0.01 * rng.poisson(x / 0.01) - 0.001 * (rng.random(x.shape) < 0.05)  # b = 0: the transform's floor, −3a/8
    np.save(tmp_path / "faint.npy", faint.astype(np.float32))
    r = runner.invoke(app, ["denoise", str(tmp_path / "faint.npy"), "-o", str(tmp_path / "o4.npy"), "--weights", str(tiny_model(1)),
                            "--a", "0.01", "--b", "0"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("extra, words", [(["--ensemble", "2"], "--ensemble"), (["--sigma", "0.05", "--sigma-a", "0.01"], "--sigma-a"),
                                          (["--a", "0.01", "--b", "0.0004", "--ensemble", "4"], "--ensemble")])
def test_options_a_path_does_not_use_are_refused(tiny_model, images, tmp_path, extra, words):
    """--ensemble outside Gaussian denoising with a given σ, and --sigma-a with a clean prior, did nothing;
    refused, nothing written."""
    r = runner.invoke(app, ["denoise", str(images / "a.npy"), "-o", str(tmp_path / "o.npy"), "--weights", str(tiny_model(1)), *extra])
    assert r.exit_code == 2 and words in r.stderr and "Traceback" not in r.output, r.output
    assert not (tmp_path / "o.npy").exists()
    r = runner.invoke(app, ["denoise", str(images / "a.npy"), "-o", str(tmp_path / "e.npy"), "--weights", str(tiny_model(1)),
                            "--sigma", "0.05", "--ensemble", "2"])
    assert r.exit_code == 0, r.output


def test_noise_overall_sigma_is_in_the_input_units_of_its_rows(tmp_path, rng):
    """The folder's σ was on the [0,1] scale beside rows in input units (0..255 for 8-bit): files of one pixel unit
    now get the overall σ in that unit too, the median of the rows'."""
    from scoretool.io import Image, write_image

    x = np.linspace(0.2, 0.8, 64, dtype=np.float32)[None, :].repeat(64, 0)
    for name, sigma in (("a", 10), ("b", 20), ("c", 30)):
        y = np.clip(x + sigma / 255 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
        write_image(tmp_path / f"{name}.png", Image(y[None, :, :, None], np.dtype(np.uint8), None, (0, 255)))
    r = runner.invoke(app, ["noise", str(tmp_path), "--json", "--device", "cpu", "--weights", "prior-gray-fast"])
    assert r.exit_code == 0, r.output
    out = _json(r)
    assert out["overall"]["sigma"] == pytest.approx(sorted(row["sigma"] for row in out["results"])[1])
    assert 15 < out["overall"]["sigma"] < 25
    r = runner.invoke(app, ["noise", str(tmp_path), "--device", "cpu", "--weights", "prior-gray-fast"])
    assert f"sigma={out['overall']['sigma']:.4g} (input units)" in r.stdout
