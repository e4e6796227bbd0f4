"""`scoretool noise`: estimate the noise family and parameter per image and overall (Noise2Score)."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InputError, ScoretoolError
from ..io import read_image
from . import app
from .common import (
    Common,
    DebugOpt,
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    RangeOpt,
    RecursiveOpt,
    SeedOpt,
    TileOpt,
    WeightsOpt,
    parse_range,
    plan_jobs,
    run_batch,
    run_command,
)

SYMBOL = {"gaussian": "sigma", "poisson": "zeta", "gamma": "k"}


def json_safe(value):
    """NaN/inf → None, recursively (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _fmt(family: str, row: dict) -> str:
    if not math.isfinite(row["parameter"]):
        return f"{SYMBOL[family]}=nan (no usable score curvature: cannot estimate)"
    if family == "gaussian":
        return f"sigma={row['sigma']:.4g} (input units; {row['parameters']['sigma']:.4g} on [0,1])"
    return f"{SYMBOL[family]}={row['parameter']:.4g}"


def overall_estimate(rows: list[dict], family: str | None = None) -> dict | None:
    """Folder estimate: the family most images vote for (or the given one), and the median over images of
    each image's parameter under that family."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return None
    votes = Counter(r["family"] for r in ok)
    fam = family or votes.most_common(1)[0][0]
    values = [r["parameters"][SYMBOL[fam]] for r in ok if math.isfinite(r["parameters"][SYMBOL[fam]])]
    param = statistics.median(values) if values else float("nan")
    powers = [r["power"] for r in ok if math.isfinite(r["power"])]
    return {"family": fam, "parameter_name": SYMBOL[fam], "parameter": param, "votes": dict(votes),
            "power_median": statistics.median(powers) if powers else float("nan"), "images": len(ok)}


def check_noise2score(weights: str | None) -> None:
    """Noise estimation reads the score of the *noisy* density: refuse a clean prior up front."""
    from ..weights import read_metadata, resolve_weights
    if weights is None:
        raise ScoretoolError("noise estimation needs a Noise2Score model: pass --weights n2s-gaussian-gray (or another "
                             "model trained with `scoretool train --noisy`)")
    _, info = read_metadata(resolve_weights(weights))
    if info.get("kind") != "noise2score":
        raise ScoretoolError(f"--weights {weights}: a {info.get('kind', 'prior')} model; noise estimation needs a "
                             "Noise2Score model (trained with `scoretool train --noisy`)")


@app.command(name="noise")
def noise(
    input: Annotated[Path, typer.Argument(help="Noisy image file or folder of images.")],
    weights: WeightsOpt = None,
    family: Annotated[str | None, typer.Option("--noise", help="Known family gaussian, poisson or gamma: estimate only its parameter. Default: estimate the family too (from the Tweedie power p: < 0.5 Gaussian, < 1.5 Poisson, else Gamma).")] = None,
    sigma_a: Annotated[float | None, typer.Option("--sigma-a", help="AR-DAE σ_a on the [0,1] scale at which a Noise2Score model's score s(y, σ_a) is read. Default: 0.3 × the noise std, within the model's trained σ range (its smoothing is corrected for).")] = None,
    value_range: RangeOpt = None,
    tile: TileOpt = 512,
    recursive: RecursiveOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Estimate the noise family (Gaussian / Poisson / Gamma) and its parameter (σ in the input's pixel
    units; ζ and k on the [0,1] scale) per image and for all images together, from the score of a
    Noise2Score model alone (needs --weights n2s-… or a model trained with `train --noisy`)."""
    from ..api import estimate_noise
    common = Common(device=device, seed=seed, json=json, quiet=quiet, debug=debug)

    def body():
        fam = family.lower() if family else None
        if fam is not None and fam not in SYMBOL:
            raise ScoretoolError(f"--noise {family}: expected gaussian, poisson or gamma")
        if sigma_a is not None and not 0 < sigma_a <= 0.1:
            raise ScoretoolError(f"--sigma-a {sigma_a}: expected a value in (0, 0.1]")
        check_noise2score(weights)
        vrange = parse_range(value_range)
        jobs = plan_jobs(common, input, None, None, recursive)

        def process(job):
            image = read_image(job.src, vrange)
            lo, hi = image.value_range
            try:
                est = estimate_noise(image.pixels, weights, fam, sigma_a, device, tile, seed)
            except ScoretoolError as e:
                raise InputError(job.src, str(e)) from None
            row = {**est, "sigma": est["parameters"]["sigma"] * (hi - lo), "value_range": [lo, hi]}
            if not json:
                f = row["family"]
                typer.echo(f"{job.src}\t{f}\t{_fmt(f, row)}\tpower p={row['power']:.2f}")
            return row

        rows, code = run_batch(common, jobs, process, "estimating noise")
        overall = overall_estimate(rows, fam)
        if json:
            common.emit(json_safe({"command": "noise", "results": rows, "overall": overall}))
        elif overall:
            f = overall["family"]
            votes = ", ".join(f"{k} {v}" for k, v in overall["votes"].items())
            typer.echo(f"overall ({overall['images']} images)\t{f}\t{SYMBOL[f]}={overall['parameter']:.4g}"
                       f"{' ([0,1] scale)' if f == 'gaussian' else ''}\tvotes: {votes}")
        return code

    run_command(common, body)
