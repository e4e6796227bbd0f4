"""CLI contract: info/weights JSON, denoise on files and folders, bad input → one line, exit codes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from scoretool.cli import app
from scoretool.io import Image, read_image, write_image

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_png(path, rng, shape=(40, 36)):
    arr = rng.integers(0, 256, size=shape).astype(np.float32) / 255
    img = Image(arr.reshape((1,) + shape[:2] + (shape[2] if len(shape) == 3 else 1,)), np.dtype(np.uint8), None, (0, 255))
    write_image(path, img)


def test_help_and_info_json():
    assert invoke("--help").exit_code == 0
    res = invoke("info", "--json")
    assert res.exit_code == 0
    info = json.loads(res.stdout)
    assert {"version", "device", "threads", "bf16_available", "bundled_weights"} <= info.keys()


@pytest.mark.parametrize("args", [["--help"], ["restore", "--help"], ["ood", "fit", "--help"], ["denoise", "--help"]])
def test_help_does_not_import_torch(args):
    """`scoretool --help` and every command's --help stay fast: the command line imports torch and numpy
    only to run, and formats help without rich's formatter (typer.rich_utils and what it pulls in)."""
    heavy = ("torch", "numpy", "typer.rich_utils")
    code = ("import sys; from scoretool.cli import app; from typer.testing import CliRunner; "
            f"r = CliRunner().invoke(app, {args!r}); assert r.exit_code == 0, r.output; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r} or m in {heavy!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]", out.stdout


def test_weights_lists_given_file(tiny_model):
    res = invoke("weights", tiny_model(1), "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert rows[-1]["channels"] == 1 and rows[-1]["sigma_range"] == [0.002, 10.0]


def test_weights_reports_a_bad_file_and_lists_the_others(tmp_path, tiny_model):
    """A file that is not a model is one error line and exit 1; the good file after it is still listed."""
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    res = invoke("weights", tmp_path / "bad.safetensors", tiny_model(1), "--json")
    assert res.exit_code == 1 and res.stderr.count("Error:") == 1 and "bad.safetensors" in res.stderr
    rows = json.loads(res.stdout)
    assert rows[-1]["path"].endswith("bad.safetensors") and "error" in rows[-1] and rows[-2]["channels"] == 1


def test_denoise_file_and_folder(tmp_path, rng, tiny_model):
    write_png(tmp_path / "a.png", rng)
    write_png(tmp_path / "b.png", rng)
    (tmp_path / "readme.txt").write_text("not an image")
    res = invoke("denoise", tmp_path / "a.png", "-o", tmp_path / "a_out.png", "--sigma", 25, "--weights", tiny_model(1))
    assert res.exit_code == 0, res.output
    assert read_image(tmp_path / "a_out.png").dtype == np.uint8
    out = tmp_path / "out"
    res = invoke("denoise", tmp_path, "-o", out, "--sigma", 25, "--weights", tiny_model(1), "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["results"]
    assert sorted(os.listdir(out)) == ["a.png", "a_out.png", "b.png"]
    assert all(r["status"] == "ok" for r in rows)
    # a rerun skips existing outputs; the output folder inside the input is never an input
    res = invoke("denoise", tmp_path, "-o", out, "--sigma", 25, "--weights", tiny_model(1), "--json")
    assert res.exit_code == 0 and {r["status"] for r in json.loads(res.stdout)["results"]} == {"skipped"}


def test_folder_with_one_corrupt_image_processes_the_rest(tmp_path, rng, tiny_model):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "c.png"):
        write_png(src / name, rng)
    (src / "b.png").write_text("I am text")
    res = invoke("denoise", src, "-o", tmp_path / "out", "--sigma", 10, "--weights", tiny_model(1))
    assert res.exit_code == 1
    assert "b.png" in res.output and "Traceback" not in res.output
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "c.png"]


@pytest.mark.parametrize("case", ["empty_folder", "corrupt_png", "zero_bytes", "unknown_weights", "foreign_safetensors",
                                  "unwritable_output"])
def test_bad_input_is_one_clear_line(tmp_path, rng, tiny_model, case):
    src = tmp_path / "in.png"
    write_png(src, rng)
    out = tmp_path / "out"
    weights = str(tiny_model(1))
    if case == "empty_folder":
        (tmp_path / "empty").mkdir()
        src, expect = tmp_path / "empty", "no image files"
    elif case == "corrupt_png":
        src.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
        expect = "not a valid PNG"
    elif case == "zero_bytes":
        src.write_bytes(b"")
        expect = "empty file"
    elif case == "unknown_weights":
        weights, expect = "no-such-model", "not a bundled model name"
    elif case == "foreign_safetensors":
        save_file({"w": torch.zeros(1)}, str(tmp_path / "f.safetensors"))
        weights, expect = str(tmp_path / "f.safetensors"), "not a scoretool model"
    else:
        if os.geteuid() == 0:
            out, expect = tmp_path / "in.png" / "sub", "cannot create output folder"  # a file in the way
        else:
            out.mkdir()
            out.chmod(0o500)
            expect = "not writable"
    res = invoke("denoise", src, "-o", out, "--sigma", 25, "--weights", weights)
    assert res.exit_code == 2, res.output
    assert expect in res.output and "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


@pytest.mark.parametrize("command", [["denoise", "-o", "{out}.npy", "--sigma", "25"],
                                     ["uncertainty", "-o", "{out}", "--sigma", "25"],
                                     ["evaluate", "--sure", "--sigma", "25"],
                                     ["restore", "--task", "sr", "--scale", "2", "-o", "{out}.npy", "--sigma-y", "25"]])
def test_a_noise_level_wider_than_the_value_range_is_refused(tmp_path, rng, tiny_model, command):
    """σ = 25 meant as grey levels on float data in [0,1] would smooth the image into its mean (an
    uncertainty map of zeros): one line naming the unit, nothing written; 0.098 (25/255) works."""
    np.save(tmp_path / "f.npy", rng.random((32, 32)).astype(np.float32))
    args = [a.format(out=tmp_path / "out") for a in command]
    res = invoke(args[0], tmp_path / "f.npy", *args[1:], "--weights", tiny_model(1), "--device", "cpu")
    option = "--sigma-y" if "--sigma-y" in args else "--sigma"
    assert res.exit_code == 2 and f"{option} 25 is wider than the whole value range 0..1" in res.output, res.output
    assert "0.098" in res.output and "Traceback" not in res.output
    assert not [p for p in tmp_path.glob("out*/**/*") if p.is_file()] and not (tmp_path / "out.npy").exists()
    res = invoke(args[0], tmp_path / "f.npy", *[("0.098" if a == "25" else a) for a in args[1:]], "--weights", tiny_model(1),
                 "--device", "cpu")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("args, words", [
    (["denoise", "-o", "{out}", "--sigma", "5", "--precision", "fp16"], "--precision fp16: expected auto, fp32 or bf16"),
    (["denoise", "-o", "{out}", "--sigma", "5", "--ensemble", "3"], "--ensemble 3: expected 1, 2, 4 or 8"),
    (["denoise", "-o", "{out}", "--sigma", "5", "--negative", "clip"], "--negative clip is for Poisson"),
    (["denoise", "-o", "{out}", "--sigma", "5", "--seed", str(2**64)], f"--seed {2**64}: expected an integer from 0 to"),
    (["denoise", "-o", "{out}", "--sigma", "5", "--seed", "-1"], "--seed -1: expected an integer from 0 to"),
    (["restore", "-o", "{out}", "--task", "sr", "--scale", "2", "--precision", "fp16"], "--precision fp16: expected"),
    (["noise", "--sigma-a", "0.02"], "--sigma-a reads a Noise2Score model's score"),
    (["evaluate", "--sure", "--sigma", "5", "--precision", "bf16"], "--precision: --sure runs the network in fp32"),
    (["evaluate", "--split", "--sigma", "5", "--clip"], "--clip clamps DENOISED images"),
])
def test_a_bad_or_idle_option_is_one_usage_error_before_any_file(tmp_path, rng, tiny_model, args, words):
    """A typo in an option's value, or an option the path does not use, was each file's failure (one line per file)
    or was accepted and ignored: it is now one usage error before any file is read."""
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        write_png(tmp_path / "in" / f"{name}.png", rng)
    args = [a.format(out=tmp_path / "out") for a in args]
    res = invoke(args[0], tmp_path / "in", *args[1:], "--weights", tiny_model(1), "--device", "cpu")
    assert res.exit_code == 2 and res.output.count(words) == 1 and "Traceback" not in res.output, res.output
    assert not [p for p in tmp_path.glob("out/**/*") if p.is_file()]


def test_grey_saved_as_rgb_takes_a_given_grey_model(tmp_path, rng, tiny_model):
    """An RGB file with three equal channels is grey for a given grey model too (it was refused: "model is for
    1-channel images, input has 3"); colourisation names the grey model it cannot use."""
    grey = rng.integers(0, 256, size=(40, 36)).astype(np.float32) / 255
    write_image(tmp_path / "g.png", Image(np.repeat(grey[None, :, :, None], 3, axis=-1), np.dtype(np.uint8), None, (0, 255)))
    res = invoke("denoise", tmp_path / "g.png", "-o", tmp_path / "o.png", "--sigma", 5, "--weights", tiny_model(1), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["results"][0]["grey_in_colour"] is True
    out = read_image(tmp_path / "o.png").pixels
    assert out.shape[-1] == 3 and np.array_equal(out[..., 0], out[..., 2])
    res = invoke("restore", tmp_path / "g.png", "-o", tmp_path / "c.png", "--task", "colorize", "--steps", 2,
                 "--weights", tiny_model(1))
    assert res.exit_code == 2 and "colourisation needs a colour (3-channel) prior" in res.output, res.output


def test_an_output_name_and_a_format_that_disagree_are_refused(tmp_path, rng, tiny_model):
    """`-o out.png --format npy` wrote out.npy, not the file named; now refused. Agreeing ones (.tif / tiff) work."""
    write_png(tmp_path / "a.png", rng)
    res = invoke("denoise", tmp_path / "a.png", "-o", tmp_path / "o.png", "--format", "npy", "--sigma", 5, "--weights", tiny_model(1))
    assert res.exit_code == 2 and "the file name says .png; name it .npy" in res.output, res.output
    assert not list(tmp_path.glob("o.*"))
    res = invoke("denoise", tmp_path / "a.png", "-o", tmp_path / "o.tif", "--format", "tiff", "--sigma", 5, "--weights", tiny_model(1))
    assert res.exit_code == 0 and (tmp_path / "o.tif").exists(), res.output


def test_range_on_8_bit_files_is_said_once(tmp_path, rng, tiny_model):
    """--range maps float values; 8/16-bit files map by their full range, which was not said: one notice per run."""
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        write_png(tmp_path / "in" / f"{name}.png", rng)
    res = invoke("denoise", tmp_path / "in", "-o", tmp_path / "out", "--sigma", 5, "--range", "0,1000",
                 "--weights", tiny_model(1))
    assert res.exit_code == 0, res.output
    assert res.stderr.count("--range is for float data") == 1 and "maps its full range 0..255" in res.stderr
    res = invoke("denoise", tmp_path / "in", "-o", tmp_path / "out2", "--sigma", 5, "--range", "0,255",
                 "--weights", tiny_model(1))
    assert res.exit_code == 0 and "--range is for float data" not in res.stderr  # the range it has anyway


def test_input_is_never_overwritten(tmp_path, rng, tiny_model):
    write_png(tmp_path / "a.png", rng)
    before = (tmp_path / "a.png").read_bytes()
    res = invoke("denoise", tmp_path / "a.png", "-o", tmp_path / "a.png", "--sigma", 5, "--weights", tiny_model(1), "--overwrite")
    assert res.exit_code == 2 and "overwrite its input" in res.output
    assert (tmp_path / "a.png").read_bytes() == before
