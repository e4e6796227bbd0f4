"""Export a model's denoiser D(x, σ) as an ONNX graph or a TorchScript module for other runtimes.

The exported graph takes x (B, C, H, W) float32 on the [0,1] scale and σ on the same scale, either a
scalar or one value per image (shape (B,), or (1,) for all), with B, H and W free, and returns D(x, σ)
(B, C, H, W): the same EDM-preconditioned network as EDMPrecond.forward, including the reflect padding
to the U-Net's multiple and the crop back. H and W must be at least that multiple (`scoretool.multiple`
in the ONNX metadata).

    >>> export_model("prior-gray", "prior-gray.onnx")
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as nnf
from torch import nn

from .errors import ScoretoolError
from .files import atomic_output
from .nets import EDMPrecond
from .weights import load_model

FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".torchscript": "torchscript"}
OPSET = 17


class TraceableDenoiser(nn.Module):
    """D(x, σ) of an EDMPrecond written so that a trace records it for every batch and image size.

    EDMPrecond.forward decides in Python whether to pad and whether one σ serves the whole batch (then it
    folds σ's scale/shift into the convolutions); a trace would freeze those decisions for the example's
    shape. Here the padding is shape-independent (reflect-pad by multiple−1, then slice to the next
    multiple: the same pixels as padding by exactly what is missing), the network sees a padded image so
    its own padding branch is never taken, and it runs the unfolded per-image path (grad mode on while
    tracing). The result equals EDMPrecond.forward up to float rounding."""

    def __init__(self, net: EDMPrecond):
        super().__init__()
        self.net = net
        self.multiple = net.multiple

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = sigma.float().reshape(-1).expand(x.shape[0])
        h, w = x.shape[-2], x.shape[-1]
        m = self.multiple
        z = x.float()
        if m > 1:
            z = nnf.pad(z, (0, m - 1, 0, m - 1), mode="reflect")
            z = z[..., : (h + m - 1) // m * m, : (w + m - 1) // m * m]
        with torch.enable_grad():  # UNet.forward folds σ into the weights only without grad
            out = self.net(z, sigma)
        return out[..., :h, :w]


def export_format(path, fmt: str | None = None) -> str:
    """"onnx" or "torchscript", from `fmt` or else from the file's suffix (.onnx, .pt); a known suffix
    that names the other format is refused."""
    if fmt is not None:
        name = fmt.lower()
        if name in ("pt", "jit"):
            name = "torchscript"
        if name not in ("onnx", "torchscript"):
            raise ScoretoolError(f"--format {fmt}: expected onnx or torchscript")
        suffix = Path(path).suffix.lower()
        if FORMATS.get(suffix, name) != name:
            raise ScoretoolError(f"{path}: a {suffix} file holds {FORMATS[suffix]}, not {name} (--format {fmt})")
        return name
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ScoretoolError(f"{path}: cannot tell the format from '{suffix or 'no suffix'}' (use .onnx or .pt, or --format)")
    return FORMATS[suffix]


def _examples(net: EDMPrecond) -> tuple[torch.Tensor, torch.Tensor]:
    """Trace inputs: two images of an odd size with two different σ (neither a batch of one nor one σ)."""
    m = net.multiple
    x = torch.rand(2, net.config.channels, 3 * m + 1, 2 * m + 3, generator=torch.Generator().manual_seed(0))
    return x, torch.tensor([0.05, 0.2])


def _trace(net: EDMPrecond) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings for EDMPrecond's shape checks, all constant here
        return torch.jit.trace(TraceableDenoiser(net).eval(), _examples(net), check_trace=False)


def _write_onnx(net: EDMPrecond, info: dict, path: Path, opset: int) -> None:
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(TraceableDenoiser(net).eval(), _examples(net), str(path), dynamo=False, opset_version=opset,
                          input_names=["x", "sigma"], output_names=["denoised"],
                          dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}, "sigma": {0: "sigmas"},
                                        "denoised": {0: "batch", 2: "height", 3: "width"}})
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    model.graph.input[1].type.tensor_type.ClearField("shape")  # σ of any rank: a scalar, (1,) or (B,)
    for key, value in metadata(net, info).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def metadata(net: EDMPrecond, info: dict) -> dict[str, str]:
    """What a runtime needs besides the graph: channels, size multiple, σ range, the model's record."""
    return {"scoretool.model": str(info.get("name")), "scoretool.channels": str(net.config.channels),
            "scoretool.multiple": str(net.multiple), "scoretool.sigma_scale": "[0,1]",
            "scoretool.info": json.dumps({k: v for k, v in info.items() if k != "path"}, default=str)}


def export_model(weights: str | None, path, fmt: str | None = None, overwrite: bool = False,
                 opset: int = OPSET) -> dict:
    """Write the denoiser D(x, σ) of `weights` (bundled name or .safetensors path) to `path`.

    Args:
        fmt: "onnx" or "torchscript"; default from the suffix (.onnx, .pt).
        overwrite: replace an existing file (otherwise an InputError). The file is written atomically.
        opset: ONNX opset version.
    Returns:
        {"path", "format", "model", "channels", "multiple", "bytes"}.
    """
    fmt = export_format(path, fmt)
    net, info = load_model(weights)
    net = net.float().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    path = Path(path)
    with atomic_output(path, overwrite) as tmp:
        if fmt == "onnx":
            try:
                import onnx  # noqa: F401
            except ImportError:
                raise ScoretoolError("ONNX export needs the onnx package (pip install 'scoretool[export]')") from None
            _write_onnx(net, info, tmp, opset)
        else:
            traced = _trace(net)
            torch.jit.save(traced, str(tmp), _extra_files={"scoretool.json": json.dumps(metadata(net, info))})
    return {"path": str(path), "format": fmt, "model": info.get("name"), "channels": net.config.channels,
            "multiple": net.multiple, "bytes": path.stat().st_size}
