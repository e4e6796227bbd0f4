"""Model files: safetensors with the architecture, σ range and training record in the metadata.

A scoretool model file has metadata key ``format = "scoretool-model"`` and JSON strings under
``config`` (UNetConfig), ``info`` (σ range, training data, command, measured PSNR, ...).
Bundled models live in the top-level ``weights/`` folder and are addressed by name.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import ModelError, ScoretoolError
from .files import atomic_output, ordinary_permissions
from .nets import EDMPrecond, UNetConfig

FORMAT = "scoretool-model"
DEFAULT_FOR_CHANNELS = {1: "prior-gray", 3: "prior-rgb"}
# the smaller prior trained on the same data, for light passes (blind.pd_denoise's grid-removing pass)
FAST_SIBLING = {"prior-gray": "prior-gray-fast", "prior-rgb": "prior-rgb-fast"}


def bundled_dir() -> Path:
    """Folder of the bundled models: the source tree's weights/, or the installed package data."""
    source = Path(__file__).resolve().parent.parent / "weights"
    if source.is_dir():
        return source
    return Path(str(resources.files("scoretool") / "bundled"))


def bundled_models() -> dict[str, Path]:
    """Name → path of every bundled model (checkpoints left out), sorted by name."""
    return {p.stem: p for p in sorted(bundled_dir().glob("*.safetensors")) if not p.name.endswith(".ckpt.safetensors")}


def save_model(path, net: EDMPrecond, info: dict, extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write net's weights (plus optional extra tensors, e.g. training state) with metadata."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}  # keys net.*
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
    raise ModelError(f"{name_or_path}: not a bundled model name ({names}) nor a file")


def read_metadata(path) -> tuple[UNetConfig, dict]:
    """(architecture, info) from a model file's metadata, without reading its tensors; ModelError if the
    file is not a readable scoretool model."""
    path = Path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path}: not a scoretool model (safetensors metadata lacks format={FORMAT})")
    try:
        config, info = UNetConfig.from_dict(json.loads(meta["config"])), json.loads(meta.get("info", "{}"))
    except (KeyError, json.JSONDecodeError, TypeError) as e:
        raise ModelError(f"{path}: scoretool model metadata is damaged ({e})") from None
    if not isinstance(info, dict):
        raise ModelError(f"{path}: scoretool model metadata is damaged (info is not a JSON object)")
    return config, info


def _check_architecture(path: Path, config: UNetConfig) -> None:
    """The metadata's architecture, built without memory (meta device), must have exactly the file's
    tensor shapes: hostile metadata (widths of 10⁶, 10⁵ blocks) is refused before anything is allocated
    or built."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith("net.")}
        if len(config.widths) * config.blocks_per_level > len(stored):  # every block has tensors: no build needed
            raise ModelError(f"{path}: weights do not match the stored architecture ({len(config.widths)} levels × "
                             f"{config.blocks_per_level} blocks for {len(stored)} tensors)")
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in EDMPrecond(config).state_dict().items()}
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - any config the network cannot be built from is damaged metadata
        raise ModelError(f"{path}: scoretool model metadata is damaged ({type(e).__name__}: {e})") from None
    if stored != expected:
        wrong = sorted(set(stored.items()) ^ set(expected.items()))[:1]
        raise ModelError(f"{path}: weights do not match the stored architecture (first difference: {wrong})")


def load_model(name_or_path: str | None = None, channels: int | None = None) -> tuple[EDMPrecond, dict]:
    """Load a model by bundled name or path → (network in eval mode on the CPU, info dict)."""
    path = resolve_weights(name_or_path, channels)
    config, info = read_metadata(path)
    if channels is not None and config.channels != channels:
        raise ScoretoolError(f"{path}: model is for {config.channels}-channel images, input has {channels}")
    _check_architecture(path, config)
    tensors = load_file(str(path))
    state = {k: v for k, v in tensors.items() if k.startswith("net.")}
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values ({bad[0]}, ...)")
    net = EDMPrecond(config)
    net.load_state_dict(state)
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
    tensors = load_file(str(path))
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_extra(path) -> dict[str, torch.Tensor]:
    """The non-network tensors of a file (training state of a checkpoint); NaN or infinite ones are refused."""
    extra = {k: v for k, v in load_file(str(path)).items() if not k.startswith("net.")}
    bad = [k for k, v in extra.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values ({bad[0]}, ...)")
    return extra
