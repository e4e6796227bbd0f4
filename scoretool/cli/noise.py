"""`scoretool noise`: estimate the noise model per image and overall: family and parameter from a
Noise2Score model's score, or, with the default clean prior, a blind Gaussian σ and a correlation measure
(scoretool/blind.py)."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Annotated

import typer

from ..errors import InputError, ModelError, ScoretoolError
from . import app
from .batch import plan_jobs, run_batch
from .common import INPUTS_HELP, Common, Opt, command, parse_range

SYMBOL = {"gaussian": "sigma", "poisson": "zeta", "gamma": "k"}


def _fmt(family: str, row: dict) -> str:
    if not math.isfinite(row["parameter"]):
        return f"{SYMBOL[family]}=nan (no usable score curvature: cannot estimate)"
    if family == "gaussian":
        return f"sigma={row['sigma']:.4g} (input units; {row['parameters']['sigma']:.4g} on [0,1])"
    return f"{SYMBOL[family]}={row['parameter']:.4g}"


def _line(row: dict) -> str:
    """One image's estimate as a text line (after its name)."""
    if "pd_ratio" not in row:  # a Noise2Score model's estimate
        return f"{row['family']}\t{_fmt(row['family'], row)}\tpower p={row['power']:.2f}"
    pg = row["poisson_gaussian"]
    pd = (f"sigma_pd={row['sigma_pd']:.4g}\tpd_ratio={row['pd_ratio']:.2f}" if row["pd_ratio"] is not None
          else "sigma_pd=n/a (sub-images too small)")
    return (f"gaussian\tsigma={row['sigma']:.4g} (input units)\t{pd}"
            + "".join(f" ({flag})" for flag in ("correlated", "white") if row[flag])
            + (f"\tpoisson-gaussian a={pg['a']:.3g} b={pg['b']:.3g} ([0,1] scale)" if pg else ""))


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
    overall = {"family": fam, "parameter_name": SYMBOL[fam], "parameter": param, "votes": dict(votes),
               "power_median": statistics.median(powers) if powers else float("nan"), "images": len(ok)}
    if fam == "gaussian" and len({tuple(r["value_range"]) for r in ok}) == 1:  # one pixel unit: σ in it too, as per image
        sigmas = [r["sigma"] for r in ok if math.isfinite(r["sigma"])]
        overall["sigma"] = statistics.median(sigmas) if sigmas else float("nan")
    return overall


@command(app, "device", "seed", "recursive", "shard", torchrun=True, name="noise")
def noise(
    common: Common,
    inputs: Annotated[list[str], typer.Argument(help="Noisy images." + INPUTS_HELP)],
    weights: Opt.Weights = None,
    family: Annotated[str | None, typer.Option("--noise", help="Known family gaussian, poisson or gamma: estimate only its parameter. Default: estimate the family too (from the Tweedie power p: < 0.5 Gaussian, < 1.5 Poisson, else Gamma).")] = None,
    sigma_a: Annotated[float | None, typer.Option("--sigma-a", help="AR-DAE σ_a on the [0,1] scale at which a Noise2Score model's score s(y, σ_a) is read. Default: 0.3 × the noise std, within the model's trained σ range (its smoothing is corrected for).")] = None,
    value_range: Opt.Range = None,
    tile: Opt.Tile = 512,
) -> None:
    """Estimate the noise per image and for all images together. With a Noise2Score model (--weights n2s-…
    or one trained with `train --noisy`): the family (Gaussian / Poisson / Gamma) and its parameter (σ in
    the input's pixel units; ζ and k on the [0,1] scale) from its score. Otherwise (the default): a blind
    Gaussian σ from weak-texture patches, sigma_pd, the σ seen in 2×2 pixel-shuffled sub-images, their
    ratio pd_ratio (≈ 1 for independent noise, larger for noise correlated between neighbours: flagged
    "correlated" above 1.3), "white" where the weak-texture σ (`classical`, before the prior's check) is at
    least 2 grey levels (then `denoise` takes the blind Gaussian path rather than the real-noise mode for
    an 8-bit colour image), and the
    Poisson–Gaussian a, b of Var[y|x] = a·x + b on the [0,1] scale (signal-dependent noise). --json: sigma,
    sigma_pd and classical in the input's pixel units; sigma_unit, parameter, parameters and poisson_gaussian on
    the [0,1] scale."""
    from ..api import check_sigma_a, image_noise, is_noise2score

    fam = family.lower() if family else None
    if fam is not None and fam not in SYMBOL:
        raise ScoretoolError(f"--noise {family}: expected gaussian, poisson or gamma")
    check_sigma_a(sigma_a, weights)  # before any file
    n2s = is_noise2score(weights)
    if not n2s and fam not in (None, "gaussian"):
        raise ScoretoolError(f"--noise {fam}: estimating this family needs a Noise2Score model (--weights n2s-…); "
                             "without one the blind Gaussian model is reported")
    vrange = parse_range(value_range)
    jobs = plan_jobs(common, inputs, None)

    def process(job):
        image = common.read_input(job.src, vrange, job.label)
        lo, hi = image.value_range
        try:
            est = image_noise(image.pixels, weights=weights, family=fam, sigma_a=sigma_a, device=common.device, tile=tile,
                              seed=common.seed)
        except ModelError:
            raise
        except ScoretoolError as e:
            raise InputError(job.src, str(e)) from None
        row = {**est, "sigma": est["parameters"]["sigma"] * (hi - lo), "sigma_unit": est["parameters"]["sigma"],
               "value_range": [lo, hi]}
        if not n2s:
            row["classical"] = est["classical"] * (hi - lo)
            row["sigma_pd"] = None if est["sigma_pd"] is None else est["sigma_pd"] * (hi - lo)
        return row

    rows, code = run_batch(common, jobs, process, "estimating noise")
    overall = overall_estimate(rows, fam)
    if common.json:
        common.emit({"command": "noise", "results": rows, "overall": overall})
        return code
    for row in (r for r in rows if r["status"] == "ok"):
        typer.echo(f"{row['input']}\t{_line(row)}")
    if overall:
        f = overall["family"]
        votes = ", ".join(f"{k} {v}" for k, v in overall["votes"].items())
        value = (f"sigma={overall['sigma']:.4g} (input units)" if "sigma" in overall else
                 f"{SYMBOL[f]}={overall['parameter']:.4g}{' ([0,1] scale)' if f == 'gaussian' else ''}")
        typer.echo(f"overall ({overall['images']} images)\t{f}\t{value}\tvotes: {votes}")
    return code
