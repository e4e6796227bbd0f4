"""The trainer: DSM loss prefers the true posterior mean, a toy model learns the MMSE denoiser,
resume is exact, time limits stop cleanly, and DDP runs on two CPU processes."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from scoretool.errors import ScoretoolError
from scoretool.train import TrainConfig, checkpoint_path, dsm_loss, learning_rate, train
from scoretool.weights import load_model

MU, TAU = 0.5, 0.15  # toy prior: every pixel i.i.d. N(MU, TAU²)


def gaussian_mmse(y, sigma):
    """Closed-form posterior mean for the toy prior: μ + τ²/(τ²+σ²)·(y − μ)."""
    s = torch.as_tensor(sigma).reshape(-1, 1, 1, 1)
    return MU + TAU**2 / (TAU**2 + s**2) * (y - MU)


class Oracle(torch.nn.Module):
    def __init__(self, bias=0.0):
        super().__init__()
        self.bias = bias
        self.config = type("C", (), {"sigma_data": 0.5})()

    def forward(self, x, sigma):
        return gaussian_mmse(x, sigma) + self.bias


def test_dsm_loss_is_lowest_for_the_posterior_mean():
    g = torch.Generator().manual_seed(0)
    u = MU + TAU * torch.randn(64, 1, 16, 16, generator=g)
    sigma = torch.exp(torch.empty(64).uniform_(-4, 0, generator=g))
    noise = torch.randn(u.shape, generator=g)
    cpu = torch.device("cpu")
    best = dsm_loss(Oracle(), u, sigma, noise, cpu, "fp32")
    for bias in (0.02, -0.02):
        assert dsm_loss(Oracle(bias), u, sigma, noise, cpu, "fp32") > best


@pytest.fixture(scope="module")
def toy_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    for i in range(8):
        np.save(folder / f"{i}.npy", (MU + TAU * rng.standard_normal((32, 32))).astype(np.float32))
    return folder


def tiny_config(folder, **kw):
    base = dict(data=str(folder), steps=200, patch=16, batch=8, lr=3e-3, widths=[8, 16], blocks_per_level=1,
                sigma_min=0.02, sigma_max=1.0, precision="fp32", checkpoint_minutes=100)
    base.update(kw)
    return TrainConfig(**base)


def test_toy_denoiser_approaches_mmse(toy_folder, tmp_path):
    out = tmp_path / "toy.safetensors"
    train(tiny_config(toy_folder, steps=600), out)
    net, info = load_model(str(out), channels=1)
    assert info["steps"] == 600 and info["kind"] == "prior"
    g = torch.Generator().manual_seed(1)
    x = MU + TAU * torch.randn(16, 1, 32, 32, generator=g)
    sigma = 0.1
    y = x + sigma * torch.randn(x.shape, generator=g)
    with torch.no_grad():
        d = net(y, sigma)
    mmse = ((gaussian_mmse(y, sigma) - x) ** 2).mean()
    learned = ((d - x) ** 2).mean()
    noisy = ((y - x) ** 2).mean()
    assert learned < mmse + 0.25 * (noisy - mmse)  # most of the way from the noisy input to the MMSE


def test_resume_is_exact(toy_folder, tmp_path):
    cfg = tiny_config(toy_folder, steps=12, checkpoint_minutes=0)
    full = tmp_path / "full.safetensors"
    train(cfg, full)

    part = tmp_path / "part.safetensors"

    def interrupt(step, loss, ips):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(toy_folder, steps=12, checkpoint_minutes=0), part, on_step=interrupt)
    assert checkpoint_path(part).exists() and not part.exists()
    with pytest.raises(ScoretoolError, match="--patch 16 → 8"):  # another data order is not this run continued
        train(tiny_config(toy_folder, steps=12, checkpoint_minutes=0, patch=8), part, resume=True)
    info = train(tiny_config(toy_folder, steps=12, checkpoint_minutes=0), part, resume=True)
    assert info["steps"] == 12
    a, _ = load_model(str(full))
    b, _ = load_model(str(part))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=1e-5, atol=1e-6, msg=k)


def test_time_limit_stops_with_a_usable_model(toy_folder, tmp_path):
    out = tmp_path / "t.safetensors"
    info = train(tiny_config(toy_folder, steps=10**6, time_limit_minutes=0.02), out)
    assert info["stopped_by_time_limit"] and 0 < info["steps"] < 10**6
    load_model(str(out))
    assert checkpoint_path(out).exists()


def test_ddp_two_cpu_processes(toy_folder, tmp_path):
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           "-m", "scoretool", "train", str(toy_folder), "-o", str(out), "--steps", "6", "--patch", "16",
           "--batch", "4", "--widths", "8,16", "--precision", "fp32", "--quiet"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    _, info = load_model(str(out))
    assert info["processes"] == 2 and info["batch"] == 8 and info["steps"] == 6


def test_init_from_a_grey_model_starts_a_colour_one(toy_folder, tmp_path, tiny_model):
    """--init with another channel count: the colour net starts as the grey one on the channel mean."""
    from scoretool.nets import adapt_channels

    grey, _ = load_model(str(tiny_model(1)))
    for p in grey.parameters():
        torch.nn.init.normal_(p, std=0.1)
    colour = adapt_channels(grey, 3)
    x = torch.rand(1, 1, 16, 16).repeat(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(colour(x, 0.2), grey(x[:, :1], 0.2).repeat(1, 3, 1, 1), rtol=1e-4, atol=1e-5)


def test_widen_keeps_the_function_and_grows(tiny_model):
    """--init with wider --widths: D(x, σ) unchanged (every weight random, so a misplaced copy shows),
    and the new channels learn: the head's weights from them get a gradient."""
    from scoretool.nets import widen

    small, _ = load_model(str(tiny_model(3)))
    for p in small.parameters():
        torch.nn.init.normal_(p, std=0.1)
    big = widen(small, [12, 24])
    x, sigma = torch.rand(2, 3, 20, 28), torch.tensor([0.05, 0.8])
    with torch.no_grad():
        torch.testing.assert_close(big(x, sigma), small(x, sigma), rtol=1e-5, atol=1e-5)
    big(x, sigma).square().sum().backward()
    assert big.net.head.weight.grad[:, 8:].abs().sum() > 0
    assert sum(p.numel() for p in big.parameters()) > 1.5 * sum(p.numel() for p in small.parameters())
    with pytest.raises(ValueError, match="no narrower"):
        widen(small, [4, 16])


def test_init_with_wider_widths_trains(toy_folder, tmp_path, tiny_model):
    out = tmp_path / "wide.safetensors"
    train(TrainConfig(data=str(toy_folder), steps=2, patch=16, batch=2, init=str(tiny_model(1)), widths=[16, 32]), out)
    net, _ = load_model(out)
    assert net.config.widths == [16, 32]


def test_sigterm_stops_with_checkpoint_and_model(toy_folder, tmp_path):
    """kill (SIGTERM) during training: the step finishes, the checkpoint and a loadable model are written,
    the exit code is 0, and the record says why it stopped."""
    import signal
    import time

    out = tmp_path / "sig.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "scoretool", "train", str(toy_folder), "-o", str(out), "--steps", "1000000",
           "--patch", "16", "--batch", "4", "--widths", "8,16", "--precision", "fp32", "--quiet",
           "--checkpoint-minutes", "0.001"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not checkpoint_path(out).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert checkpoint_path(out).exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    _, info = load_model(str(out))
    assert info["stopped_by_signal"] and 0 < info["steps"] < 1000000


def test_worker_processes_give_the_same_model(toy_folder, tmp_path):
    """Patch i is a pure function of (seed, i), so cutting patches in DataLoader workers changes nothing."""
    a, b = tmp_path / "w0.safetensors", tmp_path / "w2.safetensors"
    train(tiny_config(toy_folder, steps=6), a)
    train(tiny_config(toy_folder, steps=6, workers=2), b)
    na, _ = load_model(str(a))
    nb, _ = load_model(str(b))
    for (k, va), vb in zip(na.state_dict().items(), nb.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=1e-5, atol=1e-6, msg=k)


def test_time_schedule_anneals_by_the_time_limit():
    cfg = tiny_config(".", steps=10**6, lr=1e-3, lr_schedule="time", time_limit_minutes=1)
    assert learning_rate(cfg, 1000, time_fraction=0.0) == pytest.approx(1e-3, rel=1e-3)
    assert learning_rate(cfg, 1000, time_fraction=0.5) == pytest.approx(0.51e-3, rel=1e-3)
    assert learning_rate(cfg, 1000, time_fraction=1.0) == pytest.approx(0.02e-3)
    steps_cfg = tiny_config(".", steps=10**6, lr=1e-3)  # the default ignores the clock
    assert learning_rate(steps_cfg, 1000, time_fraction=1.0) == pytest.approx(1e-3, rel=1e-3)


def test_time_schedule_needs_a_time_limit(toy_folder, tmp_path):
    with pytest.raises(ScoretoolError, match="--time-limit"):
        train(tiny_config(toy_folder, lr_schedule="time"), tmp_path / "x.safetensors")


def test_distillation_regresses_on_the_teacher(toy_folder, tmp_path):
    teacher_path = tmp_path / "teacher.safetensors"
    train(tiny_config(toy_folder, steps=300), teacher_path)
    teacher, _ = load_model(str(teacher_path))
    g = torch.Generator().manual_seed(2)
    x = MU + TAU * torch.randn(16, 1, 32, 32, generator=g)
    sigma = torch.full((16,), 0.1)
    noise = torch.randn(x.shape, generator=g)
    cpu = torch.device("cpu")
    assert dsm_loss(teacher, x, sigma, noise, cpu, "fp32", teacher=teacher).item() < 1e-10  # its own perfect student (up to float rounding)

    def distance_to_teacher(teacher_arg):
        path = tmp_path / "student.safetensors"
        info = train(tiny_config(toy_folder, steps=300, seed=2, teacher=teacher_arg), path)
        assert info["teacher"] == teacher_arg
        student, _ = load_model(str(path))
        with torch.no_grad():
            y = x + 0.1 * noise
            return ((student(y, 0.1) - teacher(y, 0.1)) ** 2).mean().item()

    # the same steps and data: the distilled student ends about twice as close to the teacher
    assert distance_to_teacher(str(teacher_path)) < 0.7 * distance_to_teacher(None)


def test_colour_permute_reorders_channels_of_half_the_patches(tmp_path, toy_folder):
    """Each permuted patch is the unpermuted patch (same seed, same crop and flip) with its channels
    in another order; about half the patches are permuted, over all five other orders; grey data are
    refused."""
    import imageio.v3 as iio

    from scoretool.train import OTHER_CHANNEL_ORDERS, PatchDataset

    rng = np.random.default_rng(0)
    iio.imwrite(tmp_path / "a.png", rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))
    files = [tmp_path / "a.png"]
    plain = PatchDataset(files, 8, 3, 3, 16)
    permuted = PatchDataset(files, 8, 3, 3, 16, colour_permute=True)
    orders = []
    for i in range(200):
        p, q = plain[i], permuted[i]
        if not torch.equal(p, q):
            orders += [o for o in OTHER_CHANNEL_ORDERS if torch.equal(p[list(o)], q)]
    assert 70 < len(orders) < 130 and set(orders) == set(OTHER_CHANNEL_ORDERS)
    with pytest.raises(ScoretoolError, match="colour-permute"):
        train(tiny_config(toy_folder, steps=1, colour_permute=True), tmp_path / "m.safetensors")


def test_bad_files_are_skipped_before_the_first_step(toy_folder, tmp_path):
    """One bad file never stops a training: it is reported up front and left out (CLI exit code 1)."""
    import shutil

    from typer.testing import CliRunner

    from scoretool.cli import app

    folder = tmp_path / "data"
    shutil.copytree(toy_folder, folder)
    (folder / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # sorts first: the channel count is not read from it
    np.save(folder / "nan.npy", np.full((32, 32), np.nan, np.float32))
    res = CliRunner().invoke(app, ["train", str(folder), "-o", str(tmp_path / "m.safetensors"), "--steps", "2",
                                   "--batch", "2", "--patch", "16", "--widths", "8,16", "--blocks", "1", "--json"])
    assert res.exit_code == 1, res.output
    assert "skipped" in res.stderr and "0.png" in res.stderr and "nan.npy" in res.stderr
    record = load_model(str(tmp_path / "m.safetensors"))[1]
    assert len(record["skipped_files"]) == 2 and "8 clean images" in record["training_data"]


def test_noise_options_of_a_clean_prior_are_refused(toy_folder, tmp_path):
    """--zeta, --sigma, --k, --noise describe noisy training data; with --clean they were dropped silently."""
    from typer.testing import CliRunner

    from scoretool.cli import app

    res = CliRunner().invoke(app, ["train", str(toy_folder), "-o", str(tmp_path / "m.safetensors"), "--clean", "--steps", "2",
                                   "--zeta", "0.01", "--noise", "poisson"])
    assert res.exit_code == 2 and "--noise, --zeta: the noise of noisy training data" in res.stderr
    assert not (tmp_path / "m.safetensors").exists()


def test_noisy_sigma_is_in_the_data_pixel_units(toy_folder, tmp_path):
    """`train --sigma`, like every --sigma, is in the images' pixel units (raw for float .npy); the model records
    grey levels of 255. Grey levels given for float data are refused, as is a folder that mixes value ranges."""
    from typer.testing import CliRunner

    from scoretool.cli import app
    from scoretool.io import Image, write_image

    args = ["--noisy", "--noise", "gaussian", "--steps", "1", "--batch", "2", "--patch", "16", "--widths", "8,16",
            "--blocks", "1", "--device", "cpu"]
    res = CliRunner().invoke(app, ["train", str(toy_folder), "-o", str(tmp_path / "m.safetensors"), "--sigma", "0.1", *args])
    assert res.exit_code == 0, res.output
    assert load_model(str(tmp_path / "m.safetensors"))[1]["noise"]["sigma"] == pytest.approx(25.5)
    res = CliRunner().invoke(app, ["train", str(toy_folder), "-o", str(tmp_path / "g.safetensors"), "--sigma", "25", *args])
    assert res.exit_code == 2 and "--sigma 25 is wider than the whole value range 0..1" in res.output and "0.098" in res.output
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "a.npy", np.full((32, 32), 0.5, np.float32))
    write_image(mixed / "b.png", Image(np.full((1, 32, 32, 1), 0.5, np.float32), np.dtype(np.uint8), None, (0, 255)))
    res = CliRunner().invoke(app, ["train", str(mixed), "-o", str(tmp_path / "x.safetensors"), "--sigma", "0.1", *args])
    assert res.exit_code == 2 and "mixes value ranges (0..1, 0..255)" in res.output


@pytest.mark.parametrize("extra, words", [
    (["--clean", "--sigma-min", "0.5", "--sigma-max", "0.1"], "the smallest σ must be below the largest"),
    (["--clean", "--sigma-min", "20"], "--sigma-min 20, --sigma-max 10: the smallest σ"),
    (["--noisy", "--noise", "gaussian", "--zeta", "0.01"], "--zeta is the parameter of poisson noise, not of --noise gaussian"),
    (["--noisy", "--noise", "poisson", "--k", "100"], "--k is the parameter of gamma noise"),
])
def test_inconsistent_training_options_are_refused(toy_folder, tmp_path, extra, words):
    """A σ range upside down, or a noise parameter of another family, was trained and recorded as given."""
    from typer.testing import CliRunner

    from scoretool.cli import app

    res = CliRunner().invoke(app, ["train", str(toy_folder), "-o", str(tmp_path / "m.safetensors"), "--steps", "1", *extra])
    assert res.exit_code == 2 and words in res.output, res.output
    assert not (tmp_path / "m.safetensors").exists()
