"""Models: what a weights file is (kind, channels, metadata), the bundled ones, and the compute device.
Loading is `scoretool.load` (scoretool.model); training and export are re-exported by scoretool.api."""

from __future__ import annotations

from pathlib import Path

import torch

from ..engine import bf16_available, select_device
from ..errors import ScoretoolError
from ..weights import bundled_models, read_metadata, resolve_weights

__all__ = ["bundled_models", "check_sigma_a", "device_report", "is_noise2score", "model_channels", "model_summary", "select_device"]


def is_noise2score(weights: str | None, channels: int | None = None) -> bool:
    """Whether `weights` is a Noise2Score model (the score of *noisy* images, kind noise2score); None, the
    default prior, is not."""
    if weights is None:
        return False
    return read_metadata(resolve_weights(weights, channels))[1].get("kind") == "noise2score"


def check_sigma_a(sigma_a: float | None, weights: str | None) -> None:
    """σ_a (`--sigma-a`): in (0, 0.1] and only with a Noise2Score model, whose score s(y, σ_a) it reads."""
    if sigma_a is None:
        return
    if not 0 < sigma_a <= 0.1:
        raise ScoretoolError(f"--sigma-a {sigma_a}: expected a value in (0, 0.1]")
    if not is_noise2score(weights):
        raise ScoretoolError(f"--sigma-a reads a Noise2Score model's score; {weights or 'the default prior'} is a clean prior")


def model_channels(weights: str | None, channels: int) -> int:
    """Channels of the model `weights` would load for `channels`-channel input (a grey Noise2Score model is
    applied channel by channel to colour input: each channel is one grey image)."""
    if weights is None:
        return channels
    config, info = read_metadata(resolve_weights(weights, channels))
    return config.channels if config.channels == 1 and channels == 3 and info.get("kind") == "noise2score" else channels


def model_summary(path: Path) -> dict:
    """A weights file's card: name, path, channels, kind, σ range, training data and steps, noise,
    measured PSNR, size in MB."""
    config, meta = read_metadata(path)
    return {"name": path.stem, "path": str(path), "channels": config.channels,
            "kind": meta.get("kind"), "sigma_range": [meta.get("sigma_min"), meta.get("sigma_max")],
            "training_data": meta.get("training_data"), "steps": meta.get("steps"),
            "noise": meta.get("noise") or None, "measured_psnr": meta.get("measured_psnr"),
            "size_mb": round(path.stat().st_size / 2**20, 2)}


def device_report(device: str = "auto") -> dict:
    """The set-up: scoretool and torch versions, the device `device` selects, CUDA, threads, bf16 support
    and the bundled model names."""
    from .. import __version__

    dev = select_device(device)
    return {"version": __version__, "torch": torch.__version__, "device": str(dev), "cuda_available": torch.cuda.is_available(),
            "threads": torch.get_num_threads(), "bf16_available": bf16_available(dev),
            "bundled_weights": sorted(bundled_models())}
