"""`scoretool info` and `scoretool weights`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import ScoretoolError
from . import app
from .common import Common, command, one_line, plain_console


@command(app, "device")
def info(common: Common) -> None:
    """Version, compute device, threads, bf16 support and bundled weights."""
    from ..api import device_report

    payload = device_report(common.device)
    if common.json:
        common.emit(payload)
    else:
        for k, v in payload.items():
            typer.echo(f"{k:16s} {v}")


def psnr_text(measured: dict | None) -> str:
    """{"BSD68 σ=25": 29.27, …} → "BSD68 σ=25 29.27, …" (– when nothing was measured)."""
    return ", ".join(f"{k} {v}" for k, v in measured.items()) if measured else "–"


@command(app)
def weights(
    common: Common,
    paths: Annotated[list[Path] | None, typer.Argument(help="Extra .safetensors files to describe.")] = None,
) -> None:
    """List the bundled models (and any given files) with their metadata. A given file that is not a
    scoretool model is reported (with --json, a row with its path and error) and the exit code is 1; the
    others are still listed."""
    from ..api import bundled_models, model_summary

    rows, failed = [model_summary(p) for p in bundled_models().values()], []
    for path in paths or []:
        try:
            rows.append(model_summary(path))
        except ScoretoolError as e:
            message = str(e) if str(path) in str(e) else f"{path}: {e}"
            common.error(message)
            failed.append({"path": str(path), "error": one_line(message)})
    code = 1 if failed else 0
    if common.json:
        common.emit(rows + failed)
        return code
    table = Table("name", "ch", "kind", "σ range", "trained on", "steps", "PSNR")
    for r in rows:
        lo, hi = r["sigma_range"]
        table.add_row(r["name"], str(r["channels"]), str(r["kind"]), f"{lo}–{hi}", str(r["training_data"]),
                      str(r["steps"]), psnr_text(r["measured_psnr"]))
    plain_console().print(table)
    return code
