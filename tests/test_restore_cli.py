"""`scoretool restore` end to end with a tiny random-weight model: shapes, JSON, bad input."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from scoretool.cli import app
from scoretool.io import Image, read_image, write_image

runner = CliRunner()


def _png(path, arr):
    arr = np.asarray(arr)
    grey = arr.ndim == 2
    px = (arr[None, ..., None] if grey else arr[None]).astype(np.float32) / 255
    write_image(path, Image(px, np.dtype(np.uint8), value_range=(0.0, 255.0), grey_2d=grey))
    return path


def _run(args):
    res = runner.invoke(app, ["restore", *map(str, args), "--steps", "3", "--quiet"])
    return res, res.stdout, res.stderr


@pytest.fixture
def grey(tmp_path, rng):
    return _png(tmp_path / "g.png", rng.integers(0, 256, (13, 11)))


def test_sr_output_size_and_json(tmp_path, grey, tiny_model):
    out = tmp_path / "sr.png"
    res, stdout, _ = _run([grey, "-o", out, "--task", "sr", "--scale", "3", "--weights", tiny_model(1), "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(stdout)["results"][0]
    assert row["shape_out"] == [39, 33, 1] and row["nfe"] == 3
    assert row["residual"] <= 1e-3
    assert read_image(out).pixels.shape == (1, 39, 33, 1)


def test_no_dihedral_keeps_one_orientation(tmp_path, grey, tiny_model):
    """--dihedral (default) / --no-dihedral are taken and reported in --json (the sampler-level effect is
    tested in test_ddnm.py: the tiny untrained network here is pointwise, so both give the same image)."""
    rows = []
    for flag in ("--dihedral", "--no-dihedral"):
        out = tmp_path / f"sr{flag}.png"
        res, stdout, _ = _run([grey, "-o", out, "--task", "sr", "--scale", "2", "--weights", tiny_model(1), "--json", flag])
        assert res.exit_code == 0, res.output
        rows.append(json.loads(stdout)["results"][0])
    assert [r["dihedral"] for r in rows] == [True, False]
    assert all(r["residual"] <= 1e-3 for r in rows)


@pytest.mark.parametrize("extra", [["--task", "inpaint", "--mask-random", "0.5"],
                                   ["--task", "deblur", "--kernel", "gaussian:1.5"],
                                   ["--task", "deblur", "--kernel", "uniform:3", "--sigma-y", "2"],
                                   ["--task", "cs", "--ratio", "0.3"],
                                   ["--task", "sr", "--scale", "2", "--sr-kernel", "bicubic", "--sampler", "ddnm", "--travel", "1"]])
def test_tasks_run(tmp_path, grey, tiny_model, extra):
    out = tmp_path / "o.npy"
    res, stdout, _ = _run([grey, "-o", out, "--weights", tiny_model(1), "--json", *extra])
    assert res.exit_code == 0, res.output
    row = json.loads(stdout)["results"][0]
    if "deblur" not in extra:  # random input is not a blurred image: its blur-killed frequencies stay
        assert row["residual"] <= 1e-3
    assert out.exists()


def test_deblur_of_blurred_image_is_consistent(tmp_path, rng, tiny_model):
    import torch

    from scoretool.operators import Blur, gaussian_kernel

    x = torch.from_numpy(rng.random((1, 1, 15, 13)))
    blurred = Blur(gaussian_kernel(1.5), (1, 15, 13)).A(x)[0, 0].numpy().astype(np.float32)
    np.save(tmp_path / "b.npy", blurred)
    res, stdout, _ = _run([tmp_path / "b.npy", "-o", tmp_path / "d.npy", "--task", "deblur", "--kernel", "gaussian:1.5",
                           "--weights", tiny_model(1), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(stdout)["results"][0]["residual"] <= 1e-3


@pytest.mark.parametrize("saved_as_rgb", [False, True])
def test_colorize_gives_colour_with_grey_mean(tmp_path, rng, tiny_model, saved_as_rgb):
    """A grey image, one channel or saved as three equal ones, comes out in colour with its grey as the mean;
    three unequal channels are refused."""
    grey = rng.random((13, 11)).astype(np.float32)
    src = tmp_path / "g.npy"
    np.save(src, np.repeat(grey[..., None], 3, -1) if saved_as_rgb else grey)
    out = tmp_path / "c.npy"
    res, stdout, _ = _run([src, "-o", out, "--task", "colorize", "--weights", tiny_model(3), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(stdout)["results"][0]["residual"] <= 1e-3
    x = np.load(out)
    assert x.shape == (13, 11, 3)
    np.testing.assert_allclose(x.mean(-1), grey, atol=1e-5)
    if saved_as_rgb:
        np.save(src, rng.random((13, 11, 3)).astype(np.float32))
        res, _, stderr = _run([src, "-o", tmp_path / "d.npy", "--task", "colorize", "--weights", tiny_model(3)])
        assert res.exit_code == 2 and "three equal ones" in stderr and not (tmp_path / "d.npy").exists()


def test_mask_file_white_is_missing(tmp_path, grey, tiny_model):
    m = np.zeros((13, 11), np.uint8)
    m[4:8, 3:9] = 255
    mask = _png(tmp_path / "m.png", m)
    out = tmp_path / "i.npy"
    res, _, _ = _run([grey, "-o", out, "--task", "inpaint", "--mask", mask, "--weights", tiny_model(1)])
    assert res.exit_code == 0, res.output
    x, g = np.load(out).astype(np.float32) / 255, read_image(grey).pixels[0, ..., 0]
    np.testing.assert_allclose(x[m == 0], g[m == 0], atol=1e-6)  # known pixels kept exactly
    assert np.abs(x[m > 0] - g[m > 0]).max() > 1e-3  # missing pixels were filled, not copied


def test_bad_mask_size(tmp_path, grey, tiny_model):
    mask = _png(tmp_path / "m.png", np.zeros((9, 9), np.uint8))
    out = tmp_path / "bad.png"
    res, _, stderr = _run([grey, "-o", out, "--task", "inpaint", "--mask", mask, "--weights", tiny_model(1)])
    assert res.exit_code == 2 and "g.png" in stderr and "mask" in stderr and "Traceback" not in res.output
    assert not out.exists()


def test_mask_with_nothing_known_is_refused(tmp_path, grey, tiny_model):
    """A mask marking every pixel missing gave a near-black image with residual 0 (0/0) and status ok."""
    h, w = read_image(grey).pixels.shape[1:3]
    mask = _png(tmp_path / "m.png", np.full((h, w), 255, np.uint8))
    out = tmp_path / "all.png"
    res, _, stderr = _run([grey, "-o", out, "--task", "inpaint", "--mask", mask, "--weights", tiny_model(1)])
    assert res.exit_code == 2 and "marks every pixel missing" in stderr and not out.exists()


def test_mask_folder_partial_failure(tmp_path, rng, tiny_model):
    src, masks = tmp_path / "in", tmp_path / "masks"
    src.mkdir(), masks.mkdir()
    _png(src / "a.png", rng.integers(0, 256, (12, 12)))
    _png(src / "b.png", rng.integers(0, 256, (12, 12)))
    _png(masks / "a.png", np.repeat(np.array([0, 255], np.uint8), 6)[:, None].repeat(12, 1))
    _png(masks / "b.png", np.zeros((10, 12), np.uint8))
    res, _, stderr = _run([src, "-o", tmp_path / "out", "--task", "inpaint", "--mask", masks, "--weights", tiny_model(1)])
    assert res.exit_code == 1 and "b.png" in stderr
    assert (tmp_path / "out" / "a.png").exists() and not (tmp_path / "out" / "b.png").exists()


@pytest.mark.parametrize("extra, words", [(["--task", "sr", "--scale", "2.5"], "positive integer"),
                                          (["--task", "sr", "--scale", "0"], "positive integer"),
                                          (["--task", "sr", "--scale", "x"], "positive integer"),
                                          (["--task", "deblur", "--kernel", "K3D"], "2-D"),
                                          (["--task", "deblur", "--kernel", "gaussian:-1"], "positive"),
                                          (["--task", "inpaint"], "--mask"),
                                          (["--task", "paint"], "--task"),
                                          (["--task", "sr", "--sampler", "langevin"], "--sampler"),
                                          (["--task", "sr", "--sampler", "pnp", "--samples", "2", "--eta", "0.5"], "--eta, --samples: options of --sampler ddnm"),
                                          (["--task", "inpaint", "--mask-random", "0.5", "--travel", "2"], "auto picks pnp for inpainting"),
                                          (["--task", "sr", "--sampler", "ddnm", "--travel", "3"], "--travel < --steps"),
                                          (["--task", "inpaint", "--mask-random", "0.5", "--scale", "x", "--ratio", "0.5"],
                                           "--scale, --ratio: not an option of --task inpaint"),
                                          (["--task", "sr", "--kernel", "gaussian:2"], "--kernel is for deblur")])
def test_bad_options(tmp_path, grey, tiny_model, extra, words):
    np.save(tmp_path / "k.npy", np.ones((3, 3, 3)))
    extra = [str(tmp_path / "k.npy") if e == "K3D" else e for e in extra]
    out = tmp_path / "bad.png"
    res, _, stderr = _run([grey, "-o", out, "--weights", tiny_model(1), *extra])
    assert res.exit_code == 2, res.output
    assert words in stderr and stderr.count("Error:") == 1 and "Traceback" not in res.output
    assert not out.exists()


def test_tiled_path_matches_shape_and_consistency(tmp_path, grey, tiny_model):
    """An output larger than --tile goes through the engine's tiling (CPU-resident image)."""
    out = tmp_path / "t.npy"
    res, stdout, _ = _run([grey, "-o", out, "--task", "sr", "--scale", "4", "--tile", "16", "--weights", tiny_model(1),
                           "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(stdout)["results"][0]["residual"] <= 1e-3
    assert np.load(out).shape == (52, 44)


def test_samples_average_chains_and_stay_consistent(rng, tiny_model):
    """--samples N is the mean of N chains drawn one after another from the same generator; the mean of
    data-consistent samples is data-consistent, and it differs from a single chain."""
    from scoretool import api

    lr = rng.random((9, 7)).astype(np.float32)
    w = tiny_model(1)
    one, _ = api.restore(lr, "sr", scale=2, sampler="ddnm", steps=3, weights=w, seed=4)
    two, info = api.restore(lr, "sr", scale=2, sampler="ddnm", steps=3, samples=2, weights=w, seed=4)
    assert info["nfe"] == 6 and info["residual"] <= 1e-3
    assert not np.allclose(one, two)
    with pytest.raises(ValueError):
        api.restore(lr, "sr", scale=2, sampler="ddnm", steps=3, samples=0, weights=w)


def test_samplers_and_their_defaults(rng, tiny_model):
    """auto runs pnp for inpainting and ddnm for the other tasks; pnp is deterministic, takes 25
    evaluations and refuses ddnm's settings; ddnm takes 100 and depends on the seed; the reports say
    which sampler and schedule ran."""
    from scoretool import api

    lr = rng.random((9, 7)).astype(np.float32)
    w = tiny_model(1)
    a, info = api.restore(lr, "sr", scale=2, sampler="pnp", weights=w, seed=1)
    b, _ = api.restore(lr, "sr", scale=2, sampler="pnp", weights=w, seed=2)
    assert np.array_equal(a, b) and info["residual"] <= 1e-3
    assert {k: info[k] for k in ("sampler", "steps", "nfe", "sigma_max")} == {"sampler": "pnp", "steps": 25, "nfe": 25, "sigma_max": 0.15}
    assert "eta" not in info
    c, info = api.restore(lr, "sr", scale=2, weights=w, seed=1)
    d, _ = api.restore(lr, "sr", scale=2, weights=w, seed=2)
    assert info["sampler"] == "ddnm" and info["nfe"] == 100 and info["eta"] == 1.0 and not np.array_equal(c, d)
    _, info = api.restore(lr, "inpaint", mask=rng.random((9, 7)) < 0.5, weights=w)
    assert info["sampler"] == "pnp" and info["nfe"] == 25
    assert [api.sampler_for(t) for t in ("sr", "inpaint", "colorize", "deblur", "cs")] == ["ddnm", "pnp", "ddnm", "ddnm", "ddnm"]
    with pytest.raises(ValueError, match="travel"):
        api.restore(lr, "sr", scale=2, sampler="pnp", travel=2, weights=w)
    with pytest.raises(ValueError, match="sampler"):
        api.restore(lr, "sr", scale=2, sampler="heun", weights=w)


def test_deblurring_an_integer_file_takes_its_rounding_noise(tmp_path, grey, tiny_model):
    """σ_y defaults to the rounding std of an 8-bit file for deblurring (bench/restore.py deblur8), to 0 for
    float files and other tasks; a given --sigma-y wins."""
    from scoretool.io import ROUNDING_STD

    np.save(tmp_path / "g.npy", read_image(grey).pixels[0, ..., 0])
    cases = [([grey, "--task", "deblur", "--kernel", "gaussian:1"], ROUNDING_STD),
             ([tmp_path / "g.npy", "--task", "deblur", "--kernel", "gaussian:1"], 0.0),
             ([grey, "--task", "sr", "--scale", "2"], 0.0),
             ([grey, "--task", "deblur", "--kernel", "gaussian:1", "--sigma-y", "0"], 0.0)]
    for i, (args, expected) in enumerate(cases):
        out = tmp_path / f"o{i}{args[0].suffix}"
        res, stdout, _ = _run([*args, "-o", out, "--weights", tiny_model(1), "--json"])
        assert res.exit_code == 0, res.output
        row = json.loads(stdout)["results"][0]
        assert row["sigma_y"] == pytest.approx(expected) and row["sigma_y_unit"] == pytest.approx(expected / (255 if expected else 1))
