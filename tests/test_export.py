"""Exported denoisers (ONNX via onnxruntime, TorchScript) compute the PyTorch model's D(x, σ)."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from scoretool.cli import app
from scoretool.export import export_format, export_model
from scoretool.weights import load_model

SIZES = [(37, 53), (64, 64), (100, 80)]
SIGMAS = [0.05, 0.4]


def reference(path, x, sigma):
    net, _ = load_model(str(path))
    with torch.no_grad():
        return net(torch.from_numpy(x), sigma).numpy()


def images(channels, h, w, batch=2):
    return np.random.default_rng(h * w).random((batch, channels, h, w), dtype=np.float32)


@pytest.mark.parametrize("channels", [1, 3])
def test_onnx_matches_pytorch(tmp_path, random_model, channels):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    result = export_model(str(random_model(channels)), path)
    assert result["format"] == "onnx" and result["multiple"] == 4
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in SIZES:
        x = images(channels, h, w)
        for s in SIGMAS:
            ref = reference(random_model(channels), x, s)
            assert 1e-2 < np.abs(ref - x).max() < 3  # the network is neither c_skip·x alone nor exploding
            out = sess.run(None, {"x": x, "sigma": np.array(s, np.float32)})[0]
            assert out.shape == x.shape
            np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
    # one σ per image, and a batch of one
    x = images(channels, 37, 53, batch=3)
    sig = np.array([0.02, 0.1, 0.5], np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x, "sigma": sig})[0], reference(random_model(channels), x, torch.from_numpy(sig)), atol=1e-4, rtol=0)
    np.testing.assert_allclose(sess.run(None, {"x": x[:1], "sigma": sig[:1]})[0], reference(random_model(channels), x[:1], 0.02), atol=1e-4, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_torchscript_matches_pytorch(tmp_path, random_model, channels):
    path = tmp_path / "m.pt"
    assert export_model(str(random_model(channels)), path)["format"] == "torchscript"
    ts = torch.jit.load(str(path))
    for h, w in SIZES:
        x = images(channels, h, w)
        for s in SIGMAS:
            out = ts(torch.from_numpy(x), torch.tensor(s)).detach().numpy()
            np.testing.assert_allclose(out, reference(random_model(channels), x, s), atol=1e-4, rtol=0)
    x = images(channels, 64, 64, batch=3)
    sig = torch.tensor([0.02, 0.1, 0.5])
    np.testing.assert_allclose(ts(torch.from_numpy(x), sig).detach().numpy(), reference(random_model(channels), x, sig), atol=1e-4, rtol=0)


def test_format_from_suffix_or_option():
    assert export_format("a.onnx") == "onnx" and export_format("a.pt") == "torchscript"
    assert export_format("a.bin", "onnx") == "onnx"
    with pytest.raises(Exception, match="cannot tell the format"):
        export_format("a.bin")
    with pytest.raises(Exception, match="holds onnx, not torchscript"):  # was written as TorchScript under .onnx
        export_format("a.onnx", "torchscript")


def test_cli_export_refuses_existing_output(tmp_path, tiny_model):
    runner = CliRunner()
    out = tmp_path / "m.pt"
    res = runner.invoke(app, ["export", str(tiny_model(1)), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["format"] == "torchscript" and out.is_file()
    before = out.read_bytes()
    res = runner.invoke(app, ["export", str(tiny_model(1)), "-o", str(out)])
    assert res.exit_code == 2
    assert res.output.strip() == f"Error: {out}: exists (use --overwrite to replace it)"
    assert out.read_bytes() == before and list(tmp_path.iterdir()) == [out]
    res = runner.invoke(app, ["export", str(tiny_model(1)), "-o", str(tmp_path / "m.bin")])
    assert res.exit_code == 2 and res.output.startswith("Error: ") and len(res.output.strip().splitlines()) == 1
    res = runner.invoke(app, ["export", str(tiny_model(1)), "-o", str(tmp_path / "n.pt"), "--opset", "5"])  # was ignored
    assert res.exit_code == 2 and "an ONNX setting" in res.output and not (tmp_path / "n.pt").exists()
    assert runner.invoke(app, ["export", str(tiny_model(1)), "-o", str(out), "--overwrite"]).exit_code == 0
