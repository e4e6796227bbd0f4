"""Linear degradations y = A·x for zero-shot restoration (DDNM): A, A_adjoint and A_dagger.

Every operator is a `torch.nn.Module` built for one image shape `x_shape = (C, H, W)` that acts on
batches (B, C, H, W) on the [0,1] scale. `A_dagger` is a pseudo-inverse: A·A†·A = A (to float precision;
for deblurring to the truncation threshold, see `Blur`), and `A_adjoint` is the exact transpose:
<A x, y> = <x, Aᵀ y>; `LinearOperator.adjointness_test` and `LinearOperator.pseudo_inverse_test` measure
both. Wang, Yu & Zhang, "Zero-shot image restoration using denoising diffusion null-space model"
(DDNM), ICLR 2023, §3. Constant tensors are registered buffers: `op.to(device)` moves them once, and
an operator first called on a tensor on another device moves itself there (`follow`). This module imports nothing
of ours.

Edge handling of super-resolution when H or W is not a multiple of the scale s: the low-resolution grid
is ⌈H/s⌉ × ⌈W/s⌉; the last row/column of blocks is cut by the image border and averages (avgpool) or
resamples (bicubic, symmetric reflection at the border) only the pixels it has. When the low-resolution
image is given (the CLI), the high-resolution grid is exactly s·h × s·w, so no block is cut.

The module is longer than most (~480 lines) on purpose: it is the whole catalogue of forward
models, read in one place beside the contract they share, and imports nothing else of ours.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import get_gaussian_kernel2d
from torch import nn

Shape = tuple[int, int, int]


def _check_x(x: torch.Tensor, shape: Shape, name: str) -> None:
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{name}: expected a (B, {shape[0]}, {shape[1]}, {shape[2]}) tensor, got {tuple(x.shape)}")


class LinearOperator(nn.Module):
    """A linear degradation with A (x → y), A_adjoint (y → x) and A_dagger (pseudo-inverse, y → x).

    Attributes:
        x_shape: (C, H, W) of the image x.
        y_shape: shape of one measurement y without the batch axis.
        dagger_gain: per-pixel std of A†n for white noise n of std 1 (DDNM+ uses it through `dagger_gains`).
        singular_gain: 1/s_i, the gain of A† along each singular component (`singular_gains`).
    """

    x_shape: Shape
    y_shape: tuple
    dagger_gain: float = 1.0
    singular_gain: float | None = 1.0  # 1/s_i shared by every singular component; None: not known

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """y = A·x: (B, *x_shape) → (B, *y_shape), in x's dtype."""
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Aᵀ·y: (B, *y_shape) → (B, *x_shape), the exact transpose of A."""
        raise NotImplementedError

    def A_dagger(self, y: torch.Tensor) -> torch.Tensor:
        """A†·y: (B, *y_shape) → (B, *x_shape), a pseudo-inverse (A·A†·A = A)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """op(x) = A·x."""
        return self.A(x)

    def dagger_gains(self) -> torch.Tensor:
        """Std of A†n per singular component of A for white noise n of std 1; a 0-d tensor when one value
        (`dagger_gain`) stands for all of them."""
        return torch.tensor(self.dagger_gain, dtype=torch.float64)

    def singular_gains(self) -> torch.Tensor:
        """1/s_i per singular component i of A (s_i its singular value: A† multiplies that component of y
        by 1/s_i), shaped like `dagger_gains()`; a 0-d tensor when one value (`singular_gain`) stands for
        all. The Wiener data step (`ddnm.wiener_correction`) needs it; ValueError where it is not known."""
        if self.singular_gain is None:
            raise ValueError(f"{type(self).__name__}: its singular values are not known here (use DDNM+ for noisy measurements)")
        return torch.tensor(self.singular_gain, dtype=torch.float64)

    def A_dagger_scaled(self, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """A† with singular component i of the result scaled by weights[i] (`weights` shaped like
        `dagger_gains()`); for a 0-d `weights`, weights·A†y."""
        return (weights.item() if weights.ndim == 0 else weights) * self.A_dagger(y)

    def then(self, other: LinearOperator) -> Composed:
        """`other ∘ self`: apply self first, then other (e.g. blur.then(downsample))."""
        return Composed([self, other])

    def follow(self, t: torch.Tensor) -> LinearOperator:
        """Move the buffers to t's device if they are elsewhere (once: they stay there) and return self.
        On MPS, which has no float64, float64 and complex128 buffers become float32 and complex64 (the
        dtype they are cast to for float32 input anyway)."""
        buffer = next(self.buffers(), None)
        if buffer is not None and buffer.device != t.device:
            single = {torch.float64: torch.float32, torch.complex128: torch.complex64} if t.device.type == "mps" else {}
            self._apply(lambda b: b.to(t.device, single.get(b.dtype, b.dtype)))
        return self

    def _random_pair(self, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        g = generator or torch.Generator().manual_seed(0)
        buffer = next(self.buffers(), None)
        device = buffer.device if buffer is not None else None
        x = torch.rand(2, *self.x_shape, generator=g, dtype=torch.float64).to(device=device)
        y = torch.randn(2, *self.y_shape, generator=g, dtype=torch.float64).to(device=device)
        return x, y

    def adjointness_test(self, generator: torch.Generator | None = None) -> float:
        """|<A x, y> − <x, Aᵀ y>| / (|<A x, y>| + |<x, Aᵀ y>|) for a random image x (uniform on [0,1]) and
        a Gaussian y, in float64 (≈ 1e-16 for an exact transpose)."""
        x, y = self._random_pair(generator)
        lhs, rhs = (self.A(x) * y).sum(), (x * self.A_adjoint(y)).sum()
        return float((lhs - rhs).abs() / (lhs.abs() + rhs.abs()))

    def pseudo_inverse_test(self, generator: torch.Generator | None = None) -> float:
        """‖A·A†·A x − A x‖ / ‖A x‖ for a random image x (uniform on [0,1]) in float64 (0 for an exact
        pseudo-inverse)."""
        x, _ = self._random_pair(generator)
        ax = self.A(x)
        return float((self.A(self.A_dagger(ax)) - ax).norm() / ax.norm())


# ---------------------------------------------------------------- super-resolution
class AvgPoolSR(LinearOperator):
    """A = s×s mean pooling, A† = replicate each low-resolution pixel into its s×s block.

    A cut edge block averages the n_b pixels it has; then A·Aᵀ = diag(1/n_b) and
    A† = Aᵀ(A·Aᵀ)⁻¹ = replication exactly, for every block size.
    """

    def __init__(self, scale: int, x_shape: Shape):
        if not isinstance(scale, (int, np.integer)) or isinstance(scale, bool) or scale < 1:
            raise ValueError(f"scale {scale!r}: must be a positive integer")
        super().__init__()
        self.s = int(scale)
        self.singular_gain = float(self.s)  # a full block's row has s² entries 1/s²: s_i = 1/s (edge blocks: 1/√n_b)
        c, h, w = x_shape
        self.x_shape = (c, h, w)
        self.y_shape = (c, math.ceil(h / self.s), math.ceil(w / self.s))
        rows = torch.full((self.y_shape[1],), float(self.s))
        rows[-1] = h - self.s * (self.y_shape[1] - 1)
        cols = torch.full((self.y_shape[2],), float(self.s))
        cols[-1] = w - self.s * (self.y_shape[2] - 1)
        self.register_buffer("counts", rows[:, None] * cols[None, :])  # pixels per low-resolution block

    def _replicate(self, y: torch.Tensor) -> torch.Tensor:
        _, h, w = self.x_shape
        return y.repeat_interleave(self.s, -2).repeat_interleave(self.s, -1)[..., :h, :w]

    def A(self, x):
        _check_x(x, self.x_shape, "AvgPoolSR.A")
        self.follow(x)
        _, h, w = self.x_shape
        s = self.s
        xp = F.pad(x, (0, (-w) % s, 0, (-h) % s))
        return F.avg_pool2d(xp, s) * (s * s) / self.counts.to(x.dtype)

    def A_adjoint(self, y):
        self.follow(y)
        return self._replicate(y / self.counts.to(y.dtype))

    def A_dagger(self, y):
        return self._replicate(y)


def _cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (a = −0.5, as MATLAB imresize)."""
    t = np.abs(t)
    return np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                    np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))


def bicubic_matrix(n: int, scale: int) -> np.ndarray:
    """(⌈n/s⌉, n) matrix of antialiased bicubic downsampling by s along one axis (MATLAB imresize
    convention: output centre i ↔ input (i + ½)·s − ½, kernel widened by s, symmetric boundary)."""
    m = math.ceil(n / scale)
    M = np.zeros((m, n))
    for i in range(m):
        c = (i + 0.5) * scale - 0.5
        p = np.arange(math.floor(c - 2 * scale), math.ceil(c + 2 * scale) + 1)
        wts = _cubic((p - c) / scale)
        idx = np.where(p < 0, -p - 1, np.where(p >= n, 2 * n - 1 - p, p))
        idx = np.clip(idx, 0, n - 1)
        np.add.at(M[i], idx, wts)
        M[i] /= M[i].sum()
    return M


class SeparableSR(LinearOperator):
    """A·x = M_h · x · M_wᵀ per channel, with 1-D matrices M (e.g. bicubic downsampling).

    A† = pinv(M_h) · y · pinv(M_w)ᵀ: the pseudo-inverse of a Kronecker product is the Kronecker
    product of the pseudo-inverses, so the exact A† costs two small SVDs (float64).
    """

    singular_gain = None  # products of the two matrices' singular values: not one value

    def __init__(self, Mh: np.ndarray, Mw: np.ndarray, channels: int):
        super().__init__()
        self.register_buffer("Mh", torch.from_numpy(Mh).double())
        self.register_buffer("Mw", torch.from_numpy(Mw).double())
        self.register_buffer("Ph", torch.linalg.pinv(self.Mh))
        self.register_buffer("Pw", torch.linalg.pinv(self.Mw))
        self.x_shape = (channels, Mh.shape[1], Mw.shape[1])
        self.y_shape = (channels, Mh.shape[0], Mw.shape[0])
        self.dagger_gain = float(torch.sqrt((self.Ph**2).sum(1).mean() * (self.Pw**2).sum(1).mean()))

    def _sandwich(self, L: torch.Tensor, x: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        self.follow(x)
        return L.to(x.dtype) @ x @ R.to(x.dtype).T

    def A(self, x):
        _check_x(x, self.x_shape, "SeparableSR.A")
        return self._sandwich(self.Mh, x, self.Mw)

    def A_adjoint(self, y):
        return self._sandwich(self.Mh.T, y, self.Mw.T)

    def A_dagger(self, y):
        return self._sandwich(self.Ph, y, self.Pw)


def BicubicSR(scale: int, x_shape: Shape) -> SeparableSR:
    """Bicubic (antialiased, MATLAB-style) downsampling by an integer factor, exact pseudo-inverse."""
    if not isinstance(scale, (int, np.integer)) or isinstance(scale, bool) or scale < 1:
        raise ValueError(f"scale {scale!r}: must be a positive integer")
    c, h, w = x_shape
    return SeparableSR(bicubic_matrix(h, int(scale)), bicubic_matrix(w, int(scale)), c)


# ---------------------------------------------------------------- inpainting, colourisation
class Inpaint(LinearOperator):
    """A = A† = Aᵀ = multiplication by the mask (1 = known pixel, 0 = missing); y lives on the x grid."""

    def __init__(self, known: torch.Tensor | np.ndarray, x_shape: Shape):
        m = torch.as_tensor(np.asarray(known) if not isinstance(known, torch.Tensor) else known).float()
        if m.ndim == 2:
            m = m[None]
        c, h, w = x_shape
        if m.ndim != 3 or tuple(m.shape[-2:]) != (h, w) or m.shape[0] not in (1, c):
            raise ValueError(f"mask of shape {tuple(m.shape)} does not match the image ({h}×{w}, {c} channel(s))")
        super().__init__()
        self.register_buffer("mask", (m > 0.5).float())
        self.x_shape = self.y_shape = (c, h, w)

    def A(self, x):
        _check_x(x, self.x_shape, "Inpaint.A")
        self.follow(x)
        return x * self.mask.to(x.dtype)

    A_adjoint = A_dagger = A


def random_known_mask(shape: tuple[int, int], missing: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(H, W) mask with 1 = known; each pixel is missing with probability `missing` (0 ≤ missing < 1)."""
    if not 0 <= missing < 1:
        raise ValueError(f"missing fraction {missing}: must be in [0, 1)")
    return (torch.rand(shape, generator=generator) >= missing).float()


class Colorize(LinearOperator):
    """A = mean of the R, G, B channels; Aᵀy = y/3 in each channel; A† = y copied to all three."""

    def __init__(self, x_shape: Shape):
        c, h, w = x_shape
        if c != 3:
            raise ValueError(f"colourisation needs a 3-channel image space, got {c} channel(s)")
        super().__init__()
        self.singular_gain = math.sqrt(3)  # a row (1/3, 1/3, 1/3): s = 1/√3
        self.x_shape, self.y_shape = (3, h, w), (1, h, w)

    def A(self, x):
        _check_x(x, self.x_shape, "Colorize.A")
        return x.mean(1, keepdim=True)

    def A_adjoint(self, y):
        return y.expand(-1, 3, -1, -1) / 3

    def A_dagger(self, y):
        return y.expand(-1, 3, -1, -1).contiguous()


# ---------------------------------------------------------------- deblurring
def gaussian_kernel(std: float, size: int | None = None) -> np.ndarray:
    """Normalised 2-D Gaussian kernel (float64) with the given std in pixels, centred on the middle of a
    size × size grid; default size 2·⌈3·std⌉ + 1."""
    if not std > 0:
        raise ValueError(f"gaussian kernel std {std}: must be positive")
    size = size or 2 * math.ceil(3 * std) + 1
    return get_gaussian_kernel2d(size, (std, std), force_even=True, dtype=torch.float64)[0].numpy()


def uniform_kernel(size: int) -> np.ndarray:
    """size × size box kernel (float64), every entry 1/size²."""
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"uniform kernel size {size!r}: must be a positive integer")
    return np.full((size, size), 1.0 / size**2)


class Blur(LinearOperator):
    """Circular convolution with a kernel k (centre at index (kh//2, kw//2)), by the FFT.

    A = F⁻¹·K·F, Aᵀ = F⁻¹·conj(K)·F, A† = F⁻¹·K⁺·F with the truncated inverse K⁺ = conj(K)/|K|² where
    |K| > threshold·max|K|, else 0 (DDNM §3; the ε-regularised conj(K)/(|K|²+ε) would not satisfy
    A·A†·A = A). The truncated frequencies are where A·A†·A and A differ; their energy in A·x is at most
    threshold·‖x‖, so A·A†·A = A holds to `threshold` relative accuracy.
    """

    def __init__(self, kernel: np.ndarray | torch.Tensor, x_shape: Shape, threshold: float = 1e-3):
        k = np.asarray(kernel, dtype=np.float64)
        if k.ndim != 2:
            raise ValueError(f"kernel must be a 2-D array, got shape {k.shape}")
        c, h, w = x_shape
        if k.shape[0] > h or k.shape[1] > w:
            raise ValueError(f"kernel {k.shape[0]}×{k.shape[1]} is larger than the image {h}×{w}")
        if not np.isfinite(k).all() or abs(k.sum()) < 1e-12:
            raise ValueError("kernel must be finite with a non-zero sum")
        super().__init__()
        self.x_shape = self.y_shape = (c, h, w)
        pad = np.zeros((h, w))
        pad[: k.shape[0], : k.shape[1]] = k
        pad = np.roll(pad, (-(k.shape[0] // 2), -(k.shape[1] // 2)), axis=(0, 1))
        K = np.fft.fft2(pad)
        mag = np.abs(K)
        keep = mag > threshold * mag.max()
        Kp = np.where(keep, np.conj(K) / np.where(keep, mag**2, 1.0), 0)
        self.register_buffer("K", torch.from_numpy(K))  # transfer function
        self.register_buffer("Kp", torch.from_numpy(Kp))  # its truncated inverse K⁺
        self.dagger_gain = float(np.sqrt((np.abs(Kp) ** 2).mean()))

    def _filter(self, x: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        self.follow(x)
        G = G.to(x.device, torch.complex128 if x.dtype == torch.float64 else torch.complex64)
        return torch.fft.ifft2(torch.fft.fft2(x) * G).real.to(x.dtype)

    def A(self, x):
        _check_x(x, self.x_shape, "Blur.A")
        return self._filter(x, self.K)

    def A_adjoint(self, y):
        return self._filter(y, self.K.conj())

    def A_dagger(self, y):
        return self._filter(y, self.Kp)

    def dagger_gains(self):
        """|K⁺_f|: A is diagonal in the Fourier basis, so each frequency is a singular component."""
        return self.Kp.abs()

    singular_gains = dagger_gains  # unit Fourier components: the per-pixel and per-component gains agree

    def A_dagger_scaled(self, y, weights):
        return self._filter(y, weights * self.Kp)


# ---------------------------------------------------------------- compressed sensing
class CompressedSensing(LinearOperator):
    """Block compressed sensing: each b×b block (cut edge blocks: their own size) is multiplied by the
    first m = round(R·n) rows of a random orthogonal n×n matrix (n pixels in the block, QR of a seeded
    Gaussian). The rows of A are orthonormal, so A·Aᵀ = I and A† = Aᵀ. y: (B, C, M)."""

    def __init__(self, ratio: float, x_shape: Shape, block: int = 32, seed: int = 0):
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio {ratio}: must be in (0, 1]")
        super().__init__()
        c, h, w = x_shape
        self.x_shape, self.ratio, self.block = (c, h, w), float(ratio), int(block)
        b = self.block
        h0, w0 = h // b * b, w // b * b
        self.regions = []  # (r0, r1, c0, c1, bh, bw)
        for r0, r1 in ((0, h0), (h0, h)):
            for c0, c1 in ((0, w0), (w0, w)):
                if r1 > r0 and c1 > c0:
                    self.regions.append((r0, r1, c0, c1, min(b, r1 - r0), min(b, c1 - c0)))
        total = 0
        for r0, r1, c0, c1, bh, bw in self.regions:
            if not hasattr(self, self._rows_name(bh, bw)):
                n = bh * bw
                g = torch.Generator().manual_seed(seed * 1000003 + bh * 1009 + bw)
                q, rr = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
                q = q * torch.sign(torch.diagonal(rr))[None, :]
                self.register_buffer(self._rows_name(bh, bw), q[: max(1, round(self.ratio * n))].contiguous())
            total += (r1 - r0) // bh * ((c1 - c0) // bw) * self._rows(bh, bw).shape[0]
        self.y_shape = (c, total)
        self.dagger_gain = math.sqrt(total / (h * w))

    @staticmethod
    def _rows_name(bh: int, bw: int) -> str:
        return f"rows_{bh}x{bw}"

    def _rows(self, bh: int, bw: int) -> torch.Tensor:
        """The m orthonormal rows (m, bh·bw) that measure a bh×bw block."""
        return getattr(self, self._rows_name(bh, bw))

    def A(self, x):
        _check_x(x, self.x_shape, "CompressedSensing.A")
        self.follow(x)
        out = []
        for r0, r1, c0, c1, bh, bw in self.regions:
            B, C = x.shape[:2]
            blk = x[..., r0:r1, c0:c1].reshape(B, C, (r1 - r0) // bh, bh, (c1 - c0) // bw, bw)
            blk = blk.permute(0, 1, 2, 4, 3, 5).reshape(B, C, -1, bh * bw)
            out.append((blk @ self._rows(bh, bw).to(x.dtype).T).reshape(B, C, -1))
        return torch.cat(out, -1)

    def A_adjoint(self, y):
        self.follow(y)
        B, C = y.shape[:2]
        x = torch.zeros(B, C, *self.x_shape[1:], dtype=y.dtype, device=y.device)
        pos = 0
        for r0, r1, c0, c1, bh, bw in self.regions:
            q = self._rows(bh, bw).to(y.dtype)
            nh, nw = (r1 - r0) // bh, (c1 - c0) // bw
            size = nh * nw * q.shape[0]
            coef = y[..., pos: pos + size].reshape(B, C, nh * nw, q.shape[0])
            blk = (coef @ q).reshape(B, C, nh, nw, bh, bw).permute(0, 1, 2, 4, 3, 5)
            x[..., r0:r1, c0:c1] = blk.reshape(B, C, r1 - r0, c1 - c0)
            pos += size
        return x

    A_dagger = A_adjoint


# ---------------------------------------------------------------- composition
class Composed(LinearOperator):
    """A = A_k ∘ … ∘ A_1 (ops applied in list order); Aᵀ in reverse order.

    A† = Aᵀ(A·Aᵀ)⁻¹ by conjugate gradients on A·Aᵀ·z = y (minimum-norm least squares; the product
    A_1†∘…∘A_k† would only be a generalised inverse and amplifies noise, e.g. blur⁺ of a replicated
    block). Stops at relative residual `tol` or `max_iter` iterations (each one A and one Aᵀ).
    """

    singular_gain = None  # not known without an SVD of the product

    def __init__(self, ops: list[LinearOperator], tol: float = 1e-6, max_iter: int = 200):
        super().__init__()
        self.tol, self.max_iter = tol, max_iter
        for a, b in zip(ops, ops[1:]):
            if tuple(a.y_shape) != tuple(b.x_shape):
                raise ValueError(f"cannot compose: output shape {a.y_shape} ≠ next input shape {b.x_shape}")
        self.ops = nn.ModuleList(ops)
        self.x_shape, self.y_shape = ops[0].x_shape, ops[-1].y_shape
        probe = torch.randn(1, *self.y_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.dagger_gain = float(self.A_dagger(probe).norm() / math.sqrt(math.prod(self.x_shape)))  # one probe

    def A(self, x):
        for o in self.ops:
            x = o.A(x)
        return x

    def A_adjoint(self, y):
        for o in reversed(self.ops):
            y = o.A_adjoint(y)
        return y

    def A_dagger(self, y):
        z = torch.zeros_like(y)
        r = y.clone()
        p = r.clone()
        rs = (r * r).sum()
        stop = (self.tol**2) * rs
        for _ in range(self.max_iter):
            if rs <= stop or rs == 0:
                break
            ap = self.A(self.A_adjoint(p))
            alpha = rs / (p * ap).sum()
            z = z + alpha * p
            r = r - alpha * ap
            rs_new = (r * r).sum()
            p = r + (rs_new / rs) * p
            rs = rs_new
        return self.A_adjoint(z)


def build_operator(task: str, x_shape: Shape, *, scale: int = 4, sr_kernel: str = "avgpool",
                   mask: torch.Tensor | np.ndarray | None = None, kernel: np.ndarray | None = None,
                   ratio: float = 0.25, seed: int = 0, threshold: float = 1e-3) -> LinearOperator:
    """The operator of a named task: sr (avgpool|bicubic), inpaint (mask: 1 = known), colorize,
    deblur (kernel), cs (ratio)."""
    if task == "sr":
        if sr_kernel == "avgpool":
            return AvgPoolSR(scale, x_shape)
        if sr_kernel == "bicubic":
            return BicubicSR(scale, x_shape)
        raise ValueError(f"sr kernel {sr_kernel!r}: expected avgpool or bicubic")
    if task == "inpaint":
        if mask is None:
            raise ValueError("inpainting needs a mask")
        return Inpaint(mask, x_shape)
    if task == "colorize":
        return Colorize(x_shape)
    if task == "deblur":
        if kernel is None:
            raise ValueError("deblurring needs a kernel")
        return Blur(kernel, x_shape, threshold)
    if task == "cs":
        return CompressedSensing(ratio, x_shape, seed=seed)
    raise ValueError(f"task {task!r}: expected sr, inpaint, colorize, deblur or cs")
