"""DDNM / DDNM+ zero-shot restoration of y = A·x (+ σ_y·n) with a denoiser prior D(x, σ).

Wang, Yu, Zhang, "Zero-shot image restoration using denoising diffusion null-space model", ICLR 2023
(methods.md §3), written in the EDM/VE parametrisation x_t = x + σ_t·n (ᾱ = 1/(1+σ²) maps it to DDPM):

    x0  = D(x_t, σ_t)                                 prior's estimate of the clean image
    x̂0  = x0 − λ·A†(A·x0 − y)                         range space from y, null space from x0
    x_{t+1} = x̂0 + σ'·(η·n + √(1−η²)·ε̂),  ε̂ = (x_t − x0)/σ_t,  σ' = √(σ_{t+1}² − (λσ_y)²)

DDNM: λ = 1. DDNM+ (σ_y > 0): λ = min(1, ρ·σ_{t+1}/σ_y) (per singular value where the operator knows
its spectrum, see `ddnm_plus_correction`). The paper has ρ = 1: the measurement noise may fill
the whole noise budget σ_{t+1}; but it is the same noise realisation at every step, and it builds up
(deblurring σ_y = 0.01, Set12 crop: 20.8 dB at 30 steps, 15.6 dB at 100). ρ = `noise_share` = 0.3 gave
30.0 / 30.5 dB (ρ = 0.1: 29.1 / 29.4; Wiener 29.2), so 0.3 is the default.
Defaults measured with the grey prior (Set12 crops, ×4 SR): η = 1 beat η = 0.85 by 1.5 dB (the ε̂ term
carries A†y's block edges from step to step), and starting from A†y + σ·n at σ_max = 0.3–1 beat 10 by
0.5 dB (inpainting 80%: σ_max = 1 beat 10 by 1.5 dB). Time-travel: after every L steps, re-noise back L
steps and redo them (`travel_repeat` times). Dihedral cycling (Zhang et al., DPIR, TPAMI 2021, "periodical
geometric self-ensemble"): step j evaluates D on the (j mod 8)-th flip/rotation g of x_t and turns the
estimate back, g⁻¹(D(g(x_t), σ_t)); for a flip/rotation-invariant prior each is an estimate of the same
E[x | x_t], but the network's orientation-dependent errors no longer add up coherently over the chain.
Measured at no extra cost (bench/restore.py, 100 steps): Set12 (6 images) SR ×4 +0.13 dB, inpainting
50/80% +0.07/+0.09, deblurring +0.14; CBSD68 SR ×4 (12 images) +0.07.
Start (`start="smooth"`, `smooth_start`): A†y with its null space filled by harmonic completion (holes
interpolated, SR blocks smoothed), which lets the chain start low (σ_0 = 0.25) and spend few steps.
Measured with 25 evaluations (bench/ddnm_variants.py, Set12 128² crops, runs stopped early: logs in
bench/results/logs/ddnm-variants-set12-crop128.log): inpainting 80% on 3 images 20.58/29.92/27.01 dB
from the smooth start at σ_0 = 0.25, 19.16/24.97/24.95 from A†y at σ_0 = 1, and 21.13/30.12/28.17 with
today's 100 steps. On whole images (bench/restore.py, Set12 01–02) 25 evaluations from the smooth start
stay below 100 from A†y (SR ×4 −0.38 dB, inpainting 50/80% −0.44/−0.61, deblurring −0.15; CBSD68 first 2
SR ×4 −0.16), so the default stays 100 steps from A†y. Lost at 25 evaluations (one or two crops): η = 0.85 (−2.7 dB on
inpainting 80%) and η = 0 (−8.6), a Heun second-order step (η = 0.5, 13 steps: −2.6 dB SR, −8.6
inpainting), ρ = 4 or σ_min = 0.01 (±0.1), the mean of the last 4–8 estimates (no change).
The sampler knows the task only through the operator; the σ schedule is built apart (`edm_sigmas`).
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
    """Per-image relative residual ‖A·x − y‖ / ‖y‖ (B,)."""
    r = (op.A(x) - y).flatten(1).norm(dim=1)
    return r / y.flatten(1).norm(dim=1).clamp_min(1e-12)


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
        op: a `scoretool.operators.LinearOperator`; it is moved to y's device.
        y: measurements (B, *op.y_shape).
        sigmas: the noise levels σ_0 > σ_1 > … > σ_n = 0 (e.g. `edm_sigmas`); one step per pair, and the
            chain starts at x = A†y + σ_0·n (σ_0 = 10, the prior's largest trained σ, makes the start
            nearly pure noise; 0.5 starts near A†y).
        eta: share of fresh noise in the injected noise (0 = deterministic DDIM-like, 1 = all fresh).
        sigma_y: measurement noise std on the [0,1] scale (DDNM+); 0 for noise-free y.
        travel: time-travel length L (0 = off); travel_repeat: how often each segment is redone.
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
    if travel < 0 or travel_repeat < 0:
        raise ValueError("travel and travel_repeat must be ≥ 0")
    op = op.to(y.device) if isinstance(op, torch.nn.Module) else op
    n = len(sig) - 1
    B = y.shape[0]
    shape = (B, *op.x_shape)
    dev = y.device

    def noise() -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(dev, y.dtype)

    if start not in ("pinv", "smooth"):
        raise ValueError(f"start {start!r}: expected pinv or smooth")
    if start == "smooth":  # DDNM+: A†y with its amplified noise kept below ρ·σ_0, as in the steps
        x = smooth_start(op, ddnm_plus_correction(op, y, noise_share * sig[0], sigma_y)[0])
    else:
        x = op.A_dagger(y)
    x = x + sig[0] * noise()
    nfe, i = 0, 0
    travelled: dict[int, int] = {}
    while i < n:
        s, s_next = sig[i], sig[i + 1]
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
        i += 1
        if travel and i % travel == 0 and i < n and i - travel >= 0 and travelled.get(i, 0) < travel_repeat:
            travelled[i] = travelled.get(i, 0) + 1
            back = i - travel
            x = x + math.sqrt(sig[back] ** 2 - sig[i] ** 2) * noise()
            i = back
    return x, nfe
