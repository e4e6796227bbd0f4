"""Engine: tiled application equals whole application; device selection; the network's contract."""

import pytest
import torch

from scoretool.engine import apply_tiled, select_device, tile_grid
from scoretool.errors import ScoretoolError
from scoretool.nets import EDMPrecond, UNetConfig


def small_rf_net(channels=3):
    """Two 3×3 convolutions: receptive radius 2 pixels, far inside the overlap."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(channels, 4, 3, padding=1), torch.nn.Tanh(),
                               torch.nn.Conv2d(4, channels, 3, padding=1)).eval()


@pytest.mark.parametrize("h,w,tile", [(37, 31, 16), (1001, 777, 256), (64, 200, 64)])
def test_tiled_equals_whole(h, w, tile):
    net = small_rf_net()
    x = torch.rand(1, 3, h, w)
    with torch.no_grad():
        whole = net(x)
    tiled = apply_tiled(net, x, tile=tile, overlap=16, multiple=8)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 1e-4


def test_tiled_unet_has_no_seams():
    """The U-Net's receptive field exceeds the overlap, yet blending keeps tiles close to whole."""
    torch.manual_seed(0)
    net = EDMPrecond(UNetConfig(channels=1, widths=[8, 16], blocks_per_level=1, embed_dim=16))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.rand(1, 1, 150, 130)
    with torch.no_grad():
        whole = net(x, 0.1)
        tiled = apply_tiled(lambda t: net(t, 0.1), x, tile=64, overlap=32, multiple=net.multiple)
    assert (tiled - whole).abs().max() < 2e-3



def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ScoretoolError, match="no CUDA"):
            select_device("cuda")
    with pytest.raises(ScoretoolError):
        select_device("tpu")


@pytest.mark.parametrize("channels,h,w", [(1, 37, 31), (3, 20, 45)])
def test_network_any_size_and_score(channels, h, w):
    net = EDMPrecond(UNetConfig(channels=channels, widths=[8, 16, 32], blocks_per_level=1, embed_dim=16)).eval()
    x = torch.rand(2, channels, h, w)
    sigma = torch.tensor([0.05, 0.5])
    with torch.no_grad():
        d = net(x, sigma)
        s = net.score(x, sigma)
    assert d.shape == x.shape
    # untrained head is zero: D = c_skip·x, and s = (D − x)/σ²
    torch.testing.assert_close(s, (d - x) / sigma[:, None, None, None] ** 2)
    sd = 0.5
    torch.testing.assert_close(d, x * (sd**2 / (sigma**2 + sd**2))[:, None, None, None])


def test_dihedral_transforms_are_the_eight_distinct_symmetries_and_invert():
    from scoretool.engine import dihedral

    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    images = [dihedral(x, i) for i in range(8)]
    assert len({tuple(t.flatten().tolist()) for t in images}) == 8
    for i, t in enumerate(images):
        assert torch.equal(dihedral(t, i, inverse=True), x)
    assert torch.equal(dihedral(x, 9), images[1])


def test_dihedral_ensemble_is_exact_for_an_equivariant_function_and_averages_otherwise():
    from scoretool.engine import dihedral_ensemble

    x = torch.rand(1, 1, 12, 12)
    blur = lambda t: torch.nn.functional.avg_pool2d(t, 3, 1, 1, count_include_pad=False)  # noqa: E731
    for n in (1, 2, 4, 8):
        torch.testing.assert_close(dihedral_ensemble(blur, x, n), blur(x))
    shift = lambda t: torch.roll(t, 1, dims=-1)  # noqa: E731  (not equivariant: the ensemble averages the shifts)
    avg = dihedral_ensemble(shift, x, 2)
    torch.testing.assert_close(avg, 0.5 * (torch.roll(x, 1, -1) + torch.roll(x, -1, -1)))
    with pytest.raises(ScoretoolError):
        dihedral_ensemble(blur, x, 3)


def test_inference_fold_of_sigma_scale_shift_equals_the_training_path():
    """With one σ for the batch and no gradients, ResBlock folds (1+scale, shift) into conv1: same D(x, σ)."""
    torch.manual_seed(0)
    net = EDMPrecond(UNetConfig(channels=1, widths=[8, 16], blocks_per_level=1))
    for p in net.parameters():  # non-zero everywhere, so every term of the block matters
        torch.nn.init.normal_(p, std=0.2)
    x = torch.rand(3, 1, 20, 24)
    with torch.no_grad():
        folded = net(x, 0.1)
        mixed = net(x, torch.tensor([0.1, 0.1, 0.2]))  # different σ per image: the unfolded path
    unfolded = net(x, 0.1).detach()  # gradients enabled: the training path
    assert torch.allclose(folded, unfolded, atol=1e-5)
    assert torch.allclose(mixed[:2], unfolded[:2], atol=1e-5)
    assert not torch.allclose(mixed[2], unfolded[2], atol=1e-3)


def test_small_images_go_through_the_network_together():
    """A stack of images that fit in one tile: as many per call as `batch` tiles hold, same result as one
    by one, progress counts images."""
    net = EDMPrecond(UNetConfig(channels=1, widths=[8, 16], blocks_per_level=1, embed_dim=16)).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(37, 1, 24, 20)
    calls, counted = [], []

    def fn(t):
        calls.append(t.shape[0])
        with torch.no_grad():
            return net(t, 0.1)

    out = apply_tiled(fn, x, tile=48, batch=1, progress=counted.append)
    assert calls == [4] * 9 + [1] and sum(counted) == 37  # 48² holds 4 images of 24×20
    one = torch.cat([fn(xi[None]) for xi in x])
    torch.testing.assert_close(out, one, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tile,overlap,multiple", [(512, 64, 8), (512, 64, 32), (128, 64, 16), (80, 64, 8), (16, 64, 8)])
def test_tile_grid_covers_on_the_grid_with_no_more_work_than_a_fixed_stride(tile, overlap, multiple):
    """Every length: the tiles cover it with neighbours overlapping by ≥ overlap (or tile − multiple, the most a
    tile that small allows), start on the U-Net's grid, and cost the network no more pixels than tiles of
    side `tile` stepped by tile − overlap (rounded to the grid) with the last one flush with the border."""
    need = min(overlap, tile - multiple)
    stride = max(multiple, (tile - overlap) // multiple * multiple)
    for length in [*range(tile + 1, 3 * tile + 200), 1401, 4001, 8000]:
        side, _, starts, _ = tile_grid(length, 8, tile, overlap, multiple)
        assert starts[0] == 0 and starts[-1] + side == length and side <= tile and side % multiple == 0
        assert all(s % multiple == 0 for s in starts[:-1]) and starts == sorted(set(starts))
        assert all(need <= a + side - b for a, b in zip(starts, starts[1:])), length
        assert len(starts) * side <= (len(range(0, length - tile, stride)) + 1) * tile, length


def test_tile_grid_balances_the_tiles():
    """A 2048 side takes 5 tiles of 464 (1.28× the pixels), where 5 of 512 cost 1.56×; 1024 takes 3 of 384."""
    assert tile_grid(2048, 2048, 512, 64, 8)[::2] == (464, [0, 392, 792, 1184, 1584])
    assert tile_grid(1024, 1024, 512, 64, 8)[::2] == (384, [0, 320, 640])
