"""What every command shares: options, error → exit-code policy, progress, batch file processing.

Exit codes: 0 all done; 1 some inputs failed (the others were processed and reported);
2 usage error or nothing could be processed.
"""

from __future__ import annotations

import atexit
import collections
import functools
import glob
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import sys
import tempfile
import traceback
import typing
from collections.abc import Callable, Iterable, Sequence
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
ShardOpt = Annotated[str | None, typer.Option("--shard", help="K/N: process only part K of N of the inputs (each file's part is fixed by a hash of its name), e.g. one part per cluster job; with outputs kept (no --overwrite) a re-run resumes.")]
INPUTS_HELP = (" Any number of files, folders and quoted glob patterns ('raw/*.tif'; ** with --recursive); "
               "- reads one image from stdin (format from its bytes).")


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
    torchrun: bool = False  # the command splits its inputs across torchrun processes (run_batch) or trains

    @property
    def reports(self) -> bool:
        """Whether this process writes the command's report files (under torchrun only rank 0 does)."""
        return torchrun_rank()[0] == 0

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
    label: str = ""  # how messages and reports name the input (`-` for stdin); default: src
    to_stdout: bool = False  # dest is a private temporary file whose bytes go to stdout (`-o -`)

    def __post_init__(self):
        self.label = self.label or str(self.src)


STREAM = "-"  # as an input: one image read from stdin; as -o: the result written to stdout
_MAGIC = {b"\x89PNG\r\n\x1a\n": ".png", b"\xff\xd8\xff": ".jpg", b"II*\x00": ".tif", b"MM\x00*": ".tif",
          b"II+\x00": ".tif", b"MM\x00+": ".tif", b"\x93NUMPY": ".npy", b"BM": ".bmp"}


def private_folder() -> Path:
    """A folder only this process uses (stdin copies, stdout results), removed when the process ends."""
    folder = Path(tempfile.mkdtemp(prefix="scoretool-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def read_stdin_image() -> Path:
    """The image on stdin, copied to a private file whose suffix is its format sniffed from the bytes."""
    data = sys.stdin.buffer.read()
    if not data:
        raise ScoretoolError("-: standard input is empty (expected the bytes of one image)")
    suffix = next((s for magic, s in _MAGIC.items() if data.startswith(magic)), None)
    if suffix is None:
        raise ScoretoolError("-: standard input is not a PNG, JPEG, TIFF, BMP or .npy image")
    path = private_folder() / f"stdin{suffix}"
    path.write_bytes(data)
    return path


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard (`raw/*/x.tif` → `raw`)."""
    parts = Path(pattern).parts
    fixed = [p for p in itertools.takewhile(lambda p: not glob.has_magic(p), parts)]
    return Path(*fixed) if fixed else Path(".")


def expand_inputs(common: Common, inputs: Sequence[str | Path], output: Path | None,
                  recursive: bool) -> list[tuple[Path, Path, str]]:
    """Every input file, once, in command-line order: (file, the root its output name is relative to,
    its label). An input is a file, a folder (its images; sub-folders with --recursive), a glob pattern
    (quoted, so that scoretool expands it: `'raw/**/*.tif'`), or `-` (one image from stdin). Non-images
    are skipped with a notice; files inside the output folder are never inputs."""
    exclude = Path(output).resolve() if output is not None and str(output) != STREAM else None
    found, seen = [], set()

    def add(files: list[Path], root: Path, label_of=str, listed: bool = True):
        for f in files:
            key = f.resolve()
            if listed and exclude and (exclude == key.parent or exclude in key.parents):
                continue
            if key not in seen:
                seen.add(key)
                found.append((f, root, label_of(f)))

    for item in inputs:
        text = str(item)
        path = Path(text)
        if text == STREAM:
            add([read_stdin_image()], Path("."), lambda f: STREAM, listed=False)
        elif path.is_dir():
            if exclude == path.resolve():
                raise ScoretoolError(f"-o {output}: is the input folder; results would mix with the inputs (and could "
                                     "replace them): choose another output folder")
            files, skipped = list_images(path, recursive)
            for p in skipped:
                common.notice(f"skipping {p}: not an image file")
            if not files:
                raise ScoretoolError(f"{path}: no image files found")
            add(files, path)
        elif path.is_file():
            add([path], path.parent, listed=False)
        elif glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=recursive)) if Path(m).is_file()]
            files = [m for m in matches if m.suffix.lower() in IMAGE_SUFFIXES and not m.name.startswith(".")]
            if not files:
                raise ScoretoolError(f"{text}: no image files match")
            add(files, _glob_root(text))
        else:
            raise ScoretoolError(f"{text}: no such file or folder")
    return found


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """--shard K/N → (K, N) with 1 ≤ K ≤ N."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ScoretoolError(f"--shard {text}: expected K/N with 1 ≤ K ≤ N (e.g. 3/8)")
    return int(m.group(1)), int(m.group(2))


def shard_of(name: str, count: int) -> int:
    """The shard (0 … count-1) of an input named `name` (its path relative to its input root): a hash,
    so a file keeps its shard when others are added or removed and every machine computes the same."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % count


def plan_jobs(common: Common, inputs: Sequence[str | Path] | str | Path, output: Path | None, fmt: str | None = None,
              recursive: bool = False, outputs_of: Callable[[Path], list[Path]] | None = None,
              shard: str | None = None) -> list[FileJob]:
    """Input files and all their outputs, planned before any work (Common.plan_output: no output over
    an input, no two inputs to one output). With one input file, -o may name the output file; otherwise
    -o is a folder and each result keeps its name (and its path under a folder input). `-o -` writes the
    one result to stdout. `outputs_of(src)` lists a command's own output files per input (default:
    `io.output_path`). `--shard K/N` keeps the inputs of shard K, after the whole plan is checked."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if fmt and fmt.lower() not in ("png", "tif", "tiff", "npy"):
        raise ScoretoolError(f"--format {fmt}: expected png, tiff or npy")
    part = parse_shard(shard)
    to_stdout = output is not None and str(output) == STREAM
    sources = expand_inputs(common, inputs, output, recursive)
    single = len(inputs) == 1 and len(sources) == 1 and (str(inputs[0]) == STREAM or Path(inputs[0]).is_file())
    if to_stdout:
        if outputs_of is not None:
            raise ScoretoolError("-o -: this command writes several files per input; give an output folder")
        if len(sources) != 1:
            raise ScoretoolError(f"-o -: writes one image to stdout, but the inputs hold {len(sources)} images")
        if common.json:
            raise ScoretoolError("-o - writes the image to stdout, where --json would go too: drop one of them")
    common.reads(src for src, _, _ in sources)
    jobs = []
    for src, root, label in sources:
        if to_stdout:
            dests = [output_path(src, src.parent, private_folder(), fmt, single_file=False)]
        elif outputs_of is not None:
            dests = outputs_of(src)
        elif output is not None:
            dests = [output_path(src, root, Path(output), fmt, single)]
            if label == STREAM and not single:
                raise ScoretoolError("-: an image from stdin needs -o FILE or -o - when there are other inputs")
        else:
            dests = []
        for dest in dests:
            common.plan_output(dest, label)
        jobs.append(FileJob(src, dests[0] if dests else None, dests[1:], label, to_stdout))
    if output is not None and not to_stdout:
        folder = Path(output).parent if single and Path(output).suffix.lower() in IMAGE_SUFFIXES else Path(output)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ScoretoolError(f"{folder}: cannot create output folder ({e.strerror})") from None
        if not os.access(folder, os.W_OK):
            raise ScoretoolError(f"{folder}: output folder is not writable")
    if part:
        names = {id(job): str(src.relative_to(root)) if src.is_relative_to(root) else label
                 for job, (src, root, label) in zip(jobs, sources)}
        jobs = [job for job in jobs if shard_of(names[id(job)], part[1]) == part[0] - 1]
    return jobs


def torchrun_rank() -> tuple[int, int]:
    """(rank, number of processes) under torchrun (its RANK and WORLD_SIZE), else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def join_torchrun() -> None:
    """Join the torchrun process group (gloo: it only carries the reports) and take this process's GPU
    (LOCAL_RANK), so that `--device auto` means that one. Only rank 0 reports: the others' stdout is
    discarded (messages and errors on stderr stay)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    if dist.get_rank() != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process


def gather_rows(mine: list[tuple[int, dict]]) -> list[dict]:
    """Every process's (job index, row) pairs, in job order, on every process."""
    import torch.distributed as dist

    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, mine)
    return [row for _, row in sorted(itertools.chain.from_iterable(parts), key=lambda pair: pair[0])]


def run_batch(common: Common, jobs: list[FileJob], process: Callable[[FileJob], dict],
              description: str = "processing") -> tuple[list[dict], int]:
    """Run `process` on each job: existing outputs are skipped unless --overwrite. Any failure of one
    file (a bad file, a refused size, a non-finite result, MemoryError, an unexpected exception) is
    reported once, naming the file, and the rest go on; only a ModelError (model or device unusable for
    every file) stops the batch. Under torchrun, process r of n takes jobs r, r+n, …; every process
    ends with all rows and the same exit code. Returns (result rows, exit code)."""
    rank, world = torchrun_rank()
    if world > 1:
        join_torchrun()
    rows = []
    mine = list(enumerate(jobs))[rank::world]
    with common.progress(description, len(mine)) as advance:
        for index, job in mine:
            rows.append((index, run_job(common, job, process)))
            advance()
    rows = gather_rows(rows) if world > 1 else [row for _, row in rows]
    status = collections.Counter(r["status"] for r in rows)
    if status["failed"] and not status["ok"] and not status["skipped"]:
        return rows, EXIT_USAGE
    return rows, EXIT_PARTIAL if status["failed"] else EXIT_OK


def run_job(common: Common, job: FileJob, process: Callable[[FileJob], dict]) -> dict:
    """One input through `process` → its report row (status ok, skipped or failed)."""
    if job.dest is not None and job.dest.exists() and not common.overwrite:
        common.notice(f"skipping {job.label}: output {job.dest} exists (use --overwrite)")
        return {"input": job.label, "output": str(job.dest), "status": "skipped"}
    try:
        row = process(job)
        if job.to_stdout:
            sys.stdout.buffer.write(job.dest.read_bytes())
            sys.stdout.flush()
            job.dest.unlink()
        output = STREAM if job.to_stdout else str(job.dest) if job.dest else None
        return {"input": job.label, "output": output, "status": "ok", **row}
    except (ModelError, typer.Exit):
        raise
    except Exception as e:  # noqa: BLE001 - one file's failure, whatever it is, is that file's
        if common.debug:
            traceback.print_exc()
        message = one_line(file_error(job.src, e).replace(str(job.src), job.label))
        common.error(message)
        return {"input": job.label, "status": "failed", "error": message}


def file_error(src: Path, e: Exception) -> str:
    """`FILE: problem` for a failure while processing `src`."""
    if isinstance(e, InputError) and Path(e.path) == Path(src):
        return str(e)
    if isinstance(e, ScoretoolError):
        return f"{src}: {e}"
    return f"{src}: {_describe(e)}"
