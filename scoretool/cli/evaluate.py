"""`scoretool evaluate`: image quality with clean images (PSNR/SSIM) or without (uMSE/uPSNR, SURE, split).

The maths is in scoretool.metrics; this module matches files, reads them, and reports.
"""

from __future__ import annotations

import csv as csv_module
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ..errors import InputError, ScoretoolError
from ..files import atomic_output, list_images
from . import app
from .batch import FileJob, plan_jobs, run_batch
from .common import INPUTS_HELP, Common, Opt, command, parse_range, plain_console

if TYPE_CHECKING:
    import numpy as np

    from ..api import MSEEstimate

MODES = ("refs", "clean", "sure", "split")


def find_partner(src: Path, single_input: bool, other: Path, what: str) -> Path:
    """The file in `other` (file or folder) that goes with `src`: same file name, else same stem."""
    if other.is_file():
        if not single_input:
            raise ScoretoolError(f"{what} {other} is a file but the input is a folder: give a folder to match by file name")
        return other
    if not other.is_dir():
        raise ScoretoolError(f"{what} {other}: no such file or folder")
    exact = other / src.name
    if exact.is_file():
        return exact
    images, _ = list_images(other)
    same_stem = [p for p in images if p.stem == src.stem]
    if len(same_stem) == 1:
        return same_stem[0]
    if len(same_stem) > 1:
        raise InputError(src, f"several partners named {src.stem}.* in {what} {other}: "
                              f"{', '.join(p.name for p in same_stem)}")
    raise InputError(src, f"no partner named {src.name} (or {src.stem}.*) in {what} {other}")


def _size(pixels: np.ndarray) -> str:
    f, h, w, c = pixels.shape
    return f"{w}×{h}×{c}" + (f"×{f} frames" if f > 1 else "")


def _finite(v: float) -> float | None:
    return round(v, 4) if v is not None and math.isfinite(v) else None


def _mean_row(mode: str, rows: list[dict]) -> dict | None:
    """Mean over the images that were evaluated: mean MSE (and its interval), mean of the per-image
    PSNRs (finite ones), and the PSNR of the mean MSE."""
    from ..api import psnr_from_mse
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return None
    key = {"refs": "u", "split": "u", "sure": "sure_", "clean": ""}[mode]
    mses = [r[f"{key}mse"] for r in ok]
    psnrs = [r[f"{key}psnr"] for r in ok]
    finite = [p for p in psnrs if p is not None]
    ranges = {r["data_range_unit"] for r in ok}
    m = statistics.fmean(mses)
    out = {"images": len(ok), f"{key}mse": m, f"mean_{key}psnr": _finite(statistics.fmean(finite)) if finite else None,
           f"{key}psnr_of_mean_mse": _finite(psnr_from_mse(m, ranges.pop())) if len(ranges) == 1 else None}
    if len(finite) < len(ok):
        out["psnr_left_out"] = len(ok) - len(finite)
        out["note"] = f"{len(ok) - len(finite)} image(s) with MSE estimate ≤ 0 left out of the mean PSNR"
    if mode in ("refs", "split"):
        se = math.sqrt(sum(r["std_error"] ** 2 for r in ok)) / len(ok)
        out[f"{key}mse_ci"] = [m - 1.96 * se, m + 1.96 * se]
        out["std_error"] = se
    if mode == "clean":
        out["mean_ssim"] = statistics.fmean(r["ssim"] for r in ok)
    return out


def _print_table(mode: str, rows: list[dict], mean: dict | None, header: str) -> None:
    console = plain_console()  # stdout; file names print as they are
    table = Table(title=header, title_justify="left")
    table.add_column("file")
    if mode == "clean":
        cols = ["MSE", "PSNR (dB)", "SSIM"]
    elif mode == "sure":
        cols = ["SURE MSE", "SURE-PSNR (dB)", "div/N"]
    else:
        cols = ["uMSE", "uMSE 95% CI", "uPSNR (dB)", "uPSNR 95% CI"]
    for c in cols:
        table.add_column(c, justify="right")

    def ci(pair, fmt):
        lo, hi = pair
        show = lambda v: "∞" if v is None else format(v, fmt)  # noqa: E731
        return f"[{show(lo)}, {show(hi)}]"

    for r in rows:
        name = Path(r["input"]).name
        if r.get("status") != "ok":
            table.add_row(name, *(["failed"] + [""] * (len(cols) - 1)))
        elif mode == "clean":
            table.add_row(name, f"{r['mse']:.3e}", r["psnr_text"], f"{r['ssim']:.4f}")
        elif mode == "sure":
            table.add_row(name, f"{r['sure_mse']:.3e}", r["sure_psnr_text"], f"{r['divergence_per_pixel']:.3f}")
        else:
            table.add_row(name, f"{r['umse']:.3e}", ci(r["umse_ci"], ".2e"), r["upsnr_text"], ci(r["upsnr_ci"], ".2f"))
    if mean:
        key = {"refs": "u", "split": "u", "sure": "sure_", "clean": ""}[mode]
        mp = mean[f"mean_{key}psnr"]
        ptxt = "–" if mp is None else f"{mp:.2f}"
        label = f"mean ({mean['images']})"
        if mode == "clean":
            table.add_row(label, f"{mean['mse']:.3e}", ptxt, f"{mean['mean_ssim']:.4f}", style="bold")
        elif mode == "sure":
            table.add_row(label, f"{mean['sure_mse']:.3e}", ptxt, "", style="bold")
        else:
            table.add_row(label, f"{mean['umse']:.3e}", ci(mean["umse_ci"], ".2e"), ptxt, "", style="bold")
    console.print(table)


def _write_csv(path: Path, rows: list[dict], mean: dict | None) -> None:
    flat = []
    for r in rows + ([{"input": "mean", "status": "mean", **mean}] if mean else []):
        d = {}
        for k, v in r.items():
            if isinstance(v, (list, tuple)) and len(v) == 2 and k.endswith("_ci"):
                d[f"{k}_low"], d[f"{k}_high"] = v
            elif isinstance(v, (list, tuple)):
                d[k] = ";".join(str(x) for x in v)
            else:
                d[k] = v
        flat.append(d)
    fields = list(dict.fromkeys(k for d in flat for k in d))
    try:
        with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv_module.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(flat)
    except OSError as e:
        raise ScoretoolError(f"--csv {path}: cannot write ({e.strerror or e})") from None


@command(app, "device", "seed", "overwrite", "recursive", "shard", torchrun=True)
def evaluate(
    common: Common,
    inputs: Annotated[list[str], typer.Argument(help="DENOISED images (with --refs / --clean; partners matched by file name), or NOISY images (with --sure / --split)." + INPUTS_HELP)],
    refs: Annotated[tuple[Path, Path, Path] | None, typer.Option(
        "--refs", help="Three independent noisy references A B C of the same clean images (files, or folders matched by file "
        "name) → uMSE/uPSNR with a 95% interval. No noise model needed. With one noisy image only, use --split.")] = None,
    clean: Annotated[Path | None, typer.Option("--clean", help="Clean images (file or folder matched by file name) → MSE, PSNR, SSIM.")] = None,
    sure: Annotated[bool, typer.Option("--sure", help="SURE (Gaussian noise, known --sigma) of the model's denoiser D(y, σ) on the NOISY images; unclipped float data.")] = False,
    split: Annotated[bool, typer.Option("--split", help="uMSE of the model's denoiser from each NOISY image's 2×2 polyphase sub-images (biased at edges; see output).")] = False,
    sigma: Annotated[float | None, typer.Option("--sigma", help="Gaussian noise std of NOISY in the input's pixel units (0–255 for 8-bit, raw for float); --sure/--split only.")] = None,
    data_range: Annotated[float | None, typer.Option("--data-range", help="Peak value M for PSNR = 10·log10(M²/MSE), in the DENOISED/NOISY input's pixel units. Default: the input's full range (255 for 8-bit, 65535 for 16-bit, 1 for float/.npy or the --range width).")] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Also write the per-image rows and the mean row to this CSV file (an existing one only with --overwrite).")] = None,
    clip: Annotated[bool, typer.Option("--clip", help="Clamp the denoised images to [0, full range] before measuring (the papers' protocol for PSNR).")] = False,
    probes: Annotated[int | None, typer.Option("--probes", help="--sure: Monte-Carlo divergence probes per image (each costs one network pass; default 1).")] = None,
    weights: Opt.Weights = None,
    tile: Annotated[int | None, typer.Option("--tile", min=16, help="--sure/--split: tile size in pixels for large images (overlapping tiles, blended; bounds memory); at least 16, default 512.")] = None,
    value_range: Opt.Range = None,
    precision: Annotated[str | None, typer.Option("--precision", help="--split: network arithmetic, auto (default; bf16 where the hardware has it), fp32 or bf16 (--sure is fp32 always).")] = None,
) -> None:
    """Measure image quality: PSNR/SSIM against clean images, or without them by uMSE/uPSNR (three
    noisy references), SURE (Gaussian noise, the model's denoiser) or the single-image 2×2 split.

    MSE values are on the [0,1] scale (pixel value / full range); PSNR uses --data-range (shown in the output).
    """
    import numpy as np

    from ..api import SPLIT_BIAS_NOTE, evaluate_split, evaluate_sure, psnr_from_mse, ssim, umse
    from ..io import unit_sigma

    chosen = [m for m, on in zip(MODES, (refs is not None, clean is not None, sure, split)) if on]
    if len(chosen) != 1:
        raise ScoretoolError("choose one of --refs A B C, --clean DIR, --sure or --split"
                             + (f" (got {', '.join('--' + c for c in chosen)})" if chosen else ""))
    mode = chosen[0]
    if mode in ("sure", "split"):
        if sigma is None:
            raise ScoretoolError(f"--{mode} needs --sigma (the Gaussian noise std in the input's pixel units)")
        if not sigma > 0:
            raise ScoretoolError(f"--sigma {sigma}: must be positive")
    else:
        network_options = [name for name, value in (("--sigma", sigma), ("--weights", weights), ("--tile", tile),
                                                   ("--precision", precision)) if value is not None]
        if network_options:
            raise ScoretoolError(f"{', '.join(network_options)}: only used with --sure or --split (the model's denoiser)")
    if probes is not None and mode != "sure":
        raise ScoretoolError("--probes is only used with --sure")
    if precision is not None and mode == "sure":
        raise ScoretoolError("--precision: --sure runs the network in fp32 always (its divergence is a finite difference)")
    if clip and mode in ("sure", "split"):
        raise ScoretoolError(f"--clip clamps DENOISED images (--clean, --refs); --{mode} measures the model's own output")
    tile, precision = tile or 512, precision or "auto"
    probes = 1 if probes is None else probes
    if data_range is not None and not data_range > 0:
        raise ScoretoolError(f"--data-range {data_range}: must be positive")
    if probes < 1:
        raise ScoretoolError(f"--probes {probes}: at least 1")
    if mode == "refs":
        names = [str(p) for p in refs]
        if len(set(Path(p).resolve() for p in names)) < 3:
            raise ScoretoolError(f"--refs {' '.join(names)}: the three references must be different files/folders "
                                 "(independent noisy copies)")
        if {Path(p).resolve() for p in inputs} & {Path(p).resolve() for p in names}:
            raise ScoretoolError("--refs: a reference is the DENOISED input itself; the references must be independent of it")
    vrange = parse_range(value_range)
    jobs = plan_jobs(common, inputs, None)
    single = len(inputs) == 1 and Path(inputs[0]).is_file()
    partners = refs if mode == "refs" else ((clean,) if mode == "clean" else ())
    for p in partners:
        if not Path(p).exists():
            raise ScoretoolError(f"{'--refs' if mode == 'refs' else '--clean'} {p}: no such file or folder")
        common.reads(list_images(Path(p), common.recursive)[0])
    if csv is not None:
        common.claim_output(csv, "CSV")
    range_units = set()

    def process(job: FileJob) -> dict:
        image = common.read_input(job.src, vrange, job.label)
        lo, hi = image.value_range
        full = hi - lo
        m_pixel = data_range if data_range is not None else full
        m_unit = m_pixel / full
        range_units.add(m_unit)
        x = image.pixels.astype(np.float64)
        if clip and mode in ("refs", "clean"):
            x = np.clip(x, 0.0, 1.0)
        row = {"data_range": m_pixel, "data_range_unit": m_unit}
        others = []
        for label, folder in zip(("A", "B", "C") if mode == "refs" else ("clean",), partners):
            path = find_partner(job.src, single, Path(folder), "--refs" if mode == "refs" else "--clean")
            other = common.read_input(path, vrange)
            if other.pixels.shape != image.pixels.shape:
                raise InputError(job.src, f"size {_size(image.pixels)} differs from its partner {path} ({_size(other.pixels)})")
            others.append(other.pixels.astype(np.float64))
            row["clean" if mode == "clean" else f"ref_{label}"] = str(path)
        if mode == "refs":
            try:
                est = umse(x, *others, data_range=m_unit)
            except ScoretoolError as e:
                raise InputError(job.src, str(e)) from None
            row.update(_estimate_row(est, "u"))
        elif mode == "clean":
            ref = others[0]
            mse_v = float(np.mean((x - ref) ** 2))
            p = psnr_from_mse(mse_v, m_unit)
            frames = [ssim(x[i], ref[i], m_unit, channel_axis=-1 if x.shape[-1] > 1 else None) for i in range(x.shape[0])]
            row.update({"mse": mse_v, "psnr": _finite(p), "psnr_text": "inf (identical)" if math.isinf(p) else f"{p:.2f}",
                        "ssim": float(np.mean(frames))})
        else:
            if image.dtype.kind in "iu":
                common.notice(f"{job.label}: integer file ({image.dtype}): the noise was clipped and quantised, "
                              f"which {'SURE' if sure else 'the split'} does not model; use unclipped float data (.npy/TIFF)")
            s_unit = unit_sigma(sigma, (lo, hi))
            pix = image.pixels
            arr = pix[0] if pix.shape[0] == 1 else pix
            arr = arr[..., 0] if arr.shape[-1] == 1 and arr.ndim == 3 else arr
            try:
                if mode == "sure":
                    res = evaluate_sure(arr, s_unit, weights=weights, device=common.device, tile=tile, probes=probes, seed=common.seed,
                                        data_range=m_unit)
                    est_row = _estimate_row(res.estimate, "sure_")
                    for k in ("sure_mse_ci", "sure_psnr_ci", "confidence"):  # only the probes' part: not a CI of SURE
                        est_row.pop(k)
                    est_row["mc_std_error"] = est_row.pop("std_error") if probes > 1 else None
                    row.update(est_row)
                    row.update({"divergence": res.divergence, "divergence_per_pixel": res.divergence / pix.size,
                                "residual_mse": res.residual_mse, "probes": probes})
                else:
                    est = evaluate_split(arr, s_unit, weights=weights, device=common.device, precision=precision, tile=tile,
                                         data_range=m_unit)
                    row.update(_estimate_row(est, "u"))
            except ScoretoolError as e:
                if isinstance(e, InputError):
                    raise
                raise InputError(job.src, str(e)) from None
            row.update({"sigma": sigma, "sigma_unit": s_unit})
        return row

    description = {"refs": "uMSE", "clean": "PSNR/SSIM", "sure": "SURE", "split": "split uMSE"}[mode]
    rows, code = run_batch(common, jobs, process, description)
    for r in rows:
        r.pop("output", None)
    mean = _mean_row(mode, rows)
    notes = []
    if mode == "split":
        notes.append(SPLIT_BIAS_NOTE)
    if mode == "sure":
        notes.append("SURE assumes y = x + σn with Gaussian n, known σ, unclipped; divergence by Monte-Carlo finite differences")
    if any(r.get("status") == "ok" and r.get(f"{'sure_' if mode == 'sure' else 'u'}mse_nonpositive") for r in rows):
        notes.append("an MSE estimate ≤ 0 means the error is below what the noise lets one measure: PSNR is shown as '> X dB'")
    if len(range_units) > 1:
        notes.append("files of different types have different full ranges: the mean PSNR mixes data ranges")
    dr_text = f"{data_range:g} (pixel units)" if data_range is not None else "full range of each file's type (1.0 on the [0,1] scale)"
    if csv is not None and common.reports:
        _write_csv(csv, rows, mean)
    if common.json:
        common.emit({"command": "evaluate", "mode": mode, "data_range": data_range if data_range is not None else "full",
                     "mse_scale": "[0,1] (pixel value / full range)", "results": rows, "mean": mean, "notes": notes})
    else:
        header = {"refs": "uMSE / uPSNR from three noisy references", "clean": "PSNR / SSIM against clean images",
                  "sure": f"SURE of the model's denoiser (σ = {sigma:g} pixel units)" if sigma else "",
                  "split": "uMSE / uPSNR from the 2×2 polyphase split"}[mode]
        _print_table(mode, rows, mean, f"{header}; data range {dr_text}; MSE on the [0,1] scale")
        for n in notes:
            common.notice(f"note: {n}")
    return code


def _estimate_row(est: MSEEstimate, prefix: str) -> dict:
    from ..api import SPLIT_BIAS_NOTE
    d = est.as_dict(prefix)
    d.pop("data_range", None)
    notes = [n for n in est.notes if n != SPLIT_BIAS_NOTE]  # that one is stated once, not per image
    if notes:
        d["notes"] = notes
    return d
