"""`scoretool info` and `scoretool weights`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import __version__
from . import app
from .common import Common, DebugOpt, DeviceOpt, JsonOpt, plain_console, run_command


@app.command()
def info(device: DeviceOpt = "auto", json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Version, compute device, threads, bf16 support and bundled weights."""
    import torch

    from ..engine import bf16_available, select_device
    from ..weights import bundled_models
    common = Common(device=device, json=json, debug=debug)

    def body():
        dev = select_device(device)
        payload = {
            "version": __version__,
            "torch": torch.__version__,
            "device": str(dev),
            "cuda_available": torch.cuda.is_available(),
            "threads": torch.get_num_threads(),
            "bf16_available": bf16_available(dev),
            "bundled_weights": sorted(bundled_models()),
        }
        if json:
            common.emit(payload)
        else:
            for k, v in payload.items():
                typer.echo(f"{k:16s} {v}")

    run_command(common, body)


def model_summary(path: Path) -> dict:
    from ..weights import read_metadata
    config, meta = read_metadata(path)
    return {"name": path.stem, "path": str(path), "channels": config.channels,
            "kind": meta.get("kind"), "sigma_range": [meta.get("sigma_min"), meta.get("sigma_max")],
            "training_data": meta.get("training_data"), "steps": meta.get("steps"),
            "noise": meta.get("noise") or None, "measured_psnr": meta.get("measured_psnr"),
            "size_mb": round(path.stat().st_size / 2**20, 2)}


@app.command()
def weights(
    paths: Annotated[list[Path] | None, typer.Argument(help="Extra .safetensors files to describe.")] = None,
    json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """List the bundled models (and any given files) with their metadata."""
    from ..weights import bundled_models
    common = Common(json=json, debug=debug)

    def body():
        rows = [model_summary(p) for p in bundled_models().values()] + [model_summary(p) for p in paths or []]
        if json:
            common.emit(rows)
            return
        table = Table("name", "ch", "kind", "σ range", "trained on", "steps", "PSNR")
        for r in rows:
            lo, hi = r["sigma_range"]
            table.add_row(r["name"], str(r["channels"]), str(r["kind"]), f"{lo}–{hi}", str(r["training_data"]),
                          str(r["steps"]), str(r["measured_psnr"] or "–"))
        plain_console().print(table)

    run_command(common, body)
