"""Files and folders: image suffixes, folder walking, output names, atomic writes with ordinary
permissions, and the pixel budget checked before anything is allocated. No numpy here: the command
line imports this module at start-up (`scoretool --help` stays fast); decoding and encoding pixels is
scoretool.io.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError, ScoretoolError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy"}
BYTES_PER_PIXEL = 256  # working memory of the heaviest command per pixel (float tensors, tiles, copies)
_pixel_budget: int | None = None  # set_pixel_budget (`scoretool --max-pixels`); None: from available memory


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux; physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def set_pixel_budget(pixels: int | None) -> None:
    """The most pixels (width × height × frames) one image, one output or one work array may have;
    None: available memory / BYTES_PER_PIXEL, read when checked."""
    global _pixel_budget
    _pixel_budget = pixels


def pixel_budget() -> int:
    return _pixel_budget or max(1, available_memory() // BYTES_PER_PIXEL)


def check_budget(pixels: int, what: str) -> None:
    """Refuse, before anything is allocated, work of `pixels` pixels above the budget (ScoretoolError;
    callers that handle one file raise it as that file's InputError)."""
    limit = pixel_budget()
    if pixels > limit:
        source = ("set by --max-pixels or SCORETOOL_MAX_PIXELS" if _pixel_budget else
                  "set by available memory; raise it with `scoretool --max-pixels N`")
        raise ScoretoolError(f"{what} has {pixels:,} pixels, above the limit of {limit:,} ({source})")


_TEMPORARY = re.compile(r"^\..+\.(\d+)-[0-9a-f]{6}\.part(\.[^.]*)?$")


@contextmanager
def atomic_output(path, overwrite: bool = True) -> Iterator[Path]:
    """A temporary path beside `path` to write to; on success it gets ordinary permissions and is
    renamed over `path` (readers see the old file or the whole new one), on failure it is removed.
    Every file scoretool writes goes through here; a killed writer's temporary file carries its
    process id, so `remove_stale_temporaries` recognises it later. With overwrite=False an existing
    `path` is refused first (for API callers; the CLI plans its outputs before any work)."""
    path = Path(path)
    if not overwrite and path.exists():
        raise InputError(path, "output exists (use --overwrite to replace it)")
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.part{path.suffix}")
    try:
        yield tmp
        ordinary_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete temporary files of `atomic_output` in `folder` whose writing process is gone."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMPORARY.match(p.name)
        if m and not _process_alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def ordinary_permissions(path) -> None:
    """0666 less the umask, as `open()` would give. mkstemp and safetensors create 0600 files; every
    output scoretool writes (images, models, OOD models) goes through here before its rename."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def list_images(path: Path, recursive: bool = False) -> tuple[list[Path], list[Path]]:
    """Image files under a folder (sorted), and the non-image files skipped; a file gives itself.
    Hidden files are left out."""
    path = Path(path)
    if path.is_file():
        return [path], []
    if not path.is_dir():
        raise ScoretoolError(f"{path}: no such file or folder")
    pattern = "**/*" if recursive else "*"
    images, skipped = [], []
    for p in sorted(path.glob(pattern)):
        if p.is_file() and not p.name.startswith("."):
            (images if p.suffix.lower() in IMAGE_SUFFIXES else skipped).append(p)
    return images, skipped


def output_path(src: Path, input_root: Path, output: Path, fmt: str | None, single_file: bool) -> Path:
    """Where the result of `src` goes: the input's name (and relative folder) under the output folder,
    or the output file itself for a single input named with an image suffix (a --format must agree with it)."""
    if single_file and output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir():
        named, asked = (v.lower().lstrip(".").replace("tiff", "tif") for v in (output.suffix, fmt or output.suffix))
        if named != asked:
            raise ScoretoolError(f"-o {output} --format {fmt}: the file name says {output.suffix}; name it .{fmt.lower()} "
                                 "or leave --format out")
        return output
    dest = output / (src.relative_to(input_root) if not single_file else Path(src.name))
    return dest.with_suffix("." + fmt.lower().lstrip(".")) if fmt else dest
