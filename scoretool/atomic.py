"""Atomic output files: write to a temporary file in the destination folder, then rename.

The same policy as io.write_image and weights.update_info (a reader never sees a half-written file,
an existing file is kept unless `overwrite`, permissions are those `open()` would give), for outputs
that are not written by those two: exported models and out-of-core TIFFs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError
from .io import ordinary_permissions


@contextmanager
def atomic_output(path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on failure it is removed.

    Raises InputError (`FILE: output exists (use --overwrite to replace it)`) if `path` exists and not
    `overwrite`."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(path, "output exists (use --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        ordinary_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
