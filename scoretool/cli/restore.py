"""`scoretool restore`: zero-shot restoration (SR, inpainting, colourisation, deblurring, CS) by plug-and-play or DDNM / DDNM+."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import InputError, ScoretoolError
from ..files import IMAGE_SUFFIXES, check_budget, list_images
from . import app
from .batch import plan_jobs, run_batch
from .common import INPUTS_HELP, Common, Opt, command, parse_range

if TYPE_CHECKING:
    import numpy as np

TASKS = ("sr", "inpaint", "colorize", "deblur", "cs")
TASK_OPTIONS = {"--scale": "sr", "--sr-kernel": "sr", "--mask": "inpaint", "--mask-random": "inpaint", "--kernel": "deblur",
                "--ratio": "cs"}  # the task each task-specific option belongs to


def parse_scale(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value >= 1 and value == int(value)):
        raise ScoretoolError(f"--scale {text}: the SR factor must be a positive integer (2, 3, 4, ...)")
    return int(value)


def parse_kernel(spec: str) -> np.ndarray:
    """gaussian:STD (pixels) | uniform:SIZE (pixels) | FILE.npy (a 2-D array, normalised to sum 1).
    The kernel's size is checked against the pixel budget before it is built."""
    import numpy as np

    from ..api import gaussian_kernel, uniform_kernel
    from ..io import header_pixels
    kind, _, arg = spec.partition(":")
    try:
        if kind == "gaussian" and arg:
            std = float(arg)
            if not (math.isfinite(std) and std > 0):
                raise ValueError(f"std {arg} must be a positive finite number")
            check_budget((2 * math.ceil(3 * std) + 1) ** 2, f"--kernel {spec}")
            return gaussian_kernel(std)
        if kind == "uniform" and arg:
            if not (arg.strip().isdecimal() and int(arg) >= 1):
                raise ValueError(f"SIZE {arg} must be a positive whole number of pixels")
            size = int(arg)
            check_budget(size * size, f"--kernel {spec}")
            return uniform_kernel(size)
    except ValueError as e:
        raise ScoretoolError(f"--kernel {spec}: {e}") from None
    path = Path(spec)
    if not path.is_file():
        raise ScoretoolError(f"--kernel {spec}: expected gaussian:STD, uniform:SIZE or an existing .npy file")
    try:
        check_budget(header_pixels(path), f"--kernel {path}")
        k = np.load(path, allow_pickle=False)
    except ScoretoolError:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable file is one clear error
        raise ScoretoolError(f"--kernel {path}: cannot read a .npy array ({e})") from None
    if k.ndim != 2 or not np.issubdtype(k.dtype, np.number):
        raise ScoretoolError(f"--kernel {path}: the kernel must be a 2-D numeric array, got shape {k.shape}")
    k = k.astype(np.float64)
    if not np.isfinite(k).all() or abs(k.sum()) < 1e-12:
        raise ScoretoolError(f"--kernel {path}: the kernel must be finite with a non-zero sum")
    return k / k.sum()


def find_mask(mask: Path, src: Path) -> Path:
    """The mask file itself, or the file in folder `mask` with the input's stem (any image suffix)."""
    if mask.is_file():
        return mask
    for suffix in sorted(IMAGE_SUFFIXES):
        cand = mask / (src.stem + suffix)
        if cand.is_file():
            return cand
    raise InputError(src, f"no mask named {src.stem}.* in {mask}")


def read_mask(path: Path, shape: tuple[int, int], src: Path) -> np.ndarray:
    """(H, W) bool, True = missing (white / non-zero pixel)."""
    from ..io import read_image

    m = read_image(path).pixels[0]
    if m.shape[:2] != shape:
        raise InputError(src, f"mask {path} is {m.shape[1]}×{m.shape[0]} but the image is {shape[1]}×{shape[0]}")
    return m.max(-1) > 0


@command(app, "device", "seed", "overwrite", "recursive", "shard", torchrun=True)
def restore(
    common: Common,
    inputs: Annotated[list[str], typer.Argument(help="Degraded images: the low-resolution image (sr), image with holes (inpaint), grey image (colorize), blurred image (deblur), or image to measure (cs)." + INPUTS_HELP)],
    output: Opt.Output,
    task: Annotated[str, typer.Option("--task", help="sr | inpaint | colorize | deblur | cs.")],
    scale: Annotated[str | None, typer.Option("--scale", help="sr: integer upscaling factor; the output is SCALE× larger (default 4).")] = None,
    sr_kernel: Annotated[str | None, typer.Option("--sr-kernel", help="sr: degradation of the low-resolution image, avgpool (S×S mean, default) or bicubic.")] = None,
    mask: Annotated[Path | None, typer.Option("--mask", help="inpaint: mask image, or folder of masks named like the inputs; white (non-zero) = missing pixel.")] = None,
    mask_random: Annotated[float | None, typer.Option("--mask-random", help="inpaint: fraction (0–1) of pixels taken as missing at random (seeded by --seed) instead of --mask.")] = None,
    kernel: Annotated[str | None, typer.Option("--kernel", help="deblur: gaussian:STD (std in pixels), uniform:SIZE (pixels) or a .npy file with a 2-D kernel; circular boundary.")] = None,
    ratio: Annotated[float | None, typer.Option("--ratio", help="cs: fraction (0–1] of measurements kept per 32×32 block (random orthonormal transform, seeded by --seed; default 0.25).")] = None,
    sigma_y: Annotated[float | None, typer.Option("--sigma-y", help="Measurement noise std in the input's pixel units (0–255 for 8-bit); > 0: DDNM+ (ddnm) or the Wiener data step (pnp). Default 0, except for deblurring an integer file: its rounding noise, 1/√12 ≈ 0.29 of a level (taken as exact, the inverse filter amplifies it into artefacts).")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="pnp: deterministic plug-and-play with the null-space data step (25 evaluations); ddnm: a DDNM / DDNM+ posterior sample (100 evaluations; --eta, --travel, --samples, --start); auto: pnp for inpainting, ddnm for the other tasks (measured best, README).")] = "auto",
    steps: Annotated[int | None, typer.Option("--steps", help="Network evaluations on the noise schedule (ddnm: before time-travel); default 25 (pnp), 100 (ddnm).")] = None,
    sigma_max: Annotated[float | None, typer.Option("--sigma-max", help="First noise level on the [0,1] scale (ddnm: the chain starts at the start image + σ·noise; 10 = from noise); default 0.15 (pnp), 1 (ddnm).")] = None,
    eta: Annotated[float | None, typer.Option("--eta", help="ddnm: share of fresh noise at each step, 0–1 (default 1, measured best with the bundled priors).")] = None,
    travel: Annotated[int | None, typer.Option("--travel", help="ddnm: time-travel length L in steps (default 0 = off); about doubles the evaluations.")] = None,
    samples: Annotated[int | None, typer.Option("--samples", help="ddnm: average N posterior samples (N× the time; default 1): tends to the posterior mean, higher PSNR, less invented detail.")] = None,
    start: Annotated[str | None, typer.Option("--start", help="ddnm: start image, pinv (A†y, default) or smooth (A†y with its null space filled smoothly); pnp always starts smooth.")] = None,
    cycle_dihedral: Annotated[bool, typer.Option("--dihedral/--no-dihedral", help="Evaluate the prior on a different flip/90° rotation of the image at each step (DPIR's periodic self-ensemble; no extra cost).")] = True,
    weights: Opt.Weights = None,
    tile: Opt.Tile = 512,
    fmt: Opt.Format = None,
    value_range: Opt.Range = None,
    precision: Opt.Precision = "auto",
) -> None:
    """Restore images with a score prior (plug-and-play, or DDNM / DDNM+ sampling): y = A·x (+ noise), x̂ consistent with y."""
    import numpy as np

    from ..api import check_colour_prior, random_mask, sampler_settings
    from ..api import restore as restore_array
    from ..io import unit_sigma, write_image

    if task not in TASKS:
        raise ScoretoolError(f"--task {task}: expected one of {', '.join(TASKS)}")
    given = {"--scale": scale, "--sr-kernel": sr_kernel, "--mask": mask, "--mask-random": mask_random, "--kernel": kernel,
             "--ratio": ratio}
    stray = [name for name, value in given.items() if value is not None and TASK_OPTIONS[name] != task]
    if stray:
        raise ScoretoolError(f"{', '.join(stray)}: not an option of --task {task} (" +
                             ", ".join(f"{name} is for {TASK_OPTIONS[name]}" for name in stray) + ")")
    scale, sr_kernel, ratio = scale or "4", sr_kernel or "avgpool", 0.25 if ratio is None else ratio
    s = parse_scale(scale) if task == "sr" else 1
    if sr_kernel not in ("avgpool", "bicubic"):
        raise ScoretoolError(f"--sr-kernel {sr_kernel}: expected avgpool or bicubic")
    k = None
    if task == "deblur":
        if kernel is None:
            raise ScoretoolError("--task deblur needs --kernel gaussian:STD, uniform:SIZE or FILE.npy")
        k = parse_kernel(kernel)
    if task == "inpaint":
        if (mask is None) == (mask_random is None):
            raise ScoretoolError("--task inpaint needs exactly one of --mask FILE|DIR and --mask-random FRACTION")
        if mask is not None and not mask.exists():
            raise ScoretoolError(f"--mask {mask}: no such file or folder")
        if mask_random is not None and not 0 <= mask_random < 1:
            raise ScoretoolError(f"--mask-random {mask_random}: must be a fraction in [0, 1)")
    if task == "cs" and not 0 < ratio <= 1:
        raise ScoretoolError(f"--ratio {ratio}: must be in (0, 1]")
    try:
        settings = sampler_settings(task, sampler, steps=steps, sigma_max=sigma_max, eta=eta, travel=travel, start=start,
                                    samples=samples)
    except ValueError as e:
        raise ScoretoolError(str(e)) from None
    if sigma_y is not None and sigma_y < 0:
        raise ScoretoolError(f"--sigma-y {sigma_y}: must be ≥ 0")
    from ..io import ROUNDING_STD

    vrange = parse_range(value_range)
    common.reads([Path(p) for p in (kernel,) if p and Path(p).is_file()] + (list_images(mask)[0] if mask else []))
    if task == "colorize":
        check_colour_prior(weights)  # before any file
    jobs = plan_jobs(common, inputs, output, fmt)

    def process(job):
        image = common.read_input(job.src, vrange, job.label)
        frames, h, w, ch = image.pixels.shape
        try:
            check_budget(frames * h * s * w * s, f"the {s}× output")
        except ScoretoolError as e:
            raise InputError(job.src, str(e)) from None
        missing = None
        if task == "inpaint":
            if mask is not None:
                missing = read_mask(find_mask(mask, job.src), (h, w), job.src)
            else:
                missing = random_mask((h, w), mask_random, common.seed)
        lo, hi = image.value_range
        rounding = ROUNDING_STD if task == "deblur" and image.dtype.kind in "ui" else 0.0  # bench/restore.py deblur8
        noise_levels = sigma_y if sigma_y is not None else rounding
        sy = unit_sigma(noise_levels, (lo, hi), "--sigma-y")
        outs, residuals, nfe = [], [], 0
        t0 = time.perf_counter()
        for f in range(frames):
            try:
                out, info = restore_array(image.pixels[f], task, scale=s, sr_kernel=sr_kernel, mask=missing, kernel=k,
                                          ratio=ratio, sigma_y=sy, **settings, cycle_dihedral=cycle_dihedral, weights=weights, device=common.device, precision=precision,
                                          tile=tile, seed=common.seed + f)
            except ValueError as e:
                raise InputError(job.src, str(e)) from None
            outs.append(out)
            residuals.append(info["residual"])
            nfe = info["nfe"]
        seconds = time.perf_counter() - t0
        pixels = np.stack(outs)
        alpha = image.alpha
        if alpha is not None and task == "sr":
            alpha = alpha.repeat(s, 1).repeat(s, 2)
        result = image.with_pixels(pixels)
        result.alpha = alpha
        write_image(job.dest, result, overwrite=common.overwrite)
        mp = pixels.shape[0] * pixels.shape[1] * pixels.shape[2] / 1e6
        return {"task": task, "weights": info["weights"], "shape_in": [h, w, ch], "shape_out": list(pixels.shape[1:]),
                "residual": max(residuals), "residual_per_frame": residuals, "nfe": nfe, "sigma_y": noise_levels,
                "sigma_y_unit": sy, **settings,
                "dihedral": cycle_dihedral, "seconds": round(seconds, 3),
                "seconds_per_megapixel": round(seconds / mp, 3)}

    rows, code = run_batch(common, jobs, process, f"restoring ({task})")
    if common.json:
        common.emit({"command": "restore", "task": task, "results": rows})
    else:
        for r in rows:
            if r["status"] == "ok":
                common.notice(f"{r['input']} → {r['output']}: ‖A·x̂ − y‖/‖y‖ = {r['residual']:.2e}, "
                              f"{r['nfe']} network evaluations, {r['seconds']} s")
    return code
