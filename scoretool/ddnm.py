"""DDNM / DDNM+ zero-shot restoration of y = A·x (+ σ_y·n) with a denoiser prior D(x, σ).

Wang, Yu & Zhang, "Zero-shot image restoration using denoising diffusion null-space model" (DDNM),
ICLR 2023, §3, written in the EDM/VE parametrisation x_t = x + σ_t·n (ᾱ = 1/(1+σ²) maps it to DDPM):

    x0  = D(x_t, σ_t)                                 prior's estimate of the clean image
    x̂0  = x0 − λ·A†(A·x0 − y)                         range space from y, null space from x0
    x_{t+1} = x̂0 + σ'·(η·n + √(1−η²)·ε̂),  ε̂ = (x_t − x0)/σ_t,  σ' = √(σ_{t+1}² − (λσ_y)²)

DDNM: λ = 1. DDNM+ (σ_y > 0): λ = min(1, ρ·σ_{t+1}/σ_y) per singular component of A
(`ddnm_plus_correction`). The paper has ρ = 1; here ρ = `noise_share` (default 0.3) because the
measurement noise is the same realisation at every step and builds up along the chain.
Time travel (DDNM §3.4): after every L steps, re-noise back L steps and redo them; the path through
the σ schedule is built and checked before sampling (`travel_schedule`, as DDNM's `get_schedule_jump`).
Dihedral cycling (Zhang et al., "Plug-and-play image restoration with deep denoiser prior", TPAMI 2021,
periodical geometric self-ensemble): step j evaluates D on the (j mod 8)-th flip/rotation g of x_t and
turns the estimate back, g⁻¹(D(g(x_t), σ_t)); for a flip/rotation-invariant prior each is an estimate of
the same E[x | x_t], and the network's orientation-dependent errors no longer add up over the chain.
Start: A†y + σ_0·n, or (`start="smooth"`, `smooth_start`) A†y with its null space filled by harmonic
completion, which lets the chain start from a low σ_0.
The sampler knows the task only through the operator; the σ schedule is built apart (`edm_sigmas`) and
handed in; progress and inspection go through the callback. The defaults and their measured effect
are in bench/restore.py and bench/ddnm_variants.py.

`pnp_restore` is the deterministic alternative (`scoretool restore` runs it for inpainting): plug-and-play
half-quadratic splitting (Zhang et al., DPIR, TPAMI 2021, §4) with DDNM's range/null split as its data
step — no noise is injected, so it estimates the posterior mean rather than drawing a sample, and needs
far fewer network evaluations (25 against DDNM's 100 in bench/restore.py; better for inpainting, not for
SR or deblurring).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as nnf

from .engine import dihedral

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def edm_sigmas(steps: int, sigma_max: float = 10.0, sigma_min: float = 0.005, rho: float = 7.0) -> list[float]:
    """Karras et al. (2022) Eq. 5: σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, then 0."""
    if steps < 1:
        raise ValueError(f"steps {steps}: must be ≥ 1")
    if not sigma_max > 0:
        raise ValueError(f"sigma_max {sigma_max}: must be positive")
    sigma_min = min(sigma_min, sigma_max)
    if steps == 1:
        return [float(sigma_max), 0.0]
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [float((a + i / (steps - 1) * (b - a)) ** rho) for i in range(steps)] + [0.0]


def travel_schedule(steps: int, travel: int = 0, repeat: int = 1) -> list[int]:
    """The path through the σ schedule's indices 0..steps with time travel (DDNM §3.4).

    A move i → i+1 is a sampling step; a move i → i−L is a jump back (re-noising from σ_i to σ_{i−L}):
    after reaching a multiple i of L (0 < i < steps), the last L steps are redone, `repeat` times.
    travel = 0: [0, 1, …, steps].
    """
    if steps < 1 or travel < 0 or repeat < 0:
        raise ValueError(f"steps {steps}, travel {travel}, travel_repeat {repeat}: need steps ≥ 1, the others ≥ 0")
    path, i, jumps = [0], 0, dict.fromkeys(range(steps + 1), 0)
    while i < steps:
        i += 1
        path.append(i)
        if travel and i % travel == 0 and i < steps and jumps[i] < repeat:
            jumps[i] += 1
            i -= travel
            path.append(i)
    _check_travel_schedule(path, steps)
    return path


def _check_travel_schedule(path: list[int], steps: int) -> None:
    """A valid path starts at 0, ends at `steps`, stays in 0..steps and moves by +1 or jumps back."""
    if path[0] != 0 or path[-1] != steps or any(not 0 <= i <= steps for i in path):
        raise ValueError(f"time-travel schedule {path}: must run from 0 to {steps} inside 0..{steps}")
    if any(j != i + 1 and j >= i for i, j in zip(path, path[1:])):
        raise ValueError(f"time-travel schedule {path}: every move must be one step forward or a jump back")


def smooth_start(op, x: torch.Tensor, iterations: int = 50) -> torch.Tensor:
    """x + z with z in the null space of A minimising ‖∇(x + z)‖²: the smoothest image with the same
    range-space part as x (for x = A†y: harmonic completion, a membrane over inpainting's holes, a
    smooth ×s up-sampling for SR instead of A†y's blocks).

    With P = I − A†A (the null-space projector) and L = −Δ (5-point, Neumann boundary), z solves
    P·L·P·z = −P·L·x, by `iterations` steps of conjugate gradients (the system is SPD on the null
    space). Costs a few operator applications per step, far less than one network evaluation.
    """
    def lap(u: torch.Tensor) -> torch.Tensor:
        p = nnf.pad(u, (1, 1, 1, 1), mode="replicate")
        return 4 * u - p[..., :-2, 1:-1] - p[..., 2:, 1:-1] - p[..., 1:-1, :-2] - p[..., 1:-1, 2:]

    def null(u: torch.Tensor) -> torch.Tensor:
        return u - op.A_dagger(op.A(u))

    z = torch.zeros_like(x)
    r = -null(lap(x))
    p, rs = r, (r * r).sum()
    for _ in range(iterations):
        if rs <= 1e-12 * x.numel():
            break
        q = null(lap(p))
        alpha = rs / (p * q).sum()
        z, r = z + alpha * p, r - alpha * q
        rs, rs_old = (r * r).sum(), rs
        p = r + rs / rs_old * p
    return x + z


def ddnm_plus_correction(op, r: torch.Tensor, sigma_next: float, sigma_y: float) -> tuple[torch.Tensor, float]:
    """DDNM+'s range-space correction λ·A†r and the std of the measurement noise it carries into x.

    Per singular component i of A with noise gain g_i (the std of A†n for white n, `op.dagger_gains()`):
    λ_i = min(1, σ_next/(σ_y·g_i)), so no component receives more than σ_next of amplified measurement
    noise (Wang, Yu & Zhang 2023, §3.3, Eq. 19); the carried std is σ_y·√mean((λ_i·g_i)²). σ_y = 0
    gives A†r and 0 (DDNM).
    """
    if sigma_y <= 0:
        return op.A_dagger(r), 0.0
    gains = op.dagger_gains()
    lam = (sigma_next / (sigma_y * gains).where(gains > 0, 1.0)).clamp(max=1.0)  # a component A† drops: any λ
    return op.A_dagger_scaled(r, lam), float(sigma_y * (lam * gains).square().mean().sqrt())


def data_consistency(op, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image relative residual ‖A·x − y‖ / ‖y‖ (B,); ‖y‖ is taken as at least that of a uniform image
    of 1/255 (one grey level), so measurements of a black image do not divide by zero."""
    y = y.flatten(1)
    r = (op.A(x).flatten(1) - y).norm(dim=1)
    return r / y.norm(dim=1).clamp_min(y.shape[1] ** 0.5 / 255)


@torch.no_grad()
def ddnm_sample(
    denoiser: Denoiser,
    op,
    y: torch.Tensor,
    sigmas: Sequence[float],
    *,
    eta: float = 1.0,
    sigma_y: float = 0.0,
    travel: int = 0,
    travel_repeat: int = 1,
    noise_share: float = 0.3,
    cycle_dihedral: bool = True,
    start: str = "pinv",
    clip: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
) -> tuple[torch.Tensor, int]:
    """Restore x from y = A·x (+ σ_y·n) by DDNM (σ_y = 0) or DDNM+ (σ_y > 0) along a σ schedule.

    Args:
        denoiser: D(x, σ) for x (B, C, H, W) and σ (B,) on the [0,1] scale.
        op: a `scoretool.operators.LinearOperator`; it is moved to y's device (`op.follow(y)`).
        y: measurements (B, *op.y_shape).
        sigmas: the noise levels σ_0 > σ_1 > … > σ_n = 0 (e.g. `edm_sigmas`); one step per pair, and the
            chain starts at x = A†y + σ_0·n (σ_0 = 10, the prior's largest trained σ, makes the start
            nearly pure noise; 0.5 starts near A†y).
        eta: share of fresh noise in the injected noise (0 = deterministic DDIM-like, 1 = all fresh).
        sigma_y: measurement noise std on the [0,1] scale (DDNM+); 0 for noise-free y.
        travel: time-travel length L (0 = off); travel_repeat: how often each segment is redone
            (`travel_schedule`).
        noise_share: DDNM+ only: the share ρ of σ_{t+1} that amplified measurement noise may take.
        cycle_dihedral: evaluate the j-th D on the (j mod 8)-th flip/rotation of x_t (see above).
        clip: clamp the prior's estimate x0 to this range before the projection (None = no clamp).
            The output itself is not clamped, so a noise-free result is exactly data-consistent.
        generator: torch.Generator for reproducible noise (drawn on the CPU, then moved).
        callback: called after each network evaluation with {"i": step, "sigma", "x", "denoised", "nfe"}
            (k-diffusion's convention): progress bars and inspection, never part of the result.
    Returns:
        (x̂ of shape (B, *op.x_shape), number of network evaluations per image).
    """
    sig = [float(s) for s in sigmas]
    if len(sig) < 2 or sig[-1] != 0 or any(a <= b for a, b in zip(sig, sig[1:])):
        raise ValueError(f"sigmas {sig}: need a decreasing schedule that ends at 0")
    if not 0 <= eta <= 1:
        raise ValueError(f"eta {eta}: must be in [0, 1]")
    if start not in ("pinv", "smooth"):
        raise ValueError(f"start {start!r}: expected pinv or smooth")
    path = travel_schedule(len(sig) - 1, travel, travel_repeat)
    op.follow(y)  # the operator's constants move to y's device once, before the loop
    B, dev = y.shape[0], y.device

    def noise() -> torch.Tensor:
        return torch.randn((B, *op.x_shape), generator=generator).to(dev, y.dtype)

    if start == "smooth":  # DDNM+: A†y with its amplified noise kept below ρ·σ_0, as in the steps
        x = smooth_start(op, ddnm_plus_correction(op, y, noise_share * sig[0], sigma_y)[0])
    else:
        x = op.A_dagger(y)
    x = x + sig[0] * noise()
    nfe = 0
    for i, j in zip(path, path[1:]):
        if j < i:  # time travel: re-noise from σ_i back to σ_j
            x = x + math.sqrt(sig[j] ** 2 - sig[i] ** 2) * noise()
            continue
        s, s_next = sig[i], sig[j]
        g = nfe % 8 if cycle_dihedral else 0
        x0 = dihedral(denoiser(dihedral(x, g), torch.full((B,), s, device=dev)), g, inverse=True).to(y.dtype)
        nfe += 1
        if callback:
            callback({"i": i, "sigma": s, "x": x, "denoised": x0, "nfe": nfe})
        if clip is not None:
            x0 = x0.clamp(*clip)
        corr, carried = ddnm_plus_correction(op, op.A(x0) - y, noise_share * s_next, sigma_y)
        x0_hat = x0 - corr
        if s_next == 0:
            x = x0_hat
        else:
            eps = (x - x0) / s
            s_inj = math.sqrt(max(s_next**2 - carried**2, 0.0))
            x = x0_hat + s_inj * (eta * noise() + math.sqrt(1 - eta**2) * eps)
    return x, nfe


def geometric_sigmas(steps: int, sigma_max: float = 0.15, sigma_min: float = 0.005) -> list[float]:
    """σ_k = σ_max·(σ_min/σ_max)^{k/(n−1)}, k = 0…n−1: DPIR's log-spaced schedule (no final 0)."""
    if steps < 1:
        raise ValueError(f"steps {steps}: must be ≥ 1")
    if not sigma_max > 0:
        raise ValueError(f"sigma_max {sigma_max}: must be positive")
    sigma_min = min(sigma_min, sigma_max)
    if steps == 1:
        return [float(sigma_max)]
    return [float(sigma_max * (sigma_min / sigma_max) ** (k / (steps - 1))) for k in range(steps)]


def wiener_correction(op, r: torch.Tensor, tau: float, sigma_y: float) -> torch.Tensor:
    """The data step of half-quadratic splitting for y = A·x + σ_y·n, as a correction to subtract:
    argmin_x ‖A·x − y‖²/σ_y² + ‖x − z‖²/τ² = z − Λ·A†(A·z − y) with, per singular component i of A
    (gain g_i = 1/s_i, `op.singular_gains()`), Λ_i = τ²/(τ² + σ_y²·g_i²); r = A·z − y.
    σ_y = 0 gives Λ = I: the projection onto {x : A·x = y} (DDNM's x̂0)."""
    if sigma_y <= 0:
        return op.A_dagger(r)
    gains = op.singular_gains()
    return op.A_dagger_scaled(r, 1 / (1 + (sigma_y * gains / tau).square()))


@torch.no_grad()
def pnp_restore(
    denoiser: Denoiser,
    op,
    y: torch.Tensor,
    sigmas: Sequence[float],
    *,
    sigma_y: float = 0.0,
    data_weight: float = 2.0,
    cycle_dihedral: bool = True,
    clip: tuple[float, float] | None = (0.0, 1.0),
    callback: Callable[[dict], None] | None = None,
) -> tuple[torch.Tensor, int]:
    """Restore x from y = A·x (+ σ_y·n) by plug-and-play half-quadratic splitting (DPIR, Zhang et al. 2021)
    with the prior D as the denoising step and DDNM's range/null split as the data step:

        x_0 = smooth completion of Λ_0·A†y                 (`smooth_start`)
        z_k = D(x_k, σ_k)                                  prior step at level σ_k
        x_{k+1} = z_k − Λ_k·A†(A·z_k − y)                  data step (`wiener_correction`, τ_k = c·σ_k)

    for the levels σ_0 ≥ … ≥ σ_{n−1} (e.g. `geometric_sigmas`; one repeated level is plain HQS); the
    result is x_n. Noise-free
    y (σ_y = 0): x_n satisfies A·x_n = y exactly, as DDNM's output does. Unlike `ddnm_sample` nothing
    random enters: the chain estimates the posterior mean instead of drawing a sample.

    Args:
        denoiser, op, y, cycle_dihedral, clip, callback: as `ddnm_sample`.
        sigmas: the levels σ_k, one network evaluation each.
        sigma_y: measurement noise std on the [0,1] scale.
        data_weight: c in τ_k = c·σ_k, how far the data step may move z_k against noisy measurements
            (DPIR's λ = 0.23 is c ≈ 2.1; only matters for σ_y > 0).
    Returns:
        (x̂ of shape (B, *op.x_shape), number of network evaluations per image).
    """
    sig = [float(s) for s in sigmas]
    if not sig or any(s <= 0 for s in sig) or any(a < b for a, b in zip(sig, sig[1:])):
        raise ValueError(f"sigmas {sig}: need a non-increasing schedule of positive levels")
    op.follow(y)
    B, dev = y.shape[0], y.device
    x = smooth_start(op, wiener_correction(op, y, data_weight * sig[0], sigma_y))  # Λ_0·A†y, holes filled
    for k, s in enumerate(sig):
        g = k % 8 if cycle_dihedral else 0
        z = dihedral(denoiser(dihedral(x, g), torch.full((B,), s, device=dev)), g, inverse=True).to(y.dtype)
        if callback:
            callback({"i": k, "sigma": s, "x": x, "denoised": z, "nfe": k + 1})
        if clip is not None:
            z = z.clamp(*clip)
        x = z - wiener_correction(op, op.A(z) - y, data_weight * s, sigma_y)
    return x, len(sig)
