"""Posterior uncertainty of Gaussian denoising from the denoiser's Jacobian.

For y = x + σn and an MMSE denoiser D(y, σ) = E[x | y], the posterior covariance is
    Cov[x | y] = σ²·J,   J = ∂D(y, σ)/∂y                       (Manor & Michaeli, ICLR 2024)
(J is symmetric in theory: D = y + σ²∇log p_σ(y) is a gradient field.)

- Per-pixel posterior variance σ²·diag(J) by the stochastic diagonal estimator
  diag(J) ≈ [Σ_k b_k ⊙ J b_k] ⊘ [Σ_k b_k ⊙ b_k]          (Hutchinson; Bekas, Kokiopoulou & Saad 2007)
  with Rademacher probes b_k, optionally masked to a lattice of period `stride` ("probing"): each
  pixel's estimate is then polluted only by J_ij with j ≡ i (mod stride), and with stride ≥ the image
  size and probes = stride² it is exact (the probes are the basis vectors, with signs).
- Top principal components of a region by subspace iteration with Jacobian-vector products:
  V ← orth(J V) with a Rayleigh–Ritz step each iteration; eigenvalues λ = σ²·(Ritz values of VᵀJV).

J·v is computed by a one-sided finite difference (default: one network pass per vector), a central
one (twice the cost, O(ε²) error), or forward-mode AD
(torch.func.jvp), always in float32 with autocast disabled (bf16 Jacobians are useless).
Everything here takes a denoiser callable D(x, σ) on (B, C, H, W) tensors, so tests use a closed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from kornia.filters import gaussian_blur2d

from .engine import Denoiser, apply_tiled

METHODS = ("fd", "forward", "jvp")


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


def jacobian_vector_product(denoiser: Denoiser, y: torch.Tensor, sigma: float, v: torch.Tensor,
                            method: str = "forward", eps: float | None = None,
                            d_y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(D(y), J·v) for a batch of directions v (P, C, H, W) at one image y (1, C, H, W).

    method: "fd" central difference (D(y+εv) − D(y−εv))/(2ε), error O(ε²);
            "forward" one-sided (D(y+εv) − D(y))/ε, one network call per probe (D(y) shared);
            "jvp" forward-mode AD (torch.func.jvp), exact but ~4× a forward pass on CPU.
    eps: step on the [0,1] scale per unit of v (default 0.01·σ, small against the scale σ on which
    D bends). d_y: D(y) if already known.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    y = y.float()
    v = v.to(y.device, torch.float32)
    p = v.shape[0]
    ys = y.expand(p, *y.shape[1:])
    eps = 0.01 * sigma if eps is None else eps
    with _no_autocast(y.device):
        if method == "jvp":
            out, jv = torch.func.jvp(lambda z: denoiser(z, sigma).float(), (ys.contiguous(),), (v,))
            return out[:1].detach(), jv.detach()
        with torch.no_grad():
            if method == "fd":
                plus = denoiser(ys + eps * v, sigma).float()
                minus = denoiser(ys - eps * v, sigma).float()
                d0 = d_y if d_y is not None else denoiser(y, sigma).float()
                return d0, (plus - minus) / (2 * eps)
            d0 = d_y if d_y is not None else denoiser(y, sigma).float()
            return d0, (denoiser(ys + eps * v, sigma).float() - d0) / eps


def transpose_jacobian_vector_product(denoiser: Denoiser, y: torch.Tensor, sigma: float,
                                      v: torch.Tensor) -> torch.Tensor:
    """Jᵀ·v for a batch of directions (reverse-mode AD, torch.func.vjp), float32, no autocast."""
    y = y.float()
    v = v.to(y.device, torch.float32)
    ys = y.expand(v.shape[0], *y.shape[1:]).contiguous()
    with _no_autocast(y.device):
        _, pullback = torch.func.vjp(lambda z: denoiser(z, sigma).float(), ys)
        (out,) = pullback(v)
    return out.detach()


def make_probes(shape: tuple[int, ...], count: int, stride: int = 1, start: int = 0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Probes (count, C, H, W): Rademacher ±1, masked to the lattice (r ≡ a, c ≡ b mod stride) for
    probe number k = start + i, (a, b) = divmod(k mod stride², stride). stride 1 = plain Hutchinson."""
    c, h, w = shape
    signs = torch.randint(0, 2, (count, c, h, w), generator=generator).float() * 2 - 1
    if stride <= 1:
        return signs
    rows, cols = torch.arange(h) % stride, torch.arange(w) % stride
    masks = []
    for i in range(count):
        a, b = divmod((start + i) % (stride * stride), stride)
        masks.append(((rows == a)[:, None] & (cols == b)[None, :]).float())
    return signs * torch.stack(masks)[:, None]


def jacobian_diagonal(denoiser: Denoiser, y: torch.Tensor, sigma: float, probes: int = 8, stride: int = 1,
                      method: str = "forward", eps: float | None = None, generator: torch.Generator | None = None,
                      probe_batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(D(y), estimate of diag ∂D/∂y) for a batch y (B, C, H, W), same shapes.

    diag(J) ≈ [Σ_k b_k ⊙ J b_k] ⊘ [Σ_k b_k ⊙ b_k]. Unbiased for Rademacher probes; with the one-sided
    difference the O(ε) curvature term has zero mean too (odd moments of ±1 probes vanish).
    Pixels that no probe touched (stride² > probes) get NaN.
    """
    means, diags = [], []
    for yi in y:
        yi = yi[None].float()
        d_y = None
        num = torch.zeros_like(yi[0])
        den = torch.zeros_like(yi[0])
        for start in range(0, probes, probe_batch):
            n = min(probe_batch, probes - start)
            b = make_probes(tuple(yi.shape[1:]), n, stride, start, generator).to(yi.device)
            d_y, jb = jacobian_vector_product(denoiser, yi, sigma, b, method, eps, d_y)
            num += (b * jb).sum(0)
            den += (b * b).sum(0)
        if d_y is None:
            with torch.no_grad(), _no_autocast(yi.device):
                d_y = denoiser(yi, sigma).float()
        means.append(d_y[0])
        diags.append(torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, float("nan"))))
    return torch.stack(means), torch.stack(diags)


@dataclass
class VarianceMap:
    """Posterior mean and variance on the [0,1] scale, (1, C, H, W); negatives clamped to 0."""

    mean: torch.Tensor
    variance: torch.Tensor
    negative: int  # pixels (× channels) whose raw estimate σ²·diag(J) was < 0 before clamping
    probes: int
    stride: int
    method: str
    raw: torch.Tensor | None = None  # σ²·diag(J) before smoothing and clamping

    @property
    def std(self) -> torch.Tensor:
        return self.variance.sqrt()


def posterior_variance(denoiser: Denoiser, y: torch.Tensor, sigma: float, probes: int = 8, stride: int = 1,
                       method: str = "forward", eps: float | None = None, seed: int = 0, tile: int = 512,
                       overlap: int = 64, multiple: int = 8, device: torch.device | None = None,
                       probe_batch: int = 4, smooth: float = 0.0,
                       progress: Callable[[int], None] | None = None) -> VarianceMap:
    """Per-pixel posterior variance Var[x_i | y] ≈ σ²·diag(∂D/∂y) of one image y (1, C, H, W).

    Large images go in overlapping tiles (engine.apply_tiled); each tile draws its own probes from one
    generator seeded with `seed`, in the fixed tile order, so the result is reproducible. The raw
    estimate can be negative (few probes); it is clamped at 0 and the count reported. `smooth` > 0
    averages the raw estimate with a Gaussian of that std in pixels before clamping (less probe noise,
    less spatial detail; see smooth_variance).
    """
    if y.ndim != 4 or y.shape[0] != 1:
        raise ValueError(f"expected y of shape (1, C, H, W), got {tuple(y.shape)}")
    if probes < 1 or stride < 1:
        raise ValueError("probes and stride must be ≥ 1")
    if probes < stride * stride:
        raise ValueError(f"stride {stride} needs at least stride² = {stride * stride} probes (got {probes})")
    gen = torch.Generator().manual_seed(seed)
    c = y.shape[1]

    def per_tile(t: torch.Tensor) -> torch.Tensor:
        mean, diag = jacobian_diagonal(denoiser, t, sigma, probes, stride, method, eps, gen, probe_batch)
        return torch.cat([mean, diag], dim=1)

    out = apply_tiled(per_tile, y, tile, overlap, multiple, batch=1, device=device, progress=progress)
    mean, diag = out[:, :c], out[:, c:]
    raw = sigma**2 * diag
    var = smooth_variance(raw, smooth) if smooth > 0 else raw
    negative = int((var < 0).sum())
    return VarianceMap(mean, var.clamp_min(0), negative, probes, stride, method, raw)


def smooth_variance(var: torch.Tensor, std_px: float) -> torch.Tensor:
    """Gaussian smoothing (std in pixels, reflect borders) of a (B, C, H, W) variance estimate.

    Hutchinson errors of neighbouring pixels are nearly independent (their correlation is O(J_ik²)),
    so averaging over ~4π·std_px² pixels divides the probe noise's variance by about that much."""
    if std_px <= 0:
        return var
    r = max(1, int(math.ceil(3 * std_px)))
    size = 2 * r + 1
    border = "reflect" if r < min(var.shape[-2:]) else "replicate"
    return gaussian_blur2d(var.float(), (size, size), (std_px, std_px), border_type=border)


@dataclass
class Components:
    """Top posterior principal components of a region, on the [0,1] scale.

    eigenvalues (K,) = σ²·Ritz values (posterior variance along each component); vectors (K, C, h, w)
    unit-norm over the region; mean (1, C, h, w) = D(y) on the region; residuals (K,) = ‖Jv − θv‖/θ.
    """

    eigenvalues: torch.Tensor
    vectors: torch.Tensor
    mean: torch.Tensor
    residuals: torch.Tensor
    iterations: int
    region: tuple[int, int, int, int]
    crop: tuple[int, int, int, int]
    symmetric: bool
    history: list[list[float]] = field(default_factory=list)


def _orth(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(w.double())[0].float()


def principal_components(denoiser: Denoiser, y: torch.Tensor, sigma: float, k: int = 3,
                         region: tuple[int, int, int, int] | None = None, margin: int = 32, iterations: int = 50,
                         oversample: int = 2, tol: float = 1e-3, symmetric: bool = False, method: str = "forward",
                         eps: float | None = None, seed: int = 0, multiple: int = 1) -> Components:
    """Top-k eigenpairs of the posterior covariance σ²·J restricted to a region, by subspace iteration.

    Args:
        y: noisy image (1, C, H, W) on the [0,1] scale. region: (x, y, width, height) in pixels
            (default: the whole image). The denoiser sees the region plus `margin` pixels of context
            on each side (clipped to the image; the crop box is rounded out to `multiple`).
        k: components wanted; k + `oversample` vectors are iterated (faster, surer convergence).
        iterations: at most this many V ← orth(J V) steps with Rayleigh–Ritz; stops early when every
            top-k residual ‖Jv − θv‖/θ is ≤ `tol` (sin of the angle to the true vector ≲ tol·θ/gap).
        symmetric: iterate with (J + Jᵀ)/2 (Jᵀv by reverse-mode AD; needs a differentiable denoiser,
            ~3× slower). Default False: iterate with J and symmetrise only the small projected matrix
            VᵀJV, exact for the symmetric J of an MMSE denoiser, approximate for a network's J.
    Returns:
        Components, largest eigenvalue first; each vector's sign makes its largest entry positive.
    """
    if y.ndim != 4 or y.shape[0] != 1:
        raise ValueError(f"expected y of shape (1, C, H, W), got {tuple(y.shape)}")
    _, c, h, w = y.shape
    x0, y0, rw, rh = region if region is not None else (0, 0, w, h)
    if rw < 1 or rh < 1 or x0 < 0 or y0 < 0 or x0 + rw > w or y0 + rh > h:
        raise ValueError(f"region {x0},{y0},{rw},{rh} is not inside the {w}×{h} image")
    n = c * rw * rh
    if not 1 <= k <= n:
        raise ValueError(f"k = {k}: expected 1..{n} (the region's pixel count)")
    m = max(1, multiple)
    cx0, cy0 = max(0, (x0 - margin) // m * m), max(0, (y0 - margin) // m * m)
    cx1, cy1 = min(w, -(-(x0 + rw + margin) // m) * m), min(h, -(-(y0 + rh + margin) // m) * m)
    crop = y[..., cy0:cy1, cx0:cx1].float()
    ry, rx = y0 - cy0, x0 - cx0
    p = min(n, k + max(0, oversample))
    gen = torch.Generator().manual_seed(seed)
    d_y = None

    def embed(v: torch.Tensor) -> torch.Tensor:  # (n, p) region vectors → (p, C, ch, cw) crop images
        full = torch.zeros(v.shape[1], *crop.shape[1:], device=crop.device)
        full[:, :, ry : ry + rh, rx : rx + rw] = v.T.reshape(-1, c, rh, rw).to(crop.device)
        return full

    def restrict(t: torch.Tensor) -> torch.Tensor:  # (p, C, ch, cw) → (n, p)
        return t[:, :, ry : ry + rh, rx : rx + rw].reshape(t.shape[0], -1).T.cpu().float()

    def apply_j(v: torch.Tensor) -> torch.Tensor:
        nonlocal d_y
        e = embed(v)
        # step per unit of a unit-norm vector: ε·√n keeps the per-pixel step at ε
        step = (0.01 * sigma if eps is None else eps) * math.sqrt(n)
        d_y, jv = jacobian_vector_product(denoiser, crop, sigma, e, method, step, d_y)
        out = restrict(jv)
        if symmetric:
            out = 0.5 * (out + restrict(transpose_jacobian_vector_product(denoiser, crop, sigma, e)))
        return out

    v = _orth(torch.randn(n, p, generator=gen))
    history: list[list[float]] = []
    it = 0
    for it in range(1, iterations + 1):
        wv = apply_j(v)
        hmat = v.double().T @ wv.double()
        theta, u = torch.linalg.eigh(0.5 * (hmat + hmat.T))
        order = torch.argsort(theta, descending=True)
        theta, u = theta[order], u[:, order]
        history.append((sigma**2 * theta[:k]).tolist())
        v = (v.double() @ u).float()  # Ritz vectors and their images J·v
        wv = (wv.double() @ u).float()
        theta_k = theta[:k].float()
        resid = (wv[:, :k] - v[:, :k] * theta_k[None]).norm(dim=0) / theta_k.abs().clamp_min(1e-30)
        if bool((resid <= tol).all()) or it == iterations:
            break
        v = _orth(wv)
    vecs = v[:, :k]
    # sign convention: the largest-magnitude entry of each vector is positive
    idx = vecs.abs().argmax(dim=0)
    signs = torch.sign(vecs[idx, torch.arange(k)])
    vecs = vecs * torch.where(signs == 0, torch.ones_like(signs), signs)[None]
    if d_y is None:
        with torch.no_grad(), _no_autocast(crop.device):
            d_y = denoiser(crop, sigma).float()
    mean = d_y[..., ry : ry + rh, rx : rx + rw].cpu()
    return Components(eigenvalues=sigma**2 * theta_k, vectors=vecs.T.reshape(k, c, rh, rw), mean=mean,
                      residuals=resid.float(), iterations=it, region=(x0, y0, rw, rh),
                      crop=(cx0, cy0, cx1 - cx0, cy1 - cy0), symmetric=symmetric, history=history)


def std_map_image(std, vmax: float | None = None):
    """A viewable RGB picture (H', W', 3) float on [0,1] of a (H, W) std map: the map in viridis, pixel
    for pixel at the top left, and a colour bar labelled in the map's own units at 0, half and the top
    of the scale (top = `vmax`, default the 99.5th percentile of the finite values). H' = max(H, 40)."""
    import numpy as np

    from .plots import figure, rgb_array

    std = np.asarray(std, dtype=np.float64)
    if vmax is None:
        finite = std[np.isfinite(std)]
        vmax = float(np.percentile(finite, 99.5)) if finite.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
    h, w = std.shape
    bar_w, height = 90, max(h, 40)
    fig = figure(w + bar_w, height)
    ax = fig.add_axes((0, 1 - h / height, w / (w + bar_w), h / height))
    ax.set_axis_off()
    im = ax.imshow(np.nan_to_num(std), cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest", aspect="auto")
    cax = fig.add_axes(((w + 6) / (w + bar_w), 0.03, 12 / (w + bar_w), 0.94))
    bar = fig.colorbar(im, cax=cax, ticks=[0, vmax / 2, vmax], format="%.3g")
    bar.ax.tick_params(labelsize=7, length=2, pad=1)
    return rgb_array(fig) / 255.0
