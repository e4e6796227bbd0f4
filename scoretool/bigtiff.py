"""Out-of-core denoising of TIFFs larger than memory: read a band of rows, denoise its tiles, write the rows
that no later tile touches, go on.

The tiles, their order and their blend weights are engine.apply_tiled's (`tile_grid`, `_axis_weight`),
and each output pixel is the same weighted mean Σ_t w_t·D(tile_t)/Σ_t w_t summed in the same order, so the
file equals in-memory tiling of the whole image (up to float rounding of batches of different make-up).
Memory: one band of th rows (the tile height) of input, and of output plus weights, whatever the height.

Input: a single-page, uncompressed, contiguous TIFF (what `tifffile.imwrite` writes by default, and what
microscopes and scanners write for big images), grey or RGB, any sample type; bands are read through a
memory map of just their rows. Output: the same layout and sample type, written band by band into a
tifffile memory map of a new file, which replaces the destination only when complete.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .engine import _axis_weight, tile_grid
from .errors import InputError, ScoretoolError
from .files import atomic_output
from .io import from_unit, sample_range, to_unit
from .model import loaded

OUT_OF_CORE_PIXELS = 2**24
"""`scoretool denoise` reads a TIFF with more pixels than this (16.8 MP) band by band (when it can)."""


@dataclass(frozen=True)
class TiffLayout:
    """Where a contiguous TIFF's pixels lie: byte offset, shape (H, W) or (H, W, C), sample dtype."""

    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def channels(self) -> int:
        return self.shape[2] if len(self.shape) == 3 else 1

    @property
    def row_bytes(self) -> int:
        return self.width * self.channels * self.dtype.itemsize

    def rows(self, path, r0: int, r1: int, mode: str = "r") -> np.memmap:
        """A memory map of rows [r0, r1) only (so a band's pages leave memory with it)."""
        return np.memmap(path, self.dtype, mode, offset=self.offset + r0 * self.row_bytes,
                         shape=(r1 - r0, *self.shape[1:]))


def tiff_layout(path) -> TiffLayout | None:
    """The layout of a single-page, uncompressed, contiguous grey or RGB TIFF; None for any other file."""
    import tifffile

    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            if len(tif.series) != 1 or len(tif.pages) != 1:
                return None
            s = tif.series[0]
            if s.dataoffset is None or s.axes not in ("YX", "YXS") or (s.axes == "YXS" and s.shape[-1] not in (1, 3)):
                return None
            return TiffLayout(int(s.dataoffset), tuple(int(n) for n in s.shape), np.dtype(s.dtype).newbyteorder(tif.byteorder))
    except (OSError, ValueError, tifffile.TiffFileError):
        return None


def is_huge_tiff(path, threshold: int | None = None) -> bool:
    """True for a TIFF that tiff_layout can read band by band with more than `threshold` pixels
    (default OUT_OF_CORE_PIXELS)."""
    layout = tiff_layout(path)
    limit = OUT_OF_CORE_PIXELS if threshold is None else threshold
    return layout is not None and layout.height * layout.width > limit


def out_of_core_range(src, dest, weights: str | None, value_range: tuple[float, float] | None) -> tuple[float, float] | None:
    """For `scoretool denoise`: the value range that maps src's samples to [0,1] when src is a huge TIFF
    (is_huge_tiff) going to a TIFF and the model is a clean prior, so denoise_tiff can take it; else None."""
    from .weights import read_metadata, resolve_weights

    if dest is None or Path(dest).suffix.lower() not in (".tif", ".tiff") or not is_huge_tiff(src):
        return None
    layout = tiff_layout(src)
    if read_metadata(resolve_weights(weights, layout.channels))[1].get("kind") == "noise2score":
        return None
    return sample_range(layout.dtype, value_range)


def apply_tiled_bands(
    fn: Callable[[torch.Tensor], torch.Tensor],
    read_rows: Callable[[int, int], torch.Tensor],
    height: int,
    width: int,
    tile: int = 512,
    overlap: int = 64,
    multiple: int = 8,
    batch: int = 4,
    device: torch.device | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """engine.apply_tiled on an image read a band of rows at a time, yielding the output as it is finished.

    Args:
        read_rows: (r0, r1) → the image's rows [r0, r1) as a (1, C, r1 − r0, width) float32 tensor.
        tile, overlap, multiple, batch, device, progress: as engine.apply_tiled.
    Yields:
        (r0, block): finished output rows [r0, r0 + rows) as a (C, rows, width) float32 CPU tensor, in
        order, covering every row once.
    """
    th, tw, ys, xs = tile_grid(height, width, tile, overlap, multiple)
    wx = {x0: _axis_weight(x0, tw, width, overlap) for x0 in xs}
    out = weight = None  # running sums over rows [lo, lo + out.shape[1])
    lo = 0
    for j, y0 in enumerate(ys):
        band = read_rows(y0, y0 + th)
        wy = _axis_weight(y0, th, height, overlap)
        grow = y0 + th - lo - (0 if out is None else out.shape[1])
        if out is None:
            out, weight = torch.zeros(band.shape[1], grow, width), torch.zeros(1, grow, width)
        elif grow > 0:
            out = torch.cat([out, torch.zeros(out.shape[0], grow, width)], 1)
            weight = torch.cat([weight, torch.zeros(1, grow, width)], 1)
        for i in range(0, len(xs), batch):
            chunk = xs[i : i + batch]
            tiles = torch.cat([band[..., x0 : x0 + tw] for x0 in chunk]).to(device or band.device)
            res = fn(tiles).to("cpu", torch.float32)
            for x0, r in zip(chunk, res):
                wt = wy[:, None] * wx[x0][None, :]
                out[:, y0 - lo : y0 - lo + th, x0 : x0 + tw] += r * wt
                weight[:, y0 - lo : y0 - lo + th, x0 : x0 + tw] += wt
            if progress:
                progress(len(chunk))
        done = (ys[j + 1] if j + 1 < len(ys) else height) - lo  # no later tile reaches above its start
        yield lo, out[:, :done] / weight[:, :done]
        out, weight, lo = out[:, done:], weight[:, done:], lo + done


def denoise_tiff(src, dest, sigma: float, weights: str | None = None, device: str = "auto", precision: str = "auto",
                 tile: int = 512, value_range: tuple[float, float] | None = None, overwrite: bool = False,
                 progress: Callable[[int], None] | None = None) -> dict:
    """Gaussian denoising x̂ = D(y, σ) of a TIFF too large for memory, tile by tile from disk to disk.

    Args:
        src: a single-page, uncompressed, contiguous grey or RGB TIFF (tiff_layout); any sample type.
        dest: output TIFF (same layout and sample type), written atomically; an existing file is an
            error unless `overwrite`.
        sigma: noise std on the [0,1] scale (σ in pixel units / 65535 for 16-bit files).
        value_range: (MIN, MAX) of float samples that maps to [0,1] (default 0, 1); integers use their range.
        weights, device, precision, tile: as scoretool.denoise.
    Returns:
        {"shape", "tiles", "bands", "seconds", "weights"}.
    """
    import tifffile

    if not (np.isfinite(sigma) and sigma > 0):
        raise ScoretoolError(f"sigma {sigma}: must be positive")
    layout = tiff_layout(src)
    if layout is None:
        raise InputError(src, "out-of-core denoising needs a single-page, uncompressed, contiguous grey or RGB TIFF")
    model = loaded(weights, layout.channels, device, precision, tile)
    if model.kind == "noise2score":
        raise InputError(src, f"out-of-core denoising takes a clean prior; {model.info['name']} is a Noise2Score model")
    engine = model.engine
    vrange = sample_range(layout.dtype, value_range)
    h, w = layout.height, layout.width

    def read_rows(r0: int, r1: int) -> torch.Tensor:
        raw = layout.rows(src, r0, r1)
        x = to_unit(np.asarray(raw).reshape(r1 - r0, w, layout.channels), vrange)[0]
        del raw
        return torch.from_numpy(x).permute(2, 0, 1)[None]

    counted = {"tiles": 0, "bands": 0}

    def count(n: int) -> None:
        counted["tiles"] += n
        if progress:
            progress(n)

    t0 = time.perf_counter()
    with atomic_output(dest, overwrite) as tmp:
        created = tifffile.memmap(tmp, shape=layout.shape, dtype=layout.dtype.newbyteorder("="),
                                  photometric="rgb" if layout.channels == 3 else "minisblack")
        out_layout = TiffLayout(int(created.offset), layout.shape, created.dtype)
        del created
        for r0, block in apply_tiled_bands(functools.partial(engine.denoise, sigma=sigma), read_rows, h, w, engine.tile,
                                           engine.overlap, engine.tile_multiple, device=engine.device, progress=count):
            rows = out_layout.rows(tmp, r0, r0 + block.shape[1], "r+")
            rows[...] = from_unit(block.permute(1, 2, 0).numpy(), layout.dtype, vrange).reshape(rows.shape)
            rows.flush()
            del rows
            counted["bands"] += 1
    return {"shape": [h, w, layout.channels], **counted, "seconds": time.perf_counter() - t0, "weights": model.info["name"]}
