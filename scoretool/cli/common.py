"""What every command shares: its options, the output policy, messages, progress and --json, and the
error → exit-code policy (`command` registers a command with all of it; batch.py runs its files).

Exit codes: 0 all done; 1 some inputs failed (the others were processed and reported);
2 usage error or nothing could be processed.
"""

from __future__ import annotations

import functools
import inspect
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
from typer.core import TyperGroup

from ..errors import InputError, ScoretoolError
from ..files import remove_stale_temporaries

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2

class Opt:
    """Options several commands take, declared once (same names and meanings everywhere):
    `weights: Opt.Weights = None`. The options every command takes are in SHARED_OPTIONS."""

    Device = Annotated[str, typer.Option("--device", help="Compute device: auto (CUDA, then MPS, then CPU), cpu, cuda or mps.")]
    Seed = Annotated[int, typer.Option("--seed", help="Random seed for noise and sampling (integer, 0 to 4294967295).")]
    Json = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON result on stdout; messages go to stderr.")]
    Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or notices; errors are still printed.")]
    Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
    Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files (default: skip existing images, refuse other existing files).")]
    Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Also process images in sub-folders.")]
    Shard = Annotated[str | None, typer.Option("--shard", help="K/N: process only part K of N of the inputs (each file's part is fixed by a hash of its name), e.g. one part per cluster job; with outputs kept (no --overwrite) a re-run resumes.")]
    Weights = Annotated[str | None, typer.Option("--weights", "-w", help="Bundled model name (see `scoretool weights`) or a .safetensors path. Default: prior-gray for grey input, prior-rgb for colour.")]
    Output = Annotated[Path, typer.Option("--output", "-o", help="Output file (for one input file) or folder (created if missing); - writes the one result to stdout.")]
    Format = Annotated[str | None, typer.Option("--format", help="Output format png, tiff or npy (default: the input's format and dtype; npy and float TIFF are not clipped).")]
    Range = Annotated[str | None, typer.Option("--range", help="MIN,MAX of float/.npy input values that map to [0,1] (default 0,1).")]
    Precision = Annotated[str, typer.Option("--precision", help="Network arithmetic: auto (bf16 where the hardware has it), fp32 or bf16.")]
    Tile = Annotated[int, typer.Option("--tile", min=16, help="Tile size in pixels for large images (overlapping tiles, blended; bounds memory); at least 16.")]


INPUTS_HELP = (" Any number of files, folders and quoted glob patterns ('raw/*.tif'; ** with --recursive); "
               "- reads one image from stdin (format from its bytes).")

SHARED_OPTIONS = {  # name → (annotation, default); json, quiet and debug go with every command
    "device": (Opt.Device, "auto"), "seed": (Opt.Seed, 0), "overwrite": (Opt.Overwrite, False),
    "recursive": (Opt.Recursive, False), "shard": (Opt.Shard, None),
    "json": (Opt.Json, False), "quiet": (Opt.Quiet, False), "debug": (Opt.Debug, False),
}
EVERY_COMMAND = ("json", "quiet", "debug")
PARAMETER_OF = {"gaussian": "sigma", "poisson": "zeta", "gamma": "k"}  # noise family → its option (--sigma, …)
FAMILY_OF = {option: family for family, option in PARAMETER_OF.items()}


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
    """One command run: the shared options' values (SHARED_OPTIONS), and the state of its output policy."""

    device: str = "auto"
    seed: int = 0
    json: bool = False
    quiet: bool = False
    debug: bool = False
    overwrite: bool = False
    recursive: bool = False  # folders' sub-folders are inputs too
    shard: str | None = None  # K/N: this run takes part K of N of the inputs
    torchrun: bool = False  # the command splits its inputs across torchrun processes (run_batch) or trains
    console: Console = field(default_factory=lambda: plain_console(stderr=True))
    inputs: set[Path] = field(default_factory=set)  # resolved paths of the files this command reads
    planned: dict[Path, str] = field(default_factory=dict)  # resolved output path → the input it is for
    swept: set[Path] = field(default_factory=set)  # output folders cleared of stale temporary files
    range_unused_told: bool = False  # read_input has said once that --range left an 8/16-bit file as it is

    @property
    def reports(self) -> bool:
        """Whether this process writes the command's report files (under torchrun only rank 0 does)."""
        return torchrun_rank()[0] == 0

    def notice(self, msg: str) -> None:
        if not self.quiet:
            self.console.print(msg)

    def error(self, msg: str) -> None:
        self.console.print(f"Error: {one_line(msg)}", style="red")

    def read_input(self, path: Path, value_range: tuple[float, float] | None, label: str | None = None):
        """io.read_image(path, value_range), saying once per run where --range does not apply: 8- and 16-bit
        samples map by their full range (io.sample_range), --range is for float (and wider integer) data."""
        from ..io import read_image

        image = read_image(path, value_range)
        if value_range is not None and image.value_range != tuple(value_range) and not self.range_unused_told:
            self.range_unused_told = True
            self.notice(f"{label or path}: --range is for float data; this {image.dtype} file maps its full range "
                        f"{image.value_range[0]:g}..{image.value_range[1]:g} to [0,1] (as do other 8/16-bit files)")
        return image

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
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        enabled = not self.quiet and self.console.is_terminal
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=self.console,
                       disable=not enabled, transient=False)
        with bar:
            task = bar.add_task(description, total=total, status="")

            def advance(n: int = 1, **fields):
                bar.update(task, advance=n, **fields)

            yield advance


PIPE_WIDTH = 200
"""Columns of tables written to a pipe or file (a terminal's own width otherwise)."""


def plain_console(stderr: bool = False) -> Console:
    """A console that prints text as given: no markup, no emoji codes (`x:smile:y.png` stays a file
    name), no highlighting; NO_COLOR is honoured. Every message and table goes through one."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not (stream.isatty() or os.environ.get("COLUMNS"))  # rich would cut tables to 80 columns
    return Console(stderr=stderr, soft_wrap=stderr, no_color=bool(os.environ.get("NO_COLOR")), markup=False,
                   emoji=False, highlight=False, width=PIPE_WIDTH if piped else None)


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
        if torchrun_rank()[1] > 1 and not common.torchrun:
            raise ScoretoolError("this command runs in one process; under torchrun use denoise, restore, uncertainty, "
                                 "noise, evaluate, ood score or train")
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


def command(group: typer.Typer, *shared: str, torchrun: bool = False, **settings) -> Callable:
    """Register `fn(common, ...)` as a command of `group` (`settings` go to Typer's `command`). The shared
    options named (SHARED_OPTIONS: device, seed, overwrite, recursive, shard; json, quiet and debug always)
    are added to its own, arrive in `common`, and seed torch's generator when --seed is one of them.
    It runs under `run_command` (errors → one line and the exit code; its return value is the exit
    code), after a check that no float option is NaN or infinite (`--zeta inf` is a usage error).
    torchrun: it splits its inputs across torchrun processes (batch.run_batch) or trains data-parallel."""
    names = [*shared, *EVERY_COMMAND]

    def register(fn: Callable) -> Callable:
        signature = inspect.signature(fn, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "common"]
        added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=SHARED_OPTIONS[n][0],
                                   default=SHARED_OPTIONS[n][1]) for n in names]
        flags = {p.name: _flag(p) for p in own}

        @functools.wraps(fn)
        def run(**options):
            common = Common(torchrun=torchrun, **{n: options.pop(n) for n in names})

            def body():
                bad = [(k, v) for k, v in options.items() if isinstance(v, float) and not math.isfinite(v)]
                if bad:
                    raise ScoretoolError(f"{flags[bad[0][0]]} {bad[0][1]}: must be a finite number")
                if options.get("precision") is not None:  # before any file: a typo is a usage error, not N failures
                    from ..engine import check_precision

                    check_precision(options["precision"])
                if "seed" in names:
                    if not 0 <= common.seed < 2**32:  # derived seeds (seed·1000003 + step) must stay 64-bit
                        raise ScoretoolError(f"--seed {common.seed}: expected an integer from 0 to {2**32 - 1}")
                    import torch

                    torch.manual_seed(common.seed)
                return fn(common, **options)

            run_command(common, body)

        del run.__wrapped__  # Typer reads the signature below, not fn's
        run.__signature__ = signature.replace(parameters=own + added)
        run.__annotations__ = {p.name: p.annotation for p in own + added}
        return group.command(**settings)(run)

    return register


def _flag(parameter: inspect.Parameter) -> str:
    """The long option name of a command parameter (`--sigma`), for messages."""
    for meta in typing.get_args(parameter.annotation)[1:]:
        decls = [d for d in getattr(meta, "param_decls", None) or () if d.startswith("--")]
        if decls:
            return decls[0].split("/")[0]
    return "--" + parameter.name.replace("_", "-")


def torchrun_rank() -> tuple[int, int]:
    """(rank, number of processes) under torchrun (its RANK and WORLD_SIZE), else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def file_error(src: Path, e: Exception) -> str:
    """`FILE: problem` for a failure while processing `src`."""
    if isinstance(e, InputError) and Path(e.path) == Path(src):
        return str(e)
    if isinstance(e, ScoretoolError):
        return f"{src}: {e}"
    return f"{src}: {_describe(e)}"
