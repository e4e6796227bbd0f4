"""Image files ⇄ float arrays on the [0,1] scale (file names, folders, atomic writes and the pixel
budget are scoretool.files).

Supported: PNG, JPEG, BMP (8-bit; PNG also 16-bit), TIFF (8/16-bit, float32, multi-page stacks)
and .npy (float or integer arrays, unclipped). Layouts H×W, H×W×C with C ∈ {1, 3}; a 2nd or 4th
channel is an alpha channel and is carried through untouched.
Integer data maps to [0,1] by x/(2^bits − 1) and back by round(x·(2^bits − 1)) after clipping;
float data is taken as already on the [0,1] scale (or mapped from a user-given range).

Reading and writing share the per-format rules (dtype ⇄ [0,1], alpha, the pixel budget checked on
headers), which must agree in one place.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import InputError, ScoretoolError
from .files import IMAGE_SUFFIXES, atomic_output, check_budget

MIN_SIDE = 8


@dataclass
class Image:
    """pixels: float32 (frames, H, W, C) on the [0,1] scale (floats: unclipped);
    alpha: (frames, H, W) in the file's dtype or None; dtype: the file's sample dtype;
    value_range: (lo, hi) that maps to [0,1]."""

    pixels: np.ndarray
    dtype: np.dtype
    alpha: np.ndarray | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    squeeze_frames: bool = True  # a single-page file is written back as one image
    grey_2d: bool = True  # a 1-channel image stored as H×W (not H×W×1)

    @property
    def channels(self) -> int:
        return self.pixels.shape[-1]

    def with_pixels(self, pixels: np.ndarray) -> Image:
        return replace(self, pixels=pixels.astype(np.float32, copy=False))


ROUNDING_STD = 1 / 12**0.5
"""Std of the error of rounding to whole levels, in levels: the measurement noise an integer file carries.
`restore --task deblur` takes it as σ_y by default (the inverse filter would amplify it into artefacts)."""


def sample_range(dtype: np.dtype, value_range: tuple[float, float] | None = None) -> tuple[float, float]:
    """(lo, hi): the sample values that map to 0 and 1. 8- and 16-bit integers by their full range (0–255,
    0–65535; bool 0–1), floats by value_range (default 0..1). Wider integers have no standard full scale
    (0–2³¹ would make any real image black), so they need value_range."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return 0.0, 1.0
    if np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2:
        info = np.iinfo(dtype)
        return float(max(info.min, 0)), float(info.max)
    if np.issubdtype(dtype, np.integer) and value_range is None:
        raise ScoretoolError(f"{dtype.itemsize * 8}-bit integer samples have no standard full scale: give the values "
                             f"that map to black and white with --range MIN,MAX, or save them as 8/16-bit or float")
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise ScoretoolError(f"unsupported sample type {dtype}")
    return value_range or (0.0, 1.0)


def to_unit(arr: np.ndarray, value_range: tuple[float, float] | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """Samples → float32 on [0,1] by `sample_range`; also returns that range."""
    lo, hi = sample_range(arr.dtype, value_range)
    return ((arr.astype(np.float32) - lo) / (hi - lo)).astype(np.float32), (lo, hi)


def unit_sigma(sigma: float, value_range: tuple[float, float], option: str = "--sigma") -> float:
    """A noise std given in pixel units, on the [0,1] scale: σ / (MAX − MIN) of the value range. Noise wider than
    the whole range is a unit mix-up (σ = 25 meant as grey levels on float data in [0,1], where it is 25/255 ≈ 0.098)
    that would smooth the image into its mean: refused."""
    lo, hi = value_range
    if sigma > hi - lo:
        hint = f" (for float data on 0..1, {sigma:g} grey levels of 255 is {sigma / 255:.4g})" if (lo, hi) == (0, 1) else ""
        raise ScoretoolError(f"{option} {sigma:g} is wider than the whole value range {lo:g}..{hi:g}: it is in pixel units{hint}")
    return sigma / (hi - lo)


def from_unit(x: np.ndarray, dtype: np.dtype, value_range: tuple[float, float]) -> np.ndarray:
    """Exact inverse of to_unit: integers are rounded and clipped to their range, floats are not clipped."""
    lo, hi = value_range
    y = x.astype(np.float64) * (hi - lo) + lo
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(y), info.min, info.max).astype(dtype)
    if dtype == np.bool_:
        return y >= 0.5
    return y.astype(dtype)


def _split_channels(arr: np.ndarray, path) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """(F, H, W[, C]) → colour (F, H, W, C∈{1,3}), alpha (F, H, W) or None, whether it was 2-D."""
    if arr.ndim == 3:
        return arr[..., None], None, True
    c = arr.shape[-1]
    if c in (1, 3):
        return arr, None, False
    if c in (2, 4):
        return arr[..., : c - 1], arr[..., c - 1], False
    raise InputError(path, f"unsupported layout {arr.shape[1:]}: expected H×W or H×W×C with C in 1..4")


def header_pixels(path: Path) -> int:
    """Pixels (width × height × frames) a file declares in its header, read without decoding it."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape = read(fh)[0]
        channels = shape[-1] if len(shape) >= 3 and shape[-1] <= 4 else 1
        return int(np.prod(shape, dtype=object)) // max(channels, 1)
    if suffix in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, axes = series.shape, series.axes
        return int(np.prod(shape, dtype=object)) // (shape[axes.index("S")] if "S" in axes else 1)
    if suffix == ".png":
        with open(path, "rb") as fh:
            head = fh.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return int.from_bytes(head[16:20], "big") * int.from_bytes(head[20:24], "big")
    with _pillow() as pil, pil.open(path) as im:
        return im.width * im.height * getattr(im, "n_frames", 1)


@contextmanager
def _pillow():
    """Pillow with its decompression-bomb limit lifted: the pixel budget (check_budget) replaces it."""
    from PIL import Image as PILImage

    limit, PILImage.MAX_IMAGE_PIXELS = PILImage.MAX_IMAGE_PIXELS, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield PILImage
    finally:
        PILImage.MAX_IMAGE_PIXELS = limit


def _read_raw(path: Path) -> tuple[np.ndarray, bool]:
    """Decode a file → (array (F, H, W[, C]), single_image)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 2, 3, 4)):
            return arr[None], True
        if arr.ndim in (3, 4):
            return arr, False
        raise ValueError(f"array of shape {arr.shape}: expected H×W, H×W×C or a stack F×H×W[×C]")
    if suffix in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            arr = series.asarray()
            axes = series.axes
        if "S" in axes and axes.index("S") != len(axes) - 1:
            arr = np.moveaxis(arr, axes.index("S"), -1)
            axes = axes.replace("S", "") + "S"
        spatial = 3 if axes.endswith("S") else 2
        lead = arr.ndim - spatial
        single = lead == 0
        arr = arr.reshape((-1,) + arr.shape[lead:])
        return arr, single
    if suffix == ".png" and _png_bit_depth(path) == 16:
        return _read_png16(path)[None], True
    import imageio.v3 as iio
    from PIL import ImageOps

    # Pixels as the image is shown: an EXIF orientation (a camera held upright) is applied, and the
    # output is written upright without the tag.
    with _pillow() as pil:
        with pil.open(path) as im:
            mode = _pillow_mode(im)
            if mode:
                return np.asarray(ImageOps.exif_transpose(im.convert(mode)))[None], True
        arr = iio.imread(path, rotate=True)
    if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] not in (1, 2, 3, 4)):
        return arr.reshape((-1,) + arr.shape[-3 if arr.ndim == 4 else -2 :]), False
    return arr[None], True


def _pillow_mode(im) -> str | None:
    """The mode to convert a Pillow image to where imageio would read it wrongly, else None: CMYK, YCbCr,
    LAB and HSV (their channels handed over as RGB) → RGB; palette images with a transparent colour (the
    alpha dropped) → RGBA; 1-bit (read as bool, written back as 16 bits) → 8-bit L, 0/255."""
    if im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return "RGB"
    if im.mode == "PA" or (im.mode == "P" and "transparency" in im.info):
        return "RGBA"
    return "L" if im.mode == "1" else None


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as f:
        head = f.read(26)
    return head[24] if len(head) >= 26 and head[:8] == b"\x89PNG\r\n\x1a\n" else 8


def _read_png16(path: Path) -> np.ndarray:
    """16-bit PNG (Pillow reduces 16-bit colour to 8 bits, so pypng reads these)."""
    import png

    w, h, rows, info = png.Reader(filename=str(path)).asDirect()
    arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, info["planes"])
    return arr[..., 0] if info["planes"] == 1 else arr


def _write_png16(path: str, arr: np.ndarray) -> None:
    import png

    c = 1 if arr.ndim == 2 else arr.shape[-1]
    h, w = arr.shape[:2]
    writer = png.Writer(w, h, greyscale=c in (1, 2), alpha=c in (2, 4), bitdepth=16)
    with open(path, "wb") as f:
        writer.write(f, arr.reshape(h, w * c))


def read_image(path, value_range: tuple[float, float] | None = None) -> Image:
    """Read one image file; raises InputError naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a folder, expected an image file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes)")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(path, f"unsupported file type '{path.suffix}' (readable: {', '.join(sorted(IMAGE_SUFFIXES))})")
    try:
        check_budget(header_pixels(path), "image")
        arr, single = _read_raw(path)
    except InputError:
        raise
    except ScoretoolError as e:
        raise InputError(path, str(e)) from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except MemoryError:
        raise InputError(path, "image too large to load") from None
    except Exception as e:  # decoders raise many types on corrupt data
        kind = path.suffix.lower().lstrip(".").upper()
        msg = str(e).replace(f" '{path}'", "").replace(str(path), "the file")  # the file is named once
        msg = msg.splitlines()[0][:160] if msg.strip() else type(e).__name__
        raise InputError(path, f"not a valid {kind} file ({msg})") from None
    if arr.size == 0 or arr.ndim < 3:
        raise InputError(path, f"no pixels (shape {arr.shape})")
    if arr.dtype.kind == "c" or arr.dtype.kind not in "iufb":
        raise InputError(path, f"unsupported sample type {arr.dtype}")
    colour, alpha, grey_2d = _split_channels(arr, path)
    h, w = colour.shape[1:3]
    if min(h, w) < MIN_SIDE:
        raise InputError(path, f"image too small ({w}×{h} pixels; at least {MIN_SIDE}×{MIN_SIDE} needed)")
    try:
        pixels, vrange = to_unit(colour, value_range)
    except ScoretoolError as e:
        raise InputError(path, str(e)) from None
    if not np.isfinite(pixels).all():
        bad = int((~np.isfinite(pixels)).sum())
        raise InputError(path, f"{bad} pixel(s) are NaN or infinite")
    return Image(pixels, arr.dtype, alpha, vrange, single, grey_2d)


def encode(image: Image) -> np.ndarray:
    """Image → array in the file's dtype and layout ((F,) H, W[, C]) with alpha re-attached."""
    arr = from_unit(image.pixels, image.dtype, image.value_range)
    if image.alpha is not None:
        arr = np.concatenate([arr, image.alpha[..., None].astype(arr.dtype)], axis=-1)
    elif image.grey_2d and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if image.squeeze_frames and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def write_image(path, image: Image, overwrite: bool = False) -> Path:
    """Write atomically (temporary file in the same folder, then rename); refuse to replace an
    existing file unless `overwrite`. Format from the suffix; 8-bit-only formats get uint8."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(path, "output exists (use --overwrite to replace it)")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ScoretoolError(f"{path}: cannot write '{suffix}' files (use {', '.join(sorted(IMAGE_SUFFIXES))})")
    if suffix in (".jpg", ".jpeg", ".bmp") and image.dtype != np.uint8:
        image = replace(image, dtype=np.dtype(np.uint8), value_range=(0.0, 255.0), alpha=None)
    if suffix in (".jpg", ".jpeg"):
        image = replace(image, alpha=None)
    if suffix == ".png" and image.dtype not in (np.uint8, np.uint16):
        image = replace(image, dtype=np.dtype(np.uint16), value_range=(0.0, 65535.0),
                        alpha=None if image.alpha is None else from_unit(to_unit(image.alpha)[0], np.uint16, (0, 65535)))
    bad = int(np.size(image.pixels) - np.isfinite(image.pixels).sum())
    if bad:
        raise InputError(path, f"result has {bad} NaN or infinite value(s); not written")
    arr = encode(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        if suffix == ".npy":
            np.save(tmp, arr, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            photometric = "rgb" if arr.shape[-1] in (3, 4) and arr.ndim >= 3 and not (image.grey_2d and image.alpha is None) else "minisblack"
            extrasamples = ["unassalpha"] if image.alpha is not None and photometric == "rgb" else None
            tifffile.imwrite(tmp, arr, photometric=photometric, extrasamples=extrasamples)
        else:
            import imageio.v3 as iio

            if arr.ndim == 4 or (not image.squeeze_frames):
                raise ScoretoolError(f"{path}: a multi-frame stack can only be written as .tif or .npy")
            if arr.dtype == np.uint16:
                _write_png16(tmp, arr)
            else:
                iio.imwrite(tmp, arr, extension=suffix)
    return path
