"""`scoretool denoise`: Tweedie posterior-mean denoising of files and folders."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from ..api import denoise as denoise_array
from ..api import load_engine
from ..errors import ScoretoolError
from ..io import read_image, write_image
from . import app
from .common import (
    Common,
    DebugOpt,
    DeviceOpt,
    FormatOpt,
    JsonOpt,
    OutputOpt,
    OverwriteOpt,
    PrecisionOpt,
    QuietOpt,
    RangeOpt,
    RecursiveOpt,
    SeedOpt,
    TileOpt,
    WeightsOpt,
    plan_jobs,
    run_batch,
    run_command,
)


def parse_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ScoretoolError(f"--range {text}: expected MIN,MAX (two numbers)") from None
    if not hi > lo:
        raise ScoretoolError(f"--range {text}: MAX must be greater than MIN")
    return lo, hi


@app.command()
def denoise(
    input: Annotated[Path, typer.Argument(help="Image file or folder of images.")],
    output: OutputOpt,
    noise: Annotated[str, typer.Option("--noise", help="Noise family: gaussian (others: see the Noise2Score commands).")] = "gaussian",
    sigma: Annotated[float | None, typer.Option("--sigma", help="Gaussian noise std in the input's pixel units (0–255 for 8-bit, 0–65535 for 16-bit, raw for float).")] = None,
    weights: WeightsOpt = None,
    tile: TileOpt = 512,
    fmt: FormatOpt = None,
    value_range: RangeOpt = None,
    precision: PrecisionOpt = "auto",
    recursive: RecursiveOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Denoise images by Tweedie's posterior mean x̂ = D(y, σ) with a score prior."""
    common = Common(device=device, seed=seed, json=json, quiet=quiet, debug=debug, overwrite=overwrite)

    def body():
        if noise != "gaussian":
            raise ScoretoolError(f"--noise {noise}: only gaussian is available in this version")
        if sigma is None:
            raise ScoretoolError("--sigma is required (noise estimation is not available in this version)")
        if sigma <= 0:
            raise ScoretoolError(f"--sigma {sigma}: must be positive")
        vrange = parse_range(value_range)
        jobs = plan_jobs(common, input, output, fmt, recursive)
        torch.manual_seed(seed)

        def process(job):
            image = read_image(job.src, vrange)
            ch = image.channels
            _, info = load_engine(weights, ch, device, precision, tile)
            lo, hi = image.value_range
            sigma_unit = sigma / (hi - lo)
            t0 = time.perf_counter()
            out = denoise_array(image.pixels, sigma_unit, weights, device, precision, tile)
            seconds = time.perf_counter() - t0
            write_image(job.dest, image.with_pixels(out), overwrite=common.overwrite)
            return {"weights": info["name"], "sigma": sigma, "sigma_unit": sigma_unit, "seconds": round(seconds, 3),
                    "shape": list(image.pixels.shape[1:])}

        rows, code = run_batch(common, jobs, process, "denoising")
        if json:
            common.emit({"command": "denoise", "results": rows})
        return code

    run_command(common, body)
