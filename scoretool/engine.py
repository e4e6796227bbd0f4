"""Device and precision policy, and tiled application of a network to images of any size."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from .errors import ScoretoolError

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""D(x, σ): (B, C, H, W) images on the [0,1] scale and σ of shape (B,) → denoised images."""


def select_device(name: str = "auto") -> torch.device:
    """`auto` = CUDA, then MPS, then CPU; an explicit device that is absent is an error."""
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ScoretoolError("--device cuda: no CUDA device is available (try --device auto)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ScoretoolError("--device mps: no MPS device is available (try --device auto)")
    if name not in ("cpu", "cuda", "mps"):
        raise ScoretoolError(f"--device {name}: expected auto, cpu, cuda or mps")
    return torch.device(name)


def bf16_available(device: torch.device) -> bool:
    """bf16 matrix units: AVX512-BF16/AMX on CPUs, compute capability ≥ 8 on CUDA."""
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()
                    or getattr(cpu, "_is_avx512_bf16_supported", lambda: False)())
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return False


PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ScoretoolError(f"--precision {precision}: expected auto, fp32 or bf16")


def autocast(device: torch.device, precision: str = "auto"):
    """Context for the network's forward pass: bf16 autocast when `auto` and supported, else fp32.

    bench/engine.py measures the accuracy cost against fp32.
    """
    check_precision(precision)
    if precision == "fp32" or (precision == "auto" and not bf16_available(device)):
        return _strict_fp32() if device.type == "cuda" else contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def _strict_fp32():
    """fp32 on CUDA means fp32: PyTorch lets cuDNN convolutions use TF32 (10-bit mantissa) by default,
    which would make CUDA results differ from CPU ones by ~1e-3."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def _axis_tiles(length: int, tile: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """(side, starts) of the tiles along one axis: the fewest tiles of side at most `tile` that cover
    [0, length) with neighbours overlapping by at least `overlap`, and of those the smallest side, so
    the network computes as few overlap pixels as it can (a 2048 side takes 5 tiles of 464, not 5 of
    512: 1.28× the pixels instead of 1.56×). Never more tiles, nor larger ones, than a fixed stride of
    tile − overlap gives. Starts are multiples of `multiple` (so a U-Net's down-sampling grid matches
    the whole image's), except the last, which ends at `length`; the side is a multiple of `multiple`,
    or `length` when one tile holds it."""
    if length <= tile:
        return length, [0]
    overlap = min(overlap, tile - multiple)

    def grid_step(side: int) -> int:
        """The widest gap between starts on the grid for tiles of `side`."""
        return (side - overlap) // multiple * multiple

    def fits(count: int, side: int) -> bool:
        """Can `count` tiles of `side`, starting on the grid, cover the axis?"""
        if count == 2:
            return length - side <= side - overlap
        return grid_step(side) >= multiple and (count - 2) * grid_step(side) + side - overlap >= length - side

    count = 2 if fits(2, tile) else 2 + -(-(length - 2 * tile + overlap) // grid_step(tile))  # the fewest tiles of `tile`
    side = -(-(length + (count - 1) * overlap) // count)  # count tiles overlapping by exactly `overlap`
    side = -(-side // multiple) * multiple
    while not fits(count, side):  # ends at `tile` at the latest
        side += multiple
    span = length - side
    starts = sorted({i * span // (count - 1) // multiple * multiple for i in range(count - 1)} | {span})
    if any(b - a > side - overlap for a, b in zip(starts, starts[1:])):  # rounding to the grid widened a gap
        starts = sorted({min(i * grid_step(side), span) for i in range(count - 1)} | {span})
    return side, starts


def tile_grid(height: int, width: int, tile: int, overlap: int, multiple: int) -> tuple[int, int, list[int], list[int]]:
    """The tiles of an image: (tile height, tile width, row starts, column starts), `_axis_tiles` along
    each axis, for tiles of side at most `tile` rounded down to a multiple of `multiple`."""
    tile = max(multiple, tile // multiple * multiple)
    (th, ys), (tw, xs) = _axis_tiles(height, tile, overlap, multiple), _axis_tiles(width, tile, overlap, multiple)
    return th, tw, ys, xs


def _axis_weight(start: int, size: int, length: int, overlap: int) -> torch.Tensor:
    """Blend weight along one axis: 1 inside, 0 for the first overlap/4 next to a neighbour's side,
    then a linear ramp over overlap/2. Where weights overlap, every contributing tile is at least
    overlap/4 from its own inner border, so a network with receptive radius ≤ overlap/4 is exact."""
    w = torch.ones(size)
    pos = torch.arange(size, dtype=torch.float32)
    q, ramp = overlap / 4, max(overlap / 2, 1.0)
    if start > 0:
        w = torch.minimum(w, ((pos - q) / ramp).clamp(0, 1))
    if start + size < length:
        w = torch.minimum(w, ((size - 1 - pos - q) / ramp).clamp(0, 1))
    return w.clamp_min(1e-6)


@torch.no_grad()
def apply_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int = 512,
    overlap: int = 64,
    multiple: int = 8,
    batch: int = 4,
    device: torch.device | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Apply an image-to-image `fn` to (B, C, H, W) `x` in overlapping tiles, blended without seams.

    The result stays on x's device (CPU for large images); only `batch` tiles at a time go to
    `device`, so memory is bounded by the tile size. A network whose receptive radius is at most
    overlap/4 gives exactly the whole-image result; a larger one (the U-Net) is blended smoothly.
    Images that fit in one tile go through `fn` together, as many per call as `batch` tiles hold
    (a folder of small images costs per pixel what one large image does). `progress` counts images
    or tiles.
    """
    device = device or x.device
    b, c, h, w = x.shape
    tile = max(multiple, tile // multiple * multiple)
    if h <= tile and w <= tile:
        per_call = max(1, batch * tile * tile // (h * w))
        outs = []
        for i in range(0, b, per_call):
            outs.append(fn(x[i : i + per_call].to(device)).to(x.device))
            if progress:
                progress(outs[-1].shape[0])
        return torch.cat(outs)
    if b != 1:
        return torch.cat([apply_tiled(fn, xi[None], tile, overlap, multiple, batch, device, progress) for xi in x])
    th, tw, ys, xs = tile_grid(h, w, tile, overlap, multiple)
    out, weight = None, torch.zeros(1, 1, h, w, device=x.device)
    boxes = [(y0, x0) for y0 in ys for x0 in xs]
    for i in range(0, len(boxes), batch):
        chunk = boxes[i : i + batch]
        tiles = torch.cat([x[..., y0 : y0 + th, x0 : x0 + tw] for y0, x0 in chunk]).to(device)
        res = fn(tiles).to(x.device, torch.float32)
        if out is None:
            out = torch.zeros(1, res.shape[1], h, w, device=x.device)
        for (y0, x0), r in zip(chunk, res):
            wt = _axis_weight(y0, th, h, overlap)[:, None] * _axis_weight(x0, tw, w, overlap)[None, :]
            wt = wt.to(x.device)
            out[0, :, y0 : y0 + th, x0 : x0 + tw] += r * wt
            weight[0, :, y0 : y0 + th, x0 : x0 + tw] += wt
        if progress:
            progress(len(chunk))
    return out / weight


def dihedral(x: torch.Tensor, i: int, inverse: bool = False) -> torch.Tensor:
    """The i-th of the 8 flips/90° rotations of x over its last two axes (i = 0: x itself; 4–7 flip first),
    or with inverse=True its inverse, so dihedral(dihedral(x, i), i, inverse=True) = x."""
    k, flip = i % 4, (i % 8) >= 4
    if not k and not flip:
        return x  # identity: no copy (torch.rot90 with k = 0 clones)
    if inverse:
        y = torch.rot90(x, -k, dims=(-2, -1))
        return y.flip(-1) if flip else y
    return torch.rot90(x.flip(-1) if flip else x, k, dims=(-2, -1))


def check_ensemble(n: int) -> None:
    if n not in (1, 2, 4, 8):
        raise ScoretoolError(f"--ensemble {n}: expected 1, 2, 4 or 8")


def dihedral_ensemble(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n: int = 8) -> torch.Tensor:
    """Mean of fn over the first n of the 8 flips/90° rotations of x (geometric self-ensemble):
    mean_g g⁻¹(fn(g(x))). For an MMSE denoiser of a rotation/flip-invariant prior each term estimates
    the same posterior mean, so the average keeps the estimate and lowers the network's error."""
    check_ensemble(n)
    modes = (0, 4) if n == 2 else range(n)
    out = torch.zeros_like(x, dtype=torch.float32)
    for i in modes:
        out += dihedral(fn(dihedral(x, i)), i, inverse=True)
    return out / n


class Engine:
    """A loaded network on a device with a precision policy: the one way methods call D(x, σ)."""

    def __init__(self, net: torch.nn.Module, device: torch.device, precision: str = "auto",
                 tile: int = 512, overlap: int = 64):
        self.device = device
        self.precision = precision
        self.tile, self.overlap = tile, overlap
        self.net = net.to(device).eval()
        if device.type == "cpu":
            self.net = self.net.to(memory_format=torch.channels_last)

    @property
    def multiple(self) -> int:
        return getattr(self.net, "multiple", 1)

    @property
    def tile_multiple(self) -> int:
        """Tile sides and starts are multiples of this (≥ 8), so every tile sees the U-Net's down-sampling
        grid as the whole image does."""
        return max(8, self.multiple)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """D(x, σ) in one pass on the engine's device, float32 out, differentiable (Jacobian products)."""
        x = x.to(self.device, torch.float32)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            return self.net(x, sigma).float().contiguous()

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """D(x, σ) on a batch that fits in memory, on the engine's device, float32 out."""
        return self.forward(x, sigma)

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        return self.denoise(x, sigma)

    def denoise_tiled(self, x: torch.Tensor, sigma: float, progress=None, ensemble: int = 1) -> torch.Tensor:
        """D(x, σ) for images of any size in overlapping tiles; result on x's device.
        ensemble > 1 averages over flips/rotations (dihedral_ensemble), costing that many passes."""
        def one(t):
            return apply_tiled(lambda u: self.denoise(u, sigma), t, self.tile, self.overlap,
                               self.tile_multiple, device=self.device, progress=progress)
        return dihedral_ensemble(one, x, ensemble) if ensemble > 1 else one(x)
