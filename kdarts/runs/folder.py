"""A run's folder: what it holds, whether this run may use it, and a lock so that one
process at a time writes it.

A folder is accepted when it is new, empty, or holds this kind of run with the same
arguments (to resume, or to reuse when complete); anything else is refused with a
one-line :class:`~kdarts.runs.RunError` before any data is loaded, and nothing in it
is touched.
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
from kdarts.checkpoints import CHECKPOINT_STATE, CHECKPOINT_WEIGHTS, read_checkpoint_state
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


def describe_diff(old: dict, new: dict, order: list[str]) -> str:
    """``key: old → new`` for every argument that differs, in ``order``."""
    keys = sorted(set(old) | set(new), key=lambda k: order.index(k) if k in order else 99)
    return "; ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}"
                     for k in keys if old.get(k) != new.get(k))


#: Where a language model's trainer keeps its last epoch's checkpoint, in a training folder.
TRAINER_LAST = os.path.join("checkpoint", "last")


def space_of(args: dict) -> str:
    """The search space a run's arguments are for: ``"image"`` or ``"recurrent"``."""
    return args.get("space", "image")


def metrics_summary(metrics: dict) -> str:
    """A finished training's headline figure, as its metrics.json gives it."""
    if "test_perplexity" in metrics:
        return f"test perplexity {float(metrics['test_perplexity']):.1f}"
    return f"test accuracy {100 * float(metrics.get('test_accuracy', 0)):.2f}%"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class RunFolder:
    """The folder ``out`` of a ``command`` run (``"search"``, ``"train"``, ``"quickstart"``).

    Reads and checks the folder (:meth:`read_run`, :meth:`search_state`,
    :meth:`train_state`, :meth:`worker_state`) without writing anything, and
    :meth:`lock` s it for the process that writes it.

    Example:
        >>> folder = RunFolder("runs/search", "search")      # doctest: +SKIP
        >>> with folder.lock():                              # doctest: +SKIP
        ...     state = folder.search_state(args, resume="auto")
    """

    def __init__(self, out: str, command: str):
        self.out = os.path.abspath(out)
        self.command = command
        self._created: list[str] = []  # folders lock() made, removed again if left empty
        self._locked = False

    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    def entries(self) -> list[str]:
        """The folder's entries, but for leftover temp files and the lock."""
        return sorted(e for e in os.listdir(self.out)
                      if not e.startswith(".tmp-") and e != LOCK_FILE)

    # ------------------------------------------------------------------------ lock

    @contextlib.contextmanager
    def lock(self) -> Iterator["RunFolder"]:
        """Hold ``out/.lock`` for the block: a second process (or RunFolder) writing the
        folder is refused with a one-line RunError naming the folder and the holder's
        pid. A lock whose process has ended on this host is taken over. The lock is
        removed when the block ends, however it ends, and so is the folder if the block
        created it and left it empty."""
        check_writable(self.out)
        self._acquire()
        try:
            yield self
        finally:
            self.release()

    def _acquire(self) -> None:
        missing = []
        parent = self.out
        while not os.path.exists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        os.makedirs(self.out, exist_ok=True)
        self._created = missing  # innermost first
        lock = self.path(LOCK_FILE)
        mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        for _ in range(3):  # a stale lock is removed and creating it is tried again
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder(lock)
                if holder is not None:
                    self._remove_created()
                    raise RunError(f"--out {rel(self.out)} is in use by another kdarts run "
                                   f"({holder}); wait for it to end, or remove "
                                   f"{rel(lock)} if that process is gone") from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(mine + "\n")
            self._locked = True
            return
        self._remove_created()
        raise RunError(f"--out {rel(self.out)}: cannot take {rel(lock)} (another run keeps "
                       "creating it)")

    @staticmethod
    def _holder(lock: str) -> str | None:
        """Who holds ``lock`` ("pid N on host"), or None if it is stale (its process has
        ended on this host)."""
        try:
            with open(lock, encoding="utf-8") as f:
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
        """Remove the lock (if this RunFolder holds it) and the folders it created, if
        they are empty."""
        if self._locked:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(LOCK_FILE))
            self._locked = False
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._created:
            try:
                os.rmdir(folder)  # only if empty: the run wrote nothing there
            except OSError:
                break
        self._created = []

    # ----------------------------------------------------------------- what it holds

    def read_run(self) -> dict | None:
        """The folder's ``run.json``; None for a missing or empty folder.

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
            return run
        entries = self.entries()
        ours = [e for e in entries if e in RUN_FILES[command]]
        if ours and len(ours) == len(entries):
            raise RunError(f"--out {rel(out)} holds {', '.join(ours)} from an unknown run (no "
                           f"run.json); choose another --out")
        if entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise RunError(f"--out {rel(out)} holds files that are not a kdarts {command} "
                           f"run ({shown}); choose another --out (an empty or new folder)")
        return None

    def checkpoint_state(self) -> dict | None:
        """The folder's ``checkpoint.json`` (None without one); RunError if unreadable."""
        try:
            return read_checkpoint_state(self.out)
        except ValueError as err:
            raise RunError(f"{err}; the checkpoint cannot be resumed: choose another "
                           "--out") from None

    def worker_state(self, resume: bool | str) -> dict | None:
        """A non-chief worker's checkpoint state: the chief's, read from the folder."""
        state = self.checkpoint_state() if resume else None
        if resume is True and state is None:
            raise RunError(f"--resume: no checkpoint in {rel(self.out)}; every worker reads "
                           "the chief's, so --out must be a folder all workers see")
        return state

    def search_state(self, args: dict, resume: bool | str) -> dict | None:
        """The checkpoint state to resume from, or None for a fresh start; RunError otherwise.

        ``resume``: True (``--resume``), False, or ``"auto"`` (resume if possible).
        """
        out = self.out
        run = self.read_run()
        old = self._previous_args(run, args)
        state = self.checkpoint_state() if run else None
        if old is not None and old != args:
            hint = {True: "pass the same arguments to resume it (see its run.json)",
                    False: "choose another --out (or pass its arguments with --resume)",
                    "auto": "choose another --out"}[resume]
            raise RunError(f"--out {rel(out)} holds a different {_kind(args)}search run "
                           f"({describe_diff(old, args, list(args))}); {hint}; "
                           "nothing was changed")
        if resume is True and state is None:
            where = (f"{rel(out)} holds this search but no epoch of it completed"
                     if run else f"no checkpoint in {rel(out)}")
            raise RunError(f"--resume: {where} (checkpoint.weights.h5 and checkpoint.json are "
                           "written at the end of each epoch); run without --resume to start "
                           "the search")
        if state is not None and not resume:
            raise RunError(f"--out {rel(out)} already holds this search (checkpoint after "
                           f"epoch {state.get('epoch')} of {args['epochs']}); pass --resume "
                           "to continue it, or choose another --out")
        return state

    def train_state(self, args: dict, resume: bool | str, overwrite: bool
                    ) -> tuple[dict | None, dict | None]:
        """``(checkpoint state, finished metrics)`` to continue from; RunError if refused.

        ``overwrite`` deletes this command's files from the folder (only those) and
        starts over.
        """
        out = self.out
        check_writable(out)
        if os.path.isdir(out) and not os.path.exists(self.path("run.json")):
            entries = self.entries()
            if entries and set(entries) <= set(RUN_FILES["train"]):  # an older kdarts's
                if not overwrite:
                    raise RunError(f"--out {rel(out)} already holds {', '.join(entries)} "
                                   "from an unknown run (no run.json); choose another --out "
                                   "or pass --overwrite to replace them")
                self.remove_run_files()
                return None, None
        run = self.read_run()  # refuses other kinds of run and unrelated files
        if overwrite:
            self.remove_run_files()
            return None, None
        if run is None:
            return None, None
        old = self._previous_args(run, args)
        if old != args:
            raise RunError(f"--out {rel(out)} holds a different {_kind(args)}training run "
                           f"({describe_diff(old, args, list(args))}); choose another "
                           "--out, or pass --overwrite to replace it")
        state = (self.trainer_state() if space_of(args) == "recurrent"
                 else self.checkpoint_state())
        metrics_path = self.path("metrics.json")
        if os.path.exists(metrics_path):
            metrics = read_json(metrics_path, "metrics.json")
            if resume == "auto":
                return state, metrics
            raise RunError(f"--out {rel(out)} already holds this training, complete "
                           f"(metrics.json: {metrics_summary(metrics)}); choose "
                           "another --out or pass --overwrite to train again")
        if resume is True and state is None:
            raise RunError(f"--resume: no checkpoint in {rel(out)} (written at the end of "
                           "each epoch); run without --resume to start the training")
        if state is not None and not resume:
            raise RunError(f"--out {rel(out)} already holds this training (checkpoint after "
                           f"epoch {state['epoch']} of {args['epochs']}); pass --resume to "
                           "continue it, or --overwrite to start over")
        return state, None

    def _previous_args(self, run: dict | None, args: dict) -> dict | None:
        """run.json's arguments, completed with those an older run lacks (image runs), to compare
        with ``args``; RunError if the folder holds the other search space's run."""
        if run is None:
            return None
        old = run["args"]
        if space_of(old) != space_of(args):
            noun = "search" if self.command == "search" else "training"
            raise RunError(f"--out {rel(self.out)} holds {_article(space_of(old))} {noun} "
                           f"run, not {_article(space_of(args))} one; choose another --out")
        if space_of(args) == "recurrent":
            return {**RECURRENT_LATER_ARGS.get(self.command, {}), **old}
        return upgrade_args({**LATER_ARGS[self.command], **old})

    def trainer_state(self) -> dict | None:
        """A language model's trainer state after its last epoch (None without one)."""
        path = self.path(os.path.join(TRAINER_LAST, "state.json"))
        if not os.path.exists(path):
            return None
        state = read_json(path, "the training's checkpoint state")
        if not isinstance(state.get("epoch"), int):
            raise RunError(f"{rel(path)}: not a kdarts checkpoint (no integer 'epoch'); the "
                           "checkpoint cannot be resumed: choose another --out")
        return state

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
        """Write ``run.json`` (the command first, then ``record``)."""
        os.makedirs(self.out, exist_ok=True)
        atomic_write_json(self.path("run.json"), {"command": self.command, **record})

    def remove_run_files(self) -> None:
        """Delete what this kind of run writes (only that) from the folder."""
        for name in RUN_FILES[self.command]:
            path = self.path(name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.unlink(path)


def _kind(args: dict) -> str:
    """"recurrent " for a recurrent run's arguments, "" for an image run's."""
    return "recurrent " if space_of(args) == "recurrent" else ""


def _article(space: str) -> str:
    return "an image" if space == "image" else f"a {space}"


def read_run(out: str, command: str) -> dict | None:
    """The ``run.json`` of a ``command`` run in ``out`` (see :meth:`RunFolder.read_run`)."""
    return RunFolder(out, command).read_run()
