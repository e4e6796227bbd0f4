"""Zero-shot restoration with a score prior: deterministic plug-and-play with DDNM's null-space data step
(`ddnm.pnp_restore`, run for inpainting by default; Zhang et al., DPIR, TPAMI 2021) or DDNM / DDNM+ posterior sampling
(`ddnm.ddnm_sample`; Wang, Yu & Zhang, *Zero-shot image restoration using denoising diffusion null-space
model*, ICLR 2023): x̂ = A†y + (I − A†A)·x̄ at every step; tasks are linear operators (scoretool.operators)."""

from __future__ import annotations

import numpy as np
import torch

from ..ddnm import data_consistency, ddnm_sample, edm_sigmas, geometric_sigmas, pnp_restore
from ..errors import ScoretoolError
from ..model import as_batch, grey_in_colour, loaded
from ..operators import build_operator, gaussian_kernel, random_known_mask, uniform_kernel
from ..weights import read_metadata, resolve_weights

__all__ = ["SAMPLERS", "check_colour_prior", "gaussian_kernel", "random_mask", "restore", "sampler_for", "sampler_settings", "uniform_kernel"]

# Each sampler's schedule defaults (network evaluations, first σ), and the sampler `auto` picks per task,
# measured in bench/restore.py (first 6 Set12 images, same run): pnp in 25 evaluations beats 100 DDNM steps
# for inpainting (+0.8 dB at 50% missing, +0.5 at 80%) but not for ×4 SR (−0.26) or deblurring (−0.34),
# which stay on DDNM, as do colourisation and compressed sensing (not measured with pnp).
SAMPLERS = {"pnp": {"steps": 25, "sigma_max": 0.15}, "ddnm": {"steps": 100, "sigma_max": 1.0}}
AUTO_SAMPLER = {"inpaint": "pnp"}
DDNM_ONLY = {"eta": 1.0, "travel": 0, "start": "pinv", "samples": 1}  # ddnm_sample's settings and defaults


def sampler_for(task: str, sampler: str = "auto") -> str:
    """The sampler that runs: `sampler` itself, or for auto the one measured best for `task`."""
    if sampler == "auto":
        return AUTO_SAMPLER.get(task, "ddnm")
    if sampler not in SAMPLERS:
        raise ValueError(f"--sampler {sampler}: expected auto, {' or '.join(SAMPLERS)}")
    return sampler


def sampler_settings(task: str, sampler: str = "auto", *, steps: int | None = None, sigma_max: float | None = None,
                     **ddnm_given) -> dict:
    """Every setting of the sampler that runs for `task`, checked: {sampler, steps, sigma_max} (None:
    `SAMPLERS`) and for ddnm its own eta, travel, start, samples (None: `DDNM_ONLY`). The keys are
    `restore`'s arguments and `scoretool restore`'s options; ValueError names the option at fault
    (ddnm's settings given to pnp included)."""
    chosen = sampler_for(task, sampler)
    given = {k: v for k, v in ddnm_given.items() if v is not None}
    if given.keys() - DDNM_ONLY.keys():
        raise TypeError(f"unknown sampler settings {sorted(given.keys() - DDNM_ONLY.keys())}")
    if chosen == "pnp" and given:
        raise ValueError(f"{', '.join('--' + k for k in given)}: options of --sampler ddnm"
                         + (" (auto picks pnp for inpainting)" if sampler == "auto" else ""))
    settings = {"sampler": chosen, "steps": SAMPLERS[chosen]["steps"] if steps is None else steps,
                "sigma_max": SAMPLERS[chosen]["sigma_max"] if sigma_max is None else sigma_max,
                **({**DDNM_ONLY, **given} if chosen == "ddnm" else {})}
    if settings["steps"] < 1 or not settings["sigma_max"] > 0:
        raise ValueError(f"--steps {settings['steps']}, --sigma-max {settings['sigma_max']}: need ≥ 1 and > 0")
    if chosen == "ddnm" and not (0 <= settings["eta"] <= 1 and 0 <= settings["travel"] < settings["steps"]
                                 and settings["samples"] >= 1 and settings["start"] in ("pinv", "smooth")):
        raise ValueError("--eta in [0, 1], 0 ≤ --travel < --steps (time travel jumps back within the schedule), "
                         "--samples ≥ 1 and --start pinv or smooth are required (got "
                         f"{settings['eta']}, {settings['travel']} with {settings['steps']} steps, {settings['samples']}, {settings['start']})")
    return settings


def check_colour_prior(weights: str | None) -> None:
    """Colourisation restores three channels: `weights` (None: the default colour prior) must be a colour model."""
    if weights is not None and read_metadata(resolve_weights(weights))[0].channels != 3:
        raise ScoretoolError(f"colourisation needs a colour (3-channel) prior; {weights} is a grey one")


def random_mask(shape: tuple[int, int], missing: float, seed: int = 0) -> np.ndarray:
    """(H, W) bool mask, True = missing pixel, each missing with probability `missing` (0 ≤ missing < 1)."""
    return (random_known_mask(shape, missing, torch.Generator().manual_seed(seed)) == 0).numpy()


def _x_shape(task: str, c: int, h: int, w: int, scale) -> tuple[int, int, int]:
    """(C, H, W) of the restored image for a degraded (c, h, w) one."""
    if task == "sr":
        if not isinstance(scale, (int, np.integer)) or isinstance(scale, bool) or scale < 1:
            raise ValueError(f"scale {scale!r}: must be a positive integer")
        return c, h * int(scale), w * int(scale)
    if task == "colorize":
        if c != 1:
            raise ValueError(f"colourisation takes a grey image (one channel, or three equal ones), this one has {c} channels")
        return 3, h, w
    return c, h, w


def _known(mask: np.ndarray | None, h: int, w: int) -> torch.Tensor:
    """The inpainting mask (non-zero = missing; (H, W) or (H, W, C)) as (H, W) float, 1 = known pixel."""
    if mask is None:
        raise ValueError("inpainting needs a mask")
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[-1] in (1, 3, 4):
        m = m[..., :3].max(-1)
    if m.shape != (h, w):
        raise ValueError(f"mask size {m.shape[1] if m.ndim > 1 else '?'}×{m.shape[0]} does not match the image {w}×{h}")
    if not (m == 0).any():
        raise ValueError("the mask marks every pixel missing (non-zero): nothing is known to inpaint from")
    return torch.from_numpy((m == 0).astype(np.float32))


def restore(image: np.ndarray, task: str, *, scale: int = 4, sr_kernel: str = "avgpool", mask: np.ndarray | None = None,
            kernel: np.ndarray | None = None, ratio: float = 0.25, sigma_y: float = 0.0, sampler: str = "auto",
            steps: int | None = None, sigma_max: float | None = None, eta: float | None = None,
            travel: int | None = None, start: str | None = None, samples: int | None = None, cycle_dihedral: bool = True,
            weights: str | None = None, device: str = "auto", precision: str = "auto", tile: int = 512, seed: int = 0,
            progress=None) -> tuple[np.ndarray, dict]:
    """Zero-shot restoration of y = A·x (+ σ_y·n) with a prior (maths in scoretool.ddnm).

    Args:
        image: the degraded image y on the [0,1] scale, (H, W) or (H, W, C), unclipped: the low-resolution
            image (sr; output is scale× larger), the image with holes (inpaint), the grey image (colorize;
            one channel or three equal ones; output has 3 channels), the blurred image (deblur), or for cs an image whose measurements
            y = A·image are taken (A from ratio and seed; A†y itself gives the same y).
        task: sr | inpaint | colorize | deblur | cs. mask: (H, W), non-zero = missing pixel (inpaint).
        kernel: 2-D blur kernel (deblur; circular boundary). sigma_y: measurement noise std on the [0,1]
            scale (> 0: the Wiener data step, or DDNM+). cycle_dihedral: see scoretool.ddnm.
        sampler: pnp (deterministic, `pnp_restore` on `geometric_sigmas`), ddnm (a posterior sample,
            `ddnm_sample` on `edm_sigmas`) or auto (`sampler_for`: pnp for inpainting, else ddnm).
            steps, sigma_max: its schedule (None: `SAMPLERS`).
        eta, travel, start, samples: ddnm only (None: `DDNM_ONLY`; all checked by `sampler_settings`). samples averages that many
            posterior samples (one chain each, ×samples time); the average tends to the posterior mean
            E[x | y], the MSE-optimal estimate pnp aims at directly. Each sample is data-consistent, so
            is the mean.
    Returns:
        (x̂ float32 unclipped, same layout as the input with the output's size and channels,
         info {"nfe", "residual" = ‖A·x̂ − y‖/‖y‖, "x_shape", "weights"} plus `sampler_settings`).
    """
    settings = sampler_settings(task, sampler, steps=steps, sigma_max=sigma_max, eta=eta, travel=travel, start=start,
                                samples=samples)
    if task == "colorize" and grey_in_colour(image):  # grey saved as RGB
        image = np.asarray(image)[..., :1]
    y_img, _ = as_batch(image)
    if y_img.shape[0] != 1:
        raise ValueError("restore takes one image (H, W) or (H, W, C), not a stack")
    _, c, h, w = y_img.shape
    x_shape = _x_shape(task, c, h, w, scale)
    known = _known(mask, h, w) if task == "inpaint" else None
    op = build_operator(task, x_shape, scale=scale, sr_kernel=sr_kernel, mask=known, kernel=kernel, ratio=ratio, seed=seed)
    if task == "colorize":
        check_colour_prior(weights)
    model = loaded(weights, x_shape[0], device, precision, tile)
    small = x_shape[1] <= model.engine.tile and x_shape[2] <= model.engine.tile
    y = y_img.to(model.engine.device if small else torch.device("cpu"))
    if task in ("cs", "inpaint"):  # measurements: the known pixels / the block coefficients
        y = op.A(y)
    callback = progress and (lambda _: progress(1))
    st = settings
    if st["sampler"] == "pnp":
        x, nfe = pnp_restore(model, op, y, geometric_sigmas(st["steps"], st["sigma_max"]), sigma_y=sigma_y,
                             cycle_dihedral=cycle_dihedral, callback=callback)
    else:
        gen = torch.Generator().manual_seed(seed)
        x, nfe = None, 0
        for _ in range(st["samples"]):
            xk, n = ddnm_sample(model, op, y, edm_sigmas(st["steps"], st["sigma_max"]), eta=st["eta"], sigma_y=sigma_y,
                                travel=st["travel"], start=st["start"], cycle_dihedral=cycle_dihedral, generator=gen,
                                callback=callback)
            x = xk if x is None else x + xk
            nfe += n
        x = x / st["samples"]
    residual = float(data_consistency(op, x, y)[0])
    out = x.permute(0, 2, 3, 1).cpu().numpy()[0]
    if np.ndim(image) == 2 and out.shape[-1] == 1:
        out = out[..., 0]
    return out.astype(np.float32), {"nfe": nfe, "residual": residual, "x_shape": list(x_shape), "weights": model.info.get("name"),
                                    **settings}
