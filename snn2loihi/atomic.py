"""Atomic file writes: every file snn2loihi saves (checkpoints, netx and NIR files, reports,
figures, event recordings) is written to a temporary file in the target's folder and renamed
over the target (``os.replace``, atomic on one file system). A crash or an exception leaves
the old file, or none, never half of a new one, and removes the temporary file.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator

FILE_MODE = 0o644
"""Mode of a written file: ``mkstemp`` creates 0600, which other users could not read."""


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path`` (its folder is created); when the block ends
    without an exception, the file written there replaces ``path``.

    >>> with atomic_path("out/model.net") as tmp:   # doctest: +SKIP
    ...     write_something(tmp)
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        json.dump(data, handle, indent=indent)
