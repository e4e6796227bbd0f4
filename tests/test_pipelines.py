"""Pipelines: many inputs and glob patterns, stdin/stdout streams, --shard K/N and torchrun splitting.
The command lines are the README's pipeline examples, with a small random-weight model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from scoretool.cli import app
from scoretool.io import Image, write_image

runner = CliRunner()


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def write_png(path, rng, shape=(40, 36)):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 256, size=shape).astype(np.float32) / 255
    write_image(path, Image(arr.reshape((1, *shape, 1)), np.dtype(np.uint8), None, (0, 255)))


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def photos(tmp_path, rng):
    """a.png, raw/r1.png, raw/r2.png, raw/notes.txt, more/m1.png, more/m2.png"""
    for name in ("a.png", "raw/r1.png", "raw/r2.png", "more/m1.png", "more/m2.png"):
        write_png(tmp_path / name, rng)
    (tmp_path / "raw" / "notes.txt").write_text("not an image")
    return tmp_path


def test_files_globs_and_folders_in_one_command(photos, random_model):
    model = random_model(1)
    res = invoke("denoise", photos / "a.png", f"{photos}/raw/*.png", photos / "more", "-o", photos / "out",
                 "--sigma", 25, "-w", model, "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["results"]
    assert [Path(r["input"]).name for r in rows] == ["a.png", "r1.png", "r2.png", "m1.png", "m2.png"]
    got = files_under(photos / "out")
    assert sorted(got) == ["a.png", "m1.png", "m2.png", "r1.png", "r2.png"]
    for name, src in (("a.png", "a.png"), ("r2.png", "raw/r2.png"), ("m1.png", "more/m1.png")):  # as one file alone
        alone = photos / "alone" / name
        assert invoke("denoise", photos / src, "-o", alone, "--sigma", 25, "-w", model).exit_code == 0
        assert got[name] == alone.read_bytes()


def test_a_pattern_that_matches_nothing_and_two_inputs_to_one_name_are_refused(photos, random_model):
    res = invoke("denoise", f"{photos}/raw/*.tif", "-o", photos / "out", "--sigma", 25, "-w", random_model(1))
    assert res.exit_code == 2 and "no image files match" in res.stderr
    write_png(photos / "other" / "r1.png", np.random.default_rng(5))
    res = invoke("denoise", f"{photos}/raw/*.png", photos / "other", "-o", photos / "out", "--sigma", 25,
                 "-w", random_model(1))
    assert res.exit_code == 2 and "would both be written to" in res.stderr
    assert not (photos / "out").exists() or not any((photos / "out").iterdir())


@pytest.mark.parametrize("fmt", [None, "tiff"])
def test_stdin_to_stdout_is_byte_identical_to_files(photos, random_model, fmt):
    model = random_model(1)
    extra = ["--format", fmt] if fmt else []
    res = invoke("denoise", "-", "-o", "-", "--sigma", 25, "-w", model, *extra,
                 input=(photos / "a.png").read_bytes())
    assert res.exit_code == 0, res.stderr
    ref = photos / f"ref.{fmt or 'png'}"
    assert invoke("denoise", photos / "a.png", "-o", ref, "--sigma", 25, "-w", model, *extra).exit_code == 0
    assert res.stdout_bytes == ref.read_bytes()


def test_stream_errors(photos, random_model):
    res = invoke("denoise", "-", "-o", "-", "--sigma", 25, "-w", random_model(1), input=b"hello, not an image")
    assert res.exit_code == 2 and res.stdout_bytes == b"" and "standard input is not a PNG" in res.stderr
    res = invoke("denoise", photos / "more", "-o", "-", "--sigma", 25, "-w", random_model(1))
    assert res.exit_code == 2 and "writes one image to stdout, but the inputs hold 2 images" in res.stderr
    res = invoke("denoise", photos / "a.png", "-o", "-", "--json", "--sigma", 25, "-w", random_model(1))
    assert res.exit_code == 2 and "--json" in res.stderr
    res = invoke("denoise", photos / "more", "-o", photos / "x.png", "--sigma", 25, "-w", random_model(1))
    assert res.exit_code == 2 and "2 inputs need an output folder" in res.stderr and not (photos / "x.png").exists()
    res = invoke("denoise", "-", "-o", "-", "--shard", "1/2", "--sigma", 25, "-w", random_model(1), input=b"\x89PNG\r\n\x1a\n")
    assert res.exit_code == 2 and "cannot be split" in res.stderr
    res = invoke("denoise", photos / "a.png", "-o", photos / "o.png", "--sigma", "inf", "-w", random_model(1))
    assert res.exit_code == 2 and "--sigma inf: must be a finite number" in res.stderr


def test_shards_partition_the_inputs(tmp_path, rng, random_model):
    model = random_model(1)
    for i in range(12):
        write_png(tmp_path / "in" / f"img{i:02d}.png", rng, (24, 20))
    assert invoke("denoise", tmp_path / "in", "-o", tmp_path / "whole", "--sigma", 25, "-w", model).exit_code == 0
    union, sizes = {}, []
    for k in (1, 2, 3):  # every part into the same folder, as cluster array jobs would write
        before = set(files_under(tmp_path / "parts")) if (tmp_path / "parts").exists() else set()
        res = invoke("denoise", tmp_path / "in", "-o", tmp_path / "parts", "--shard", f"{k}/3", "--sigma", 25, "-w", model,
                     "--json")
        assert res.exit_code == 0, res.output
        written = [Path(r["output"]).name for r in json.loads(res.stdout)["results"]]
        assert not before & set(written)  # no file twice
        sizes.append(len(written))
        union.update(files_under(tmp_path / "parts"))
    assert union == files_under(tmp_path / "whole") and sum(sizes) == 12 and min(sizes) >= 1
    assert invoke("denoise", tmp_path / "in", "-o", tmp_path / "x", "--shard", "4/3", "-w", model).exit_code == 2


def test_commands_that_do_not_split_refuse_torchrun(tmp_path, random_model, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    res = invoke("export", random_model(1), "-o", tmp_path / "m.onnx")
    assert res.exit_code == 2 and "runs in one process" in res.stderr and not (tmp_path / "m.onnx").exists()


def torchrun(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "scoretool", *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def test_torchrun_two_processes_write_what_one_process_writes(tmp_path, rng, random_model):
    model = random_model(1)
    for i in range(5):
        write_png(tmp_path / "in" / f"img{i}.png", rng, (24, 20))
    one = invoke("denoise", tmp_path / "in", "-o", tmp_path / "one", "--sigma", 25, "-w", model, "--json")
    assert one.exit_code == 0
    two = torchrun("denoise", tmp_path / "in", "-o", tmp_path / "two", "--sigma", 25, "-w", model, "--json")
    assert two.returncode == 0, two.stderr[-2000:]
    assert files_under(tmp_path / "two") == files_under(tmp_path / "one")
    report = json.loads(two.stdout)  # rank 0 alone reports, with every process's rows in input order
    assert [r["output"] for r in report["results"]] == [str(tmp_path / "two" / f"img{i}.png") for i in range(5)]

    clean = invoke("evaluate", tmp_path / "two", "--clean", tmp_path / "in", "--json")
    split = torchrun("evaluate", tmp_path / "two", "--clean", tmp_path / "in", "--json")
    assert split.returncode == 0, split.stderr[-2000:]
    assert json.loads(split.stdout)["mean"] == json.loads(clean.stdout)["mean"]


def test_an_input_with_only_some_outputs_is_an_error_not_a_skip(photos, random_model):
    """uncertainty writes several files per input; after a killed run left some, a re-run must not call
    the input done (skip) nor write over them without --overwrite."""
    args = ["uncertainty", photos / "a.png", "-o", photos / "unc", "--sigma", 25, "-w", random_model(1), "--probes", 1]
    assert invoke(*args).exit_code == 0
    outputs = sorted((photos / "unc").iterdir())
    assert invoke(*args).exit_code == 0  # all there: skipped
    outputs[0].unlink()
    res = invoke(*args)
    assert res.exit_code == 2 and f"{len(outputs) - 1} of its {len(outputs)} outputs exist" in res.stderr
    assert invoke(*args, "--overwrite").exit_code == 0 and len(list((photos / "unc").iterdir())) == len(outputs)
