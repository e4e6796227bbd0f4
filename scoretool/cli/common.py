"""What every command shares: options, error → exit-code policy, progress, batch file processing.

Exit codes: 0 all done; 1 some inputs failed (the others were processed and reported);
2 usage error or nothing could be processed.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import traceback
import typing
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer.core import TyperGroup

from ..errors import InputError, ModelError, ScoretoolError
from ..io import IMAGE_SUFFIXES, list_images, output_path, remove_stale_temporaries

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2

# ---- options shared by commands (same names and meanings everywhere: shared/docs/cli.md) ----
DeviceOpt = Annotated[str, typer.Option("--device", help="Compute device: auto (CUDA, then MPS, then CPU), cpu, cuda or mps.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed for noise and sampling (integer).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON result on stdout; messages go to stderr.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or notices; errors are still printed.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files (default: skip existing images, refuse other existing files).")]
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Also process images in sub-folders.")]
WeightsOpt = Annotated[str | None, typer.Option("--weights", "-w", help="Bundled model name (see `scoretool weights`) or a .safetensors path. Default: prior-gray for grey input, prior-rgb for colour.")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Output file (for one input file) or folder (created if missing).")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="Output format png, tiff or npy (default: the input's format and dtype; npy and float TIFF are not clipped).")]
RangeOpt = Annotated[str | None, typer.Option("--range", help="MIN,MAX of float/.npy input values that map to [0,1] (default 0,1).")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="Network arithmetic: auto (bf16 where the hardware has it), fp32 or bf16.")]
TileOpt = Annotated[int, typer.Option("--tile", min=16, help="Tile size in pixels for large images (overlapping tiles, blended; bounds memory); at least 16.")]


def parse_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ScoretoolError(f"--range {text}: expected MIN,MAX (two numbers)") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ScoretoolError(f"--range {text}: MIN and MAX must be finite numbers")
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
    console: Console = field(default_factory=lambda: plain_console(stderr=True))
    inputs: set[Path] = field(default_factory=set)  # resolved paths of the files this command reads
    planned: dict[Path, str] = field(default_factory=dict)  # resolved output path → the input it is for
    swept: set[Path] = field(default_factory=set)  # output folders cleared of stale temporary files

    def notice(self, msg: str) -> None:
        if not self.quiet:
            self.console.print(msg)

    def error(self, msg: str) -> None:
        self.console.print(f"Error: {one_line(msg)}", style="red")

    def reads(self, paths: Iterable[Path]) -> None:
        """Record files this command reads: no output may be planned over them."""
        self.inputs.update(Path(p).resolve() for p in paths)

    def plan_output(self, path: Path, source: str) -> Path:
        """The output policy, for every file a command writes (images, CSV, plots, models, OOD files),
        applied before any work: never over an input, never two results to one path (`source` names
        what the result is of). Stale temporary files of killed runs in its folder are removed."""
        path = Path(path)
        key = path.resolve()
        if key in self.inputs:
            raise ScoretoolError(f"{path}: output would overwrite its input; choose another output path")
        if key in self.planned:
            raise ScoretoolError(f"{self.planned[key]} and {source} would both be written to {path}; "
                                 "rename one or run them separately")
        if path.is_dir():
            raise ScoretoolError(f"{path}: is a folder, expected an output file name")
        self.planned[key] = source
        if key.parent not in self.swept:
            remove_stale_temporaries(key.parent)
            self.swept.add(key.parent)
        return path

    def claim_output(self, path: Path, what: str) -> Path:
        """Plan one output file that is not a batch result (CSV, plot, model, OOD model): as
        `plan_output`, and an existing file is refused unless --overwrite; its folder is created."""
        path = self.plan_output(path, what)
        if path.exists() and not self.overwrite:
            raise ScoretoolError(f"{path}: exists (use --overwrite to replace it)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ScoretoolError(f"{path.parent}: cannot create the folder for the {what} ({e.strerror})") from None
        if not os.access(path.parent, os.W_OK):
            raise ScoretoolError(f"{path.parent}: folder is not writable (for the {what})")
        return path

    def emit(self, payload) -> None:
        """The command's result as strict JSON on stdout (NaN and infinities as null)."""
        sys.stdout.write(json.dumps(_strict_json(payload), indent=2) + "\n")
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


def plain_console(stderr: bool = False) -> Console:
    """A console that prints text as given: no markup, no emoji codes (`x:smile:y.png` stays a file
    name), no highlighting; NO_COLOR is honoured. Every message and table goes through one."""
    return Console(stderr=stderr, soft_wrap=stderr, no_color=bool(os.environ.get("NO_COLOR")), markup=False,
                   emoji=False, highlight=False)


def one_line(msg) -> str:
    """A message on one line (parser and state-dict errors span many), at most 400 characters."""
    text = " ".join(str(msg).split())
    return text if len(text) <= 400 else text[:399] + "…"


def _strict_json(value):
    """A payload as plain JSON values: paths → str, numpy/torch values → Python ones, NaN/inf → None
    (strict JSON has no NaN), recursively."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def run_command(common: Common, body: Callable[[], int | None]) -> None:
    """Run a command body; errors → one line `Error: …` (with --json also a JSON object on stdout) and
    exit 2, no traceback unless --debug. An explicit --device is checked first, once."""
    try:
        if common.device != "auto":
            from ..api import select_device

            select_device(common.device)
        code = body() or EXIT_OK
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        common.error("interrupted")
        code = 130
    except Exception as e:  # an unexpected failure is still one line unless --debug
        if common.debug:
            traceback.print_exc()
        message = str(e) if isinstance(e, ScoretoolError) else f"{_describe(e)} (run with --debug for the traceback)"
        common.error(message)
        code = EXIT_USAGE
        if common.json:
            common.emit({"error": one_line(message), "exit_code": code})
    raise typer.Exit(code)


def _describe(e: Exception) -> str:
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "alloc" in str(e).lower() and "memory" in str(e).lower()):
        return f"out of memory ({type(e).__name__}: {e})"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return f"{type(e).__name__}: {e}"


class JsonUsageErrors(TyperGroup):
    """The root command group: a usage error found while parsing options (`--tile abc`, a missing
    option) is printed by Typer as usual and, when the command line has --json, also given as JSON on
    stdout, as every other error is (run_command)."""

    def invoke(self, ctx):
        argv = [*getattr(ctx, "_protected_args", []), *ctx.args]  # the command line after the root options
        try:
            return super().invoke(ctx)
        except Exception as e:
            if hasattr(e, "format_message") and "--json" in argv:
                sys.stdout.write(json.dumps({"error": one_line(e.format_message()), "exit_code": EXIT_USAGE}) + "\n")
            raise


def finite_options(command: Callable) -> Callable:
    """Wrap a command function so that a NaN or infinite float option (`--sigma inf`) is a usage error,
    before the command runs. cli/__init__.py wraps every command, so new options are covered too."""
    hints = typing.get_type_hints(command, include_extras=True)

    def flag(name: str) -> str:
        for meta in typing.get_args(hints.get(name))[1:]:
            decls = [d for d in getattr(meta, "param_decls", None) or () if d.startswith("--")]
            if decls:
                return decls[0].split("/")[0]
        return "--" + name.replace("_", "-")

    @functools.wraps(command)
    def checked(**kwargs):
        bad = [(k, v) for k, v in kwargs.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            def refuse():
                raise ScoretoolError(f"{flag(bad[0][0])} {bad[0][1]}: must be a finite number")

            run_command(Common(json=bool(kwargs.get("json"))), refuse)
        return command(**kwargs)

    return checked


@dataclass
class FileJob:
    src: Path
    dest: Path | None
    also: list[Path] = field(default_factory=list)  # further outputs of the same input


def plan_jobs(common: Common, input_path: Path, output: Path | None, fmt: str | None = None,
              recursive: bool = False, outputs_of: Callable[[Path], list[Path]] | None = None) -> list[FileJob]:
    """Input files and all their outputs, planned before any work (Common.plan_output: no output over
    an input, no two inputs to one output). Non-images are skipped with a notice; the output folder is
    never the input folder, and outputs inside the input folder are never taken as inputs.
    `outputs_of(src)` lists a command's own output files per input (default: `io.output_path`)."""
    input_path = Path(input_path)
    if not input_path.exists():
        raise ScoretoolError(f"{input_path}: no such file or folder")
    if output is not None and input_path.is_dir() and Path(output).resolve() == input_path.resolve():
        raise ScoretoolError(f"-o {output}: is the input folder; results would mix with the inputs (and could replace "
                             "them): choose another output folder")
    files, skipped = list_images(input_path, recursive, exclude=output if output and input_path.is_dir() else None)
    for p in skipped:
        common.notice(f"skipping {p}: not an image file")
    if not files:
        raise ScoretoolError(f"{input_path}: no image files found")
    single = input_path.is_file()
    root = input_path.parent if single else input_path
    if fmt and fmt.lower() not in ("png", "tif", "tiff", "npy"):
        raise ScoretoolError(f"--format {fmt}: expected png, tiff or npy")
    common.reads(files)
    jobs = []
    for src in files:
        if outputs_of is not None:
            dests = outputs_of(src)
        else:
            dests = [output_path(src, root, Path(output), fmt, single)] if output is not None else []
        for dest in dests:
            common.plan_output(dest, str(src))
        jobs.append(FileJob(src, dests[0] if dests else None, dests[1:]))
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
    """Run `process` on each job: existing outputs are skipped unless --overwrite. Any failure of one
    file (a bad file, a refused size, a non-finite result, MemoryError, an unexpected exception) is
    reported once, naming the file, and the rest go on; only a ModelError (model or device unusable for
    every file) stops the batch. Returns (result rows, exit code)."""
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
            except (ModelError, typer.Exit):
                raise
            except Exception as e:  # noqa: BLE001 - one file's failure, whatever it is, is that file's
                failed += 1
                if common.debug:
                    traceback.print_exc()
                message = one_line(file_error(job.src, e))
                common.error(message)
                rows.append({"input": str(job.src), "status": "failed", "error": message})
            advance()
    if failed and not done and not any(r["status"] == "skipped" for r in rows):
        return rows, EXIT_USAGE
    return rows, EXIT_PARTIAL if failed else EXIT_OK


def file_error(src: Path, e: Exception) -> str:
    """`FILE: problem` for a failure while processing `src`."""
    if isinstance(e, InputError) and Path(e.path) == Path(src):
        return str(e)
    if isinstance(e, ScoretoolError):
        return f"{src}: {e}"
    return f"{src}: {_describe(e)}"
