"""No user file is lost, memory stays bounded, garbage never exits 0: one test per case of the
reliability review (data loss, memory and batch, silent garbage, messages)."""

import hashlib
import json
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from scoretool.cli import app
from scoretool.errors import InputError
from scoretool.io import Image, read_image, write_image
from scoretool.nets import EDMPrecond, UNetConfig
from scoretool.weights import save_model

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def png(path, seed=0, size=(24, 20), channels=1):
    rng = np.random.default_rng(seed)
    write_image(path, Image(rng.integers(0, 256, (1, *size, channels)).astype(np.float32) / 255, np.dtype(np.uint8),
                            None, (0, 255), grey_2d=channels == 1))
    return path


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def png_bomb(path, side=30000, bit_depth=16):
    """A few hundred bytes whose header declares side² pixels (a real bomb decodes to gigabytes)."""
    ihdr = struct.pack(">IIBBBBB", side, side, bit_depth, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def ood_model(tmp_path_factory):
    """(OOD model path, its folder of 22 training images, the prior) fitted with a tiny prior."""
    d = tmp_path_factory.mktemp("ood")
    torch.manual_seed(0)
    prior = d / "prior.safetensors"
    save_model(prior, EDMPrecond(UNetConfig(channels=1, widths=[8, 16], blocks_per_level=1, embed_dim=16)),
               {"kind": "prior", "sigma_min": 0.002, "sigma_max": 10.0})
    train = d / "train"
    train.mkdir()
    for i in range(22):
        png(train / f"o{i:02d}.png", i, (37, 31))
    model = d / "ood.safetensors"
    res = invoke("ood", "fit", train, "-o", model, "--weights", prior, "--levels", "2", "--crop", "16", "--patch", "8",
                 "--crops", "2", "--device", "cpu")
    assert res.exit_code == 0, res.output
    return model, train, prior


# ---------------------------------------------------------------- 1-5: data loss

def test_csv_and_plot_never_replace_an_input_or_an_existing_file(ood_model, tmp_path):
    model, train, _ = ood_model
    before = digest(train)
    res = invoke("ood", "score", train, "--model", model, "--csv", train / "o00.png")
    assert res.exit_code == 2 and "overwrite its input" in res.output
    outliers = tmp_path / "outliers"
    outliers.mkdir()
    (outliers / "x.png").write_bytes((train / "o00.png").read_bytes())
    res = invoke("ood", "eval", "--model", model, "--inliers", train, "--outliers", outliers, "--plot", train / "o01.png",
                 "--overwrite")
    assert res.exit_code == 2 and "overwrite its input" in res.output
    res = invoke("evaluate", train, "--clean", train / "o02.png", "--csv", train / "o02.png")
    assert res.exit_code == 2
    assert digest(train) == before
    existing = tmp_path / "scores.csv"
    existing.write_text("mine\n")
    res = invoke("ood", "score", train, "--model", model, "--csv", existing)
    assert res.exit_code == 2 and "--overwrite" in res.output and existing.read_text() == "mine\n"
    assert invoke("ood", "score", train, "--model", model, "--csv", existing, "--overwrite").exit_code == 0
    assert existing.read_text().startswith("input,status,score")


def test_uncertainty_never_reads_or_replaces_its_own_outputs(tmp_path, tiny_model):
    d = tmp_path / "d"
    d.mkdir()
    png(d / "b.png", 1)
    png(d / "b_mean.png", 2)
    before = digest(d)
    res = invoke("uncertainty", d, "-o", d, "--sigma", 25, "--weights", tiny_model(1), "--probes", 1, "--overwrite")
    assert res.exit_code == 2 and "input folder" in res.output
    assert digest(d) == before
    out = tmp_path / "out"
    args = ["uncertainty", d, "-o", out, "--sigma", 25, "--weights", tiny_model(1), "--probes", 1]
    assert invoke(*args).exit_code == 0
    assert invoke(*args, "--overwrite").exit_code == 0  # the second run reads d only
    assert sorted(p.name for p in out.iterdir()) == ["b_mean.png", "b_mean_mean.png", "b_mean_std.png", "b_mean_std.tif",
                                                     "b_std.png", "b_std.tif"]


def test_uncertainty_plans_every_output_before_work(tmp_path, tiny_model):
    d = tmp_path / "d"
    d.mkdir()
    png(d / "b.png", 1)
    np.save(d / "b.npy", np.zeros((20, 24), np.float32))  # b.npy and b.png both give b_std.tif
    res = invoke("uncertainty", d, "-o", tmp_path / "out", "--sigma", 25, "--weights", tiny_model(1))
    assert res.exit_code == 2 and "b.npy" in res.output and "b.png" in res.output and "b_std.tif" in res.output
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_train_keeps_an_existing_model_and_needs_one_step(tmp_path, tiny_model):
    data = tmp_path / "data"
    data.mkdir()
    png(data / "a.png", 1, (32, 32))
    model = tmp_path / "trained.safetensors"
    model.write_bytes(tiny_model(1).read_bytes())
    before = model.read_bytes()
    base = ["train", data, "-o", model, "--patch", 16, "--batch", 2, "--widths", "8,16", "--blocks", 1, "--device", "cpu"]
    res = invoke(*base, "--steps", 0)
    assert res.exit_code == 2 and "--steps" in res.output
    assert invoke(*base, "--steps", -5).exit_code == 2
    res = invoke(*base, "--steps", 2)
    assert res.exit_code == 2 and "exists" in res.output and "--overwrite" in res.output
    assert model.read_bytes() == before
    assert invoke(*base, "--steps", 2, "--overwrite").exit_code == 0 and model.read_bytes() != before


@pytest.mark.parametrize("overwrite", [False, True])
def test_two_inputs_for_one_output_are_refused_before_work(tmp_path, tiny_model, overwrite):
    d = tmp_path / "d"
    d.mkdir()
    png(d / "a.png", 1)
    write_image(d / "a.tif", read_image(png(tmp_path / "x.png", 2)))
    res = invoke("denoise", d, "-o", tmp_path / "out", "--format", "png", "--sigma", 10, "--weights", tiny_model(1),
                 *(["--overwrite"] if overwrite else []))
    assert res.exit_code == 2 and "a.png" in res.output and "a.tif" in res.output and "both" in res.output
    assert not (tmp_path / "out" / "a.png").exists()


def _train_args(data, model, steps, *more):
    return ["train", data, "-o", model, "--steps", steps, "--patch", 16, "--batch", 2, "--widths", "8,16", "--blocks", 1,
            "--precision", "fp32", "--checkpoint-minutes", 0, "--device", "cpu", *more]


def test_resume_refuses_a_damaged_checkpoint_and_keeps_it(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    png(data / "a.png", 1, (32, 32))
    model = tmp_path / "m.safetensors"
    assert invoke(*_train_args(data, model, 2)).exit_code == 0
    ckpt = tmp_path / "m.ckpt.safetensors"
    raw = bytearray(ckpt.read_bytes())
    header = 8 + struct.unpack("<Q", raw[:8])[0]
    raw[header + 100: header + 1100] = b"\xff" * 1000  # 1000 changed bytes: NaN weights
    ckpt.write_bytes(bytes(raw))
    model.unlink()
    res = invoke(*_train_args(data, model, 4, "--resume"))
    assert res.exit_code == 2 and "damaged checkpoint" in res.output and "NaN" in res.output
    assert ckpt.read_bytes() == bytes(raw) and not model.exists()


def test_training_stops_when_the_loss_is_not_finite(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    png(data / "a.png", 1, (32, 32))
    model = tmp_path / "m.safetensors"
    res = invoke(*_train_args(data, model, 30, "--lr", "1e30"))
    assert res.exit_code == 2 and "loss is" in res.output and not model.exists()


def test_a_checkpoint_is_never_written_non_finite(tmp_path, tiny_model):
    """Weights that blew up in the step before the loss did are not checkpointed: the last good
    checkpoint stays (found by bench/fuzz.py: a hostile checkpoint resumed with --checkpoint-minutes 0)."""
    from scoretool.errors import ScoretoolError
    from scoretool.train import TrainConfig, _save_checkpoint
    from scoretool.weights import load_model

    net, _ = load_model(tiny_model(1))
    ema, _ = load_model(tiny_model(1))
    opt = torch.optim.Adam(net.parameters())
    ckpt = tmp_path / "m.ckpt.safetensors"
    _save_checkpoint(ckpt, net, ema, opt, 1, TrainConfig(data="d"), {"kind": "prior"})
    good = ckpt.read_bytes()
    with torch.no_grad():
        next(net.parameters())[0] = float("nan")
    with pytest.raises(ScoretoolError, match="not finite"):
        _save_checkpoint(ckpt, net, ema, opt, 2, TrainConfig(data="d"), {"kind": "prior"})
    assert ckpt.read_bytes() == good


# ---------------------------------------------------------------- 6-7: memory and batch

def test_sr_output_larger_than_the_budget_is_refused(tmp_path, tiny_model):
    src = png(tmp_path / "small.png", 1)
    res = invoke("--max-pixels", 10**7, "restore", src, "-o", tmp_path / "out.png", "--task", "sr", "--scale", 1000,
                 "--weights", tiny_model(1), "--steps", 1)
    assert res.exit_code == 2 and "small.png" in res.output and "limit" in res.output
    assert not (tmp_path / "out.png").exists()


def test_bombs_are_refused_from_the_header(tmp_path):
    png_bomb(tmp_path / "bomb16.png")
    png_bomb(tmp_path / "bomb8.png", bit_depth=8)
    with open(tmp_path / "bomb.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (40960, 40960)})
    import tifffile

    tile = np.zeros((256, 256), np.uint8)  # a real zlib bomb: 94 kB → 8192² pixels
    tifffile.imwrite(tmp_path / "bomb.tif", (tile for _ in range(32 * 32)), shape=(8192, 8192), dtype=np.uint8,
                     tile=(256, 256), compression="zlib")
    Image_ = __import__("PIL.Image", fromlist=["Image"])
    Image_.new("L", (64, 64)).save(tmp_path / "big.jpg")
    from scoretool.files import set_pixel_budget

    set_pixel_budget(10**7)
    try:
        for name in ("bomb16.png", "bomb8.png", "bomb.npy", "bomb.tif"):
            with pytest.raises(InputError, match="above the limit"):
                read_image(tmp_path / name)
        set_pixel_budget(1000)
        with pytest.raises(InputError, match="4,096 pixels, above the limit of 1,000"):
            read_image(tmp_path / "big.jpg")
    finally:
        set_pixel_budget(None)


def test_huge_kernel_model_widths_and_ood_crops_are_refused(tmp_path, tiny_model, ood_model):
    src = png(tmp_path / "a.png", 1)
    res = invoke("restore", src, "-o", tmp_path / "o.png", "--task", "deblur", "--kernel", "gaussian:1e6",
                 "--weights", tiny_model(1))
    assert res.exit_code == 2 and "limit" in res.output
    tensors = load_file(str(tiny_model(1)))
    from safetensors import safe_open

    with safe_open(str(tiny_model(1)), framework="pt") as f:
        meta = dict(f.metadata())
    config = json.loads(meta["config"])
    hostile = tmp_path / "hostile.safetensors"
    for field, value in (("widths", [1000000, 16]), ("blocks_per_level", 100000)):
        save_file(tensors, str(hostile), metadata={**meta, "config": json.dumps({**config, field: value})})
        res = invoke("denoise", src, "-o", tmp_path / "o.png", "--sigma", 10, "--weights", hostile)
        assert res.exit_code == 2 and "do not match the stored architecture" in res.output
    model, train, _ = ood_model
    with safe_open(str(model), framework="numpy") as f:
        meta = dict(f.metadata())
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    spec = json.loads(meta["spec"])
    spec["crops"] = 100000
    from safetensors.numpy import save_file as save_np

    hostile_ood = tmp_path / "hostile-ood.safetensors"
    save_np(arrays, str(hostile_ood), metadata={**meta, "spec": json.dumps(spec)})
    res = invoke("--max-pixels", 10**7, "ood", "score", train, "--model", hostile_ood)
    assert res.exit_code == 2 and "above the limit" in res.output


def test_one_file_failing_in_any_way_does_not_stop_the_batch(tmp_path, tiny_model, monkeypatch):
    d = tmp_path / "d"
    d.mkdir()
    for i in range(3):
        png(d / f"good{i}.png", i)
    png(d / "oom.png", 9)
    import scoretool.api as api

    real = api.denoise_image

    def fake(pixels, *a, **k):  # the 4th file exhausts memory while being processed
        if pixels.mean() == np.float32(oom_mean):
            raise MemoryError("cannot allocate 5.5 GiB")
        return real(pixels, *a, **k)

    oom_mean = read_image(d / "oom.png").pixels.mean()
    monkeypatch.setattr(api, "denoise_image", fake)  # the command imports it from the API when it runs
    res = invoke("denoise", d, "-o", tmp_path / "out", "--sigma", 10, "--weights", tiny_model(1), "--json")
    assert res.exit_code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good0.png", "good1.png", "good2.png"]
    rows = json.loads(res.stdout)["results"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and "oom.png" in failed[0]["error"] and "out of memory" in failed[0]["error"]


def test_twenty_files_four_bad_of_four_kinds(tmp_path, tiny_model):
    d = tmp_path / "d"
    d.mkdir()
    for i in range(16):
        png(d / f"good{i:02d}.png", i)
    png_bomb(d / "bad_bomb.png")
    (d / "bad_truncated.png").write_bytes((d / "good00.png").read_bytes()[:40])
    np.save(d / "bad_nan.npy", np.full((20, 24), np.nan, np.float32))
    Image_ = __import__("PIL.Image", fromlist=["Image"])
    Image_.new("L", (4, 4)).save(d / "bad_tiny.bmp")
    before = digest(d)
    res = invoke("--max-pixels", 10**7, "denoise", d, "-o", tmp_path / "out", "--sigma", 10, "--weights", tiny_model(1),
                 "--json")
    assert res.exit_code == 1
    assert len(list((tmp_path / "out").iterdir())) == 16
    payload = json.loads(res.stdout)
    assert sum(r["status"] == "ok" for r in payload["results"]) == 16
    for bad in ("bad_bomb.png", "bad_truncated.png", "bad_nan.npy", "bad_tiny.bmp"):
        assert res.stderr.count(bad) == 1, (bad, res.stderr)
    assert digest(d) == before


# ---------------------------------------------------------------- 8-10: silent garbage

def test_non_finite_flags_are_usage_errors(tmp_path, tiny_model):
    src = png(tmp_path / "a.png", 1)
    out = tmp_path / "o.png"
    for args in (["denoise", src, "-o", out, "--sigma", "inf"],
                 ["restore", src, "-o", out, "--task", "inpaint", "--mask-random", "0.5", "--sigma-y", "nan"],
                 ["restore", src, "-o", out, "--task", "sr", "--scale", "2", "--sigma-max", "inf"],
                 ["uncertainty", src, "-o", tmp_path / "u", "--sigma", "nan"]):
        res = invoke(*args, "--weights", tiny_model(1))
        assert res.exit_code == 2 and "finite" in res.output, (args, res.output)
        assert not out.exists()


def test_nan_weights_and_nan_results_are_never_written(tmp_path, tiny_model):
    src = png(tmp_path / "a.png", 1)
    net = EDMPrecond(UNetConfig(channels=1, widths=[8, 16], blocks_per_level=1, embed_dim=16))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(float("nan"))
    nan_model = tmp_path / "nan.safetensors"
    save_model(nan_model, net, {"kind": "prior", "sigma_min": 0.002, "sigma_max": 10.0})
    res = invoke("denoise", src, "-o", tmp_path / "o.npy", "--format", "npy", "--sigma", 10, "--weights", nan_model)
    assert res.exit_code == 2 and "NaN" in res.output and not (tmp_path / "o.npy").exists()
    image = read_image(src)
    with pytest.raises(InputError, match="NaN or infinite"):
        write_image(tmp_path / "nan.png", image.with_pixels(np.full_like(image.pixels, np.nan)))
    assert not list(tmp_path.glob("*nan.png*"))


def test_cmyk_jpeg_is_read_as_rgb(tmp_path):
    from PIL import Image as PILImage

    rgb = PILImage.new("RGB", (32, 24), (200, 40, 10))
    rgb.convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    image = read_image(tmp_path / "c.jpg")
    assert image.channels == 3 and image.alpha is None
    assert np.abs(image.pixels[0].mean((0, 1)) * 255 - [200, 40, 10]).max() < 8


@pytest.mark.parametrize("tile", ["0", "7", "-5"])
def test_tile_below_sixteen_is_refused(tmp_path, tiny_model, tile):
    res = invoke("denoise", png(tmp_path / "a.png"), "-o", tmp_path / "o.png", "--sigma", 10, "--weights",
                 tiny_model(1), "--tile", tile)
    assert res.exit_code == 2 and not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------- 11: messages

def test_file_names_print_as_they_are(tmp_path):
    bad = tmp_path / "x:smile:y.png"
    bad.write_bytes(b"not a png")
    res = invoke("denoise", bad, "-o", tmp_path / "o.png", "--sigma", 10)
    assert "x:smile:y.png" in res.output
    res = invoke("restore", png(tmp_path / "a.png"), "-o", tmp_path / "o.png", "--task", "deblur", "--kernel", "gaussian:-1")
    assert res.exit_code == 2 and "gaussian:-1:" in res.output


def test_json_errors_are_json_and_messages_one_line(tmp_path, tiny_model):
    src = png(tmp_path / "a.png")
    res = invoke("denoise", src, "-o", tmp_path / "o.png", "--sigma", 10, "--weights", tmp_path / "none.safetensors", "--json")
    assert res.exit_code == 2 and json.loads(res.stdout)["exit_code"] == 2
    res = invoke("denoise", src, "-o", tmp_path / "o.png", "--tile", "abc", "--json")  # found by the option parser
    assert res.exit_code == 2 and "--tile" in json.loads(res.stdout)["error"]
    tensors = load_file(str(tiny_model(1)))
    tensors.pop(next(iter(tensors)))
    from safetensors import safe_open

    with safe_open(str(tiny_model(1)), framework="pt") as f:
        meta = dict(f.metadata())
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken), metadata=meta)
    d = tmp_path / "d"
    d.mkdir()
    for i in range(3):
        png(d / f"{i}.png", i)
    res = invoke("denoise", d, "-o", tmp_path / "out", "--sigma", 10, "--weights", broken)
    errors = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(errors) == 1 and "broken.safetensors" in errors[0], res.stderr


def test_output_folder_equal_to_input_folder_is_named(tmp_path, tiny_model):
    png(tmp_path / "a.png")
    res = invoke("denoise", tmp_path, "-o", tmp_path, "--sigma", 10, "--weights", tiny_model(1))
    assert res.exit_code == 2 and "is the input folder" in res.output


def test_stale_temporary_files_are_removed_by_the_next_run(tmp_path, tiny_model):
    src = tmp_path / "in"
    src.mkdir()
    png(src / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    dead = out / ".a.png.999999999-abcdef.part.png"  # left by a killed writer (no such process)
    alive = out / f".b.png.{os.getpid()}-abcdef.part.png"  # being written by a running process
    dead.write_bytes(b"x")
    alive.write_bytes(b"x")
    assert invoke("denoise", src, "-o", out, "--sigma", 10, "--weights", tiny_model(1)).exit_code == 0
    assert not dead.exists() and alive.exists()


def test_demo_plans_its_files_and_keeps_an_earlier_run(tmp_path):
    """scoretool demo writes a fixed set of files (api.DEMO_OUTPUTS): an existing one is refused before
    any work unless --overwrite."""
    (tmp_path / "results.json").write_text("earlier run")
    res = CliRunner().invoke(app, ["demo", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "results.json: exists" in res.output
    assert (tmp_path / "results.json").read_text() == "earlier run" and len(list(tmp_path.iterdir())) == 1
