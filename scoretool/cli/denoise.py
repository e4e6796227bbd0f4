"""`scoretool denoise`: Tweedie posterior-mean denoising of files and folders."""

from __future__ import annotations

import math
import time
from typing import Annotated

import typer

from ..errors import InputError, ModelError, ScoretoolError
from . import app
from .batch import FileJob, plan_jobs, run_batch
from .common import FAMILY_OF, INPUTS_HELP, PARAMETER_OF, Common, Opt, command, parse_range


def parse_sigma(sigma: str | None) -> float | str | None:
    """--sigma: a number (input pixel units) or `auto` (blind Gaussian σ)."""
    if sigma is None or str(sigma).lower() == "auto":
        return None if sigma is None else "auto"
    try:
        value = float(sigma)
    except ValueError:
        raise ScoretoolError(f"--sigma {sigma}: expected a number (input pixel units) or auto") from None
    if not math.isfinite(value):
        raise ScoretoolError(f"--sigma {sigma}: must be a finite number")
    return value


def choose_noise(noise: str | None, sigma: float | str | None, zeta: float | None, k: float | None) -> tuple[str | None, str | None]:
    """(family or None = from the model / gaussian, the name of the parameter option given; `--sigma auto`
    counts as naming the Gaussian family without a value)."""
    if sigma == "auto":
        if noise not in (None, "gaussian", "GAUSSIAN") or zeta is not None or k is not None:
            raise ScoretoolError("--sigma auto estimates a Gaussian σ; it does not go with --noise "
                                 f"{noise or ''}{' --zeta' if zeta is not None else ''}{' --k' if k is not None else ''}".rstrip())
        return "gaussian", None
    given = [(n, v) for n, v in (("sigma", sigma), ("zeta", zeta), ("k", k)) if v is not None]
    if len(given) > 1:
        raise ScoretoolError(f"give one of --sigma, --zeta, --k (got {', '.join('--' + n for n, _ in given)})")
    if noise is not None:
        noise = noise.lower()
        if noise not in ("gaussian", "poisson", "gamma", "poisson-gaussian", "auto"):
            raise ScoretoolError(f"--noise {noise}: expected gaussian, poisson, gamma, poisson-gaussian or auto")
    if noise == "poisson-gaussian" and given:
        raise ScoretoolError(f"--noise poisson-gaussian takes --a and --b, not --{given[0][0]}")
    name = given[0][0] if given else None
    if name:
        if noise == "auto":
            raise ScoretoolError(f"--noise auto estimates the family and its parameter; drop --{name} or name the family")
        if noise is not None and FAMILY_OF[name] != noise:
            raise ScoretoolError(f"--{name} is the {FAMILY_OF[name]} parameter; --noise {noise} takes --{PARAMETER_OF[noise]}")
        noise = FAMILY_OF[name]
        value = given[0][1]
        if not value > 0 or (name == "k" and not value > 1):
            raise ScoretoolError(f"--{name} {value}: must be positive" + (" and greater than 1" if name == "k" else ""))
    return noise, name


def _values(v: float | list[float]) -> str:
    """One number, or one per frame, to 4 significant digits."""
    return ", ".join(f"{x:.4g}" for x in (v if isinstance(v, list) else [v]))


def denoise_huge_tiff(job: FileJob, sigma_unit: float, sigma: float, weights: str | None, device: str, precision: str,
                      tile: int, value_range: tuple[float, float] | None, common: Common) -> dict:
    """A TIFF larger than memory, band by band from disk to disk (bigtiff.denoise_tiff) → its result row."""
    from ..api import denoise_tiff

    common.notice(f"{job.label}: large TIFF, denoised band by band from disk (out of core)")
    rep = denoise_tiff(job.src, job.dest, sigma_unit, weights, device, precision, tile, value_range, common.overwrite)
    return {"weights": rep["weights"], "noise": "gaussian", "method": "prior D(y, sigma)", "parameter_name": "sigma",
            "parameter": sigma_unit, "estimated": False, "grey_in_colour": False, "sigma": sigma, "sigma_unit": sigma_unit,
            "out_of_core": True,
            "tiles": rep["tiles"], "seconds": round(rep["seconds"], 3), "shape": rep["shape"]}


@command(app, "device", "seed", "overwrite", "recursive", "shard", torchrun=True)
def denoise(
    common: Common,
    inputs: Annotated[list[str], typer.Argument(help="Images to denoise." + INPUTS_HELP)],
    output: Opt.Output,
    noise: Annotated[str | None, typer.Option("--noise", help="Noise family: gaussian, poisson (y = ζ·Poisson(x/ζ)), gamma (y = x·G, G ~ Gamma(k, 1/k)), poisson-gaussian (Var[y|x] = a·x + b: shot and read noise of raw camera data; clean prior) or auto (family and parameter estimated; needs a Noise2Score model). Default: the family a Noise2Score model was trained on, else gaussian (or the family of the --zeta/--k given).")] = None,
    sigma: Annotated[str | None, typer.Option("--sigma", help="Gaussian noise std in the input's pixel units (0–255 for 8-bit, 0–65535 for 16-bit, raw for float), or auto: estimated per image (weak-texture patches with a clean prior, the score with a Noise2Score model) and reported. Left out: auto, except for 8-bit colour photos with a clean prior (see --real-noise).")] = None,
    zeta: Annotated[float | None, typer.Option("--zeta", help="Poisson scale ζ on the [0,1] intensity scale (paper: 0.01). Left out: estimated (Noise2Score model).")] = None,
    k: Annotated[float | None, typer.Option("--k", help="Gamma shape k (> 1; mean x, variance x²/k; paper: 100). Left out: estimated (Noise2Score model).")] = None,
    a: Annotated[float | None, typer.Option("--a", help="Poisson–Gaussian shot-noise gain a in Var[y|x] = a·x + b, on the [0,1] intensity scale (with --b; implies --noise poisson-gaussian). Left out: a and b estimated per image and reported.")] = None,
    b: Annotated[float | None, typer.Option("--b", help="Poisson–Gaussian read-noise variance b on the [0,1] scale (with --a).")] = None,
    real_noise: Annotated[bool | None, typer.Option("--real-noise/--no-real-noise", help="Camera noise (signal-dependent, correlated between neighbouring pixels by demosaicing and JPEG): pixel-shuffle 2×2 down-sampling, a σ estimated per sub-image, then a light second pass. Default: on for 8-bit colour images with a clean prior and no noise option, unless the (first frame's) finest scale shows white noise of 2 grey levels or more (then the blind Gaussian path); --no-real-noise uses the blind Gaussian σ instead.")] = None,
    negative: Annotated[str, typer.Option("--negative", help="Poisson/Gamma input with values < 0, or Poisson–Gaussian input with more than 0.1% of its values over 4 read-noise stds below 0 (an offset not subtracted): error (default; the file is reported) or clip (set to 0, counted in the report).")] = "error",
    sigma_a: Annotated[float | None, typer.Option("--sigma-a", help="AR-DAE σ_a on the [0,1] scale at which a Noise2Score model's score s(y, σ_a) is read. Default: 0.3 × the noise std, within the model's trained σ range (its smoothing is corrected for).")] = None,
    weights: Opt.Weights = None,
    tile: Opt.Tile = 512,
    ensemble: Annotated[int, typer.Option("--ensemble", help="Average the prior's denoiser over 1, 2, 4 or 8 flips/rotations (Gaussian noise of a given --sigma, clean prior; refused elsewhere): ×N time, higher PSNR.")] = 1,
    fmt: Opt.Format = None,
    value_range: Opt.Range = None,
    precision: Opt.Precision = "auto",
) -> None:
    """Denoise images by Tweedie's posterior mean: x̂ = D(y, σ) with a clean prior (Gaussian noise), or
    Noise2Score's formulas (Gaussian, Poisson, Gamma) with a Noise2Score model; a parameter left out is
    estimated from the data and reported."""
    from ..api import check_sigma_a, denoise_image, is_noise2score, out_of_core_range
    from ..engine import check_ensemble
    from ..io import unit_sigma, write_image

    sigma_value = parse_sigma(sigma)
    if (a is None) != (b is None):
        raise ScoretoolError("give both --a and --b (Var[y|x] = a·x + b), or neither (then both are estimated)")
    if a is not None and not (a >= 0 and b >= 0 and a + b > 0):
        raise ScoretoolError(f"--a {a} --b {b}: both must be ≥ 0, at least one positive")
    if a is not None and noise is not None and noise.lower() != "poisson-gaussian":
        raise ScoretoolError(f"--a and --b are the poisson-gaussian parameters, not {noise}'s")
    family, given = choose_noise("poisson-gaussian" if a is not None else noise, sigma_value, zeta, k)
    told = noise is not None or sigma is not None or zeta is not None or k is not None or a is not None
    if real_noise and told:
        raise ScoretoolError("--real-noise estimates the camera noise itself; drop --noise/--sigma/--zeta/--k/--a/--b")
    if negative not in ("error", "clip"):
        raise ScoretoolError(f"--negative {negative}: expected error or clip")
    if negative == "clip" and (family == "gaussian" or family is None and not is_noise2score(weights)):
        raise ScoretoolError("--negative clip is for Poisson, Gamma and Poisson–Gaussian input; Gaussian noise takes "
                             "values below 0 as they are")
    check_ensemble(ensemble)
    check_sigma_a(sigma_a, weights)  # before any file: a huge TIFF takes a path without it
    vrange = parse_range(value_range)
    jobs = plan_jobs(common, inputs, output, fmt)

    def process(job):
        if given == "sigma" and ensemble == 1 and (huge := out_of_core_range(job.src, job.dest, weights, vrange)):
            return denoise_huge_tiff(job, unit_sigma(sigma_value, huge), sigma_value, weights, common.device, precision, tile, vrange, common)
        image = common.read_input(job.src, vrange, job.label)
        lo, hi = image.value_range
        param = unit_sigma(sigma_value, (lo, hi)) if given == "sigma" else {"zeta": zeta, "k": k}.get(given)
        t0 = time.perf_counter()
        try:
            out, report = denoise_image(image.pixels, noise=family, parameter=param, real_noise=real_noise,
                                        eight_bit=image.dtype == "uint8", weights=weights, device=common.device,
                                        precision=precision, tile=tile, ensemble=ensemble, sigma_a=sigma_a,
                                        negative=negative, seed=common.seed, a=a, b=b)
        except ModelError:
            raise
        except ScoretoolError as e:
            raise InputError(job.src, str(e)) from None
        seconds = time.perf_counter() - t0
        write_image(job.dest, image.with_pixels(out), overwrite=common.overwrite)
        row = {"weights": report["weights"], "noise": report["family"], "method": report["method"],
               "parameter_name": report["parameter_name"], "parameter": report["parameter"],
               "estimated": report["estimated"], "grey_in_colour": bool(report.get("grey_in_colour"))}
        if report["family"] == "gaussian":
            row.update(sigma=report["parameter"] * (hi - lo), sigma_unit=report["parameter"])
        if report.get("poisson_gaussian"):
            pg = report["poisson_gaussian"]
            row["poisson_gaussian"] = pg
            if pg["estimated"]:
                common.notice(f"{job.label}: estimated Poisson–Gaussian noise Var[y|x] = a·x + b ([0,1] scale): "
                              f"a = {_values(pg['a'])}, b = {_values(pg['b'])}")
        elif report.get("camera"):
            cam = report["camera"]
            row.update(method=cam["method"], camera={**cam, "sigmas_input_units": [v * (hi - lo) for v in cam["sigmas"]]})
            common.notice(f"{job.label}: real-noise mode (pixel-shuffle {cam['stride']}×{cam['stride']}), σ per sub-image "
                          f"{', '.join(f'{v * (hi - lo):.3g}' for v in cam['sigmas'])} (input units); --no-real-noise to turn off")
        elif report.get("estimate"):
            est = report["estimate"]
            row["estimate"] = {k: est[k] for k in ("family", "power", "parameters", "method", "prior_evaluations") if k in est}
            if "classical" in est:
                row["estimate"]["classical"] = est["classical"] * (hi - lo)  # input units, like sigma
            what = f"σ = {report['parameter'] * (hi - lo):.4g} (input units)" if report["family"] == "gaussian" else \
                f"{'ζ' if report['family'] == 'poisson' else 'k'} = {report['parameter']:.4g}"
            how = f"power p = {est['power']:.2f}" if "power" in est else "blind, weak-texture patches" + (
                f", lowered from {est['classical'] * (hi - lo):.4g} by the prior" if est.get("classical", 0) > est["parameter"] else "")
            if "white_noise" in report:
                row["white_noise"] = report["white_noise"] * (hi - lo)
                how += "; white noise of 2 grey levels or more at the finest scale, so not the real-noise mode (--real-noise to force it)"
            common.notice(f"{job.label}: estimated {report['family']} noise, {what}; {how}")
        mismatch = report.get("noise_mismatch")
        if mismatch:
            row["noise_mismatch"] = {k: v * (hi - lo) for k, v in mismatch.items()}
            common.notice(f"{job.label}: {report['weights']} reads σ = {mismatch['model_sigma'] * (hi - lo):.3g} (input units), "
                          f"but the image's white noise looks like σ ≈ {mismatch['image_sigma'] * (hi - lo):.3g}: a Noise2Score "
                          f"model denoises only noise like its training data's; a clean prior (the default) takes any σ")
        guards = report.get("guards")
        if guards:
            row["guards"] = guards
            if guards["guarded"]:
                common.notice(f"{job.label}: {guards['guarded']} of {guards['pixels']} pixel(s) hit a Tweedie guard "
                              f"(gamma denominator {guards['gamma_denominator']}, exp overflow {guards['exp_overflow']}, "
                              f"non-finite score {guards['nonfinite_score']}); they keep the noisy value")
        if report.get("negative_clipped"):
            row["negative_clipped"] = report["negative_clipped"]
            common.notice(f"{job.label}: {report['negative_clipped']} negative value(s) set to 0 (--negative clip)")
        row.update(seconds=round(seconds, 3), shape=list(image.pixels.shape[1:]))
        return row

    rows, code = run_batch(common, jobs, process, "denoising")
    if common.json:
        common.emit({"command": "denoise", "results": rows})
    return code
