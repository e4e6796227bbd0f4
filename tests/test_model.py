"""scoretool.load: one model object, numpy or torch in, the same kind out, batches and tiles."""

import numpy as np
import pytest
import torch

import scoretool
from scoretool.errors import ScoretoolError


@pytest.fixture
def grey(random_model):
    return scoretool.load(str(random_model(1)), device="cpu", precision="fp32", tile=64)


def test_numpy_layouts_match_the_cached_function(grey, random_model, rng):
    y = rng.random((3, 40, 36, 1), dtype=np.float32)
    ref = scoretool.denoise(y, 0.1, weights=str(random_model(1)), device="cpu", precision="fp32", tile=64)
    assert np.abs(ref - y).max() > 1e-2
    for image, expect in ((y[0, ..., 0], ref[0, ..., 0]), (y[0], ref[0]), (y, ref)):
        out = grey.denoise(image, sigma=0.1)
        assert isinstance(out, np.ndarray) and out.shape == image.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, expect, atol=1e-5, rtol=0)


def test_colour_and_torch_in_torch_out(random_model, rng):
    m = scoretool.load(str(random_model(3)), device="cpu", precision="fp32")
    y = rng.random((2, 33, 41, 3), dtype=np.float32)
    t = torch.from_numpy(y).permute(0, 3, 1, 2)
    out = m.denoise(t, 0.2)
    assert isinstance(out, torch.Tensor) and out.shape == t.shape and out.device == t.device
    np.testing.assert_allclose(out.permute(0, 2, 3, 1).numpy(), m.denoise(y, 0.2), atol=1e-6, rtol=0)


def test_one_sigma_per_image_and_a_batch_equals_single_calls(grey, rng):
    y = torch.from_numpy(rng.random((3, 1, 32, 40), dtype=np.float32))
    sig = [0.05, 0.1, 0.3]
    out = grey.denoise(y, torch.tensor(sig))
    for i, s in enumerate(sig):
        np.testing.assert_allclose(out[i:i + 1].numpy(), grey.denoise(y[i:i + 1], s).numpy(), atol=1e-5, rtol=0)
    assert not torch.allclose(out[0], grey.denoise(y[:1], 0.3)[0], atol=1e-3)  # σ matters


def test_large_images_go_through_the_tiled_path(grey, rng):
    y = rng.random((2, 150, 130, 1), dtype=np.float32)
    out = grey.denoise(y, 0.1)
    for i in range(2):
        x = torch.from_numpy(y[i]).permute(2, 0, 1)[None]
        np.testing.assert_allclose(out[i], grey.engine.denoise_tiled(x, 0.1)[0].permute(1, 2, 0).numpy(), atol=1e-6, rtol=0)


def test_errors_are_clear(grey, rng):
    with pytest.raises(ScoretoolError, match="1-channel images, input has 3"):
        grey.denoise(rng.random((20, 20, 3), dtype=np.float32), 0.1)
    with pytest.raises(ScoretoolError, match="one per image"):
        grey.denoise(rng.random((2, 20, 20, 1), dtype=np.float32), [0.1, 0.2, 0.3])
    with pytest.raises(ScoretoolError, match="must be positive"):
        grey.denoise(rng.random((20, 20), dtype=np.float32), 0.0)
    with pytest.raises(ScoretoolError, match=r"\(B, C, H, W\)"):
        grey.denoise(torch.zeros(20, 20), 0.1)
    assert "channels=1" in repr(grey)


def test_configured_shares_the_network_and_keeps_the_numbers(grey, rng):
    y = torch.from_numpy(rng.random((2, 1, 40, 36), dtype=np.float32))
    bf16 = grey.configured(precision="bf16", fp32_below=0.05)
    assert bf16.engine.net is grey.engine.net and bf16.engine.precision == "bf16"
    sig = torch.tensor([0.01, 0.02])  # all below fp32_below: the fp32 pass, whatever the precision
    torch.testing.assert_close(bf16(y, sig), grey(y, sig), atol=1e-6, rtol=0)
    d = grey.configured(differentiable=True)
    z = y.clone().requires_grad_()
    d(z, 0.1).sum().backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0


def test_api_names_are_the_functions():
    import importlib
    import types

    import scoretool.api as api

    for name in api.__all__:
        assert not isinstance(getattr(api, name), types.ModuleType), name
    for module, names in api._MODULES.items():  # the lazy table lists each API module's __all__
        if not module.startswith(".."):
            assert sorted(importlib.import_module(module, "scoretool.api").__all__) == sorted(names), module
    from scoretool.api import denoise, restore

    assert callable(denoise) and callable(restore) and scoretool.denoise is denoise
