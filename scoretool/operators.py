"""Linear degradations y = A·x for zero-shot restoration (DDNM): A, A_adjoint and A_dagger.

Every operator is built for one image shape `x_shape = (C, H, W)` and acts on batches (B, C, H, W)
on the [0,1] scale. `A_dagger` is a pseudo-inverse: A·A†·A = A (to float precision; for deblurring to
the truncation threshold, see `Blur`), and `A_adjoint` is the exact transpose: <A x, y> = <x, Aᵀ y>.
Formulas: methods.md §3 (Wang, Yu, Zhang, "Zero-shot image restoration using denoising diffusion
null-space model", ICLR 2023). Buffers follow the input's device; this module imports nothing of ours.

Edge handling of super-resolution when H or W is not a multiple of the scale s: the low-resolution grid
is ⌈H/s⌉ × ⌈W/s⌉; the last row/column of blocks is cut by the image border and averages (avgpool) or
resamples (bicubic, symmetric reflection at the border) only the pixels it has. When the low-resolution
image is given (the CLI), the high-resolution grid is exactly s·h × s·w, so no block is cut.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

Shape = tuple[int, int, int]


def _check_x(x: torch.Tensor, shape: Shape, name: str) -> None:
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{name}: expected a (B, {shape[0]}, {shape[1]}, {shape[2]}) tensor, got {tuple(x.shape)}")


class LinearOperator:
    """A linear degradation with A (x → y), A_adjoint (y → x) and A_dagger (pseudo-inverse, y → x).

    Attributes:
        x_shape: (C, H, W) of the image x.
        y_shape: shape of one measurement y without the batch axis.
        dagger_gain: per-pixel std of A†n for white noise n of std 1 (used by DDNM+).
    """

    x_shape: Shape
    y_shape: tuple
    dagger_gain: float = 1.0

    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def A_dagger(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)

    def noisy_correction(self, r: torch.Tensor, sigma_next: float, sigma_y: float) -> tuple[torch.Tensor, float]:
        """DDNM+ range-space correction λ·A†r with λ = min(1, σ_next/(σ_y·gain)), and the std λ·σ_y·gain
        of the measurement noise it carries into x (DDNM paper, §3.3). σ_y = 0 gives A†r and 0."""
        if sigma_y <= 0:
            return self.A_dagger(r), 0.0
        lam = min(1.0, sigma_next / (sigma_y * self.dagger_gain))
        return lam * self.A_dagger(r), lam * sigma_y * self.dagger_gain

    def then(self, other: LinearOperator) -> Composed:
        """`other ∘ self`: apply self first, then other (e.g. blur.then(downsample))."""
        return Composed([self, other])


# ---------------------------------------------------------------- super-resolution
class AvgPoolSR(LinearOperator):
    """A = s×s mean pooling, A† = replicate each low-resolution pixel into its s×s block.

    A cut edge block averages the n_b pixels it has; then A·Aᵀ = diag(1/n_b) and
    A† = Aᵀ(A·Aᵀ)⁻¹ = replication exactly, for every block size.
    """

    def __init__(self, scale: int, x_shape: Shape):
        if not isinstance(scale, (int, np.integer)) or isinstance(scale, bool) or scale < 1:
            raise ValueError(f"scale {scale!r}: must be a positive integer")
        self.s = int(scale)
        c, h, w = x_shape
        self.x_shape = (c, h, w)
        self.y_shape = (c, math.ceil(h / self.s), math.ceil(w / self.s))
        rows = torch.full((self.y_shape[1],), float(self.s))
        rows[-1] = h - self.s * (self.y_shape[1] - 1)
        cols = torch.full((self.y_shape[2],), float(self.s))
        cols[-1] = w - self.s * (self.y_shape[2] - 1)
        self.counts = rows[:, None] * cols[None, :]

    def _replicate(self, y: torch.Tensor) -> torch.Tensor:
        _, h, w = self.x_shape
        return y.repeat_interleave(self.s, -2).repeat_interleave(self.s, -1)[..., :h, :w]

    def A(self, x):
        _check_x(x, self.x_shape, "AvgPoolSR.A")
        _, h, w = self.x_shape
        s = self.s
        xp = F.pad(x, (0, (-w) % s, 0, (-h) % s))
        return F.avg_pool2d(xp, s) * (s * s) / self.counts.to(x)

    def A_adjoint(self, y):
        return self._replicate(y / self.counts.to(y))

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

    def __init__(self, Mh: np.ndarray, Mw: np.ndarray, channels: int):
        self.Mh, self.Mw = torch.from_numpy(Mh).double(), torch.from_numpy(Mw).double()
        self.Ph, self.Pw = torch.linalg.pinv(self.Mh), torch.linalg.pinv(self.Mw)
        self.x_shape = (channels, Mh.shape[1], Mw.shape[1])
        self.y_shape = (channels, Mh.shape[0], Mw.shape[0])
        self.dagger_gain = float(torch.sqrt((self.Ph**2).sum(1).mean() * (self.Pw**2).sum(1).mean()))

    @staticmethod
    def _apply(L: torch.Tensor, x: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        L, R = L.to(x.device, x.dtype), R.to(x.device, x.dtype)
        return L @ x @ R.T

    def A(self, x):
        _check_x(x, self.x_shape, "SeparableSR.A")
        return self._apply(self.Mh, x, self.Mw)

    def A_adjoint(self, y):
        return self._apply(self.Mh.T, y, self.Mw.T)

    def A_dagger(self, y):
        return self._apply(self.Ph, y, self.Pw)


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
        self.mask = (m > 0.5).float()
        self.x_shape = self.y_shape = (c, h, w)

    def A(self, x):
        _check_x(x, self.x_shape, "Inpaint.A")
        return x * self.mask.to(x)

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
    """Normalised 2-D Gaussian kernel; default size 2·⌈3·std⌉ + 1."""
    if not std > 0:
        raise ValueError(f"gaussian kernel std {std}: must be positive")
    size = size or 2 * math.ceil(3 * std) + 1
    t = np.arange(size) - (size - 1) / 2
    g = np.exp(-(t**2) / (2 * std**2))
    k = np.outer(g, g)
    return k / k.sum()


def uniform_kernel(size: int) -> np.ndarray:
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"uniform kernel size {size!r}: must be a positive integer")
    return np.full((size, size), 1.0 / size**2)


class Blur(LinearOperator):
    """Circular convolution with a kernel k (centre at index (kh//2, kw//2)), by the FFT.

    A = F⁻¹·K·F, Aᵀ = F⁻¹·conj(K)·F, A† = F⁻¹·K⁺·F with the truncated inverse K⁺ = conj(K)/|K|² where
    |K| > threshold·max|K|, else 0 (methods.md §3; the ε-regularised conj(K)/(|K|²+ε) would not satisfy
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
        self.x_shape = self.y_shape = (c, h, w)
        pad = np.zeros((h, w))
        pad[: k.shape[0], : k.shape[1]] = k
        pad = np.roll(pad, (-(k.shape[0] // 2), -(k.shape[1] // 2)), axis=(0, 1))
        K = np.fft.fft2(pad)
        mag = np.abs(K)
        keep = mag > threshold * mag.max()
        Kp = np.where(keep, np.conj(K) / np.where(keep, mag**2, 1.0), 0)
        self.K, self.Kp, self.mag, self.keep = (torch.from_numpy(K), torch.from_numpy(Kp), torch.from_numpy(mag),
                                                torch.from_numpy(keep))
        self.dagger_gain = float(np.sqrt((np.abs(Kp) ** 2).mean()))

    @staticmethod
    def _filter(x: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        G = G.to(x.device, torch.complex128 if x.dtype == torch.float64 else torch.complex64)
        return torch.fft.ifft2(torch.fft.fft2(x) * G).real.to(x.dtype)

    def A(self, x):
        _check_x(x, self.x_shape, "Blur.A")
        return self._filter(x, self.K)

    def A_adjoint(self, y):
        return self._filter(y, self.K.conj())

    def A_dagger(self, y):
        return self._filter(y, self.Kp)

    def noisy_correction(self, r, sigma_next, sigma_y):
        """DDNM+ in the Fourier (singular) basis: λ_f = min(1, σ_next·|K_f|/σ_y) per frequency, so no
        frequency receives more than σ_next of amplified measurement noise (DDNM paper, Eq. 19)."""
        if sigma_y <= 0:
            return self.A_dagger(r), 0.0
        lam = torch.clamp(sigma_next * self.mag / sigma_y, max=1.0)
        G = lam * self.Kp
        return self._filter(r, G), float(sigma_y * torch.sqrt((G.abs() ** 2).mean()))


# ---------------------------------------------------------------- compressed sensing
class CompressedSensing(LinearOperator):
    """Block compressed sensing: each b×b block (cut edge blocks: their own size) is multiplied by the
    first m = round(R·n) rows of a random orthogonal n×n matrix (n pixels in the block, QR of a seeded
    Gaussian). The rows of A are orthonormal, so A·Aᵀ = I and A† = Aᵀ. y: (B, C, M)."""

    def __init__(self, ratio: float, x_shape: Shape, block: int = 32, seed: int = 0):
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio {ratio}: must be in (0, 1]")
        c, h, w = x_shape
        self.x_shape, self.ratio, self.block = (c, h, w), float(ratio), int(block)
        b = self.block
        h0, w0 = h // b * b, w // b * b
        self.regions = []  # (r0, r1, c0, c1, bh, bw)
        for r0, r1 in ((0, h0), (h0, h)):
            for c0, c1 in ((0, w0), (w0, w)):
                if r1 > r0 and c1 > c0:
                    self.regions.append((r0, r1, c0, c1, min(b, r1 - r0), min(b, c1 - c0)))
        self.Q = {}
        total = 0
        for r0, r1, c0, c1, bh, bw in self.regions:
            if (bh, bw) not in self.Q:
                n = bh * bw
                g = torch.Generator().manual_seed(seed * 1000003 + bh * 1009 + bw)
                q, rr = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
                q = q * torch.sign(torch.diagonal(rr))[None, :]
                self.Q[(bh, bw)] = q[: max(1, round(self.ratio * n))].contiguous()
            total += (r1 - r0) // bh * ((c1 - c0) // bw) * self.Q[(bh, bw)].shape[0]
        self.y_shape = (c, total)
        self.dagger_gain = math.sqrt(total / (h * w))

    def A(self, x):
        _check_x(x, self.x_shape, "CompressedSensing.A")
        out = []
        for r0, r1, c0, c1, bh, bw in self.regions:
            B, C = x.shape[:2]
            blk = x[..., r0:r1, c0:c1].reshape(B, C, (r1 - r0) // bh, bh, (c1 - c0) // bw, bw)
            blk = blk.permute(0, 1, 2, 4, 3, 5).reshape(B, C, -1, bh * bw)
            out.append((blk @ self.Q[(bh, bw)].to(x).T).reshape(B, C, -1))
        return torch.cat(out, -1)

    def A_adjoint(self, y):
        B, C = y.shape[:2]
        x = torch.zeros(B, C, *self.x_shape[1:], dtype=y.dtype, device=y.device)
        pos = 0
        for r0, r1, c0, c1, bh, bw in self.regions:
            q = self.Q[(bh, bw)].to(y)
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

    def __init__(self, ops: list[LinearOperator], tol: float = 1e-6, max_iter: int = 200):
        self.tol, self.max_iter = tol, max_iter
        for a, b in zip(ops, ops[1:]):
            if tuple(a.y_shape) != tuple(b.x_shape):
                raise ValueError(f"cannot compose: output shape {a.y_shape} ≠ next input shape {b.x_shape}")
        self.ops = list(ops)
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
