"""What every command shares: options, error → exit-code policy, progress, batch file processing.

Exit codes: 0 all done; 1 some inputs failed (the others were processed and reported);
2 usage error or nothing could be processed.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import InputError, ScoretoolError
from ..io import IMAGE_SUFFIXES, list_images, output_path

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2

# ---- options shared by commands (same names and meanings everywhere: shared/docs/cli.md) ----
DeviceOpt = Annotated[str, typer.Option("--device", help="Compute device: auto (CUDA, then MPS, then CPU), cpu, cuda or mps.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed for noise and sampling (integer).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON result on stdout; messages go to stderr.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or notices; errors are still printed.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files (default: skip them).")]
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Also process images in sub-folders.")]
WeightsOpt = Annotated[str | None, typer.Option("--weights", "-w", help="Bundled model name (see `scoretool weights`) or a .safetensors path. Default: prior-gray for grey input, prior-rgb for colour.")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Output file (for one input file) or folder (created if missing).")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="Output format png, tiff or npy (default: the input's format and dtype; npy and float TIFF are not clipped).")]
RangeOpt = Annotated[str | None, typer.Option("--range", help="MIN,MAX of float/.npy input values that map to [0,1] (default 0,1).")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="Network arithmetic: auto (bf16 where the hardware has it), fp32 or bf16.")]
TileOpt = Annotated[int, typer.Option("--tile", help="Tile size in pixels for large images (overlapping tiles, blended; bounds memory).")]


def parse_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ScoretoolError(f"--range {text}: expected MIN,MAX (two numbers)") from None
    if not hi > lo:
        raise ScoretoolError(f"--range {text}: MAX must be greater than MIN")
    return lo, hi


@dataclass
class Common:
    device: str = "auto"
    seed: int = 0
    json: bool = False
    quiet: bool = False
    debug: bool = False
    overwrite: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True, no_color=bool(os.environ.get("NO_COLOR"))))

    def notice(self, msg: str) -> None:
        if not self.quiet:
            self.console.print(msg, markup=False, highlight=False)

    def error(self, msg: str) -> None:
        self.console.print(f"Error: {msg}", markup=False, highlight=False, style="red")

    def emit(self, payload) -> None:
        """The command's result as JSON on stdout."""
        sys.stdout.write(json.dumps(payload, indent=2, default=_json_default) + "\n")
        sys.stdout.flush()

    @contextmanager
    def progress(self, description: str, total: int | None):
        """A rich progress bar on stderr when it is a terminal and not --quiet; else silent."""
        enabled = not self.quiet and self.console.is_terminal
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=self.console,
                       disable=not enabled, transient=False)
        with bar:
            task = bar.add_task(description, total=total, status="")

            def advance(n: int = 1, **fields):
                bar.update(task, advance=n, **fields)

            yield advance


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def run_command(common: Common, body: Callable[[], int | None]) -> None:
    """Run a command body; known errors → one line `Error: …` and exit 2, no traceback unless --debug."""
    try:
        code = body() or EXIT_OK
    except typer.Exit:
        raise
    except (ScoretoolError, KeyboardInterrupt) as e:
        if common.debug:
            traceback.print_exc()
        common.error(str(e) if isinstance(e, ScoretoolError) else "interrupted")
        code = EXIT_USAGE if isinstance(e, ScoretoolError) else 130
    except Exception as e:  # an unexpected failure is still one line unless --debug
        if common.debug:
            raise
        common.error(f"{type(e).__name__}: {e} (run with --debug for the traceback)")
        code = EXIT_USAGE
    raise typer.Exit(code)


@dataclass
class FileJob:
    src: Path
    dest: Path | None


def plan_jobs(common: Common, input_path: Path, output: Path | None, fmt: str | None = None,
              recursive: bool = False) -> list[FileJob]:
    """Input files and their outputs. Non-images are skipped with a notice; outputs inside the input
    folder are never taken as inputs; an output equal to its input is refused."""
    input_path = Path(input_path)
    if not input_path.exists():
        raise ScoretoolError(f"{input_path}: no such file or folder")
    files, skipped = list_images(input_path, recursive, exclude=output if output and input_path.is_dir() else None)
    for p in skipped:
        common.notice(f"skipping {p}: not an image file")
    if not files:
        raise ScoretoolError(f"{input_path}: no image files found")
    single = input_path.is_file()
    root = input_path.parent if single else input_path
    if fmt and fmt.lower() not in ("png", "tif", "tiff", "npy"):
        raise ScoretoolError(f"--format {fmt}: expected png, tiff or npy")
    jobs = []
    for src in files:
        dest = output_path(src, root, Path(output), fmt, single) if output is not None else None
        if dest is not None and dest.resolve() == src.resolve():
            raise ScoretoolError(f"{dest}: output would overwrite its input; choose another -o")
        jobs.append(FileJob(src, dest))
    if output is not None:
        folder = Path(output).parent if single and Path(output).suffix.lower() in IMAGE_SUFFIXES else Path(output)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ScoretoolError(f"{folder}: cannot create output folder ({e.strerror})") from None
        if not os.access(folder, os.W_OK):
            raise ScoretoolError(f"{folder}: output folder is not writable")
    return jobs


def run_batch(common: Common, jobs: list[FileJob], process: Callable[[FileJob], dict],
              description: str = "processing") -> tuple[list[dict], int]:
    """Run `process` on each job: existing outputs are skipped unless --overwrite; one bad file is
    reported and the rest go on. Returns (result rows, exit code)."""
    rows, failed, done = [], 0, 0
    with common.progress(description, len(jobs)) as advance:
        for job in jobs:
            if job.dest is not None and job.dest.exists() and not common.overwrite:
                common.notice(f"skipping {job.src}: output {job.dest} exists (use --overwrite)")
                rows.append({"input": str(job.src), "output": str(job.dest), "status": "skipped"})
                advance()
                continue
            try:
                row = process(job)
                rows.append({"input": str(job.src), "output": str(job.dest) if job.dest else None, "status": "ok", **row})
                done += 1
            except (InputError, ScoretoolError) as e:
                failed += 1
                common.error(str(e) if isinstance(e, InputError) else f"{job.src}: {e}")
                rows.append({"input": str(job.src), "status": "failed", "error": str(e)})
            except OSError as e:
                failed += 1
                common.error(f"{job.src}: {e.strerror or e}")
                rows.append({"input": str(job.src), "status": "failed", "error": str(e)})
            advance()
    if failed and not done and not any(r["status"] == "skipped" for r in rows):
        return rows, EXIT_USAGE
    return rows, EXIT_PARTIAL if failed else EXIT_OK
