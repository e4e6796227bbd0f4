"""Weights format: round trip with metadata, rejection of foreign files, bundled registry."""

import pytest
import torch
from safetensors.torch import save_file

from scoretool.errors import ScoretoolError
from scoretool.nets import EDMPrecond, UNetConfig
from scoretool.weights import bundled_models, load_model, resolve_weights, save_model


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    net = EDMPrecond(UNetConfig(channels=3, widths=[8, 16], blocks_per_level=1, embed_dim=16))
    for p in net.parameters():
        torch.nn.init.normal_(p)
    save_model(tmp_path / "m.safetensors", net, {"sigma_min": 0.002, "measured_psnr": {"BSD68": 29.0}})
    back, info = load_model(str(tmp_path / "m.safetensors"), channels=3)
    assert info["measured_psnr"] == {"BSD68": 29.0} and back.config == net.config
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(back(x, 0.1), net(x, 0.1))


def test_foreign_safetensors_is_rejected(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ScoretoolError, match="not a scoretool model"):
        load_model(str(tmp_path / "other.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not at all")
    with pytest.raises(ScoretoolError, match="not a readable safetensors"):
        load_model(str(tmp_path / "junk.safetensors"))


def test_unknown_name_and_channel_mismatch(tiny_model):
    with pytest.raises(ScoretoolError, match="not a bundled model name"):
        resolve_weights("no-such-model")
    with pytest.raises(ScoretoolError, match="1-channel"):
        load_model(str(tiny_model(1)), channels=3)


def test_bundled_models_load_and_denoise():
    """Every bundled model loads and, at σ = 0.1, brings a smooth noisy image closer to the clean one."""
    g = torch.Generator().manual_seed(0)
    for name in bundled_models():
        net, info = load_model(name)
        assert info["sigma_max"] > info["sigma_min"] > 0
        c = net.config.channels
        ramp = torch.linspace(0.2, 0.8, 48)
        clean = (ramp[:, None] + ramp[None, :]).div(2).expand(1, c, 48, 48)
        noisy = clean + 0.1 * torch.randn(clean.shape, generator=g)
        with torch.no_grad():
            denoised = net(noisy, 0.1)
        if info.get("kind") == "prior":
            assert (denoised - clean).square().mean() < 0.5 * (noisy - clean).square().mean(), name
        else:
            assert torch.isfinite(denoised).all(), name


def test_update_info_records_measurements(tmp_path, tiny_model):
    import shutil

    from scoretool.weights import update_info

    path = tmp_path / "m.safetensors"
    shutil.copy(tiny_model(1), path)
    update_info(path, measured_psnr={"BSD68 σ=25": 29.0})
    _, info = load_model(str(path))
    assert info["measured_psnr"] == {"BSD68 σ=25": 29.0} and info["training_data"] == "none (test)"


def test_model_files_get_ordinary_permissions(tmp_path):
    """safetensors creates 0600 files; saving and re-recording a model both leave 0666 less the umask."""
    import os

    from scoretool.weights import update_info

    umask = os.umask(0o022)
    try:
        path = tmp_path / "m.safetensors"
        save_model(path, EDMPrecond(UNetConfig(widths=[8, 16], blocks_per_level=1, embed_dim=16)), {"kind": "prior"})
        assert path.stat().st_mode & 0o777 == 0o644
        update_info(path, measured_psnr={"BSD68": 1.0})
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(umask)
