"""A model loaded once and called many times: `scoretool.load(...)` → Model.

    >>> m = scoretool.load("prior-gray")
    >>> for y in frames:                       # numpy (H, W), (H, W, C), (B, H, W, C) or torch (B, C, H, W)
    ...     x_hat = m.denoise(y, sigma=0.1)    # same kind, shape and device as y

The module-level functions (`scoretool.denoise`, ...) keep a small cache of loaded models keyed by their
arguments; a Model is the explicit form for loops, without the per-call lookup and checks.
"""

from __future__ import annotations

import numpy as np
import torch

from .engine import Engine, select_device
from .errors import ScoretoolError
from .weights import load_model


class Model:
    """A score prior's denoiser D(x, σ) on a device, with the engine's precision policy and tiling.

    Attributes:
        engine: the Engine (network, device, precision, tile size).
        info: the model file's record (name, path, σ range, training data, ...).
        channels: image channels the model takes (1 grey, 3 colour).
    """

    def __init__(self, engine: Engine, info: dict):
        self.engine, self.info = engine, info
        self.channels = engine.net.config.channels

    def __repr__(self) -> str:
        return f"Model({self.info.get('name')!r}, channels={self.channels}, device={self.engine.device})"

    def denoise(self, image, sigma) -> np.ndarray | torch.Tensor:
        """x̂ = D(y, σ), the posterior mean E[x | y] for Gaussian noise of std σ (Tweedie).

        Args:
            image: noisy image(s) on the [0,1] scale, unclipped: a numpy array (H, W), (H, W, C) or
                (B, H, W, C), or a torch tensor (B, C, H, W) on any device.
            sigma: noise std on the [0,1] scale: a float, or one value per image (B,).
        Returns:
            The same kind as `image`: numpy float32 of the same shape, or a float32 tensor (B, C, H, W) on
            image's device. A batch of images no larger than the engine's tile goes through the network
            in one pass; larger images are denoised one at a time in blended tiles (Engine.denoise_tiled).
        """
        if isinstance(image, torch.Tensor):
            if image.ndim != 4:
                raise ScoretoolError(f"a tensor must be (B, C, H, W), got shape {tuple(image.shape)}")
            return self._denoise_batch(image, sigma).to(image.device)
        from .api import _as_batch, _from_batch

        x, shape = _as_batch(image)
        return _from_batch(self._denoise_batch(x, sigma), shape)

    def _denoise_batch(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """(B, C, H, W) → D(x, σ), float32, on the engine's device (one pass) or x's (tiled)."""
        b, c, h, w = x.shape
        if c != self.channels:
            raise ScoretoolError(f"{self.info.get('name')}: model is for {self.channels}-channel images, input has {c}")
        sig = torch.as_tensor(sigma, dtype=torch.float32).flatten()
        if sig.numel() not in (1, b):
            raise ScoretoolError(f"sigma: one value or one per image ({b}), got {sig.numel()}")
        if not bool((sig > 0).all()):
            raise ScoretoolError(f"sigma {sig.tolist()}: must be positive")
        e = self.engine
        if h <= e.tile and w <= e.tile:
            return e.denoise(x, sig.to(e.device).expand(b))
        return torch.cat([e.denoise_tiled(xi[None], float(sig[min(i, sig.numel() - 1)])) for i, xi in enumerate(x)])


def load(weights: str | None = None, channels: int | None = None, device: str = "auto", precision: str = "auto",
         tile: int = 512) -> Model:
    """Load a model once for many calls.

    Args:
        weights: bundled model name (see `scoretool weights`) or .safetensors path; None: the default prior
            for `channels` (prior-gray for 1, prior-rgb for 3).
        device: auto (CUDA, then MPS, then CPU), cpu, cuda or mps. precision: auto (bf16 where the hardware
            has it), fp32 or bf16. tile: images with a side above this are denoised in blended tiles.
    """
    if weights is None and channels is None:
        raise ScoretoolError("load: give weights (a model name or path) or channels (1 or 3) for the default prior")
    net, info = load_model(weights, channels)
    return Model(Engine(net, select_device(device), precision, tile=tile), info)
