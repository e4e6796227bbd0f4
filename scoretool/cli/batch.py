"""Batches of input files for every command that processes images: the inputs (files, folders, glob
patterns, stdin), their planned outputs (one output policy: Common.plan_output), stdout results,
`--shard K/N`, and the run over them with per-file isolation, split across torchrun processes."""

from __future__ import annotations

import atexit
import collections
import datetime
import glob
import hashlib
import itertools
import os
import re
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import typer

from ..errors import ModelError, ScoretoolError
from ..files import IMAGE_SUFFIXES, list_images, output_path
from .common import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, Common, file_error, one_line, torchrun_rank


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
    if sys.stdin.isatty():
        raise ScoretoolError("-: standard input is a terminal; pipe an image into it (cat a.png | scoretool …)")
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
    fixed = list(itertools.takewhile(lambda p: not glob.has_magic(p), parts))
    return Path(*fixed) if fixed else Path(".")


def expand_inputs(common: Common, inputs: Sequence[str | Path], output: Path | None) -> list[tuple[Path, Path, str]]:
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
            if torchrun_rank()[1] > 1 or common.shard:
                raise ScoretoolError("-: one image from stdin cannot be split across torchrun processes or shards")
            add([read_stdin_image()], Path("."), lambda f: STREAM, listed=False)
        elif path.is_dir():
            if exclude == path.resolve():
                raise ScoretoolError(f"-o {output}: is the input folder; results would mix with the inputs (and could "
                                     "replace them): choose another output folder")
            files, skipped = list_images(path, common.recursive)
            for p in skipped:
                common.notice(f"skipping {p}: not an image file")
            if not files:
                raise ScoretoolError(f"{path}: no image files found")
            add(files, path)
        elif path.is_file():
            add([path], path.parent, listed=False)
        elif glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=common.recursive)) if Path(m).is_file()]
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
              outputs_of: Callable[[Path], list[Path]] | None = None) -> list[FileJob]:
    """Input files and all their outputs, planned before any work (Common.plan_output: no output over
    an input, no two inputs to one output). With one input file, -o may name the output file; otherwise
    -o is a folder and each result keeps its name (and its path under a folder input). `-o -` writes the
    one result to stdout. `outputs_of(src)` lists a command's own output files per input (default:
    `files.output_path`). Folders are walked with --recursive (common.recursive); `--shard K/N`
    (common.shard) keeps the inputs of part K, after the whole plan is checked."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if fmt and fmt.lower() not in ("png", "tif", "tiff", "npy"):
        raise ScoretoolError(f"--format {fmt}: expected png, tiff or npy")
    part = parse_shard(common.shard)
    to_stdout = output is not None and str(output) == STREAM
    sources = expand_inputs(common, inputs, output)
    single = len(inputs) == 1 and len(sources) == 1 and (str(inputs[0]) == STREAM or Path(inputs[0]).is_file())
    if to_stdout:
        if part:
            raise ScoretoolError("-o -: one result on stdout cannot be split into shards")
        if outputs_of is not None:
            raise ScoretoolError("-o -: this command writes several files per input; give an output folder")
        if len(sources) != 1:
            raise ScoretoolError(f"-o -: writes one image to stdout, but the inputs hold {len(sources)} images")
        if common.json:
            raise ScoretoolError("-o - writes the image to stdout, where --json would go too: drop one of them")
    if output is not None and not single and not to_stdout and Path(output).suffix.lower() in IMAGE_SUFFIXES \
            and not Path(output).is_dir():
        raise ScoretoolError(f"-o {output}: {len(sources)} inputs need an output folder, not an image file name")
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
        names = {id(job): src.relative_to(root).as_posix() if src.is_relative_to(root) else label
                 for job, (src, root, label) in zip(jobs, sources)}
        jobs = [job for job in jobs if shard_of(names[id(job)], part[1]) == part[0] - 1]
    return jobs


def join_torchrun() -> None:
    """Join the torchrun process group (gloo: it only carries the reports) and take this process's GPU
    (LOCAL_RANK), so that `--device auto` means that one. Only rank 0 reports: the others' stdout is
    discarded (messages and errors on stderr stay)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():  # ranks may wait long for each other's share of a batch at the gather
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    if dist.get_rank() != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process


def gather_rows(mine: list[tuple[int, dict]], stopped: str | None) -> list[dict]:
    """Every process's (job index, row) pairs, in job order, on every process; if any process stopped
    its share with a ModelError (`stopped`: its message), every process raises it, so all exit alike."""
    import torch.distributed as dist

    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (mine, stopped))
    dist.barrier()
    dist.destroy_process_group()  # closed together: a process leaving while another still talks aborts it
    errors = [error for _, error in parts if error]
    if errors:
        raise ModelError(errors[0])
    return [row for _, row in sorted(itertools.chain.from_iterable(rows for rows, _ in parts), key=lambda pair: pair[0])]


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
    rows, stopped = [], None
    mine = list(enumerate(jobs))[rank::world]
    with common.progress(description, len(mine)) as advance:
        for index, job in mine:
            try:
                rows.append((index, run_job(common, job, process)))
            except ModelError as e:
                if world == 1:
                    raise
                stopped = str(e)
                break
            advance()
    rows = gather_rows(rows, stopped) if world > 1 else [row for _, row in rows]
    status = collections.Counter(r["status"] for r in rows)
    if status["failed"] and not status["ok"] and not status["skipped"]:
        return rows, EXIT_USAGE
    return rows, EXIT_PARTIAL if status["failed"] else EXIT_OK


def run_job(common: Common, job: FileJob, process: Callable[[FileJob], dict]) -> dict:
    """One input through `process` → its report row (status ok, skipped or failed). Without --overwrite,
    an input whose outputs all exist is skipped, and one with only some of them (a killed run) fails."""
    existing = [p for p in (job.dest, *job.also) if p is not None and p.exists()]
    if existing and not common.overwrite:
        if len(existing) == 1 + len(job.also):
            common.notice(f"skipping {job.label}: output {job.dest} exists (use --overwrite)")
            return {"input": job.label, "output": str(job.dest), "status": "skipped"}
        message = f"{job.label}: {len(existing)} of its {1 + len(job.also)} outputs exist ({existing[0]}, …): use --overwrite"
        common.error(message)
        return {"input": job.label, "status": "failed", "error": message}
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
