"""Model files: safetensors with the architecture, σ range and training record in the metadata.

A scoretool model file has metadata key ``format = "scoretool-model"`` and JSON strings under
``config`` (UNetConfig), ``info`` (σ range, training data, command, measured PSNR, ...).
Bundled models live in the top-level ``weights/`` folder and are addressed by name.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import ScoretoolError
from .io import ordinary_permissions
from .nets import ScoreUNet, UNetConfig

FORMAT = "scoretool-model"
DEFAULT_FOR_CHANNELS = {1: "prior-gray", 3: "prior-rgb"}


def bundled_dir() -> Path:
    """Folder of the bundled models: the source tree's weights/, or the installed package data."""
    source = Path(__file__).resolve().parent.parent / "weights"
    if source.is_dir():
        return source
    return Path(str(resources.files("scoretool") / "bundled"))


def bundled_models() -> dict[str, Path]:
    return {p.stem: p for p in sorted(bundled_dir().glob("*.safetensors")) if not p.name.endswith(".ckpt.safetensors")}


def save_model(path, net: ScoreUNet, info: dict, extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write net's weights (plus optional extra tensors, e.g. training state) with metadata."""
    tensors = {f"net.{k}": v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    tensors.update({k: v.detach().contiguous().cpu() for k, v in (extra or {}).items()})
    meta = {"format": FORMAT, "config": json.dumps(net.config.to_dict()), "info": json.dumps(info)}
    save_file(tensors, str(path), metadata=meta)
    ordinary_permissions(path)


def resolve_weights(name_or_path: str | None, channels: int | None = None) -> Path:
    """A bundled model name, or a path to a .safetensors file; None picks the default prior."""
    if name_or_path is None:
        if channels not in DEFAULT_FOR_CHANNELS:
            raise ScoretoolError(f"no default model for {channels}-channel images; pass --weights")
        name_or_path = DEFAULT_FOR_CHANNELS[channels]
    models = bundled_models()
    if name_or_path in models:
        return models[name_or_path]
    path = Path(name_or_path)
    if path.is_file():
        return path
    names = ", ".join(models) or "none"
    raise ScoretoolError(f"--weights {name_or_path}: not a bundled model name ({names}) nor a file")


def read_metadata(path) -> tuple[UNetConfig, dict]:
    path = Path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ScoretoolError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise ScoretoolError(f"{path}: not a scoretool model (safetensors metadata lacks format={FORMAT})")
    try:
        return UNetConfig.from_dict(json.loads(meta["config"])), json.loads(meta.get("info", "{}"))
    except (KeyError, json.JSONDecodeError, TypeError) as e:
        raise ScoretoolError(f"{path}: scoretool model metadata is damaged ({e})") from None


def load_model(name_or_path: str | None = None, channels: int | None = None) -> tuple[ScoreUNet, dict]:
    """Load a model by bundled name or path → (network in eval mode on the CPU, info dict)."""
    path = resolve_weights(name_or_path, channels)
    config, info = read_metadata(path)
    if channels is not None and config.channels != channels:
        raise ScoretoolError(f"{path}: model is for {config.channels}-channel images, input has {channels}")
    tensors = load_file(str(path))
    state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    net = ScoreUNet(config)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ScoretoolError(f"{path}: weights do not match the stored architecture ({e})") from None
    info = {"name": path.stem, "path": str(path), **info}
    return net.eval(), info


def update_info(path, **fields) -> None:
    """Add or replace fields of a model file's `info` metadata (e.g. measured_psnr), atomically."""
    from safetensors import safe_open

    path = Path(path)
    read_metadata(path)  # refuses files that are not scoretool models
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    info = {**json.loads(meta.get("info", "{}")), **fields}
    meta["info"] = json.dumps(info)
    tmp = path.with_name(path.name + ".tmp")
    save_file(load_file(str(path)), str(tmp), metadata=meta)
    ordinary_permissions(tmp)
    os.replace(tmp, path)


def load_extra(path) -> dict[str, torch.Tensor]:
    """The non-network tensors of a file (training state of a checkpoint)."""
    return {k: v for k, v in load_file(str(path)).items() if not k.startswith("net.")}
