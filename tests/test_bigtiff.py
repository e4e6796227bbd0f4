"""Out-of-core TIFF denoising equals in-memory tiling (engine.apply_tiled) of the same image."""

import numpy as np
import pytest
import tifffile
import torch

import scoretool
from scoretool.bigtiff import apply_tiled_bands, denoise_tiff, is_huge_tiff, tiff_layout
from scoretool.engine import apply_tiled
from scoretool.errors import InputError


@pytest.mark.parametrize("h, w, tile, overlap", [(300, 260, 64, 16), (300, 260, 64, 48), (70, 300, 64, 16), (50, 40, 64, 16)])
def test_bands_equal_in_memory_tiling(h, w, tile, overlap):
    x = torch.from_numpy(np.random.default_rng(h).random((1, 2, h, w), dtype=np.float32))

    def fn(t):  # not translation invariant: a tile's result depends on where its borders are
        return t * 2 + t.mean(dim=(2, 3), keepdim=True)

    ref = apply_tiled(fn, x, tile, overlap, 8)
    reads = []

    def read_rows(r0, r1):
        reads.append((r0, r1))
        return x[..., r0:r1, :]

    blocks = list(apply_tiled_bands(fn, read_rows, h, w, tile, overlap, 8))
    assert [r0 for r0, _ in blocks] == list(np.cumsum([0] + [b.shape[1] for _, b in blocks[:-1]]))
    out = torch.cat([b for _, b in blocks], 1)[None]
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    assert max(r1 - r0 for r0, r1 in reads) <= tile  # one band of tile rows at a time


@pytest.mark.parametrize("dtype, channels", [(np.float32, 1), (np.uint16, 3)])
def test_file_equals_in_memory_tiling(tmp_path, random_model, dtype, channels):
    rng = np.random.default_rng(channels)
    clean = rng.random((300, 260, channels), dtype=np.float32)
    noisy = clean + 0.1 * rng.standard_normal(clean.shape, dtype=np.float32)
    if dtype == np.uint16:
        raw = np.clip(np.rint(noisy * 65535), 0, 65535).astype(np.uint16)
        unit = raw.astype(np.float32) / 65535
    else:
        raw = noisy[..., 0] if channels == 1 else noisy
        unit = noisy
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, raw, photometric="rgb" if channels == 3 else "minisblack")
    assert tiff_layout(src).shape == raw.shape and is_huge_tiff(src, threshold=300 * 260 - 1) and not is_huge_tiff(src)
    weights = str(random_model(channels))
    report = denoise_tiff(src, tmp_path / "out.tif", 0.1, weights, "cpu", "fp32", tile=64)
    assert report["tiles"] > 20 and report["bands"] > 4
    out = tifffile.imread(tmp_path / "out.tif")
    assert out.dtype == raw.dtype and out.shape == raw.shape
    ref = scoretool.load(weights, channels, "cpu", "fp32", 64).denoise(unit, 0.1)
    assert np.abs(ref - unit).max() > 1e-2
    if dtype == np.uint16:
        assert np.abs(out.astype(np.int64) - np.clip(np.rint(ref * 65535), 0, 65535)).max() <= 1
    else:
        np.testing.assert_allclose(out, ref[..., 0], atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="output exists"):
        denoise_tiff(src, tmp_path / "out.tif", 0.1, weights, "cpu", "fp32", tile=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif"]


def test_other_tiffs_are_refused(tmp_path):
    arr = np.zeros((40, 40), np.uint16)
    tifffile.imwrite(tmp_path / "z.tif", arr, compression="zlib")
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((2, 40, 40), np.uint16))
    assert tiff_layout(tmp_path / "z.tif") is None and tiff_layout(tmp_path / "s.tif") is None
    with pytest.raises(InputError, match="uncompressed, contiguous"):
        denoise_tiff(tmp_path / "z.tif", tmp_path / "o.tif", 0.1)


def test_cli_denoise_goes_out_of_core_above_the_threshold(tmp_path, random_model, monkeypatch):
    import json

    from typer.testing import CliRunner

    import scoretool.bigtiff
    from scoretool.cli import app

    rng = np.random.default_rng(5)
    raw = (rng.random((150, 130)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "big.tif", raw)
    tifffile.imwrite(tmp_path / "packed.tif", raw, compression="zlib")
    args = ["--sigma", "3000", "--weights", str(random_model(1)), "--tile", "64", "--json"]
    runner = CliRunner()

    def run(src, dest):
        res = runner.invoke(app, ["denoise", str(tmp_path / src), "-o", str(tmp_path / dest), *args])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)["results"][0]

    in_memory = run("big.tif", "in_memory.tif")
    assert "out_of_core" not in in_memory
    monkeypatch.setattr(scoretool.bigtiff, "OUT_OF_CORE_PIXELS", 150 * 130 - 1)
    row = run("big.tif", "out_of_core.tif")
    assert row["out_of_core"] and row["tiles"] > 4 and row["shape"] == [150, 130, 1] and row["sigma"] == 3000
    a, b = tifffile.imread(tmp_path / "in_memory.tif"), tifffile.imread(tmp_path / "out_of_core.tif")
    assert a.dtype == b.dtype == np.uint16 and np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert "out_of_core" not in run("packed.tif", "packed_out.tif")  # compressed: read into memory as before
    res = runner.invoke(app, ["denoise", str(tmp_path / "big.tif"), "-o", str(tmp_path / "sigma_a.tif"), *args, "--sigma-a", "0.01"])
    assert res.exit_code == 2 and "--sigma-a" in res.stderr and not (tmp_path / "sigma_a.tif").exists()  # not ignored
