"""Writing files so a crash or a bad input never leaves half a file.

Every output kdarts writes (run records, genotypes, checkpoints, plots) goes to a temp
file in the destination's folder and is renamed over the destination only once it is
complete: a reader sees the old file or the new one, never a torn one.

A write that finds its file system full (``ENOSPC``, or ``EDQUOT`` for a quota) raises
:class:`DiskFullError`, one line naming the file, the bytes it needed and the bytes free;
the temp file is removed and the destination keeps its previous content.

Example:
    >>> with atomic_file("plot.png", suffix=".png") as tmp:   # doctest: +SKIP
    ...     fig.savefig(tmp)
    >>> atomic_write_json("run.json", {"command": "search"})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from typing import Iterator

#: ``errno`` values of a write that found no room: a full file system, an exhausted quota.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """A write found its file system full; the message is one line naming the file, the
    bytes the write needed and the bytes free. The file keeps its previous content."""


def _size(num: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if num < 1024 or unit == "GB":
            return f"{num:.0f} {unit}" if unit == "bytes" else f"{num:.1f} {unit}"
        num /= 1024
    return f"{num:.1f} TB"  # pragma: no cover


def _file_size(path: str) -> int:
    """Bytes of the file ``path``, or of the files under the folder ``path`` (0: none)."""
    if os.path.isdir(path):
        return sum(_file_size(os.path.join(folder, name))
                   for folder, _, names in os.walk(path) for name in names)
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def _move_into_place(tmp: str, path: str) -> None:
    """Rename ``tmp`` to ``path``. A folder cannot be renamed over a folder: the old one
    is renamed aside first and removed after, so ``path`` is the old or the new one."""
    if not (os.path.isdir(tmp) and os.path.isdir(path)):
        os.replace(tmp, path)
        return
    old = tmp + ".old"
    os.rename(path, old)
    os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def disk_full_error(path: str | os.PathLike, needed: int, err: OSError) -> DiskFullError:
    """The :class:`DiskFullError` of a write of ``needed`` bytes to ``path`` that failed
    with ``err`` (its errno in :data:`NO_SPACE_ERRNOS`)."""
    path = os.path.abspath(os.fspath(path))
    try:
        free = f"{_size(shutil.disk_usage(os.path.dirname(path)).free)} free"
    except OSError:
        free = "free space unknown"
    full = "quota is exhausted" if err.errno == errno.EDQUOT else "disk is full"
    kept = ("its previous version is kept" if os.path.exists(path)
            else "nothing was written")
    return DiskFullError(err.errno, f"{path}: the {full} (writing it needs about "
                         f"{_size(needed)}, {free}); {kept}")


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = "",
                size: int | None = None) -> Iterator[str]:
    """Yield a temp path in ``path``'s folder; rename it to ``path`` if the block succeeds.

    The temp file does not exist when the block starts (some writers, like h5py, create
    it themselves; a block may also make a folder there, which then replaces the folder
    ``path``); on any error it is removed and ``path`` keeps its old content. The
    result has the usual permissions (mkstemp's 0600 would make it private).

    An ``OSError`` whose errno is in :data:`NO_SPACE_ERRNOS` becomes
    :class:`DiskFullError`; the bytes it says were needed are ``size`` if given, else the
    larger of the partial temp file and the file it was to replace.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield tmp
        os.chmod(tmp, (0o777 if os.path.isdir(tmp) else 0o666) & ~_umask())
        _move_into_place(tmp, path)
    except BaseException as err:
        partial = _file_size(tmp)
        _remove(tmp)
        if (isinstance(err, OSError) and not isinstance(err, DiskFullError)
                and err.errno in NO_SPACE_ERRNOS):
            needed = size if size is not None else max(partial, _file_size(path))
            raise disk_full_error(path, needed, err) from None
        raise


def write_synced(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` and sync it to disk (inside :func:`atomic_file`)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, synced to disk before the rename."""
    with atomic_file(path, size=len(data)) as tmp:
        write_synced(tmp, data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, synced to disk before the rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
