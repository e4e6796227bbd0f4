"""`scoretool evaluate` through typer's CliRunner: modes, file matching, known answers, bad input."""

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from scoretool.cli import app
from scoretool.metrics import umse

H, W = 37, 31
runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["evaluate", *map(str, args)])


def clean_image(rng):
    yy, xx = np.mgrid[0:H, 0:W]
    return (0.5 + 0.3 * np.sin(yy / 5.0) * np.cos(xx / 7.0)).astype(np.float32)


@pytest.fixture
def folders(tmp_path, rng):
    """clean/, den/ (denoised), A/ B/ C/ (noisy references) with im1.npy, im2.npy."""
    for d in ("clean", "den", "A", "B", "C"):
        (tmp_path / d).mkdir()
    for name in ("im1", "im2"):
        x = clean_image(rng)
        np.save(tmp_path / "clean" / f"{name}.npy", x)
        np.save(tmp_path / "den" / f"{name}.npy", (x + 0.03 * rng.standard_normal(x.shape)).astype(np.float32))
        for d in "ABC":
            np.save(tmp_path / d / f"{name}.npy", (x + 0.1 * rng.standard_normal(x.shape)).astype(np.float32))
    return tmp_path


def test_refs_known_answer_json_and_table(folders):
    t = folders
    r = run(t / "den", "--refs", t / "A", t / "B", t / "C", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["mode"] == "refs" and len(out["results"]) == 2
    row = out["results"][0]
    ref = umse(*(np.load(t / d / "im1.npy") for d in ("den", "A", "B", "C")), data_range=1.0)
    assert row["umse"] == pytest.approx(ref.mse)
    assert row["umse_ci"] == pytest.approx([ref.ci_low, ref.ci_high])
    assert row["upsnr"] == pytest.approx(ref.psnr, abs=1e-3)
    assert out["mean"]["umse"] == pytest.approx(np.mean([q["umse"] for q in out["results"]]))
    # human table on stdout, with a mean row
    r = run(t / "den", "--refs", t / "A", t / "B", t / "C")
    assert r.exit_code == 0
    assert "im1.npy" in r.stdout and "mean (2)" in r.stdout and "uPSNR" in r.stdout


def test_clean_psnr_known_answer_and_csv(tmp_path):
    x = np.full((H, W), 100, np.uint8)
    (tmp_path / "c").mkdir()
    (tmp_path / "d").mkdir()
    iio.imwrite(tmp_path / "c" / "a.png", x)
    iio.imwrite(tmp_path / "d" / "a.png", x + 10)  # MSE 100 grey levels² → PSNR = 10·log10(255²/100)
    csv = tmp_path / "rep" / "out.csv"
    r = run(tmp_path / "d", "--clean", tmp_path / "c", "--json", "--csv", csv)
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)["results"][0]
    assert row["psnr"] == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-3)
    assert row["data_range"] == 255.0
    assert row["ssim"] < 1
    text = csv.read_text().splitlines()
    assert text[0].startswith("input,") and text[-1].startswith("mean,") and len(text) == 3
    # an explicit data range in pixel units changes the PSNR as the formula says
    r = run(tmp_path / "d", "--clean", tmp_path / "c", "--json", "--data-range", 100)
    assert json.loads(r.stdout)["results"][0]["psnr"] == pytest.approx(20.0, abs=1e-3)


def test_missing_and_mismatched_partners_reported_per_file(folders):
    t = folders
    np.save(t / "den" / "extra.npy", np.zeros((H, W), np.float32))
    np.save(t / "den" / "small.npy", np.zeros((H - 2, W), np.float32))
    for d in "ABC":
        np.save(t / d / "small.npy", np.zeros((H, W), np.float32) + 0.1 * ord(d))
    r = run(t / "den", "--refs", t / "A", t / "B", t / "C", "--json")
    assert r.exit_code == 1
    rows = {q["input"].split("/")[-1]: q for q in json.loads(r.stdout)["results"]}
    assert rows["im1.npy"]["status"] == "ok"
    assert rows["extra.npy"]["status"] == "failed" and "no partner" in rows["extra.npy"]["error"]
    assert rows["small.npy"]["status"] == "failed" and "differs" in rows["small.npy"]["error"]
    assert "extra.npy" in r.stderr and "Traceback" not in r.output


def test_single_reference_is_a_usage_error(folders):
    t = folders
    r = run(t / "den", "--refs", t / "A")
    assert r.exit_code == 2
    assert "--refs" in r.output and "Traceback" not in r.output


def test_same_reference_three_times(folders):
    t = folders
    r = run(t / "den", "--refs", t / "A", t / "A", t / "B")
    assert r.exit_code == 2 and "different" in r.stderr


def test_identical_reference_contents(folders):
    t = folders
    for name in ("im1", "im2"):
        np.save(t / "C" / f"{name}.npy", np.load(t / "B" / f"{name}.npy"))
    r = run(t / "den", "--refs", t / "A", t / "B", t / "C", "--json")
    assert r.exit_code == 2
    assert "identical" in r.stderr and "im1.npy" in r.stderr
    assert "NaN" not in r.stdout


def test_nonpositive_umse_shown_as_bound(tmp_path, rng):
    x = clean_image(rng)
    n = (0.1 * rng.standard_normal(x.shape)).astype(np.float32)
    paths = {}
    for name, arr in (("den", x), ("a", x + 1e-4), ("b", x + n), ("c", x - n)):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    args = (paths["den"], "--refs", paths["a"], paths["b"], paths["c"])
    r = run(*args, "--json")
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)["results"][0]
    assert row["umse"] < 0 and row["upsnr"] is None and row["upsnr_text"].startswith("> ")
    assert "NaN" not in r.stdout and "Infinity" not in r.stdout
    r = run(*args)
    assert r.exit_code == 0 and "> " in r.stdout


def test_mode_choice_errors(folders):
    t = folders
    assert run(t / "den").exit_code == 2
    r = run(t / "den", "--clean", t / "clean", "--split")
    assert r.exit_code == 2 and "choose one" in r.stderr
    r = run(t / "den", "--sure")
    assert r.exit_code == 2 and "--sigma" in r.stderr
    for extra, words in ((["--clean", t / "clean", "--probes", "3"], "--probes is only used with --sure"),
                         (["--split", "--sigma", "5", "--probes", "3"], "--probes is only used with --sure"),
                         (["--clean", t / "clean", "--weights", "prior-rgb"], "--weights: only used with --sure or --split"),
                         (["--refs", t / "A", t / "B", t / "C", "--tile", "64", "--precision", "fp32"],
                          "--tile, --precision: only used with --sure or --split")):
        r = run(t / "den", *extra)  # were ignored
        assert r.exit_code == 2 and words in r.stderr, r.output


def test_sure_known_answer_with_linear_tiny_model(tmp_path, rng, tiny_model):
    """The tiny model's output layer is zero, so D(y, σ) = c_skip·y with c_skip = σd²/(σ²+σd²): a linear
    denoiser with divergence c_skip·N, so SURE has a closed form."""
    sigma, sd = 0.1, 0.5
    y = (clean_image(rng) + sigma * rng.standard_normal((H, W))).astype(np.float32)
    np.save(tmp_path / "y.npy", y)
    r = run(tmp_path / "y.npy", "--sure", "--sigma", sigma, "--weights", tiny_model(1), "--json", "--device", "cpu")
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)["results"][0]
    c = sd**2 / (sigma**2 + sd**2)
    expected = float(np.mean(((1 - c) * y.astype(np.float64)) ** 2)) - sigma**2 + 2 * sigma**2 * c
    assert row["divergence_per_pixel"] == pytest.approx(c, rel=1e-3)
    assert row["sure_mse"] == pytest.approx(expected, rel=1e-3)


def test_split_runs_with_tiny_model(tmp_path, rng, tiny_model):
    y = (clean_image(rng) + 0.1 * rng.standard_normal((H, W))).astype(np.float32)
    np.save(tmp_path / "y.npy", y)
    r = run(tmp_path / "y.npy", "--split", "--sigma", 0.1, "--weights", tiny_model(1), "--json", "--device", "cpu")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert math.isfinite(out["results"][0]["umse"]) and any("polyphase" in n for n in out["notes"])
