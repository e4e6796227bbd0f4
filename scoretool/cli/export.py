"""`scoretool export`: a model's denoiser D(x, σ) as an ONNX graph or a TorchScript module."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import app
from .common import Common, command


@command(app, "overwrite")
def export(
    common: Common,
    model: Annotated[str, typer.Argument(help="Bundled model name (see `scoretool weights`) or a .safetensors path.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file: .onnx (ONNX) or .pt (TorchScript).")],
    fmt: Annotated[str | None, typer.Option("--format", help="onnx or torchscript (default: from the output's suffix).")] = None,
    opset: Annotated[int | None, typer.Option("--opset", help="ONNX opset version (default: scoretool.export.OPSET, 17).")] = None,
) -> None:
    """Export the denoiser D(x, σ) for other runtimes: inputs x (B, C, H, W) float32 on the [0,1] scale and
    sigma (a scalar or one value per image, same scale); batch, height and width are free (each side at
    least the model's size multiple). Output: D(x, σ), same shape as x."""
    from ..api import export_model
    from ..errors import ScoretoolError
    from ..export import export_format

    if opset is not None and export_format(output, fmt) != "onnx":
        raise ScoretoolError(f"--opset {opset}: an ONNX setting, and {output} is TorchScript")
    common.claim_output(output, "exported model")
    result = export_model(model, output, fmt, overwrite=True, **({"opset": opset} if opset else {}))
    if common.json:
        common.emit({"command": "export", **result})
    else:
        common.notice(f"wrote {result['path']} ({result['format']}, {result['channels']} channel(s), "
                      f"sides a multiple of {result['multiple']} after padding, {result['bytes'] / 2**20:.1f} MB)")
