"""Writing files so a crash or a bad input never leaves half a file.

Every output kdarts writes (run records, genotypes, checkpoints, plots) goes to a temp
file in the destination's folder and is renamed over the destination only once it is
complete: a reader sees the old file or the new one, never a torn one.

Example:
    >>> with atomic_file("plot.png", suffix=".png") as tmp:   # doctest: +SKIP
    ...     fig.savefig(tmp)
    >>> atomic_write_json("run.json", {"command": "search"})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Iterator


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temp path in ``path``'s folder; rename it to ``path`` if the block succeeds.

    The temp file does not exist when the block starts (some writers, like h5py, create
    it themselves); on any error it is removed and ``path`` keeps its old content. The
    result has the usual permissions (mkstemp's 0600 would make it private).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, synced to disk before the rename."""
    with atomic_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path: str | os.PathLike, data) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
