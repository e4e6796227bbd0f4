"""EDM preconditioning and its loss against their formulas (Karras et al. 2022, Table 1 and Eq. 8)."""

import math

import torch
from torch import nn

from scoretool.nets import EDMPrecond, UNetConfig, edm_loss

SD = 0.5  # σ_data


class AffineF(nn.Module):
    """A stand-in for the U-Net with a known answer: F(z, c_noise) = 2·z + c_noise."""

    multiple = 1

    def forward(self, z, c_noise):
        return 2 * z + c_noise[:, None, None, None]


def test_precond_wraps_f_by_the_edm_coefficients():
    net = EDMPrecond(UNetConfig(channels=1, widths=[8], blocks_per_level=1, embed_dim=16))
    net.net = AffineF()
    x = torch.rand(2, 1, 5, 7, dtype=torch.float64)
    sigma = torch.tensor([0.1, 2.0])
    got = net(x, sigma)
    for i, s in enumerate(sigma.tolist()):
        c_skip, c_out, c_in = SD**2 / (s**2 + SD**2), s * SD / math.sqrt(s**2 + SD**2), 1 / math.sqrt(s**2 + SD**2)
        want = c_skip * x[i] + c_out * (2 * c_in * x[i] + math.log(s) / 4)
        torch.testing.assert_close(got[i].double(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net.score(x, sigma), (got - x) / sigma[:, None, None, None] ** 2)


def test_edm_loss_weights_the_error_by_one_over_c_out_squared():
    u = torch.rand(2, 1, 4, 4)
    sigma = torch.tensor([0.05, 3.0])
    noise = torch.randn(2, 1, 4, 4)
    off_by = torch.tensor([0.1, -0.2])[:, None, None, None]
    loss = edm_loss(lambda y, s: u + off_by, u, sigma, noise, SD)
    c_out = sigma * SD / (sigma**2 + SD**2).sqrt()
    want = (off_by.flatten() ** 2 / c_out**2).mean()
    torch.testing.assert_close(loss, want)
    teacher_loss = edm_loss(lambda y, s: u + off_by, u, sigma, noise, SD, teacher=lambda y, s: u + off_by)
    assert teacher_loss.item() == 0.0


def test_model_files_keep_their_tensor_names(tmp_path):
    """The wrapper holds F as `net`, the prefix of every tensor in a model file."""
    from safetensors import safe_open

    from scoretool.weights import save_model

    net = EDMPrecond(UNetConfig(channels=1, widths=[8, 16], blocks_per_level=1, embed_dim=16))
    save_model(tmp_path / "m.safetensors", net, {})
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        names = set(f.keys())
    assert names == {f"net.{k}" for k in net.net.state_dict()} and "net.stem.weight" in names


def test_macs_per_pixel_counts_every_convolution():
    """Widths 4/8, one block per level, grey: stem 36, level-0 block 144 + 144, down 16, level-1 block
    72 + 144 + skip 8, up 32, decoder block 288 + 144 + skip 32, head 36 = 1096 (conv1 included, which
    the one-σ fast path calls without its module)."""
    from scoretool.nets import macs_per_pixel

    net = EDMPrecond(UNetConfig(channels=1, widths=[4, 8], blocks_per_level=1))
    assert macs_per_pixel(net, size=16) == 1096
