"""`scoretool uncertainty`: posterior std map and principal components of Gaussian denoising."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InputError, ScoretoolError
from ..files import IMAGE_SUFFIXES
from . import app
from .batch import plan_jobs, run_batch
from .common import INPUTS_HELP, Common, Opt, command, parse_range

DEFAULT_REGION = 64


def parse_region(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise ScoretoolError(f"--region {text}: expected X,Y,W,H (four integers, pixels)") from None
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise ScoretoolError(f"--region {text}: X, Y must be ≥ 0 and W, H ≥ 1")
    return x, y, w, h


def output_names(src: Path, components: int) -> dict[str, str]:
    """The files `uncertainty` writes for input `src`, by key: std (float TIFF), std_png, mean (the input's
    format; PNG for JPEG/BMP) and pcK_minus/pcK_plus per component."""
    suffix = src.suffix.lower()
    names = {"std": f"{src.stem}_std.tif", "std_png": f"{src.stem}_std.png",
             "mean": f"{src.stem}_mean{'.png' if suffix in ('.jpg', '.jpeg', '.bmp') else suffix}"}
    for i in range(1, components + 1):
        names.update({f"pc{i}_{s}": f"{src.stem}_pc{i}_{s}.png" for s in ("minus", "plus")})
    return names


def _central_region(w: int, h: int) -> tuple[int, int, int, int]:
    rw, rh = min(w, DEFAULT_REGION), min(h, DEFAULT_REGION)
    return (w - rw) // 2, (h - rh) // 2, rw, rh


@command(app, "device", "seed", "overwrite", "shard", torchrun=True)
def uncertainty(
    common: Common,
    inputs: Annotated[list[str], typer.Argument(help="Noisy images (one image per file)." + INPUTS_HELP)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (created if missing): <name>_std.tif, _std.png, _mean, _pcK_minus/_plus.png.")],
    sigma: Annotated[float, typer.Option("--sigma", help="Gaussian noise std in the input's pixel units (0–255 for 8-bit, 0–65535 for 16-bit, raw for float).")],
    components: Annotated[int | None, typer.Option("--components", "-k", help="Number of posterior principal components of the region (default: 3 with --region, else 0).")] = None,
    region: Annotated[str | None, typer.Option("--region", help="X,Y,W,H in pixels (X,Y = top-left corner) of the region for the components (default: the central 64×64).")] = None,
    probes: Annotated[int, typer.Option("--probes", help="Hutchinson probes per tile for the std map (more = less noisy; each costs one network pass with --method forward).")] = 8,
    stride: Annotated[int, typer.Option("--stride", help="Lattice period of the probes (1 = plain Hutchinson; s > 1 needs --probes ≥ s² and removes the noise from neighbours closer than s).")] = 1,
    method: Annotated[str, typer.Option("--method", help="Jacobian-vector products: forward (one-sided difference, 1 network pass each), fd (central difference, 2 passes) or jvp (forward-mode autodiff, ~4 passes on CPU).")] = "forward",
    smooth: Annotated[float, typer.Option("--smooth", help="Gaussian smoothing of the variance estimate, std in pixels (less probe noise, less detail; 0 = none). Default 1: measured best on Set12 σ=25.")] = 1.0,
    iterations: Annotated[int | None, typer.Option("--iterations", help="Most subspace iterations for the components (stops earlier once converged; default 50).")] = None,
    margin: Annotated[int | None, typer.Option("--margin", help="Context in pixels around the region that the network sees when computing components (default 32).")] = None,
    symmetric: Annotated[bool, typer.Option("--symmetric", help="Iterate with (J+Jᵀ)/2 (reverse-mode autodiff, ~3× slower) instead of J.")] = False,
    weights: Opt.Weights = None,
    tile: Opt.Tile = 512,
    value_range: Opt.Range = None,
) -> None:
    """Posterior uncertainty of Gaussian denoising: per-pixel std map σ·√diag(∂D/∂y) and the top
    principal components of a region (Cov[x|y] = σ²·∂D/∂y). Std and eigenvalues in input pixel units."""
    import numpy as np

    from ..api import METHODS, posterior_components, posterior_std, std_map_image
    from ..io import Image, unit_sigma, write_image

    if sigma <= 0:
        raise ScoretoolError(f"--sigma {sigma}: must be positive")
    if probes < 1:
        raise ScoretoolError(f"--probes {probes}: must be ≥ 1")
    if stride < 1 or probes < stride * stride:
        raise ScoretoolError(f"--stride {stride}: must be ≥ 1 with --probes ≥ stride² ({stride * stride})")
    if method not in METHODS:
        raise ScoretoolError(f"--method {method}: expected {', '.join(METHODS)}")
    box = parse_region(region)
    k = components if components is not None else (3 if box else 0)
    if k < 0:
        raise ScoretoolError(f"--components {k}: must be ≥ 0")
    stray = [name for name, value in (("--region", region), ("--iterations", iterations), ("--margin", margin)) if value is not None]
    if k == 0 and (stray or symmetric):
        raise ScoretoolError(f"{', '.join(stray + ['--symmetric'] * symmetric)}: options of the principal components, and "
                             "none are computed (--components 0, the default without --region)")
    iterations, margin = 50 if iterations is None else iterations, 32 if margin is None else margin
    if iterations < 1 or margin < 0 or smooth < 0:
        raise ScoretoolError("--iterations must be ≥ 1, --margin and --smooth ≥ 0")
    vrange = parse_range(value_range)
    if output.suffix.lower() in IMAGE_SUFFIXES:
        raise ScoretoolError(f"-o {output}: must be a folder (several files are written per image)")
    jobs = plan_jobs(common, inputs, output,
                     outputs_of=lambda src: [output / n for n in output_names(src, k).values()])

    def process(job):
        image = common.read_input(job.src, vrange, job.label)
        if image.pixels.shape[0] != 1:
            raise InputError(job.src, "multi-frame stacks are not supported by uncertainty (one image per file)")
        lo, hi = image.value_range
        scale = hi - lo
        s = unit_sigma(sigma, (lo, hi))
        pixels = image.pixels[0]
        h, w = pixels.shape[:2]
        names = {key: output / n for key, n in output_names(job.src, k).items()}
        rbox = box or _central_region(w, h)
        x0, y0, rw, rh = rbox
        if k > 0 and (x0 + rw > w or y0 + rh > h):
            raise ScoretoolError(f"--region {x0},{y0},{rw},{rh} is not inside the {w}×{h} image")
        if k > rw * rh * image.channels:
            raise ScoretoolError(f"--components {k}: the region has only {rw * rh * image.channels} values")
        t0 = time.perf_counter()
        std, mean, est = posterior_std(pixels, s, weights=weights, probes=probes, stride=stride, method=method,
                                       seed=common.seed, device=common.device, tile=tile, smooth=smooth)
        t_std = time.perf_counter() - t0
        std_px = std * scale  # input pixel units
        written = {}
        tif = Image(std[None], np.dtype(np.float32), None, (0.0, scale), True, image.grey_2d)
        written["std"] = write_image(names["std"], tif, common.overwrite)
        view = std_map_image(np.sqrt((std_px**2).mean(-1)))
        written["std_png"] = write_image(names["std_png"],
                                         Image(view[None].astype(np.float32), np.dtype(np.uint8), None, (0.0, 255.0),
                                               True, False), common.overwrite)
        written["mean"] = write_image(names["mean"], image.with_pixels(mean[None]), common.overwrite)
        row = {"weights": est["weights"], "sigma": sigma, "sigma_unit": s, "probes": probes, "stride": stride,
               "method": method, "smooth": smooth, "seconds_std": round(t_std, 3), "negative_variance_pixels": est["negative"],
               "std_mean": float(std_px.mean()), "std_median": float(np.median(std_px)),
               "std_max": float(std_px.max()), "units": f"input pixel units (value range {lo:g}..{hi:g})",
               "shape": list(pixels.shape)}
        if k > 0:
            if box is None:
                common.notice(f"{job.label}: components of the central region {x0},{y0},{rw},{rh} (set --region)")
            t0 = time.perf_counter()
            comp = posterior_components(pixels, s, k=k, region=rbox, weights=weights, iterations=iterations, margin=margin,
                                        symmetric=symmetric, method=method, seed=common.seed, device=common.device, tile=tile)
            t_pc = time.perf_counter() - t0
            base = comp.mean[0].permute(1, 2, 0).numpy()
            rows = []
            for i in range(k):
                lam = float(comp.eigenvalues[i])
                vec = comp.vectors[i].permute(1, 2, 0).numpy()
                for sign, name in ((-1, "minus"), (1, "plus")):
                    pic = base + sign * 2 * np.sqrt(max(lam, 0.0)) * vec
                    crop = replace(image, pixels=pic[None].astype(np.float32), alpha=None)
                    key = f"pc{i + 1}_{name}"
                    written[key] = write_image(names[key], crop, common.overwrite)
                rows.append({"k": i + 1, "eigenvalue": lam * scale**2, "std": float(np.sqrt(max(lam, 0.0))) * scale,
                             "eigenvalue_unit": lam, "residual": float(comp.residuals[i])})
            row.update({"region": list(rbox), "components": rows, "iterations": comp.iterations,
                        "symmetric": symmetric, "seconds_components": round(t_pc, 3)})
        row["outputs"] = {key: str(p) for key, p in written.items()}
        if est["negative"]:
            common.notice(f"{job.label}: {est['negative']} negative variance estimate(s) clamped to 0 (use more --probes)")
        return row

    rows, code = run_batch(common, jobs, process, "uncertainty")
    if common.json:
        common.emit({"command": "uncertainty", "results": rows})
    return code
