"""`scoretool train`: denoising score matching on clean images (prior) or noisy ones (Noise2Score)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ScoretoolError
from ..files import list_images
from . import app
from .common import FAMILY_OF, Common, Opt, command


@command(app, "device", "seed", torchrun=True)
def train(
    common: Common,
    data: Annotated[Path, typer.Argument(help="Folder of training images (clean for --clean, noisy for --noisy).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model file to write (.safetensors). A checkpoint MODEL.ckpt.safetensors is kept beside it.")],
    noisy: Annotated[bool, typer.Option("--noisy/--clean", help="--clean: train a prior on clean images; --noisy: Noise2Score (AR-DAE) on noisy images.")] = False,
    noise: Annotated[str | None, typer.Option("--noise", help="Noise family of the noisy data: gaussian, poisson, gamma (stored in the model; may be left out).")] = None,
    sigma: Annotated[float | None, typer.Option("--sigma", help="Gaussian noise std of the data in its pixel units (0–255 for 8-bit, 0–65535 for 16-bit, raw for float); the model records it in grey levels of 255.")] = None,
    zeta: Annotated[float | None, typer.Option("--zeta", help="Poisson scale ζ of the data (y = ζ·Poisson(x/ζ), [0,1] scale).")] = None,
    k: Annotated[float | None, typer.Option("--k", help="Gamma shape k of the data (mean x, [0,1] scale).")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps (the learning-rate schedule spans them); at least 1.")] = 20000,
    patch: Annotated[int, typer.Option("--patch", min=8, help="Training patch size in pixels (at least 8).")] = 64,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Patches per step (per process).")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Peak Adam learning rate (cosine decay).")] = 1e-3,
    sigma_min: Annotated[float | None, typer.Option("--sigma-min", help="Smallest training σ on the [0,1] scale (default 0.002 clean, 0.001 noisy).")] = None,
    sigma_max: Annotated[float | None, typer.Option("--sigma-max", help="Largest training σ on the [0,1] scale (default 10 clean, 0.1 noisy).")] = None,
    widths: Annotated[str | None, typer.Option("--widths", help="U-Net channel widths per level, comma-separated (default 32,64,128; with --init: that model's, and wider widths grow it without changing its output).")] = None,
    blocks: Annotated[int, typer.Option("--blocks", min=1, max=16, help="Residual blocks per U-Net level (encoder and decoder each).")] = 2,
    init: Annotated[str | None, typer.Option("--init", help="Start from these weights (bundled name or path).")] = None,
    teacher: Annotated[str | None, typer.Option("--teacher", help="Distil: regress on this model's D(u + σn, σ) instead of the clean patch u (e.g. a small fast network from a big one).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue exactly from OUTPUT's checkpoint (same step, optimiser, EMA, data order).")] = False,
    time_limit: Annotated[float | None, typer.Option("--time-limit", help="Stop cleanly after this many minutes, writing a usable model and a checkpoint.")] = None,
    checkpoint_minutes: Annotated[float, typer.Option("--checkpoint-minutes", help="Minutes between checkpoints.")] = 5.0,
    lr_schedule: Annotated[str, typer.Option("--lr-schedule", help="steps: the cosine decay spans --steps; time: it ends at --time-limit if that comes first (a fixed time budget ends annealed; resuming is then not step-exact).")] = "steps",
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes that cut patches (0: in the training process).", min=0)] = 0,
    colour_permute: Annotated[bool, typer.Option("--colour-permute", help="Colour data: half the patches get a random other channel order (RGB → GBR, …), widening the hues seen.")] = False,
    precision: Opt.Precision = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start afresh over an existing model and checkpoint (default: refuse them; --resume continues the checkpoint).")] = False,
) -> None:
    """Train a score network by denoising score matching (Vincent 2011) with EDM's preconditioning and
    noise-level distribution (Karras et al. 2022): a clean prior, or Noise2Score's AR-DAE on noisy images."""
    from ..api import TrainConfig, checkpoint_path
    from ..api import train as run_training

    common.overwrite = overwrite or resume

    if output.suffix != ".safetensors":
        raise ScoretoolError(f"{output}: the model file must end in .safetensors")
    if not lr > 0 or any(v is not None and not v > 0 for v in (sigma_min, sigma_max, time_limit, sigma, zeta, k)) \
            or checkpoint_minutes < 0:
        raise ScoretoolError("--lr, --sigma-min, --sigma-max, --time-limit, --sigma, --zeta and --k must be positive, "
                             "--checkpoint-minutes ≥ 0")
    sigma_min = (0.001 if noisy else 0.002) if sigma_min is None else sigma_min
    sigma_max = (0.1 if noisy else 10.0) if sigma_max is None else sigma_max
    if not sigma_min < sigma_max:
        raise ScoretoolError(f"--sigma-min {sigma_min:g}, --sigma-max {sigma_max:g}: the smallest σ must be below the largest")
    try:
        width_list = [int(w) for w in widths.split(",")] if widths else None
    except ValueError:
        raise ScoretoolError(f"--widths {widths}: expected comma-separated integers") from None
    if width_list is not None and not all(1 <= w <= 4096 for w in width_list):
        raise ScoretoolError(f"--widths {widths}: each width must be between 1 and 4096")
    if Path(data).exists():
        common.reads(list_images(Path(data))[0])
    for path, what in ((output, "model"), (checkpoint_path(output), "checkpoint")):
        if path.exists() and not common.overwrite:
            raise ScoretoolError(f"{path}: exists (continue its training with --resume, or start afresh over it "
                                 f"with --overwrite)")
        common.claim_output(path, what)
    given = [f"--{name}" for name, value in (("noise", noise), ("sigma", sigma), ("zeta", zeta), ("k", k)) if value is not None]
    if given and not noisy:
        raise ScoretoolError(f"{', '.join(given)}: the noise of noisy training data (--noisy); a clean prior learns every σ")
    noise_info = {}
    if noise:
        if noise not in ("gaussian", "poisson", "gamma"):
            raise ScoretoolError(f"--noise {noise}: expected gaussian, poisson or gamma")
        noise_info = {"family": noise}
    for name, value in (("sigma", sigma), ("zeta", zeta), ("k", k)):
        if value is not None:
            if noise and noise != FAMILY_OF[name]:
                raise ScoretoolError(f"--{name} is the parameter of {FAMILY_OF[name]} noise, not of --noise {noise}")
            noise_info[name] = value
    cfg = TrainConfig(
        data=str(data), mode="noisy" if noisy else "clean", steps=steps, patch=patch, batch=batch, lr=lr,
        sigma_min=sigma_min, sigma_max=sigma_max,
        sigma_focus=None if noisy else (0.01, 0.5), seed=common.seed, widths=width_list, blocks_per_level=blocks, checkpoint_minutes=checkpoint_minutes,
        time_limit_minutes=time_limit, precision=precision, init=init, noise=noise_info,
        device=common.device, workers=workers, lr_schedule=lr_schedule, teacher=teacher, colour_permute=colour_permute,
        command="scoretool train " + shlex.join(a for a in sys.argv[2:] if a != "--resume"),
    )
    with common.progress("training", steps) as advance:
        last = [0]

        def on_step(step, loss, ips):
            advance(step - last[0], status=f"loss {loss:.4f} · {ips:.0f} img/s")
            last[0] = step
            if not common.console.is_terminal and not common.quiet and step % 500 == 0:
                common.notice(f"step {step}/{steps} loss {loss:.4f} {ips:.0f} img/s")

        record = run_training(cfg, output, resume=resume, on_step=on_step,
                              on_skip=lambda problem: common.notice(f"skipped {problem}"))
    if common.json:
        common.emit({"output": str(output), **record})
    else:
        common.notice(f"wrote {output} after {record['steps']} steps ({record['train_seconds'] / 60:.1f} min)")
        if record.get("stopped_by_signal"):
            common.notice("stopped by a signal; continue with the same command and --resume")
    return 1 if record["skipped_files"] else 0
