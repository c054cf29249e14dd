"""A run's folder: its paths, its lock, what it holds, and its ``run.json``.

:class:`RunFolder` knows the folder (which files a kind of run writes, the lock that
keeps a second process out, ``run.json`` read in today's form, the checkpoint state);
whether a job may start, resume or reuse it is the job's resume policy
(:mod:`kdarts.runs.resume`). ``run.json`` carries a ``version``; one function,
:func:`migrate_run`, upgrades any older one (those without a version included).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from typing import Iterator

from kdarts.atomic import atomic_write_json
from kdarts.checkpoints import CHECKPOINT_STATE, CHECKPOINT_WEIGHTS, CheckpointFiles, \
    read_checkpoint_state
from kdarts.runs.defaults import LATER_ARGS, RECURRENT_LATER_ARGS, upgrade_args
from kdarts.runs.report import rel
from kdarts.runs.results import RunError

#: The folder ``--tensorboard`` writes event files to, inside a run folder.
TENSORBOARD_DIR = "tensorboard"
#: The lock file a writing run holds in its folder (pid and host, JSON).
LOCK_FILE = ".lock"
#: What each kind of run writes in its folder.
RUN_FILES: dict[str, tuple[str, ...]] = {
    "search": ("run.json", "genotype.json", "history.csv", "search_record.json",
               CHECKPOINT_WEIGHTS, CHECKPOINT_STATE, "alpha.png", "schedule.png",
               "genotype.png", TENSORBOARD_DIR),
    # a language model's training writes its vocabulary and the trainer's checkpoint
    # folder (checkpoint/) instead of the image checkpoint files
    "train": ("run.json", "model.keras", "metrics.json", "history.csv", CHECKPOINT_WEIGHTS,
              CHECKPOINT_STATE, TENSORBOARD_DIR, "model.keras.vocab.json", "checkpoint"),
    "quickstart": ("search", "train", "export.json"),
}


def check_writable(path: str, what: str = "--out", folder: bool = True) -> None:
    """Refuse an output path that cannot be created or written (before any work).

    ``path`` must be a folder (or not exist yet, under a writable folder); with
    ``folder=False`` it is a file to be written (or replaced).
    """
    path = os.path.abspath(path)
    if os.path.exists(path):
        if folder and not os.path.isdir(path):
            raise RunError(f"{what} {rel(path)} is a file, not a folder")
        if not folder and os.path.isdir(path):
            raise RunError(f"{what} {rel(path)} is a folder, not a file")
    parent = path if folder and os.path.isdir(path) else os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise RunError(f"{what} {rel(path)} cannot be created: {rel(parent)} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunError(f"{what} {rel(path)} cannot be written: {rel(parent)} is not writable")
    # os.access says yes to root everywhere and knows nothing of file systems such as
    # /proc that take no new entries: create (and remove) a hidden folder to be sure
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tmp-", dir=parent))
    except OSError as err:
        raise RunError(f"{what} {rel(path)} cannot be created: {rel(parent)} takes no new "
                       f"files ({err.strerror})") from None


def read_json(path: str, what: str) -> dict:
    """A JSON object from ``path``; RunError naming the file if it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"{rel(path)}: cannot read {what}: {err}") from None
    if not isinstance(data, dict):
        raise RunError(f"{rel(path)}: not a kdarts {what} (expected a JSON object)")
    return data


def space_of(args: dict) -> str:
    """The search space a run's arguments are for: ``"image"`` or ``"recurrent"``."""
    from kdarts.spaces import space_for

    return space_for(run=args).name


#: ``run.json``'s form today. Version 1 (no ``version`` field): kdarts before the field,
#: whose runs' arguments may lack those added since or hold older values.
RUN_VERSION = 2


def migrate_run(run: dict) -> dict:
    """``run`` (a ``run.json``'s content, command and args checked) in today's form
    (:data:`RUN_VERSION`), whichever kdarts wrote it: the arguments an older run lacks
    get the value such runs had (:data:`~kdarts.runs.defaults.LATER_ARGS`,
    :data:`~kdarts.runs.defaults.RECURRENT_LATER_ARGS`), and
    values of an older form read as today's
    (:func:`~kdarts.runs.defaults.upgrade_args`).

    Raises:
        ValueError: a version this kdarts does not know (a newer kdarts's).

    Example:
        >>> run = migrate_run({"command": "train", "args": {"epochs": 2}})
        >>> run["version"], run["args"]["imagenet_stem"]
        (2, False)
    """
    version = run.get("version", 1)
    if not isinstance(version, int) or not 1 <= version <= RUN_VERSION:
        raise ValueError(f"run.json version {version!r} is not one this kdarts knows (up "
                         f"to {RUN_VERSION}): a newer kdarts wrote it")
    args = run["args"]
    if version < 2:
        args = (upgrade_args({**LATER_ARGS.get(run["command"], {}), **args})
                if space_of(args) == "image"
                else {**RECURRENT_LATER_ARGS.get(run["command"], {}), **args})
    return {**run, "version": RUN_VERSION, "args": args}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class FolderLock:
    """``out/.lock``, held by one process at a time (its pid and host, JSON).

    :meth:`acquire` refuses a folder another live process holds with a one-line
    RunError naming the holder, and takes over a lock whose process has ended on this
    host; it creates the folder if needed, and :meth:`release` removes the lock and the
    folders it created if they are left empty.
    """

    def __init__(self, out: str):
        self.out = out
        self.path = os.path.join(out, LOCK_FILE)
        self._created: list[str] = []  # folders acquire() made, removed again if left empty
        self._locked = False

    def acquire(self) -> None:
        missing = []
        parent = self.out
        while not os.path.exists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        os.makedirs(self.out, exist_ok=True)
        self._created = missing  # innermost first
        mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        for _ in range(3):  # a stale lock is removed and creating it is tried again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is not None:
                    self._remove_created()
                    raise RunError(f"--out {rel(self.out)} is in use by another kdarts run "
                                   f"({holder}); wait for it to end, or remove "
                                   f"{rel(self.path)} if that process is gone") from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(mine + "\n")
            self._locked = True
            return
        self._remove_created()
        raise RunError(f"--out {rel(self.out)}: cannot take {rel(self.path)} (another run "
                       "keeps creating it)")

    def holder(self) -> str | None:
        """Who holds the lock ("pid N on host"), or None if it is stale (its process has
        ended on this host) or gone."""
        try:
            with open(self.path, encoding="utf-8") as f:
                record = json.load(f)
            pid, host = int(record["pid"]), str(record["host"])
        except FileNotFoundError:
            return None  # released meanwhile
        except (OSError, ValueError, KeyError, TypeError):
            return f"unreadable {LOCK_FILE}"  # being written, or not ours: leave it
        if host == socket.gethostname() and not _pid_alive(pid):
            return None
        return f"pid {pid} on {host}"

    def release(self) -> None:
        """Remove the lock (if held) and the folders :meth:`acquire` created, if empty."""
        if self._locked:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self._locked = False
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._created:
            try:
                os.rmdir(folder)  # only if empty: the run wrote nothing there
            except OSError:
                break
        self._created = []


class RunFolder:
    """The folder ``out`` of a ``command`` run (``"search"``, ``"train"``, ``"quickstart"``).

    Reads the folder (:meth:`read_run`, :meth:`checkpoint_state`) without writing
    anything, :meth:`lock` s it for the process that writes it, and writes ``run.json``
    (:meth:`write_run`). Whether a run may start in it is :mod:`kdarts.runs.resume`'s.

    Example:
        >>> folder = RunFolder("runs/search", "search")      # doctest: +SKIP
        >>> with folder.lock():                              # doctest: +SKIP
        ...     state = search_state(folder, args, resume="auto")
    """

    def __init__(self, out: str, command: str):
        self.out = os.path.abspath(out)
        self.command = command
        self._lock = FolderLock(self.out)

    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    def entries(self) -> list[str]:
        """The folder's entries, but for leftover temp files and the lock."""
        return sorted(e for e in os.listdir(self.out)
                      if not e.startswith(".tmp-") and e != LOCK_FILE)

    @contextlib.contextmanager
    def lock(self) -> Iterator["RunFolder"]:
        """Hold ``out/.lock`` for the block (:class:`FolderLock`): a second process (or
        RunFolder) writing the folder is refused with a one-line RunError naming the
        folder and the holder's pid. The lock is removed when the block ends, however it
        ends, and so is the folder if the block created it and left it empty."""
        check_writable(self.out)
        self._lock.acquire()
        try:
            yield self
        finally:
            self.release()

    def release(self) -> None:
        """Remove the lock (if this RunFolder holds it) and the folders it created, if
        they are empty."""
        self._lock.release()

    # ----------------------------------------------------------------- what it holds

    def read_run(self) -> dict | None:
        """The folder's ``run.json`` in today's form (:func:`migrate_run`); None for a
        missing or empty folder.

        Raises :class:`~kdarts.runs.results.RunError` if it holds another kind of run, or
        files that are not this kind of run's (a leftover ``.tmp-*`` of an interrupted
        write aside).
        """
        out, command = self.out, self.command
        check_writable(out)
        if not os.path.isdir(out):
            return None
        run_path = self.path("run.json")
        if os.path.exists(run_path):
            run = read_json(run_path, "run.json")
            other = run.get("command")
            if other != command or not isinstance(run.get("args"), dict):
                kind = f"a kdarts {other} run" if other in RUN_FILES else "something else"
                raise RunError(f"--out {rel(out)} holds {kind} (its run.json), not a "
                               f"{command} run; choose another --out")
            try:
                return migrate_run(run)
            except ValueError as err:
                raise RunError(f"{rel(run_path)}: {err}; choose another --out") from None
        self.refuse_without_run()
        return None

    def refuse_without_run(self, hint: str = "choose another --out") -> None:
        """RunError if the folder (without a run.json) holds anything: this kind of run's
        files (from an unknown run, ``hint`` says what to do) or others."""
        entries = self.entries()
        ours = [e for e in entries if e in RUN_FILES[self.command]]
        if ours and len(ours) == len(entries):
            raise RunError(f"--out {rel(self.out)} holds {', '.join(ours)} from an unknown "
                           f"run (no run.json); {hint}")
        if entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise RunError(f"--out {rel(self.out)} holds files that are not a kdarts "
                           f"{self.command} run ({shown}); choose another --out (an empty "
                           "or new folder)")

    def checkpoint_state(self, where: str | None = None) -> dict | None:
        """The state of the folder's checkpoint (:func:`~kdarts.checkpoints.read_checkpoint_state`;
        ``where``: a checkpoint folder inside it, None: the weights pair); None without
        one, RunError if unreadable."""
        files = (CheckpointFiles.weights(self.out) if where is None
                 else CheckpointFiles.folder(self.path(where)))
        try:
            return read_checkpoint_state(files)
        except ValueError as err:
            raise RunError(f"{err}; the checkpoint cannot be resumed: choose another "
                           "--out") from None

    def check_same_data(self, info) -> None:
        """A resumed run's data must still be what ``run.json`` recorded (a folder can
        change)."""
        run = read_json(self.path("run.json"), "run.json")
        then = {k: run.get(k) for k in ("num_classes", "image_shape", "num_train") if k in run}
        now = {"num_classes": info.num_classes, "image_shape": list(info.image_shape),
               "num_train": info.num_train}
        changed = {k: (then[k], now[k]) for k in then if then[k] != now[k]}
        if changed:
            name = rel(info.name) if os.path.isabs(info.name) else info.name
            raise RunError(f"{name} changed since this run started ("
                           + "; ".join(f"{k}: {a} → {b}" for k, (a, b) in changed.items())
                           + "); resuming would train on other data: choose another --out")

    # ----------------------------------------------------------------------- writing

    def write_run(self, record: dict) -> None:
        """Write ``run.json``: the command, the version (:data:`RUN_VERSION`), then
        ``record``."""
        os.makedirs(self.out, exist_ok=True)
        atomic_write_json(self.path("run.json"), {"command": self.command,
                                                  "version": RUN_VERSION, **record})

    def upgrade_run(self) -> None:
        """Rewrite an older ``run.json`` in today's form (a resumed run's, once it is
        accepted)."""
        run = read_json(self.path("run.json"), "run.json")
        if run.get("version") != RUN_VERSION:
            atomic_write_json(self.path("run.json"), migrate_run(run))

    def remove_run_files(self) -> None:
        """Delete what this kind of run writes (only that) from the folder."""
        for name in RUN_FILES[self.command]:
            path = self.path(name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.unlink(path)


def read_run(out: str, command: str) -> dict | None:
    """The ``run.json`` of a ``command`` run in ``out`` (see :meth:`RunFolder.read_run`)."""
    return RunFolder(out, command).read_run()
