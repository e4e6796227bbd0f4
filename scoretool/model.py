"""A model loaded once and called many times: `scoretool.load(...)` → Model, the denoiser every method takes.

    >>> m = scoretool.load("prior-gray")
    >>> for y in frames:                       # numpy (H, W), (H, W, C), (B, H, W, C) or torch (B, C, H, W)
    ...     x_hat = m.denoise(y, sigma=0.1)    # same kind, shape and device as y

A Model is also the callable D(x, σ) (engine.Denoiser) that the methods (Tweedie, DDNM, OOD, SURE,
uncertainty, pixel-shuffle denoising) take: tiling, precision and the flip/rotation ensemble are set
once on it (`configured`), so no method builds its own wrapper around the network. The functions of
scoretool.api keep a small cache of loaded models keyed by their arguments (`loaded`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .engine import Engine, dihedral_ensemble, select_device
from .errors import ScoretoolError
from .weights import load_model, read_metadata, resolve_weights


def channels_of(image: np.ndarray) -> int:
    """Channels of an (H, W) (1), (H, W, C) or (F, H, W, C) array."""
    return 1 if np.ndim(image) == 2 else int(np.shape(image)[-1])


def grey_in_colour(image: np.ndarray) -> bool:
    """A 3-channel (H, W, 3) or (F, H, W, 3) array whose channels are all equal: a grey image saved as RGB."""
    arr = np.asarray(image)
    return channels_of(arr) == 3 and np.ndim(arr) > 2 and bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all())


def grey_content(image: np.ndarray, weights: str | None) -> bool:
    """Whether `image` is taken as grey: grey saved as RGB (`grey_in_colour`), with the default weights (the grey
    prior takes it) or a grey model given. `denoise` and `noise` read it so and give grey back as three channels."""
    return grey_in_colour(image) and (weights is None or read_metadata(resolve_weights(weights))[0].channels == 1)


def as_batch(image: np.ndarray) -> tuple[torch.Tensor, tuple]:
    """(H, W), (H, W, C) or (F, H, W, C) float array → (F, C, H, W) tensor, and the original shape."""
    arr = np.asarray(image, dtype=np.float32)
    shape = arr.shape
    if arr.ndim == 2:
        arr = arr[None, :, :, None]
    elif arr.ndim == 3:
        arr = arr[None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))), shape


def from_batch(x: torch.Tensor, shape: tuple) -> np.ndarray:
    """The inverse of `as_batch`: (F, C, H, W) tensor → a numpy array of `shape`."""
    return x.permute(0, 2, 3, 1).cpu().numpy().reshape(shape)


class Model:
    """A score prior's denoiser D(x, σ) on a device, with the engine's precision policy and tiling.

    Attributes:
        engine: the Engine (network, device, precision, tile size).
        info: the model file's record (name, path, kind, σ range, training data, ...).
        channels: image channels the model takes (1 grey, 3 colour).
        ensemble: 1, 2, 4 or 8 flips/rotations averaged per call (engine.dihedral_ensemble).
        fp32_below: σ below which the network runs in fp32 whatever the precision (0 = never).
        differentiable: calls are one network pass with gradients kept (Jacobian products), no tiling.
        progress: called with the number of images or tiles done (tiled calls).
    """

    def __init__(self, engine: Engine, info: dict, *, ensemble: int = 1, fp32_below: float = 0.0,
                 differentiable: bool = False, progress=None):
        self.engine, self.info = engine, info
        self.channels = engine.net.config.channels
        self.ensemble, self.fp32_below, self.differentiable, self.progress = ensemble, fp32_below, differentiable, progress
        fine = fp32_below > 0 and engine.precision != "fp32"
        self._fp32 = Engine(engine.net, engine.device, "fp32", engine.tile, engine.overlap) if fine else engine

    def __repr__(self) -> str:
        return f"Model({self.info.get('name')!r}, channels={self.channels}, device={self.engine.device})"

    @property
    def kind(self) -> str:
        """`prior` (score of clean images) or `noise2score` (score of noisy images)."""
        return self.info.get("kind") or "prior"

    def configured(self, *, precision: str | None = None, **settings) -> Model:
        """The same network (not loaded again) with another precision or other settings (ensemble,
        fp32_below, differentiable, progress; see the class attributes)."""
        e = self.engine
        engine = e if precision in (None, e.precision) else Engine(e.net, e.device, precision, e.tile, e.overlap)
        current = {"ensemble": self.ensemble, "fp32_below": self.fp32_below, "differentiable": self.differentiable,
                   "progress": self.progress}
        return Model(engine, self.info, **{**current, **settings})

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """D(x, σ) for (B, C, H, W) images on [0,1] and σ a float or one value per image (B,).

        One σ for the batch: Engine.denoise_tiled (images up to the tile size together, larger ones in
        blended tiles). One σ per image: one pass when the images fit a tile, else image by image.
        Returns float32 on x's device (on the engine's device when `differentiable`).
        """
        if self.differentiable:
            return self.engine.forward(x, sigma)
        sig = torch.as_tensor(sigma, dtype=torch.float32).flatten().cpu()
        lo = sig < self.fp32_below
        if bool(lo.any()) and not bool(lo.all()):
            out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
            out[lo], out[~lo] = self(x[lo], sig[lo]), self(x[~lo], sig[~lo])
            return out
        engine = self._fp32 if bool(lo[0]) else self.engine
        if bool((sig == sig[0]).all()):
            return engine.denoise_tiled(x, float(sig[0]), self.progress, self.ensemble)
        if max(x.shape[-2:]) > engine.tile:
            return torch.cat([self(xi[None], s) for xi, s in zip(x, sig)])
        sig = sig.to(engine.device)
        return dihedral_ensemble(lambda t: engine.denoise(t, sig), x.to(engine.device), self.ensemble).to(x.device)

    def denoise(self, image, sigma) -> np.ndarray | torch.Tensor:
        """x̂ = D(y, σ), the posterior mean E[x | y] for Gaussian noise of std σ (Tweedie).

        Args:
            image: noisy image(s) on the [0,1] scale, unclipped: a numpy array (H, W), (H, W, C) or
                (B, H, W, C), or a torch tensor (B, C, H, W) on any device.
            sigma: noise std on the [0,1] scale: a float, or one value per image (B,).
        Returns:
            The same kind as `image`: numpy float32 of the same shape, or a float32 tensor (B, C, H, W) on
            image's device. Images larger than the engine's tile are denoised in blended tiles.
        """
        if isinstance(image, torch.Tensor):
            if image.ndim != 4:
                raise ScoretoolError(f"a tensor must be (B, C, H, W), got shape {tuple(image.shape)}")
            return self._checked(image, sigma)
        x, shape = as_batch(image)
        return from_batch(self._checked(x, sigma), shape)

    def _checked(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """D(x, σ) after checking the channels and σ (positive; one value or one per image)."""
        b, c = x.shape[:2]
        if c != self.channels:
            raise ScoretoolError(f"{self.info.get('name')}: model is for {self.channels}-channel images, input has {c}")
        sig = torch.as_tensor(sigma, dtype=torch.float32).flatten()
        if sig.numel() not in (1, b):
            raise ScoretoolError(f"sigma: one value or one per image ({b}), got {sig.numel()}")
        if not bool((sig > 0).all()):
            raise ScoretoolError(f"sigma {sig.tolist()}: must be positive")
        return self(x, sig)


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


@functools.lru_cache(maxsize=4)
def loaded(weights: str | None, channels: int, device: str = "auto", precision: str = "auto",
           tile: int = 512) -> Model:
    """`load`, cached by its arguments (the module-level API functions share models this way)."""
    return load(weights, channels, device, precision, tile)
