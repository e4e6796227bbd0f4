"""Image I/O: round trips per format and dtype, alpha, stacks, bad files, atomic writes."""

import numpy as np
import pytest

from scoretool.errors import InputError
from scoretool.files import list_images
from scoretool.io import encode, read_image, write_image


def _sample(rng, dtype, shape):
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    return rng.normal(0.5, 0.4, size=shape).astype(dtype)  # floats are unclipped


CASES = [
    ("png", np.uint8, (37, 31)), ("png", np.uint8, (37, 31, 3)), ("png", np.uint8, (37, 31, 4)),
    ("png", np.uint16, (37, 31)), ("png", np.uint16, (37, 31, 3)),
    ("bmp", np.uint8, (37, 31, 3)), ("bmp", np.uint8, (37, 31)),
    ("tif", np.uint8, (37, 31)), ("tif", np.uint16, (37, 31)), ("tif", np.uint16, (37, 31, 3)),
    ("tif", np.float32, (37, 31)), ("tif", np.float32, (37, 31, 3)), ("tif", np.uint8, (37, 31, 4)),
    ("npy", np.float32, (37, 31)), ("npy", np.float32, (37, 31, 3)), ("npy", np.float64, (37, 31)),
    ("npy", np.uint16, (37, 31)),
]


@pytest.mark.parametrize("ext,dtype,shape", CASES)
def test_round_trip_is_exact(tmp_path, rng, ext, dtype, shape):
    data = _sample(rng, dtype, shape)
    src = tmp_path / f"in.{ext}"
    write_image(src, _as_image(data))
    image = read_image(src)
    assert image.dtype == dtype
    assert image.pixels.dtype == np.float32 and image.pixels.ndim == 4
    back = tmp_path / f"out.{ext}"
    write_image(back, image)
    again = encode(read_image(back))
    assert again.dtype == dtype and again.shape == data.shape
    if np.issubdtype(dtype, np.integer):
        np.testing.assert_array_equal(again, data)
    else:
        np.testing.assert_allclose(again, data, rtol=1e-6, atol=1e-6)


def _as_image(arr):
    """Wrap a raw array as an Image by writing it with numpy and reading it back."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "raw.npy"
        np.save(p, arr)
        return read_image(p)


def test_rgba_alpha_survives(tmp_path, rng):
    data = _sample(rng, np.uint8, (20, 24, 4))
    write_image(tmp_path / "a.png", _as_image(data))
    image = read_image(tmp_path / "a.png")
    assert image.channels == 3 and image.alpha is not None
    np.testing.assert_array_equal(image.alpha[0], data[..., 3])
    write_image(tmp_path / "b.png", image.with_pixels(1 - image.pixels))
    out = encode(read_image(tmp_path / "b.png"))
    np.testing.assert_array_equal(out[..., 3], data[..., 3])
    np.testing.assert_array_equal(out[..., :3], 255 - data[..., :3])


def test_palette_transparency_and_one_bit_png(tmp_path, rng):
    """A palette PNG with a transparent entry reads as RGB plus alpha (the alpha was dropped); a 1-bit PNG
    as 8-bit 0/255 (it came back as a 16-bit PNG)."""
    from PIL import Image as PILImage

    rgb = _sample(rng, np.uint8, (20, 24, 3))
    PILImage.fromarray(rgb).convert("P", palette=PILImage.ADAPTIVE, colors=8).save(tmp_path / "p.png", transparency=0)
    image = read_image(tmp_path / "p.png")
    assert image.channels == 3 and image.alpha is not None and set(np.unique(image.alpha[0])) <= {0, 255}
    assert (image.alpha[0] == 0).any()
    PILImage.fromarray(rng.random((20, 24)) > 0.5).save(tmp_path / "b.png")
    image = read_image(tmp_path / "b.png")
    assert image.dtype == np.uint8 and set(np.unique(image.pixels)) <= {0.0, 1.0}
    write_image(tmp_path / "c.png", image)
    assert PILImage.open(tmp_path / "c.png").mode == "L"


def test_sixteen_bit_tiff_stays_sixteen_bit(tmp_path, rng):
    data = _sample(rng, np.uint16, (16, 18))
    write_image(tmp_path / "a.tif", _as_image(data))
    image = read_image(tmp_path / "a.tif")
    write_image(tmp_path / "b.tif", image.with_pixels(image.pixels * 0.5))
    import tifffile

    assert tifffile.imread(tmp_path / "b.tif").dtype == np.uint16


def test_multipage_tiff_stack(tmp_path, rng):
    import tifffile

    stack = _sample(rng, np.uint16, (5, 16, 20))
    tifffile.imwrite(tmp_path / "s.tif", stack)
    image = read_image(tmp_path / "s.tif")
    assert image.pixels.shape == (5, 16, 20, 1)
    write_image(tmp_path / "o.tif", image)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o.tif"), stack)


def test_float_is_unclipped_and_range_maps(tmp_path):
    data = np.array([[-0.5, 2.0] * 8] * 8, dtype=np.float32)
    np.save(tmp_path / "f.npy", data)
    assert read_image(tmp_path / "f.npy").pixels.min() == pytest.approx(-0.5)
    scaled = read_image(tmp_path / "f.npy", value_range=(-0.5, 2.0)).pixels
    assert scaled.min() == 0 and scaled.max() == 1


@pytest.mark.parametrize("content,problem", [
    (b"", "empty file"), (b"this is text", "not a valid PNG"), (b"\x89PNG\r\n\x1a\n\x00\x00garbage", "not a valid PNG"),
])
def test_bad_files_name_the_problem(tmp_path, content, problem):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(InputError) as e:
        read_image(p)
    assert problem in str(e.value) and "bad.png" in str(e.value)


def test_truncated_png_and_tiny_image(tmp_path, rng):
    write_image(tmp_path / "ok.png", _as_image(_sample(rng, np.uint8, (64, 64))))
    raw = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError):
        read_image(tmp_path / "cut.png")
    np.save(tmp_path / "one.npy", np.zeros((1, 1), np.float32))
    with pytest.raises(InputError, match="too small"):
        read_image(tmp_path / "one.npy")


def test_nan_pixels_are_reported(tmp_path):
    a = np.zeros((16, 16), np.float32)
    a[3, 4] = np.nan
    np.save(tmp_path / "n.npy", a)
    with pytest.raises(InputError, match="NaN"):
        read_image(tmp_path / "n.npy")


def test_never_overwrites_and_leaves_no_partial(tmp_path, rng):
    img = _as_image(_sample(rng, np.uint8, (16, 16)))
    write_image(tmp_path / "x.png", img)
    with pytest.raises(InputError, match="exists"):
        write_image(tmp_path / "x.png", img)
    write_image(tmp_path / "x.png", img, overwrite=True)
    stack = img.with_pixels(np.repeat(img.pixels, 2, axis=0))
    stack.squeeze_frames = False
    with pytest.raises(Exception):  # noqa: B017
        write_image(tmp_path / "y.png", stack)  # PNG cannot hold a stack: fails cleanly
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_folder_walk_skips_non_images_and_hidden_files(tmp_path, rng):
    img = _as_image(_sample(rng, np.uint8, (16, 16)))
    for name in ("a.png", "b.tif", "sub/c.png", ".hidden.png"):
        write_image(tmp_path / name, img)
    (tmp_path / "notes.txt").write_text("hi")
    assert [p.name for p in list_images(tmp_path)[0]] == ["a.png", "b.tif"]
    files, skipped = list_images(tmp_path, recursive=True)
    assert [p.name for p in files] == ["a.png", "b.tif", "c.png"]
    assert [p.name for p in skipped] == ["notes.txt"]


@pytest.mark.parametrize("mode", ["RGB", "CMYK"])
def test_exif_orientation_is_applied(tmp_path, mode):
    """A photo taken with the camera upright is stored on its side with EXIF orientation 6 (turn 90°
    clockwise to show): it is read as shown, so the output is upright too."""
    from PIL import Image

    stored = np.zeros((37, 41, 3), np.uint8)
    stored[:6] = 255  # a white band along the stored top
    im = Image.fromarray(stored).convert(mode)
    exif = im.getexif()
    exif[0x0112] = 6
    path = tmp_path / "upright.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    shown = read_image(path).pixels[0].mean(-1)
    assert shown.shape == (41, 37)
    assert shown[:, -6:].mean() > 0.9 and shown[:, :-8].mean() < 0.1  # the band is now along the right side


@pytest.mark.parametrize("dtype", [np.int32, np.uint32, np.int64])
def test_wide_integers_need_a_range(tmp_path, dtype):
    """32/64-bit integers have no standard full scale (their full range would read any real image as black)."""
    path = tmp_path / "counts.npy"
    np.save(path, np.full((16, 16), 170, dtype))
    with pytest.raises(InputError, match="no standard full scale"):
        read_image(path)
    np.testing.assert_allclose(read_image(path, (0, 255)).pixels, 170 / 255, rtol=1e-6)
