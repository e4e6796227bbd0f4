"""The noise-conditional U-Net F and its EDM preconditioning D(x, σ), with the loss that trains it.

Karras, Aittala, Aila & Laine (2022), "Elucidating the design space of diffusion-based generative
models" (EDM), §5 and Table 1:

    D(x, σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ))
    c_skip = σ_d²/(σ²+σ_d²),  c_out = σ·σ_d/√(σ²+σ_d²),  c_in = 1/√(σ²+σ_d²),  c_noise = ¼·ln σ
    loss   = λ(σ)·‖D(u + σn, σ) − u‖²,  λ(σ) = 1/c_out(σ)²,  n ~ N(0, I)
    score(x, σ) = (D(x, σ) − x)/σ²                                   (Tweedie's formula)

`UNet` is F: a small residual U-Net without normalisation layers in which c_noise enters every
residual block as a scale/shift of its features. `EDMPrecond` is D; it holds the U-Net as `.net`, so
its state-dict keys (``net.stem.weight``, ...) are the tensor names of a scoretool model file.
Images are on the [0,1] scale and σ is the standard deviation of Gaussian noise on that scale.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as nnf
from torch import nn


@dataclass
class UNetConfig:
    """Architecture of the score network; stored in every weights file."""

    channels: int = 1
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    blocks_per_level: int = 2
    sigma_data: float = 0.5
    embed_dim: int = 64
    freq_min: float = 0.2
    freq_max: float = 20.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def as_sigma_batch(sigma, x: torch.Tensor) -> torch.Tensor:
    """σ given as a float, 0-d tensor or one value per batch item → tensor of shape (B,)."""
    s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    return s.reshape(x.shape[0])


class SigmaEmbedding(nn.Module):
    """Fourier features of c_noise = ¼·ln σ at geometric frequencies, then a 2-layer MLP."""

    def __init__(self, dim: int, freq_min: float, freq_max: float):
        super().__init__()
        freqs = torch.exp(torch.linspace(math.log(freq_min), math.log(freq_max), dim // 2))
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU())

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        arg = c_noise[:, None] * self.freqs[None, :] * (2 * math.pi)
        return self.mlp(torch.cat([arg.cos(), arg.sin()], dim=1))


class ResBlock(nn.Module):
    """x + conv(silu(conv(silu(x)) · (1 + scale(σ)) + shift(σ)))."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.affine = nn.Linear(embed_dim, 2 * c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        if emb.shape[0] == 1:
            # one σ for the whole batch (UNet.forward decides): fold the scale/shift into conv1's weights
            # and bias, conv(x)·(1+s) + t = conv_{W·(1+s), b·(1+s)+t}(x), which saves a full pass over h
            a = 1 + scale.flatten()
            h = nnf.conv2d(nnf.silu(x), self.conv1.weight * a[:, None, None, None],
                           self.conv1.bias * a + shift.flatten(), padding=self.conv1.padding)
        else:
            h = torch.addcmul(shift, self.conv1(nnf.silu(x)), 1 + scale)
        # in place: h and conv2's output are not kept for backward; at inference no buffer is allocated
        return self.conv2(nnf.silu(h, inplace=not torch.is_grad_enabled())).add_(self.skip(x))


class UNet(nn.Module):
    """F(x, c_noise): the residual U-Net inside the preconditioning, on (B, C, H, W) with H and W
    multiples of `multiple`; c_noise has shape (B,)."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        w, e = config.widths, config.embed_dim
        self.embed = SigmaEmbedding(e, config.freq_min, config.freq_max)
        self.stem = nn.Conv2d(config.channels, w[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        for i, width in enumerate(w):
            c_in = w[max(i - 1, 0)]
            blocks = [ResBlock(c_in if j == 0 else width, width, e) for j in range(config.blocks_per_level)]
            self.down.append(nn.ModuleList(blocks))
            if i < len(w) - 1:
                self.pool.append(nn.Conv2d(width, width, 2, stride=2))
        self.up = nn.ModuleList()
        self.unpool = nn.ModuleList()
        for i in reversed(range(len(w) - 1)):
            self.unpool.append(nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2))
            blocks = [ResBlock(2 * w[i] if j == 0 else w[i], w[i], e) for j in range(config.blocks_per_level)]
            self.up.append(nn.ModuleList(blocks))
        self.head = nn.Conv2d(w[0], config.channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def multiple(self) -> int:
        """Image sizes must be a multiple of this (the total down-sampling factor)."""
        return 2 ** (len(self.config.widths) - 1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() and bool((c_noise == c_noise[0]).all()):
            c_noise = c_noise[:1]  # one σ for all: one embedding, folded into the convolutions (ResBlock)
        emb = self.embed(c_noise)
        h = self.stem(x)
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
            if level < len(self.pool):
                skips.append(h)
                h = self.pool[level](h)
        for unpool, blocks in zip(self.unpool, self.up):
            h = torch.cat([unpool(h), skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
        return self.head(nnf.silu(h, inplace=not torch.is_grad_enabled()))


def edm_coefficients(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_skip, c_out, c_in) of EDM (Karras et al. 2022, Table 1) for σ of any shape."""
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()
    c_in = 1 / (sigma**2 + sigma_data**2).sqrt()
    return c_skip, c_out, c_in


class EDMPrecond(nn.Module):
    """D(x, σ) = c_skip·x + c_out·F(c_in·x, ¼ ln σ) around a `UNet` F built from `config`.

    x: (B, C, H, W) on the [0,1] scale plus noise, any H and W (reflect-padded to F's multiple and
    cropped back); σ: a float, a 0-d tensor or one value per image. The output is float32.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        self.net = UNet(config)

    @property
    def multiple(self) -> int:
        """The U-Net's size multiple (this wrapper pads to it, so any size works)."""
        return self.net.multiple

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = as_sigma_batch(sigma, x)
        x = x.float()
        c_skip, c_out, c_in = edm_coefficients(sigma[:, None, None, None], self.config.sigma_data)
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        z = c_in * x
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            z = nnf.pad(z, (0, pw, 0, ph), mode=mode)
        f = self.net(z, sigma.log() / 4)[..., :h, :w].float()
        return c_skip * x + c_out * f

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """s(x, σ) = (D(x, σ) − x)/σ²  (Tweedie's formula)."""
        s4 = as_sigma_batch(sigma, x)[:, None, None, None]
        return (self(x, sigma) - x) / s4**2


def edm_loss(denoiser, u: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, sigma_data: float,
             teacher=None) -> torch.Tensor:
    """Denoising score matching with EDM's weighting: mean of ‖D(u + σn, σ) − t‖² / c_out(σ)², t = u.

    Karras et al. 2022, Eq. 8 with λ(σ) = 1/c_out(σ)², which makes the effective target of F have unit
    variance at every σ. `denoiser` is D (an `EDMPrecond`, possibly wrapped for data parallelism);
    u, noise: (B, C, H, W); sigma: (B,). With a `teacher` denoiser, t = D_teacher(u + σn, σ)
    (distillation): both losses have the same minimiser when the teacher is the MMSE denoiser
    E[u | u + σn], and the teacher's target leaves out the variance of u around that mean.
    """
    s4 = sigma[:, None, None, None]
    weight = 1 / edm_coefficients(s4, sigma_data)[1] ** 2
    y = u + s4 * noise
    target = u
    if teacher is not None:
        with torch.no_grad():
            target = teacher(y, sigma).float()
    return (weight * (denoiser(y, sigma).float() - target) ** 2).mean()


def adapt_channels(net: EDMPrecond, channels: int) -> EDMPrecond:
    """The same network for another channel count (e.g. a grey prior to start a colour one):
    the stem sees the channel mean, and the head writes its output to every channel."""
    if net.config.channels == channels:
        return net
    new = EDMPrecond(UNetConfig.from_dict({**net.config.to_dict(), "channels": channels}))
    state = dict(net.net.state_dict())
    state["stem.weight"] = state["stem.weight"].sum(1, keepdim=True).repeat(1, channels, 1, 1) / channels
    state["head.weight"] = state["head.weight"].mean(0, keepdim=True).repeat(channels, 1, 1, 1)
    state["head.bias"] = state["head.bias"].mean(0, keepdim=True).repeat(channels)
    new.net.load_state_dict(state)
    return new


def _old_indices(new_len: int, old_len: int, segments: int) -> torch.Tensor:
    """Positions of the old channels along one axis of a widened tensor: the first old_len/segments
    of each of `segments` equal segments (a concatenation or a scale|shift pair keeps its layout)."""
    if new_len % segments or old_len % segments:
        raise ValueError("widths must scale every segment evenly")
    n, o = new_len // segments, old_len // segments
    return torch.cat([torch.arange(k * n, k * n + o) for k in range(segments)])


def widen(net: EDMPrecond, widths: list[int]) -> EDMPrecond:
    """The same function in a wider network (Net2Net-style function-preserving growth, Chen et al. 2016).

    Each old channel keeps its weights and reads old channels only (weights from new channels are 0), so
    D(x, σ) is unchanged; new channels get a fresh initialisation, read everything and start learning
    at once. Every width must be at least the old one."""
    old_cfg = net.config
    if len(widths) != len(old_cfg.widths) or any(n < o for n, o in zip(widths, old_cfg.widths)):
        raise ValueError(f"cannot widen {old_cfg.widths} to {widths}: same number of levels, no narrower level")
    if list(widths) == list(old_cfg.widths):
        return net
    new = EDMPrecond(UNetConfig.from_dict({**old_cfg.to_dict(), "widths": list(widths)}))
    old_state, state = net.net.state_dict(), new.net.state_dict()
    if old_state.keys() != state.keys():
        raise ValueError(f"cannot widen {old_cfg.widths} to {widths}: the layers differ (keep the width ratios)")
    for name, old in old_state.items():
        fresh = state[name]
        segments = [1] * old.ndim
        if ".affine." in name:
            segments[0] = 2  # [scale | shift]
        if name.startswith("up.") and (".0.conv1.weight" in name or ".0.skip.weight" in name):
            segments[1] = 2  # input = [unpooled | skip]
        index = [_old_indices(f, o, s) for f, o, s in zip(fresh.shape, old.shape, segments)]
        out_axis, in_axis = (1, 0) if name.startswith("unpool.") and old.ndim == 4 else (0, 1)
        if old.ndim >= 2 and fresh.shape[in_axis] != old.shape[in_axis]:
            reads_new = torch.ones(fresh.shape[in_axis], dtype=torch.bool)
            reads_new[index[in_axis]] = False
            old_out = torch.zeros(fresh.shape[out_axis], dtype=torch.bool)
            old_out[index[out_axis]] = True
            mask = old_out.reshape(-1, 1) & reads_new.reshape(1, -1)
            if out_axis == 1:
                mask = mask.T
            fresh[mask.reshape(*mask.shape, *([1] * (old.ndim - 2))).expand_as(fresh)] = 0
        fresh[torch.meshgrid(*index, indexing="ij")] = old
    new.net.load_state_dict(state)
    return new


def count_parameters(net: nn.Module) -> int:
    """Number of trainable and frozen parameters (buffers not counted)."""
    return sum(p.numel() for p in net.parameters())


def macs_per_pixel(net: EDMPrecond, size: int = 64) -> float:
    """Multiply-accumulates of one forward pass per image pixel (convolutions only).

    Counted on a batch of two images at two σ: with one σ for the whole batch, ResBlock folds the σ
    modulation into conv1's weights and calls the convolution functionally, which no module hook sees."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        k = mod.weight.shape[2] * mod.weight.shape[3]
        if isinstance(mod, nn.ConvTranspose2d):
            total += inp[0].numel() // inp[0].shape[0] * mod.out_channels * k
        else:
            total += out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * k

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        net(torch.zeros(2, net.config.channels, size, size), torch.tensor([0.1, 0.2]))
    for h in handles:
        h.remove()
    return total / (size * size)
