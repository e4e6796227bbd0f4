"""The --json output of each command is a documented, stable contract: these keys must not change
(adding keys is fine; renaming or removing one breaks users' scripts)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from scoretool.cli import app
from scoretool.io import Image, write_image

runner = CliRunner()


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    for name in "abcd":
        px = rng.random((1, 40, 36, 1)).astype(np.float32)
        write_image(tmp_path / f"{name}.png", Image(px, np.dtype(np.uint8), None, (0, 255)))
    return tmp_path


def run_json(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def assert_keys(obj: dict, keys: set[str]):
    missing = keys - obj.keys()
    assert not missing, f"--json lost keys {sorted(missing)}"


def test_info_and_weights_keys(tiny_model):
    assert_keys(run_json("info", "--json"), {"version", "torch", "device", "threads", "bf16_available", "bundled_weights"})
    rows = run_json("weights", tiny_model(1), "--json")
    assert_keys(rows[-1], {"name", "path", "channels", "kind", "sigma_range", "training_data", "steps", "noise",
                           "measured_psnr", "size_mb"})


def test_denoise_keys(images, tiny_model):
    out = run_json("denoise", images / "a.png", "-o", images / "out", "--sigma", 25, "--weights", tiny_model(1), "--json")
    assert_keys(out, {"command", "results"})
    assert_keys(out["results"][0], {"input", "output", "status", "weights", "noise", "sigma", "sigma_unit", "seconds", "shape"})


def test_evaluate_keys(images):
    out = run_json("evaluate", images / "a.png", "--refs", images / "b.png", images / "c.png", images / "d.png", "--json")
    assert_keys(out, {"command", "mode", "data_range", "results", "mean", "notes"})
    assert_keys(out["results"][0], {"input", "status", "umse", "umse_ci", "upsnr", "upsnr_ci", "upsnr_text", "umse_nonpositive"})
    out = run_json("evaluate", images / "a.png", "--clean", images / "b.png", "--json")
    assert_keys(out["results"][0], {"input", "status", "mse", "psnr", "ssim"})
    assert_keys(out["mean"], {"images", "mse", "mean_psnr", "mean_ssim"})


def test_restore_keys(images, tiny_model):
    out = run_json("restore", images / "a.png", "-o", images / "r", "--task", "inpaint", "--mask-random", 0.5,
                   "--steps", 3, "--weights", tiny_model(1), "--json")
    assert_keys(out, {"command", "task", "results"})
    assert_keys(out["results"][0], {"input", "output", "status", "task", "residual", "nfe", "steps", "seconds"})


def test_uncertainty_keys(images, tiny_model):
    out = run_json("uncertainty", images / "a.png", "-o", images / "u", "--sigma", 25, "--weights", tiny_model(1),
                   "--probes", 2, "--json")
    assert_keys(out["results"][0], {"input", "status", "sigma", "probes", "std_mean", "std_median", "std_max", "outputs"})


def test_shell_completion_script(monkeypatch):
    """--show-completion names the shell it runs under (shellingham reads the process tree, which has no
    shell when the tests run detached), so the detected shell is fixed here."""
    import typer.completion

    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")
    res = runner.invoke(app, ["--show-completion"])
    assert res.exit_code == 0 and "complete -o default -F _scoretool_completion scoretool" in res.output
