"""`scoretool demo`: every command once on bundled sample images, offline, with montages and a table."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..files import atomic_output
from . import app
from .common import Common, command, plain_console


@command(app, "device", "seed", "overwrite")
def demo(
    common: Common,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the montages and results.json (created if missing).")] = Path("scoretool-demo"),
    steps: Annotated[int, typer.Option("--steps", help="Network evaluations per restoration task (more = better, slower).")] = 50,
) -> None:
    """Denoise, restore, score OOD and evaluate on scikit-image sample images; write montages and a PSNR table.

    Montages, left to right: clean | degraded | (baseline) | scoretool. PSNR in dB, data range 1.
    """
    from ..api import DEMO_OUTPUTS, run_demo

    for name in DEMO_OUTPUTS:  # the output policy, before any work: existing files only with --overwrite
        common.claim_output(output / name, "demo file")
    with common.progress("demo", 10) as advance:
        rows = run_demo(output, steps=steps, device=common.device, seed=common.seed, progress=lambda name: advance(1, status=name))
    with atomic_output(output / "results.json") as tmp:
        tmp.write_text(jsonlib.dumps(rows, indent=2))
    if common.json:
        common.emit({"command": "demo", "output": str(output), "results": rows})
    else:
        table = Table("task", "model", "baseline", "baseline dB", "scoretool dB", "other", "s", title="scoretool demo")
        for r in rows:
            other = f"AUROC {r['auroc']}" if "auroc" in r else (f"residual {r['residual']:.1e}" if "residual" in r else "")
            table.add_row(r["task"], str(r.get("model") or ""), str(r.get("baseline") or ""),
                          str(r.get("baseline_psnr") or ""), str(r.get("psnr") or ""), other, str(r["seconds"]))
        plain_console().print(table)
        for r in rows:
            if r.get("note"):
                common.notice(f"{r['task']}: {r['note']}")
        common.notice(f"montages and results.json in {output}/")
    failed = [r for r in rows if str(r.get("note", "")).startswith("failed")]
    return 1 if failed else 0
