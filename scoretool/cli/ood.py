"""`scoretool ood fit|score|eval`: flag images unlike a prior's training data (MSMA score norms)."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..api import DEFAULT_CORR, DEFAULT_PARITY, DEFAULT_PARITY_MEAN, DEFAULT_QUANTILES, DEFAULT_RMS
from ..errors import InputError, ModelError, ScoretoolError
from ..files import atomic_output, check_budget, list_images
from . import app
from .batch import FileJob, plan_jobs, run_batch
from .common import INPUTS_HELP, Common, Opt, command, file_error, one_line, parse_range

if TYPE_CHECKING:
    import numpy as np

    from ..api import OODModel

ood_app = typer.Typer(
    help="Out-of-distribution scoring with multiscale score norms (MSMA): fit a density on training images' "
    "features, score new images against it, and evaluate inlier/outlier separation.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(ood_app, name="ood")

ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="OOD model file made by `scoretool ood fit` (.safetensors).")]
ThresholdOpt = Annotated[float, typer.Option("--threshold-percentile", help="Flag images whose score is above this percentile "
                                             "of the (held-out) training scores, in percent.")]
MethodOverrideOpt = Annotated[str | None, typer.Option("--method", help="Density to score with: gmm or knn (default: the "
                                                       "model's fitted method; the file stores both when it can).")]


def _check_threshold(p: float) -> None:
    if not 0 < p < 100:
        raise ScoretoolError(f"--threshold-percentile {p}: must be between 0 and 100")


def _parse_quantiles(text: str) -> tuple[float, ...]:
    if text.strip().lower() in ("none", ""):
        return ()
    try:
        qs = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ScoretoolError(f"--quantiles {text}: expected a comma list of numbers in [0, 1] or 'none'") from None
    if not all(0 <= q <= 1 for q in qs):
        raise ScoretoolError(f"--quantiles {text}: each quantile must be in [0, 1]")
    return qs


def _read_training(common: Common, data: Path, output: Path, value_range: tuple[float, float] | None
                   ) -> tuple[list[np.ndarray], list[str], list[dict]]:
    """Read every image of DATA (all frames; sub-folders with --recursive; float values mapped from `value_range`),
    after planning the OOD model file `output`; a bad file or one of another channel count is reported and skipped."""

    if not Path(data).exists():
        raise ScoretoolError(f"{data}: no such file or folder")
    files, skipped = list_images(Path(data), common.recursive)
    for p in skipped:
        common.notice(f"skipping {p}: not an image file")
    if not files:
        raise ScoretoolError(f"{data}: no image files found")
    common.reads(files)
    common.claim_output(output, "OOD model")
    images, names, failed, channels = [], [], [], None
    for f in files:
        try:
            img = common.read_input(f, value_range)
            channels = channels or img.channels
            if img.channels != channels:
                raise InputError(f, f"{img.channels}-channel image among {channels}-channel training images")
        except Exception as e:  # noqa: BLE001 - one file's failure is that file's (common.run_batch)
            message = one_line(file_error(f, e))
            common.error(message)
            failed.append({"input": str(f), "error": message})
            continue
        for frame in img.pixels:
            images.append(frame)
            names.append(str(f))
    return images, names, failed


@command(ood_app, "device", "seed", "overwrite", "recursive")
def fit(
    common: Common,
    data: Annotated[Path, typer.Argument(help="Folder (or file) of clean training images, the prior's kind of data.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="OOD model file to write (.safetensors).")],
    levels: Annotated[int, typer.Option("--levels", help="Number L of geometric noise levels σ_i.")] = 10,
    sigma_max: Annotated[float, typer.Option("--sigma-max", help="Largest noise level on the [0,1] scale (clipped to the prior's trained range).")] = 1.0,
    sigma_min: Annotated[float, typer.Option("--sigma-min", help="Smallest noise level on the [0,1] scale (clipped to the prior's trained range); small levels show JPEG and resampling artefacts.")] = 0.003,
    method: Annotated[str, typer.Option("--method", help="Density used by `ood score`: gmm (−log-likelihood) or knn (mean distance to the 5 nearest).")] = "gmm",
    crop: Annotated[int, typer.Option("--crop", help="Side in pixels of the crops the network sees.")] = 64,
    patch: Annotated[int, typer.Option("--patch", help="Side in pixels of the patches whose score norms are summarised.")] = 32,
    crops: Annotated[int, typer.Option("--crops", help="Crops per image (fixed, so images of any size give comparable features).")] = 8,
    quantiles: Annotated[str, typer.Option("--quantiles", help="Per level, these quantiles (0–1, comma list, e.g. 0.1,0.5,0.9,1, or 'none') of the per-patch score norms are features.")] = ",".join(f"{q:g}" for q in DEFAULT_QUANTILES) or "none",
    rms: Annotated[bool, typer.Option("--rms/--no-rms", help="Per level, the RMS score norm over all sampled pixels (the MSMA whole-image norm / √N) is a feature.")] = DEFAULT_RMS,
    corr: Annotated[bool, typer.Option("--corr/--no-corr", help="Per level, the lag-1 autocorrelation of the score map (catches blur, block and noise artefacts) is a feature.")] = DEFAULT_CORR,
    parity: Annotated[bool, typer.Option("--parity/--no-parity", help="Per level, the even/odd asymmetry of the score map's lag-1 products (catches 2× pixel replication) is a feature.")] = DEFAULT_PARITY,
    parity_mean: Annotated[bool, typer.Option("--parity-mean/--no-parity-mean", help="Once per image, the log of that asymmetry averaged over the levels is a feature (the default's pixel-replication detector).")] = DEFAULT_PARITY_MEAN,
    weights: Opt.Weights = None,
    value_range: Opt.Range = None,
    precision: Opt.Precision = "auto",
) -> None:
    """Fit an OOD density on the multiscale score-norm features of training images."""
    from ..api import ood_fit

    if method not in ("gmm", "knn"):
        raise ScoretoolError(f"--method {method}: expected gmm or knn")
    if crop < 8 or patch < 4 or patch > crop or crops < 1:
        raise ScoretoolError(f"--crop {crop} --patch {patch} --crops {crops}: need crop ≥ 8, 4 ≤ patch ≤ crop, crops ≥ 1")
    check_ood_size(levels, crops, crop, 3)
    qs = _parse_quantiles(quantiles)
    if not qs and not rms and not corr and not parity and not parity_mean:
        raise ScoretoolError("no features: give --quantiles, --rms, --corr, --parity or --parity-mean")
    images, _, failed = _read_training(common, data, output, parse_range(value_range))
    if not images:
        raise ScoretoolError(f"{data}: no readable training images")
    t0 = time.perf_counter()
    with common.progress("features", len(images)) as advance:
        model = ood_fit(images, weights=weights, method=method, levels=levels, sigma_max=sigma_max, sigma_min=sigma_min,
                        device=common.device, precision=precision, seed=common.seed, progress=advance, crop=crop, patch=patch, crops=crops, quantiles=qs, rms=rms, corr=corr, parity=parity, parity_mean=parity_mean)
    model.save(output)
    seconds = time.perf_counter() - t0
    summary = {"command": "ood fit", "model": str(output), "images": len(images), "method": method,
               "prior": model.prior.get("name"), "channels": model.prior.get("channels"),
               "sigmas": model.spec.sigmas, "features": model.spec.dim, "gmm_components": model.info.get("gmm_components"),
               "seconds": round(seconds, 2), "failed": failed}
    if common.json:
        common.emit(summary)
    else:
        common.notice(f"fitted {method} on {len(images)} images ({model.spec.dim} features, "
                      f"{len(model.spec.sigmas)} levels {model.spec.sigmas[0]:.3g}→{model.spec.sigmas[-1]:.3g}) "
                      f"in {seconds:.1f} s → {output}")
    return 1 if failed else 0


def _score_files(common: Common, model: OODModel, jobs: list[FileJob], weights, device, precision, threshold, method,
                 value_range: tuple[float, float] | None, description="scoring") -> tuple[list[dict], int]:
    from ..api import ood_score

    def process(job):
        image = common.read_input(job.src, value_range, job.label)
        t0 = time.perf_counter()
        res = ood_score(image.pixels, model, weights=weights, device=device, precision=precision,
                        threshold_percentile=threshold, method=method)
        if not all(math.isfinite(r["score"]) for r in res):
            raise InputError(job.src, "OOD score is NaN or infinite (the prior gives no usable score on this image)")
        sec = round((time.perf_counter() - t0) / len(res), 3)
        if len(res) == 1:
            return {**res[0], "seconds": sec}
        return {"frames": [{"frame": i, **r} for i, r in enumerate(res)], **max(res, key=lambda r: r["score"]), "seconds": sec}

    return run_batch(common, jobs, process, description)


def check_ood_size(levels: int, crops: int, crop: int, channels: int, where: str = "") -> None:
    """The feature recipe's work array (levels × crops × channels × crop² values, computed at once) must
    fit the pixel budget; refused before anything is allocated."""
    if min(levels, crops, crop, channels) < 1:
        raise ScoretoolError(f"{where}levels {levels}, crops {crops}, crop {crop}: each must be at least 1")
    check_budget(levels * crops * channels * crop * crop, f"{where}the OOD feature work array ({levels} levels × {crops} crops × {crop}²)")


def _load(model_path: Path, method: str | None) -> OODModel:
    from ..api import OODModel
    model = OODModel.load(model_path)
    spec = model.spec
    if not all(math.isfinite(s) and s > 0 for s in spec.sigmas) or not all(0 <= q <= 1 for q in spec.quantiles) \
            or not 1 <= spec.patch <= spec.crop:
        raise ModelError(f"{model_path}: OOD model metadata is damaged (noise levels, quantiles or patch size out of range)")
    check_ood_size(len(spec.sigmas), spec.crops, spec.crop, int(model.prior.get("channels") or 1), f"{model_path}: ")
    if method not in (None, "gmm", "knn"):
        raise ScoretoolError(f"--method {method}: expected gmm or knn")
    if (method or model.method) not in model.ref_scores:
        raise ScoretoolError(f"{model_path}: has no {method or model.method} density (fitted on too few images)")
    return model


@command(ood_app, "device", "overwrite", "recursive", "shard", torchrun=True)
def score(
    common: Common,
    inputs: Annotated[list[str], typer.Argument(help="Images to score." + INPUTS_HELP)],
    model_path: ModelOpt,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Also write the per-image rows to this CSV file (an existing one only with --overwrite).")] = None,
    threshold: ThresholdOpt = 95.0,
    method: MethodOverrideOpt = None,
    weights: Annotated[str | None, typer.Option("--weights", "-w", help="The prior, if it moved since fitting (must be the same file; checked by SHA-256). Default: the one the model was fitted with.")] = None,
    value_range: Opt.Range = None,
    precision: Opt.Precision = "auto",
) -> None:
    """Score images: OOD score (higher = more unusual), percentile among the training images, flag."""
    from ..api import ood_check_prior

    _check_threshold(threshold)
    vrange = parse_range(value_range)
    common.reads([model_path])
    model = _load(model_path, method)
    ood_check_prior(model, model.prior.get("channels"), weights)  # another prior: fail before any file
    jobs = plan_jobs(common, inputs, None)
    if csv_path is not None:
        common.claim_output(csv_path, "CSV")
    rows, code = _score_files(common, model, jobs, weights, common.device, precision, threshold, method, vrange)
    ok = [r for r in rows if r["status"] == "ok"]
    if csv_path is not None and common.reports:
        with atomic_output(csv_path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["input", "status", "score", "percentile", "flag", "seconds", "error"])
            for r in rows:
                w.writerow([r["input"], r["status"], r.get("score", ""), r.get("percentile", ""),
                            int(r["flag"]) if "flag" in r else "", r.get("seconds", ""), r.get("error", "")])
    summary = {"images": len(ok), "flagged": sum(r["flag"] for r in ok), "threshold_percentile": threshold,
               "threshold": model.threshold(threshold, method), "method": method or model.method}
    if common.json:
        common.emit({"command": "ood score", "model": str(model_path), "results": rows, "summary": summary})
    else:
        for r in ok:
            typer.echo(f"{r['input']}\tscore {r['score']:.4g}\tpercentile {r['percentile']:.1f}\t"
                       f"{'OOD' if r['flag'] else 'ok'}")
        common.notice(f"{summary['flagged']} of {len(ok)} images flagged above the {threshold:g}th training percentile")
    return code


def _write_plot(path: Path, s_in, s_out, thr: float) -> None:
    """The inlier and outlier score histograms and the threshold (api.histogram_image) as a PNG."""
    import imageio.v3 as iio

    from ..api import histogram_image

    with atomic_output(path) as tmp:
        iio.imwrite(tmp, histogram_image(s_in, s_out, thr), extension=".png")


@command(ood_app, "device", "overwrite", "recursive", name="eval")
def evaluate(
    common: Common,
    model_path: ModelOpt,
    inliers: Annotated[Path, typer.Option("--inliers", help="Folder of in-distribution images.")],
    outliers: Annotated[Path, typer.Option("--outliers", help="Folder of out-of-distribution images (the positive class).")],
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a histogram of both score sets to this PNG file (an existing one only with --overwrite).")] = None,
    threshold: ThresholdOpt = 95.0,
    method: MethodOverrideOpt = None,
    weights: Annotated[str | None, typer.Option("--weights", "-w", help="The prior, if it moved since fitting (must be the same file).")] = None,
    value_range: Opt.Range = None,
    precision: Opt.Precision = "auto",
) -> None:
    """AUROC, AUPR (positive class = outliers) and FPR at 95% TPR of the OOD score on two folders."""
    import numpy as np

    from ..api import detection_metrics, ood_check_prior

    _check_threshold(threshold)
    vrange = parse_range(value_range)
    common.reads([model_path])
    model = _load(model_path, method)
    ood_check_prior(model, model.prior.get("channels"), weights)
    jobs = {name: plan_jobs(common, folder, None) for name, folder in (("inliers", inliers), ("outliers", outliers))}
    both = {j.src.resolve() for j in jobs["inliers"]} & {j.src.resolve() for j in jobs["outliers"]}
    if both:
        raise ScoretoolError(f"--inliers {inliers} and --outliers {outliers} share {len(both)} image(s) "
                             f"({min(both)}): an image cannot be in both classes")
    if plot is not None:
        common.claim_output(plot, "plot")
    sets = {}
    code = 0
    for name, folder in (("inliers", inliers), ("outliers", outliers)):
        rows, c = _score_files(common, model, jobs[name], weights, common.device, precision, threshold, method, vrange, name)
        code = max(code, c)
        sets[name] = [r for r in rows if r["status"] == "ok"]
        if not sets[name]:
            raise ScoretoolError(f"{folder}: no image could be scored")
    s_in = np.array([r["score"] for r in sets["inliers"]])
    s_out = np.array([r["score"] for r in sets["outliers"]])
    m = detection_metrics(s_in, s_out)
    thr = model.threshold(threshold, method)
    m.update(method=method or model.method, threshold_percentile=threshold, threshold=thr,
             inliers_flagged=float(np.mean(s_in > thr)), outliers_flagged=float(np.mean(s_out > thr)))
    if plot is not None:
        m["plot"] = str(plot)
        _write_plot(plot, s_in, s_out, thr)
    if common.json:
        common.emit({"command": "ood eval", "model": str(model_path), "metrics": m,
                     "inliers": sets["inliers"], "outliers": sets["outliers"]})
    else:
        typer.echo(f"AUROC {m['auroc']:.4f}  AUPR {m['aupr']:.4f} (positive class: outliers)  "
                   f"FPR@95%TPR {m['fpr_at_95_tpr']:.4f}")
        typer.echo(f"flagged above the {threshold:g}th training percentile: inliers {m['inliers_flagged']:.1%} "
                   f"of {m['inliers']}, outliers {m['outliers_flagged']:.1%} of {m['outliers']}")
        if plot is not None:
            common.notice(f"histogram → {plot}")
    return code
