"""Operator contract on odd sizes (A·A†·A = A, <A x, y> = <x, Aᵀ y>, through the base class's checks), and known answers."""

import numpy as np
import pytest
import torch

from scoretool import operators as ops

H, W = 37, 31


def _make(name, c):
    g = torch.Generator().manual_seed(1)
    shape = (c, H, W)
    if name == "avgpool2":
        return ops.AvgPoolSR(2, shape)
    if name == "avgpool4":
        return ops.AvgPoolSR(4, shape)
    if name == "avgpool3":
        return ops.AvgPoolSR(3, shape)
    if name == "bicubic4":
        return ops.BicubicSR(4, shape)
    if name == "bicubic3":
        return ops.BicubicSR(3, shape)
    if name == "inpaint":
        return ops.Inpaint(ops.random_known_mask((H, W), 0.5, g), shape)
    if name == "colorize":
        return ops.Colorize(shape)
    if name == "blur_gauss":
        return ops.Blur(ops.gaussian_kernel(2.0), shape)
    if name == "blur_uniform":
        return ops.Blur(ops.uniform_kernel(5), shape)
    if name == "blur_user":
        return ops.Blur(torch.rand(4, 6, generator=g).numpy(), shape)
    if name == "cs":
        return ops.CompressedSensing(0.25, shape, block=8, seed=3)
    if name == "blur_then_pool":
        return ops.Blur(ops.gaussian_kernel(1.0), shape).then(ops.AvgPoolSR(2, shape))
    raise KeyError(name)


NAMES = ["avgpool2", "avgpool3", "avgpool4", "bicubic3", "bicubic4", "inpaint", "colorize", "blur_gauss",
         "blur_uniform", "blur_user", "cs", "blur_then_pool"]


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_operator_contract(name, c):
    if name == "colorize" and c == 1:
        pytest.skip("colourisation maps 3 channels to 1")
    op = _make(name, c)
    assert op.adjointness_test() < 1e-12
    assert op.pseudo_inverse_test() < 1e-3
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, *op.x_shape, generator=g, dtype=torch.float64)
    ax = op.A(x)
    assert tuple(ax.shape[1:]) == tuple(op.y_shape)
    # A† A is a projection (A† A A† A = A† A)
    p = op.A_dagger(ax)
    assert (op.A_dagger(op.A(p)) - p).norm() / p.norm() < 1e-3
    # float32 works and keeps its dtype
    assert op.A(x.float()).dtype == torch.float32


def test_avgpool_known_answer_and_edges():
    op = ops.AvgPoolSR(4, (1, 6, 5))
    x = torch.arange(30, dtype=torch.float64).reshape(1, 1, 6, 5)
    y = op.A(x)
    assert y.shape == (1, 1, 2, 2)
    assert y[0, 0, 0, 0] == x[0, 0, :4, :4].mean()
    assert y[0, 0, 1, 1] == x[0, 0, 4:, 4:].mean()  # cut corner block: 2×1 pixels
    up = op.A_dagger(y)
    assert up.shape == x.shape and up[0, 0, 5, 4] == y[0, 0, 1, 1]


def test_bicubic_rows_sum_to_one_and_constant_preserved():
    M = ops.bicubic_matrix(37, 4)
    assert M.shape == (10, 37)
    np.testing.assert_allclose(M.sum(1), 1, atol=1e-12)
    op = ops.BicubicSR(4, (1, 37, 31))
    assert torch.allclose(op.A(torch.full((1, 1, 37, 31), 0.3, dtype=torch.float64)), torch.tensor(0.3, dtype=torch.float64))


def test_blur_matches_circular_convolution():
    from scipy.ndimage import convolve

    k = np.random.default_rng(0).random((3, 5))
    x = np.random.default_rng(1).random((H, W))
    op = ops.Blur(k, (1, H, W))
    got = op.A(torch.from_numpy(x)[None, None])[0, 0].numpy()
    ref = convolve(x, k, mode="wrap")  # scipy convolve flips k: true convolution, centred
    np.testing.assert_allclose(got, ref, atol=1e-10)


def test_cs_rows_orthonormal():
    op = ops.CompressedSensing(0.3, (1, 37, 31), block=8)
    y = torch.randn(1, *op.y_shape, dtype=torch.float64)
    torch.testing.assert_close(op.A(op.A_adjoint(y)), y)


def test_bad_inputs():
    for s in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            ops.AvgPoolSR(s, (1, 8, 8))
    with pytest.raises(ValueError, match="does not match"):
        ops.Inpaint(torch.ones(5, 5), (1, 8, 8))
    with pytest.raises(ValueError, match="2-D"):
        ops.Blur(np.ones((3, 3, 3)), (1, 8, 8))
    with pytest.raises(ValueError, match="3-channel"):
        ops.Colorize((1, 8, 8))
    with pytest.raises(ValueError, match="cannot compose"):
        ops.AvgPoolSR(2, (1, 8, 8)).then(ops.AvgPoolSR(2, (1, 8, 8)))


def test_contract_checks_catch_a_wrong_adjoint_and_a_wrong_pseudo_inverse():
    class HalfAdjoint(ops.AvgPoolSR):
        def A_adjoint(self, y):
            return super().A_adjoint(y) / 2

        def A_dagger(self, y):
            return super().A_dagger(y) * 1.1

    op = HalfAdjoint(2, (1, H, W))
    assert op.adjointness_test() > 0.1
    assert op.pseudo_inverse_test() > 0.05


def test_constants_are_buffers_that_move_with_the_module():
    op = ops.Blur(ops.gaussian_kernel(1.0), (1, H, W)).then(ops.AvgPoolSR(2, (1, H, W)))
    names = {name for name, _ in op.named_buffers()}
    assert {"ops.0.K", "ops.0.Kp", "ops.1.counts"} <= names
    assert op.follow(torch.empty(1, device="meta")) is op  # an input elsewhere moves the buffers there, once
    assert {b.device.type for b in op.buffers()} == {"meta"}


def test_gaussian_kernel_known_values():
    g = np.exp(-0.5 * np.array([-1.0, 0.0, 1.0]) ** 2)
    np.testing.assert_allclose(ops.gaussian_kernel(1.0, 3), np.outer(g, g) / np.outer(g, g).sum(), atol=1e-15)
    assert ops.gaussian_kernel(2.0).shape == (13, 13)  # 2·⌈3·std⌉ + 1
    g = np.exp(-0.5 * np.array([-1.5, -0.5, 0.5, 1.5]) ** 2)  # an even size is centred between two pixels
    np.testing.assert_allclose(ops.gaussian_kernel(1.0, 4), np.outer(g, g) / np.outer(g, g).sum(), atol=1e-15)


@pytest.mark.parametrize("name", ["avgpool2", "avgpool4", "colorize", "inpaint", "cs", "blur_gauss"])
def test_singular_gains_are_inverse_singular_values(name):
    """`singular_gains` against an SVD of the dense matrix of A on a small image without edge blocks:
    the gains are 1/s_i for the components A† keeps (one shared value, or one per frequency for Blur)."""
    c = 3 if name == "colorize" else 1
    shape = (c, 8, 8)
    op = {"avgpool2": lambda: ops.AvgPoolSR(2, shape), "avgpool4": lambda: ops.AvgPoolSR(4, shape),
          "colorize": lambda: ops.Colorize(shape), "cs": lambda: ops.CompressedSensing(0.25, shape, block=4, seed=3),
          "inpaint": lambda: ops.Inpaint(ops.random_known_mask((8, 8), 0.5, torch.Generator().manual_seed(2)), shape),
          "blur_gauss": lambda: ops.Blur(ops.gaussian_kernel(1.0), shape)}[name]()
    n = c * 64
    dense = op.A(torch.eye(n, dtype=torch.float64).reshape(n, *shape)).reshape(n, -1).T  # (M, N)
    s = torch.linalg.svdvals(dense)
    gains = op.singular_gains()
    if gains.ndim == 0:
        kept = s[s > 1e-9]
        torch.testing.assert_close(1 / kept, torch.full_like(kept, gains.item()))
    else:
        kept = gains.flatten()[gains.flatten() > 0].sort().values
        torch.testing.assert_close(kept, (1 / s[: kept.numel()]).sort().values.to(kept.dtype))


def test_singular_gains_unknown_for_separable_and_composed_operators():
    for op in (ops.BicubicSR(2, (1, 8, 8)), ops.Blur(ops.gaussian_kernel(1.0), (1, 8, 8)).then(ops.AvgPoolSR(2, (1, 8, 8)))):
        with pytest.raises(ValueError, match="singular values"):
            op.singular_gains()
