"""Runs in folders: a search, a training, an export and the quickstart.

Each run writes into its own folder, named first in ``run.json`` (the command
and its arguments), and can be continued after an interruption. The ``kdarts``
command line is a thin layer over these functions; Python users get the same
folders, resume and refusals:

* a folder holding another kind of run, unrelated files, or the same kind of
  run with other arguments is refused with a one-line :class:`RunError`, before
  any data is loaded or network built, and nothing in it is touched;
* an output path that is a file, lies under a file, or cannot be written is
  refused the same way;
* a search or training checkpoints every epoch; ``resume=True`` continues it
  and ends exactly where an uninterrupted run would;
* an interruption (Ctrl-C) raises :class:`RunInterrupted` whose message says
  what was kept and how to continue.

Example:
    >>> from kdarts.runs import search_run, train_run, export_run
    >>> s = search_run("runs/search", epochs=8)
    >>> t = train_run(s.genotype_path, "runs/train")
    >>> e = export_run(t.model_path, "onnx")
    >>> t.test_accuracy, e.path
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import warnings
from importlib import metadata
from typing import Callable

from kdarts.checkpoints import CHECKPOINT_STATE, CHECKPOINT_WEIGHTS, read_checkpoint_state
from kdarts.data.catalog import DATASETS, DEFAULT_DATASET, DatasetError, fit_batch_size, \
    search_split_size
from kdarts.data.files import IMAGENET_MIN_SIZE, MIN_IMAGE_SIZE, DataNotice, check_dataset, \
    parse_image_size, served_size, train_size
from kdarts.export import SUFFIXES, suffix_error
from kdarts.genotype import PRIMITIVES, Genotype, GenotypeError, atomic_write_text, \
    resolve_genotype

#: α's Adam learning rate and the dynamic schedule's initial threshold for small searches.
SMALL_ARCH_LR, SMALL_THRESHOLD = 0.05, 50.0

#: Search defaults: the paper's method (crb, dynamic schedule k=10 with the dynamic
#: split, proximity ρ=0.1) at a size the 8x8 digits search in a few minutes on 2 CPU cores.
#: Such a search has ~35 α steps where the paper's has ~3,500, so α's learning rate is
#: scaled up to let α move as far (about 1; with 3e-4 it moves ~0.01 and crb prunes
#: nothing), and the dynamic schedule starts at a threshold in the range of the digits'
#: FI (10–150) instead of 1.0, so α steps begin at once (README: 'Small searches').
SEARCH_DEFAULTS: dict = dict(
    dataset=DEFAULT_DATASET, epochs=8, activation="crb", schedule="dynamic", every=10,
    arch_lr=SMALL_ARCH_LR, threshold=SMALL_THRESHOLD,
    reg="proximity", rho=0.1, admm_every=10, admm_variant="spec", split="dynamic",
    batch_size=32, channels=8,
    layers=5, steps=4, primitives=None, max_examples=None, seed=0, unrolled=False,
    image_size=None, mixed_precision=False, skip_pruned_ops=False,
)
#: Evaluation training defaults for the digits (DARTS's recipe, smaller and shorter).
TRAIN_DEFAULTS: dict = dict(
    dataset=DEFAULT_DATASET, epochs=20, channels=16, layers=8, batch_size=64, cutout=0,
    auxiliary=True, drop_path=0.1, lr=0.025, seed=0, max_examples=None, image_size=None,
    imagenet_stem=False, mixed_precision=False,
)
#: The paper's settings, the defaults for the datasets of the paper's size (explicit
#: options still win): DARTS-PRIME's search and DARTS's evaluation training on CIFAR.
PAPER_SEARCH: dict = dict(channels=16, layers=8, batch_size=64, epochs=50, arch_lr=3e-4,
                          threshold=1.0)
PAPER_TRAIN: dict = dict(channels=36, layers=20, batch_size=96, epochs=600, cutout=16,
                         drop_path=0.2)
DATASET_DEFAULTS: dict[str, dict[str, dict]] = {
    name: {"search": PAPER_SEARCH, "train": PAPER_TRAIN} for name in ("cifar10", "cifar100")}


def resolve_options(command: str, options: dict) -> dict:
    """Every option of a ``search``/``train`` run: those given (not None), else the
    dataset's defaults (:data:`DATASET_DEFAULTS`), else the digits-sized ones.

    Example:
        >>> resolve_options("train", {"dataset": "cifar10", "epochs": 5})["channels"]
        36
    """
    base = {"search": SEARCH_DEFAULTS, "train": TRAIN_DEFAULTS}[command]
    unknown = set(options) - set(base)
    if unknown:
        raise TypeError(f"{command}_run: unknown option(s) {', '.join(sorted(unknown))}")
    given = {k: v for k, v in options.items() if v is not None}
    dataset = given.get("dataset", base["dataset"])
    return {**base, **DATASET_DEFAULTS.get(dataset, {}).get(command, {}), **given}


#: Arguments added since run folders were first written, with the value older runs had.
_LATER_ARGS: dict[str, dict] = {
    "search": {"image_size": None, "arch_lr": 3e-4, "threshold": 1.0,
               "mixed_precision": False, "skip_pruned_ops": False},
    "train": {"image_size": None, "imagenet_stem": False, "mixed_precision": False},
}
#: The folder ``--tensorboard`` writes event files to, inside a run folder.
TENSORBOARD_DIR = "tensorboard"
#: What each kind of run writes in its folder.
RUN_FILES: dict[str, tuple[str, ...]] = {
    "search": ("run.json", "genotype.json", "history.csv", "search_record.json",
               CHECKPOINT_WEIGHTS, CHECKPOINT_STATE, "alpha.png", "schedule.png",
               "genotype.png", TENSORBOARD_DIR),
    "train": ("run.json", "model.keras", "metrics.json", "history.csv", CHECKPOINT_WEIGHTS,
              CHECKPOINT_STATE, TENSORBOARD_DIR),
    "quickstart": ("search", "train", "export.json"),
}
EXPORT_DIR = "saved_models"

Report = Callable[[str], None]


class RunError(ValueError):
    """A run cannot start (bad input or output folder); one line, nothing was touched."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says what was kept and how to continue."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclasses.dataclass
class SearchResult:
    """What :func:`search_run` did. ``genotype`` is None until the search completed."""

    out: str
    epochs_done: int
    complete: bool
    genotype: Genotype | None = None
    alpha_steps: int = 0
    pruned_ops: int = 0
    seconds: float = 0.0

    @property
    def genotype_path(self) -> str:
        return os.path.join(self.out, "genotype.json")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_run` did; ``metrics`` is ``metrics.json`` (None until complete)."""

    out: str
    epochs_done: int
    complete: bool
    metrics: dict | None = None
    seconds: float = 0.0

    @property
    def model_path(self) -> str:
        return os.path.join(self.out, "model.keras")

    @property
    def test_accuracy(self) -> float | None:
        return None if self.metrics is None else self.metrics["test_accuracy"]


@dataclasses.dataclass
class ExportRunResult:
    """What :func:`export_run` wrote (see :class:`kdarts.export.ExportResult`)."""

    path: str
    format: str
    max_abs_diff: float | None
    input_contract: dict | None
    seconds: float
    quantize: str = "none"
    agreement: float | None = None
    verified_on: str | None = None


# ------------------------------------------------------------------- interruption

_NOTE = ["nothing was written"]


def interrupt_note() -> str:
    """What the running run has kept so far, and how to continue it (for Ctrl-C)."""
    return _NOTE[0]


def _note(text: str) -> None:
    _NOTE[0] = text


def _interrupted() -> RunInterrupted:
    return RunInterrupted(f"interrupted; {interrupt_note()}")


class SigintWatchdog:
    """Ends the process if Ctrl-C is not handled within ``grace`` seconds.

    TensorFlow can hold the interpreter for a minute while it optimises a graph,
    and Python runs its signal handler (raising KeyboardInterrupt) only afterwards.
    This thread wakes on the signal at once (``signal.set_wakeup_fd``); if the
    main thread has not stopped within ``grace`` seconds it prints
    ``Error: interrupted; <interrupt_note()>`` and exits with status 130. Every file
    kdarts writes is written atomically, so nothing half-written is left.
    Create it in the main thread; :meth:`stop` when the work is done.
    """

    def __init__(self, grace: float = 3.0):
        self.grace = float(grace)
        self.done = threading.Event()
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.previous_fd = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        self.stderr_fd = os.dup(2)  # stays the terminal while native code's stderr is muted
        self.thread = threading.Thread(target=self._watch, daemon=True, name="kdarts-sigint")
        self.thread.start()

    def _watch(self) -> None:
        while True:
            data = os.read(self.read_fd, 64)  # the C-level handler writes here at once
            if not data or self.done.is_set():
                return
            if signal.SIGINT in data and not self.done.wait(self.grace):
                os.write(self.stderr_fd, f"\nError: interrupted; "
                         f"{' '.join(interrupt_note().split())}\n".encode())
                os._exit(130)

    def stop(self) -> None:
        self.done.set()
        signal.set_wakeup_fd(self.previous_fd)
        os.close(self.write_fd)  # ends the thread's read
        self.thread.join(1.0)
        os.close(self.read_fd)
        os.close(self.stderr_fd)


def _epoch_note(what: str, out: str, total: int, resume_hint: str):
    """A callback keeping the interrupt note current after each checkpoint."""
    import keras

    class EpochNote(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            _note(f"the {what}'s last checkpoint (epoch {epoch + 1} of {total}) is in "
                  f"{rel(out)}: {resume_hint} continues it")

    return EpochNote()


# --------------------------------------------------------------------------- paths


def rel(path: str) -> str:
    """``path`` relative to the working directory when it is inside it (shorter output)."""
    path = os.path.abspath(path)
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


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


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"{rel(path)}: cannot read {what}: {err}") from None
    if not isinstance(data, dict):
        raise RunError(f"{rel(path)}: not a kdarts {what} (expected a JSON object)")
    return data


def _write_json(path: str, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_run(out: str, command: str) -> dict | None:
    """The ``run.json`` of a ``command`` run in ``out``; None for a missing or empty folder.

    Raises :class:`RunError` if ``out`` holds another kind of run, or files that
    are not a ``command`` run's (a leftover ``.tmp-*`` of an interrupted write aside).
    """
    check_writable(out)
    if not os.path.isdir(out):
        return None
    run_path = os.path.join(out, "run.json")
    if os.path.exists(run_path):
        run = _read_json(run_path, "run.json")
        other = run.get("command")
        if other != command or not isinstance(run.get("args"), dict):
            kind = f"a kdarts {other} run" if other in RUN_FILES else "something else"
            raise RunError(f"--out {rel(out)} holds {kind} (its run.json), not a {command} "
                           "run; choose another --out")
        return run
    entries = sorted(e for e in os.listdir(out) if not e.startswith(".tmp-"))
    ours = [e for e in entries if e in RUN_FILES[command]]
    if ours and len(ours) == len(entries):
        raise RunError(f"--out {rel(out)} holds {', '.join(ours)} from an unknown run (no "
                       f"run.json); choose another --out")
    if entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise RunError(f"--out {rel(out)} holds files that are not a kdarts {command} run "
                       f"({shown}); choose another --out (an empty or new folder)")
    return None


def _checkpoint_state(out: str) -> dict | None:
    try:
        return read_checkpoint_state(out)
    except ValueError as err:
        raise RunError(f"{err}; the checkpoint cannot be resumed: choose another --out") from None


def _describe_diff(old: dict, new: dict, order: list[str]) -> str:
    keys = sorted(set(old) | set(new), key=lambda k: order.index(k) if k in order else 99)
    return "; ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}"
                     for k in keys if old.get(k) != new.get(k))


def _version() -> str:
    try:
        return metadata.version("kdarts")
    except metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


def _fmt_time(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _quiet(_: str) -> None:
    pass


# -------------------------------------------------------------------------- search


def parse_primitives(value: str | list | tuple | None, activation: str) -> tuple[str, ...] | None:
    """Candidate ops from ``"a,b,c"`` (or a list); None means all."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "all")):
        return None
    names = tuple(p.strip() for p in (value.split(",") if isinstance(value, str) else value)
                  if p.strip())
    unknown = [p for p in names if p not in PRIMITIVES]
    if unknown:
        raise RunError(f"--primitives: unknown op(s) {', '.join(unknown)}; valid: "
                       f"{', '.join(PRIMITIVES)}")
    if len(set(names)) != len(names):
        raise RunError(f"--primitives: {value!r} lists an op twice")
    if activation == "crb" and "none" in names:
        raise RunError("--primitives: 'none' is not a candidate with --activation crb "
                       "(an op is pruned instead)")
    if not [p for p in names if p != "none"]:
        raise RunError("--primitives: need at least one op other than 'none'")
    return names


def _check_dataset(opts: dict) -> None:
    """Checks ``--dataset``/``--image-size`` (no TensorFlow) and makes them canonical.

    A path becomes absolute, so ``run.json`` names the data wherever the run is
    resumed from; the image size becomes ``[H, W]`` (JSON).
    """
    try:
        size = parse_image_size(opts["image_size"])
        opts["dataset"] = check_dataset(opts["dataset"], size)
    except DatasetError as err:
        raise RunError(" ".join(str(err).split())) from None
    opts["image_size"] = None if size is None else list(size)


def _check_imagenet_size(opts: dict) -> None:
    """``--imagenet-stem`` halves the images five times: refuse smaller ones at once."""
    if opts["channels"] < 2:
        raise RunError(f"--imagenet-stem needs --channels 2 or more (its first stem conv has "
                       f"C/2 channels), got {opts['channels']}")
    size = served_size(opts["dataset"], opts["image_size"])
    if min(size) < IMAGENET_MIN_SIZE:
        folder = os.path.isdir(opts["dataset"])
        data = rel(opts["dataset"]) if os.path.isabs(opts["dataset"]) else opts["dataset"]
        raise RunError(f"--imagenet-stem needs images of at least {IMAGENET_MIN_SIZE}x"
                       f"{IMAGENET_MIN_SIZE} (three stride-2 stem convs, then two reductions); "
                       f"the images of {data} are {size[0]}x{size[1]}"
                       + (f" (--image-size {IMAGENET_MIN_SIZE} enlarges them)" if folder else ""))


def _check_same_data(out: str, info) -> None:
    """A resumed run's data must still be what ``run.json`` recorded (a folder can change)."""
    run = _read_json(os.path.join(out, "run.json"), "run.json")
    then = {k: run.get(k) for k in ("num_classes", "image_shape", "num_train") if k in run}
    now = {"num_classes": info.num_classes, "image_shape": list(info.image_shape),
           "num_train": info.num_train}
    changed = {k: (then[k], now[k]) for k in then if then[k] != now[k]}
    if changed:
        raise RunError(f"{rel(info.name) if os.path.isabs(info.name) else info.name} changed "
                       "since this run started ("
                       + "; ".join(f"{k}: {a} → {b}" for k, (a, b) in changed.items())
                       + f"); resuming would train on other data: choose another --out")


def _data_label(info) -> str:
    return rel(info.name) if os.path.isabs(info.name) else info.name


@contextlib.contextmanager
def _data_notices():
    """Keeps :class:`~kdarts.data.files.DataNotice` warnings off stderr: a run reports
    the same lines (``info.notes``) as lines of its output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNotice)
        yield


def _model_dataset(info) -> str:
    """The dataset name a model records: a TFDS name, or a folder's or file's own name
    (not its path: the model and its exports travel to other machines)."""
    return os.path.basename(info.name.rstrip(os.sep)) if os.path.isabs(info.name) else info.name


def _tensorboard_available() -> None:
    from importlib.util import find_spec

    if find_spec("tensorboard") is None:
        raise RunError("--tensorboard needs the tensorboard package: pip install tensorboard "
                       "(or pip install kdarts[tensorboard])")


def _open_strategy(name: str, batch_size: int):
    """``(strategy, chief, replicas)`` of ``--strategy name``; RunError if it cannot start
    or the global batch does not divide among its replicas. Call it before any other
    TensorFlow op: a multi-worker strategy must exist first."""
    from kdarts.runtime import is_chief, make_strategy

    try:
        strategy = make_strategy(name)
    except ValueError as err:
        raise RunError(str(err)) from None
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise RunError(f"--batch-size {batch_size} is the global batch: it must divide "
                       f"evenly among the {replicas} replicas")
    return strategy, is_chief(name), replicas


def _worker_state(out: str, resume: bool | str) -> dict | None:
    """A non-chief worker's checkpoint state: the chief's, read from ``out``."""
    state = _checkpoint_state(out) if resume else None
    if resume is True and state is None:
        raise RunError(f"--resume: no checkpoint in {rel(out)}; every worker reads the "
                       "chief's, so --out must be a folder all workers see")
    return state


def _search_state(out: str, args: dict, resume: bool | str) -> dict | None:
    """The checkpoint state to resume from, or None for a fresh start; RunError otherwise.

    ``resume``: True (``--resume``), False, or ``"auto"`` (resume if possible).
    """
    run = read_run(out, "search")
    old = {**_LATER_ARGS["search"], **run["args"]} if run else None
    state = _checkpoint_state(out) if run else None
    if old is not None and old != args:
        hint = {True: "pass the same arguments to resume it (see its run.json)",
                False: "choose another --out (or pass its arguments with --resume)",
                "auto": "choose another --out"}[resume]
        raise RunError(f"--out {rel(out)} holds a different search run "
                       f"({_describe_diff(old, args, list(SEARCH_DEFAULTS))}); {hint}; "
                       "nothing was changed")
    if resume is True and state is None:
        where = (f"{rel(out)} holds this search but no epoch of it completed"
                 if run else f"no checkpoint in {rel(out)}")
        raise RunError(f"--resume: {where} (checkpoint.weights.h5 and checkpoint.json are "
                       "written at the end of each epoch); run without --resume to start "
                       "the search")
    if state is not None and not resume:
        raise RunError(f"--out {rel(out)} already holds this search (checkpoint after epoch "
                       f"{state.get('epoch')} of {args['epochs']}); pass --resume to "
                       "continue it, or choose another --out")
    return state


def _search_args(options: dict) -> tuple[dict, dict, tuple | None, str | None]:
    """``(options, run.json's args, primitives, batch note)`` of a search, checked without
    TensorFlow; the note (or None) says the batch was lowered to fit small own data."""
    opts = resolve_options("search", options)
    _check_dataset(opts)
    batch_note = _fit_search_batch(opts, explicit=options.get("batch_size") is not None)
    primitives = parse_primitives(opts["primitives"], opts["activation"])
    opts["primitives"] = list(primitives) if primitives else None
    if opts["steps"] < 1:
        raise RunError(f"--steps must be >= 1, got {opts['steps']}")
    return opts, {key: opts[key] for key in SEARCH_DEFAULTS}, primitives, batch_note


def _fit_search_batch(opts: dict, explicit: bool) -> str | None:
    """Own data (a folder or an ``.npz``): a default batch larger than the search split is
    lowered to the largest power of two the split holds, and the line saying so returned;
    an explicit ``--batch-size`` that does not fit is refused. Counted without TensorFlow.

    The lowered batch goes into ``opts``, hence into run.json's args: the same command
    chooses it again, so ``--resume`` finds the same arguments.
    """
    if opts["dataset"] in DATASETS:  # a TFDS name: its pipelines check the batch
        return None
    num_train = train_size(opts["dataset"], opts["image_size"])
    if opts["max_examples"]:
        num_train = min(num_train, opts["max_examples"])
    num_search = search_split_size(num_train, opts["split"], opts["every"])
    batch = opts["batch_size"]
    data = rel(opts["dataset"])
    share = (f"1/{1 + opts['every']}" if opts["split"] == "dynamic" else "half")
    if num_search < 1:
        raise RunError(f"the search split of {data} would hold no image ({share} of "
                       f"{num_train} training images); add images"
                       + (" or pass --split half" if opts["split"] == "dynamic" else ""))
    if batch <= num_search:
        return None
    if explicit:
        raise RunError(f"--batch-size {batch}: the search split of {data} has {num_search} "
                       f"images ({share} of {num_train} training images), fewer than a "
                       f"batch; pass --batch-size {num_search} or less, or add images")
    opts["batch_size"] = fit_batch_size(batch, num_search)
    return (f"batch size {opts['batch_size']}: the search split of {data} has {num_search} "
            f"images ({share} of {num_train}), fewer than the default {batch}; "
            "--batch-size sets another")


def check_search_folder(out: str, **options) -> None:
    """Raise :class:`RunError` unless ``out`` is new or holds the search ``options``
    describe (finished or not), as :func:`search_run` would; nothing is loaded or written."""
    _search_state(os.path.abspath(out), _search_args(options)[1], "auto")


def search_run(out: str, *, resume: bool | str = False, download: bool = False,
               data_dir: str | None = None, stop_after_epoch: int | None = None,
               report: Report | None = print, progress: bool = True,
               resume_hint: str = "the same command with --resume",
               tensorboard: bool = False, strategy: str = "default",
               sync_batch_norm: bool = True,
               before_tensorflow: Callable[[], None] | None = None,
               **options) -> SearchResult:
    """Search a cell in the folder ``out`` (written: see :data:`RUN_FILES`).

    Args:
        out: the run folder (new, empty, or this search's own to resume).
        resume: continue from the folder's checkpoint (True), start fresh (False), or
            whichever applies (``"auto"``).
        download, data_dir: see :func:`kdarts.data.load_dataset`.
        stop_after_epoch: end after this many epochs (checkpointed; resume later).
        report: receives one-line messages (None: silent).
        progress: draw a progress bar per epoch.
        resume_hint: how the interruption message says to continue.
        tensorboard: also write TensorBoard event files to ``out/tensorboard``
            (:class:`kdarts.search.callbacks.SearchTensorBoard`).
        strategy: ``"default"`` (one device), ``"mirrored"`` (every GPU, or every logical
            CPU device) or ``"multiworker"`` (the cluster in ``TF_CONFIG``); see
            :func:`kdarts.runtime.make_strategy`. The batch size is the global batch,
            split across the replicas; only the chief writes files. Resuming under
            another strategy is allowed.
        sync_batch_norm: with several replicas, BN uses the global batch's statistics,
            so the search equals a one-device search of the same batch size.
        before_tensorflow: called once every option, the data and ``out`` are checked,
            before TensorFlow is imported (the command line sets TensorFlow's threads
            there, so a refusal comes at once).
        **options: any of :data:`SEARCH_DEFAULTS`; those left out (or None) take the
            dataset's defaults (:func:`resolve_options`). ``dataset`` is a TFDS name,
            a folder of class sub-folders or an ``.npz`` (:mod:`kdarts.data.files`),
            ``image_size`` ``(H, W)`` resizes a folder's images.

    Raises:
        RunError: bad options or folder (nothing touched), or data that cannot be loaded.
        RunInterrupted: Ctrl-C; the message says what was kept.
    """
    report = report or _quiet
    opts, args, primitives, batch_note = _search_args(options)
    if tensorboard:
        _tensorboard_available()
    out = os.path.abspath(out)
    from kdarts.runtime import is_chief

    if is_chief(strategy):
        state = _search_state(out, args, resume)
    else:  # the chief checks and writes the folder; a worker only reads its checkpoint
        state = _worker_state(out, resume)
    epochs = opts["epochs"]
    if state is None:
        _note("no epoch of the search completed, so there is no checkpoint to resume; "
              "run the same command again to start over")
    else:
        _note(f"the search's last checkpoint (epoch {state['epoch']} of {epochs}) is in "
              f"{rel(out)}: {resume_hint} continues it")
    if batch_note:
        report(batch_note)
    t_start = time.perf_counter()
    try:
        if before_tensorflow is not None:
            before_tensorflow()
        return _search(out, opts, args, state, download, data_dir, stop_after_epoch, report,
                       progress, resume_hint, primitives, t_start, tensorboard,
                       strategy, sync_batch_norm)
    except KeyboardInterrupt:
        raise _interrupted() from None


def _search(out, opts, args, state, download, data_dir, stop_after_epoch, report, progress,
            resume_hint, primitives, t_start, tensorboard=False, strategy_name="default",
            sync_batch_norm=True) -> SearchResult:
    import keras

    from kdarts.callbacks import EpochProgress, HistoryCSV, StopAfterEpoch
    from kdarts.ops import MIXED_PRECISION
    from kdarts.data import search_datasets
    from kdarts.plots import plot_alpha, plot_genotype, plot_schedule
    from kdarts.search import ADMM, DynamicSchedule, FixedSchedule, NoRegularizer, Proximity
    from kdarts.search import SearchNetwork
    from kdarts.search.callbacks import (
        SearchCheckpoint,
        SearchRecorder,
        SearchTensorBoard,
        checkpoint_epoch,
    )

    strategy, chief, replicas = _open_strategy(strategy_name, opts["batch_size"])
    try:
        with _data_notices():
            weight_ds, search_ds, info, steps_per_epoch = search_datasets(
                opts["dataset"], batch_size=opts["batch_size"], seed=opts["seed"],
                split=opts["split"], every=opts["every"], data_dir=data_dir,
                max_examples=opts["max_examples"], download=download,
                image_size=opts["image_size"])
    except (DatasetError, ValueError) as err:
        raise RunError(str(err)) from None
    for line in info.notes:
        report(line)

    if state is not None:
        _check_same_data(out, info)
    elif chief:
        os.makedirs(out, exist_ok=True)
        _write_json(os.path.join(out, "run.json"), {
            "command": "search", "kdarts": _version(), "args": args,
            "steps_per_epoch": steps_per_epoch, "num_classes": info.num_classes,
            "image_shape": list(info.image_shape), "num_train": info.num_train})

    _seed_everything(opts["seed"])
    with strategy.scope():  # model, optimizers and restored state: on every replica
        model = SearchNetwork(
            info.num_classes, channels=opts["channels"], layers=opts["layers"],
            steps=opts["steps"], multiplier=opts["steps"], activation=opts["activation"],
            primitives=primitives, mean=info.mean, std=info.std,
            sync_batch_norm=sync_batch_norm and replicas > 1,
            dtype=MIXED_PRECISION if opts["mixed_precision"] else None)
        model.build((None,) + tuple(info.image_shape))
        schedule = (DynamicSchedule(every=opts["every"], initial_threshold=opts["threshold"])
                    if opts["schedule"] == "dynamic" else FixedSchedule(every=opts["every"]))
        regularizer = {"proximity": lambda: Proximity(rho=opts["rho"]),
                       "admm": lambda: ADMM(rho=opts["rho"], every=opts["admm_every"],
                                            variant=opts["admm_variant"]),
                       "none": NoRegularizer}[opts["reg"]]()
        arch_optimizer = keras.optimizers.Adam(learning_rate=opts["arch_lr"], beta_1=0.5,
                                               beta_2=0.999, epsilon=1e-8)
        model.compile(schedule=schedule, regularizer=regularizer, search_data=search_ds,
                      unrolled=opts["unrolled"], arch_optimizer=arch_optimizer,
                      skip_pruned_ops=opts["skip_pruned_ops"])
        epochs, initial_epoch = opts["epochs"], 0
        if state is not None:
            model.build_optimizers()
            model.load_weights(os.path.join(out, CHECKPOINT_WEIGHTS))
            try:
                initial_epoch = checkpoint_epoch(model)
            except ValueError as err:
                raise RunError(f"{rel(out)}: {err}") from None
            if initial_epoch >= epochs:
                report(f"{rel(out)} holds a complete search ({initial_epoch} epochs); writing "
                       "its genotype and plots again")
            else:
                report(f"resuming {rel(out)} after epoch {initial_epoch} of {epochs} "
                       f"({int(model.search_step.numpy())} steps, "
                       f"{int(model.alpha_steps.numpy())} α steps)")
    if initial_epoch < epochs:
        report(f"search: {_data_label(info)} {info.image_shape[0]}x{info.image_shape[1]}, "
               f"{opts['activation']} / {opts['schedule']} k={opts['every']}"
               + (f" from threshold {opts['threshold']:g}" if opts["schedule"] == "dynamic"
                  else "") + f" / α lr {opts['arch_lr']:g} / "
               f"{opts['reg']} ρ={opts['rho']} / {opts['split']} split, C={opts['channels']}, "
               f"{opts['layers']} layers, {steps_per_epoch} steps per epoch"
               + (", mixed precision (float16)" if opts["mixed_precision"] else "")
               + (f", batch {opts['batch_size']} over {replicas} replicas ({strategy_name}"
                  + (", synchronised BN)" if sync_batch_norm else ")") if replicas > 1 else "")
               + "; the first epoch starts with tracing the step (half a minute or more)")
    bar = EpochProgress({"loss": "loss", "accuracy": "acc", "alpha_steps": "α steps",
                         "pruned_ops": "pruned"}, integer_labels=("α steps", "pruned"))
    callbacks = [  # only the chief writes; every worker reads its checkpoint to resume
        SearchRecorder(os.path.join(out, "search_record.json")),
        HistoryCSV(os.path.join(out, "history.csv")),
        SearchCheckpoint(out),
        _epoch_note("search", out, epochs, resume_hint),
    ] * chief + ([bar] if progress else []) + (
        [SearchTensorBoard(os.path.join(out, TENSORBOARD_DIR))] if tensorboard and chief else [])
    if stop_after_epoch is not None:
        callbacks.append(StopAfterEpoch(stop_after_epoch))
    t_fit = time.perf_counter()
    try:
        model.fit(weight_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
                  initial_epoch=initial_epoch, callbacks=callbacks, verbose=0, shuffle=False)
    finally:
        bar.close()
    t_fit = time.perf_counter() - t_fit
    completed = int(model.search_step.numpy()) // steps_per_epoch
    result = SearchResult(out=out, epochs_done=completed, complete=completed >= epochs,
                          alpha_steps=int(model.alpha_steps.numpy()))
    if not chief:
        genotype = model.genotype() if completed >= epochs else None
        report(f"worker done after epoch {completed} of {epochs}: the chief writes the run's "
               "files" + (f"; genotype {genotype}" if genotype else ""))
        return dataclasses.replace(result, genotype=genotype)
    if completed < epochs:
        report(f"stopped after epoch {completed} of {epochs}; checkpoint in {rel(out)}: "
               f"{resume_hint} continues it")
        return result

    _note(f"the search completed and its checkpoint is in {rel(out)}: {resume_hint} writes "
          "its genotype and plots again")
    genotype = model.genotype()
    genotype.save(result.genotype_path)
    record = os.path.join(out, "search_record.json")
    plot_alpha(record, os.path.join(out, "alpha.png"))
    plot_schedule(record, os.path.join(out, "schedule.png"))
    plot_genotype(genotype, os.path.join(out, "genotype.png"))
    total = time.perf_counter() - t_start
    pruned = int(sum(float((1 - m.numpy()).sum()) for m in (model.mask_normal,
                                                           model.mask_reduce)))
    report(str(genotype))
    report(f"search done in {_fmt_time(total)} ({completed} epochs, "
           f"{int(model.search_step.numpy())} weight steps, {result.alpha_steps} α steps"
           + (f", {pruned} ops pruned" if opts["activation"] == "crb" else "")
           + f"): genotype → {rel(result.genotype_path)}; record, history, checkpoint and "
           f"plots (alpha.png, schedule.png, genotype.png) in {rel(out)}")
    return dataclasses.replace(result, genotype=genotype, pruned_ops=pruned, seconds=total)


# --------------------------------------------------------------------------- train


def load_genotype(spec: str | Genotype) -> Genotype:
    """A genotype from a JSON file, a search folder holding one, or a preset name."""
    if isinstance(spec, str) and os.path.isdir(spec):
        spec = os.path.join(spec, "genotype.json")
    try:
        return resolve_genotype(spec)
    except GenotypeError as err:
        raise RunError(str(err)) from None


def _remove_run_files(out: str, command: str) -> None:
    for name in RUN_FILES[command]:
        path = os.path.join(out, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)


def _train_state(out: str, args: dict, resume: bool | str, overwrite: bool
                 ) -> tuple[dict | None, dict | None]:
    """``(checkpoint state, finished metrics)`` to continue from; RunError if refused.

    ``overwrite`` deletes this command's files from ``out`` (only those) and starts over.
    """
    check_writable(out)
    if os.path.isdir(out) and not os.path.exists(os.path.join(out, "run.json")):
        entries = [e for e in os.listdir(out) if not e.startswith(".tmp-")]
        if entries and set(entries) <= set(RUN_FILES["train"]):  # an older kdarts's outputs
            if not overwrite:
                raise RunError(f"--out {rel(out)} already holds {', '.join(sorted(entries))} "
                               "from an unknown run (no run.json); choose another --out or "
                               "pass --overwrite to replace them")
            _remove_run_files(out, "train")
            return None, None
    run = read_run(out, "train")  # refuses other kinds of run and unrelated files
    if overwrite:
        _remove_run_files(out, "train")
        return None, None
    if run is None:
        return None, None
    old = {**_LATER_ARGS["train"], **run["args"]}
    if old != args:
        raise RunError(f"--out {rel(out)} holds a different training run "
                       f"({_describe_diff(old, args, list(TRAIN_DEFAULTS) + ['genotype'])}); "
                       "choose another --out, or pass --overwrite to replace it")
    state = _checkpoint_state(out)
    metrics_path = os.path.join(out, "metrics.json")
    if os.path.exists(metrics_path):
        metrics = _read_json(metrics_path, "metrics.json")
        if resume == "auto":
            return state, metrics
        raise RunError(f"--out {rel(out)} already holds this training, complete (metrics.json: "
                       f"test accuracy {100 * float(metrics.get('test_accuracy', 0)):.2f}%); "
                       "choose another --out or pass --overwrite to train again")
    if resume is True and state is None:
        raise RunError(f"--resume: no checkpoint in {rel(out)} (written at the end of each "
                       "epoch); run without --resume to start the training")
    if state is not None and not resume:
        raise RunError(f"--out {rel(out)} already holds this training (checkpoint after epoch "
                       f"{state['epoch']} of {args['epochs']}); pass --resume to continue it, "
                       "or --overwrite to start over")
    return state, None


def train_run(genotype: str | Genotype, out: str, *, resume: bool | str = False,
              overwrite: bool = False, download: bool = False, data_dir: str | None = None,
              stop_after_epoch: int | None = None, report: Report | None = print,
              progress: bool = True, resume_hint: str = "the same command with --resume",
              tensorboard: bool = False, strategy: str = "default",
              sync_batch_norm: bool = True,
              before_tensorflow: Callable[[], None] | None = None,
              **options) -> TrainResult:
    """Train a genotype's network from scratch in the folder ``out``.

    Writes ``run.json``, ``history.csv`` and a checkpoint every epoch, then
    ``model.keras`` (reload-verified; it takes raw images, see
    :mod:`kdarts.preprocessing`) and ``metrics.json`` (test accuracy, parameters,
    times, the genotype, the arguments and the model's input contract).

    Args:
        genotype: a genotype JSON file, a search folder, a preset name, or a Genotype.
        out: the run folder (new, empty, or this training's own).
        resume: continue from the checkpoint (True), start fresh (False), or whichever
            applies, reusing a complete training (``"auto"``).
        overwrite: delete a previous training's files in ``out`` and start over.
        download, data_dir: see :func:`kdarts.data.load_dataset`.
        stop_after_epoch: end after this many epochs (checkpointed; resume later).
        report, progress, resume_hint: as for :func:`search_run`.
        tensorboard: also write TensorBoard event files (per-epoch loss,
            accuracy, learning rate) to ``out/tensorboard`` (Keras's callback).
        strategy, sync_batch_norm: as for :func:`search_run`: the batch size is the
            global batch, the gradients are summed over the replicas before clipping, and
            only the chief writes files. Drop-path masks are drawn per replica.
        before_tensorflow: as for :func:`search_run`.
        **options: any of :data:`TRAIN_DEFAULTS`; those left out (or None) take the
            dataset's defaults (:func:`resolve_options`); ``dataset`` and
            ``image_size`` as for :func:`search_run`.

    Raises:
        RunError: bad options, genotype or folder (nothing touched), data not loadable.
        RunInterrupted: Ctrl-C; the message says what was kept.
    """
    report = report or _quiet
    opts = resolve_options("train", options)
    geno = load_genotype(genotype)
    _check_dataset(opts)
    if opts["imagenet_stem"]:
        _check_imagenet_size(opts)
    if tensorboard:
        _tensorboard_available()
    if not 0.0 <= opts["drop_path"] < 1.0:
        raise RunError(f"--drop-path must be in [0, 1), got {opts['drop_path']}")
    args = {**{k: opts[k] for k in TRAIN_DEFAULTS}, "genotype": geno.to_dict()}
    out = os.path.abspath(out)
    from kdarts.runtime import is_chief

    if is_chief(strategy):
        state, metrics = _train_state(out, args, resume, overwrite)
    else:  # the chief checks and writes the folder; a worker only reads its checkpoint
        state, metrics = _worker_state(out, resume), None
    if metrics is not None:
        report(f"{rel(out)} holds this training, complete: test accuracy "
               f"{100 * metrics['test_accuracy']:.2f}%")
        return TrainResult(out=out, epochs_done=opts["epochs"], complete=True, metrics=metrics)
    if state is None:
        _note("no epoch of the training completed, so there is no checkpoint to resume; "
              "run the same command again to start over")
    else:
        _note(f"the training's last checkpoint (epoch {state['epoch']} of {opts['epochs']}) "
              f"is in {rel(out)}: {resume_hint} continues it")
    try:
        if before_tensorflow is not None:
            before_tensorflow()
        return _train(geno, out, opts, args, state, download, data_dir, stop_after_epoch,
                      report, progress, resume_hint, tensorboard, strategy, sync_batch_norm)
    except KeyboardInterrupt:
        raise _interrupted() from None


def _train(geno, out, opts, args, state, download, data_dir, stop_after_epoch, report,
           progress, resume_hint, tensorboard=False, strategy_name="default",
           sync_batch_norm=True) -> TrainResult:
    from kdarts.callbacks import (
        EpochCheckpoint,
        EpochProgress,
        HistoryCSV,
        StopAfterEpoch,
        restore_checkpoint,
    )
    from kdarts.data import train_datasets
    from kdarts.eval import EvalNetwork, compile_eval_network
    from kdarts.export import ExportError, export
    from kdarts.ops import MIXED_PRECISION

    t_start = time.perf_counter()
    strategy, chief, replicas = _open_strategy(strategy_name, opts["batch_size"])
    initial_epoch = 0 if state is None else int(state["epoch"])
    try:
        with _data_notices():
            train_ds, test_ds, info, steps = train_datasets(
                opts["dataset"], batch_size=opts["batch_size"], seed=opts["seed"],
                cutout=opts["cutout"], data_dir=data_dir, max_examples=opts["max_examples"],
                download=download, initial_epoch=initial_epoch, image_size=opts["image_size"])
    except (DatasetError, ValueError) as err:
        raise RunError(str(err)) from None
    for line in info.notes:
        report(line)
    if state is not None:
        _check_same_data(out, info)
    elif chief:
        os.makedirs(out, exist_ok=True)
        _write_json(os.path.join(out, "run.json"), {
            "command": "train", "kdarts": _version(), "args": args, "steps_per_epoch": steps,
            "num_classes": info.num_classes, "image_shape": list(info.image_shape),
            "num_train": info.num_train})
    _seed_everything(opts["seed"])
    epochs = opts["epochs"]
    with strategy.scope():  # model, optimizer and restored state: on every replica
        model = EvalNetwork(geno, info.num_classes, channels=opts["channels"],
                            layers=opts["layers"], auxiliary=opts["auxiliary"],
                            drop_path_prob=opts["drop_path"], seed=opts["seed"],
                            mean=info.mean, std=info.std, dataset=_model_dataset(info),
                            imagenet_stem=opts["imagenet_stem"],
                            sync_batch_norm=sync_batch_norm and replicas > 1,
                            dtype=MIXED_PRECISION if opts["mixed_precision"] else None)
        model.build((None,) + tuple(info.image_shape))
        callbacks = compile_eval_network(model, epochs=epochs, steps_per_epoch=steps,
                                         lr=opts["lr"])
        if state is not None:
            restore_checkpoint(model, out)
            report(f"resuming {rel(out)} after epoch {initial_epoch} of {epochs}")
    params = model.parameter_count()
    num_train = min(info.num_train, opts["max_examples"] or info.num_train)
    stem = ", ImageNet stem" if opts["imagenet_stem"] else ""
    report(f"train: {_data_label(info)}, {num_train} training images, C={opts['channels']}, "
           f"{opts['layers']} layers{stem}, {params / 1e3:.1f}k parameters, {epochs} epochs of "
           f"{steps} steps"
           + (", mixed precision (float16)" if opts["mixed_precision"] else "")
           + (f", batch {opts['batch_size']} over {replicas} replicas ({strategy_name}"
              + (", synchronised BN)" if sync_batch_norm else ")") if replicas > 1 else ""))
    bar = EpochProgress({"loss": "loss", "accuracy": "acc"})
    callbacks += [  # only the chief writes; every worker reads its checkpoint to resume
        EpochCheckpoint(out),
        HistoryCSV(os.path.join(out, "history.csv")),
        _epoch_note("training", out, epochs, resume_hint),
    ] * chief + ([bar] if progress else [])
    if tensorboard and chief:
        import keras

        # per-epoch scalars indexed by the epoch, so a resumed run continues its curves
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(out, TENSORBOARD_DIR),
                                                     write_graph=False, update_freq="epoch"))
    if stop_after_epoch is not None:
        callbacks.append(StopAfterEpoch(stop_after_epoch))
    t_fit = time.perf_counter()
    try:
        history = model.fit(train_ds, epochs=epochs, initial_epoch=initial_epoch,
                            callbacks=callbacks, verbose=0, shuffle=False)
    finally:
        bar.close()
    t_fit = time.perf_counter() - t_fit
    done = initial_epoch + len(history.history.get("loss", []))
    if done < epochs:
        report(f"stopped after epoch {done} of {epochs}; checkpoint in {rel(out)}: "
               f"{resume_hint} continues it")
        return TrainResult(out=out, epochs_done=done, complete=False)

    result = model.evaluate(test_ds, return_dict=True, verbose=0)
    test_acc, test_loss = float(result["accuracy"]), float(result["loss"])
    if not chief:
        report(f"worker done: test accuracy {100 * test_acc:.2f}% on {info.num_test} test "
               "images; the chief writes model.keras and metrics.json")
        return TrainResult(out=out, epochs_done=done, complete=True)
    try:
        exported = export(model, os.path.join(out, "model.keras"), "keras")
    except (ExportError, ValueError) as err:
        raise RunError(str(err)) from None
    total = time.perf_counter() - t_start
    metrics = {
        "test_accuracy": test_acc, "test_loss": test_loss,
        "train_accuracy": float(history.history["accuracy"][-1]),
        "train_loss": float(history.history["loss"][-1]),
        "num_test": info.num_test, "parameters": params, "epochs": epochs,
        "train_seconds": round(t_fit, 1), "total_seconds": round(total, 1),
        "genotype": geno.to_dict(), "input": model.input_contract(),
        "args": {k: opts[k] for k in TRAIN_DEFAULTS}, "kdarts": _version(),
    }
    _write_json(os.path.join(out, "metrics.json"), metrics)
    report(f"test accuracy {100 * test_acc:.2f}% on {info.num_test} test images "
           f"(test loss {test_loss:.3f}); trained in {_fmt_time(t_fit)}")
    report(f"train done in {_fmt_time(total)}: model → {rel(exported.path)} (reload "
           f"verified, max |Δ| {exported.max_abs_diff:.1e}; takes raw images, pixel values "
           f"0-255), metrics → {rel(os.path.join(out, 'metrics.json'))}")
    return TrainResult(out=out, epochs_done=done, complete=True, metrics=metrics,
                       seconds=total)


# -------------------------------------------------------------------------- export


def default_export_path(model_path: str, fmt: str, quantize: str = "none") -> str:
    """``runs/x/train/model.keras`` → ``saved_models/x-train.onnx`` (``.keras``, a
    folder, ``x-train.tflite``, ``x-train_int8.tflite``); ``nets/digits.keras`` →
    ``saved_models/digits.onnx``.

    A training's ``model.keras`` is named after its run folder and the folder above
    it: trainings are often all called ``train`` (``runs/<experiment>/train``).
    """
    path = os.path.abspath(model_path)
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem == "model":
        run = os.path.dirname(path)
        names = [os.path.basename(os.path.dirname(run)), os.path.basename(run)]
        stem = "-".join(name for name in names if name) or stem
    if quantize != "none":
        stem += f"_{quantize}"
    return os.path.join(EXPORT_DIR, stem + SUFFIXES[fmt])


#: Training images an int8 LiteRT export is calibrated on (a seeded sample of ``--data``).
REPRESENTATIVE_EXAMPLES = 200
#: Test images a LiteRT export from ``--data`` is verified on (a seeded sample).
VERIFY_EXAMPLES = 200


def export_run(model_path: str, fmt: str = "onnx", out: str | None = None,
               verify: bool = True, input_dtype: str = "float32", quantize: str = "none",
               data: str | None = None, overwrite: bool = False,
               before_tensorflow: Callable[[], None] | None = None) -> ExportRunResult:
    """Export a ``.keras`` model (see :func:`kdarts.export.export`), checking the path first.

    Every check below is made before TensorFlow is imported, and nothing is written
    when one fails.

    Args:
        out: the destination (default :func:`default_export_path`). An existing one is
            refused unless ``overwrite``; the model itself (or a folder holding it) and
            a folder that is not a SavedModel are always refused.
        quantize: LiteRT quantisation (``fmt="tflite"``), see :data:`kdarts.export.QUANTIZATIONS`.
        data: a dataset (as ``--dataset`` takes: TFDS name, folder, ``.npz``) for
            LiteRT: ``int8`` calibrates on :data:`REPRESENTATIVE_EXAMPLES` of its
            training images, and a LiteRT model is verified on :data:`VERIFY_EXAMPLES`
            of its test images (seeded samples). Required for ``int8``.
        overwrite: replace an existing artifact at ``out``.
        before_tensorflow: called once everything is checked, before TensorFlow is
            imported (the command line sets TensorFlow's threads there).

    Raises:
        RunError: a bad destination (suffix, a file in the way, not writable, existing
            without ``overwrite``, the model itself), bad
            ``quantize``/``data``, a model that cannot be loaded, data that does not
            fit the model, or an export that fails verification.
    """
    from kdarts.export import QUANTIZATIONS

    out = os.path.abspath(out or default_export_path(model_path, fmt, quantize))
    problem = suffix_error(out, fmt)
    if problem:
        raise RunError(f"--out: {problem}")
    if quantize not in QUANTIZATIONS or (fmt != "tflite" and quantize != "none"):
        raise RunError(f"--quantize {quantize} applies to --format tflite only"
                       if quantize in QUANTIZATIONS else
                       f"--quantize: one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if data is None and quantize == "int8":
        raise RunError("--quantize int8 calibrates on training images: name them with --data "
                       "(the dataset the model was trained on)")
    if data is not None:
        if fmt != "tflite":
            raise RunError("--data applies to --format tflite (calibration and verification)")
        # a folder is read at the model's size, unknown until it is loaded: any size
        # passes this check (the rest of it, classes and files, is done now)
        _check_dataset({"dataset": data, "image_size": [MIN_IMAGE_SIZE] * 2
                        if os.path.isdir(data) else None})
    check_writable(out, "--out", folder=fmt == "saved_model")
    from kdarts.export import ModelLoadError, check_model_file

    try:
        check_model_file(model_path)  # no TensorFlow: only the file's name and zip header
    except ModelLoadError as err:
        raise RunError(str(err)) from None
    _check_export_destination(model_path, out, fmt, overwrite)
    if before_tensorflow is not None:
        before_tensorflow()
    t_start = time.perf_counter()
    from kdarts.export import ExportError, export, load_model

    try:
        model = load_model(model_path)
    except ModelLoadError as err:
        raise RunError(str(err)) from None
    representative = samples = None
    if data is not None:
        representative, samples = _export_images(model, data, quantize)
    try:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        result = export(model, out, fmt, verify=verify, input_dtype=input_dtype,
                        quantize=quantize, representative_data=representative,
                        sample_inputs=samples)
    except (ExportError, ValueError, TypeError) as err:
        raise RunError(str(err)) from None
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted; nothing was written to {rel(out)} (an export "
                             "is moved into place only once verified)") from None
    return ExportRunResult(path=result.path, format=fmt, max_abs_diff=result.max_abs_diff,
                           input_contract=result.input_contract,
                           seconds=time.perf_counter() - t_start, quantize=quantize,
                           agreement=result.agreement,
                           verified_on=None if samples is None else
                           f"{len(samples)} test images of {rel(data) if os.path.exists(data) else data}")


def _same_file(a: str, b: str) -> bool:
    """Whether two existing paths are one file (symlinks resolved, hard links too)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, AttributeError):  # no samefile on this platform or file system
        return os.path.realpath(a) == os.path.realpath(b)


def _check_export_destination(model_path: str, out: str, fmt: str, overwrite: bool) -> None:
    """Refuse an export that would replace its own model, a destination the format cannot
    use (:func:`kdarts.export.check_destination`), or (unless ``overwrite``) any existing
    artifact."""
    from kdarts.export import ExportError, check_destination

    if not os.path.lexists(out):
        return
    if _same_file(model_path, out):
        other = "" if rel(model_path) == rel(out) else f" ({rel(model_path)})"
        raise RunError(f"--out {rel(out)} is the model being exported{other}: exporting "
                       "over it would lose the training archive; choose another --out")
    real_out = os.path.realpath(out)
    if os.path.isdir(out) and os.path.commonpath(
            [os.path.realpath(model_path), real_out]) == real_out:
        raise RunError(f"--out {rel(out)} holds the model being exported "
                       f"({rel(model_path)}); choose another --out")
    try:
        check_destination(os.path.abspath(out), fmt)
    except ExportError as err:
        raise RunError(f"--out: {str(err).removeprefix('export: ')}; choose another --out") \
            from None
    if os.path.isdir(out) and not [e for e in os.listdir(out) if not e.startswith(".")]:
        return  # an empty folder: nothing to lose
    if not overwrite:
        raise RunError(f"--out {rel(out)} already exists; pass --overwrite to replace it, "
                       "or choose another --out")


def _export_images(model, data: str, quantize: str):
    """``(representative training images or None, verification test images)`` from ``data``.

    A folder is read at the model's image size (resizing images of another size).
    """
    from kdarts.data.sources import sample_images
    from kdarts.export import input_contract

    shape = tuple(input_contract(model)["shape"][1:])
    spec = os.path.abspath(data) if os.path.exists(data) else data
    try:
        source = _open_for(spec, shape)
        representative = (sample_images(source, source.train, REPRESENTATIVE_EXAMPLES, seed=0)
                          if quantize == "int8" else None)
        # seeded, not the first ones: a folder's test split is ordered by class
        samples = sample_images(source, source.test, VERIFY_EXAMPLES, seed=0)
    except (DatasetError, ValueError) as err:
        raise RunError(" ".join(str(err).split())) from None
    return representative, samples


def _open_for(spec: str, shape: tuple):
    """Opens ``spec`` and checks its images fit a model taking ``shape`` (H, W, C)."""
    from kdarts.data.sources import open_source

    size = tuple(shape[:2]) if os.path.isdir(spec) else None
    source = open_source(spec, image_size=size)
    if tuple(source.info.image_shape) != tuple(shape):
        raise RunError(f"--data {_data_label(source.info)} has images of "
                       f"{'x'.join(map(str, source.info.image_shape))}, the model takes "
                       f"{'x'.join(map(str, shape))}")
    return source


# ---------------------------------------------------------------------- quickstart


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _own_export(out: str, path: str) -> bool:
    """Whether ``path`` is, unchanged, the export the quickstart in ``out`` wrote last."""
    try:
        with open(os.path.join(out, "export.json"), encoding="utf-8") as f:
            record = json.load(f)
        return (isinstance(record, dict) and record.get("path") == os.path.realpath(path)
                and record.get("sha256") == _file_sha256(path))
    except (OSError, ValueError):  # no record, or one that cannot be read: not ours
        return False


def quickstart_run(out: str = os.path.join("runs", "quickstart"),
                   export_to: str = os.path.join(EXPORT_DIR, "quickstart.onnx"),
                   report: Report | None = print, progress: bool = True,
                   overwrite: bool = False,
                   before_tensorflow: Callable[[], None] | None = None) -> dict:
    """Search → train → export ONNX on the built-in digits with the default settings.

    A rerun continues: a complete search or training in ``out`` is reused and an
    interrupted one resumes; the export is redone. ``out/export.json`` records the
    export (path and SHA-256), so a rerun replaces the quickstart's own export, while
    any other existing file at ``export_to`` (another quickstart's, or one changed
    since) is refused before anything starts unless ``overwrite``.
    ``before_tensorflow`` is called once everything is checked, before TensorFlow is
    imported (as for :func:`search_run`).
    """
    report = report or _quiet
    out = os.path.abspath(out)
    check_writable(out)
    if os.path.isdir(out):
        entries = sorted(e for e in os.listdir(out) if not e.startswith(".tmp-"))
        foreign = [e for e in entries if e not in RUN_FILES["quickstart"]]
        if foreign:
            raise RunError(f"--out {rel(out)} holds files that are not a kdarts quickstart "
                           f"({', '.join(foreign[:5])}); choose another --out (an empty or "
                           "new folder)")
    problem = suffix_error(export_to, "onnx")
    if problem:
        raise RunError(f"--export-to: {problem}")
    check_writable(export_to, "--export-to", folder=False)
    export_to = os.path.abspath(export_to)
    replace = os.path.lexists(export_to)
    if replace and not overwrite and not _own_export(out, export_to):
        raise RunError(f"--export-to {rel(export_to)} already exists (not this quickstart's "
                       "export); pass --overwrite to replace it, or choose another "
                       "--export-to")
    # both phases' folders are checked before anything starts (and prints)
    _search_state(os.path.join(out, "search"), dict(SEARCH_DEFAULTS), "auto")
    read_run(os.path.join(out, "train"), "train")
    if before_tensorflow is not None:
        before_tensorflow()
    hint = "`kdarts quickstart` again (same --out)"
    t0 = time.perf_counter()
    report("== 1/3 search ==")
    s = search_run(os.path.join(out, "search"), resume="auto", report=report,
                   progress=progress, resume_hint=hint)
    report("== 2/3 train ==")
    t = train_run(s.genotype_path, os.path.join(out, "train"), resume="auto", report=report,
                  progress=progress, resume_hint=hint)
    report("== 3/3 export ==")
    e = export_run(t.model_path, "onnx", export_to, verify=True, overwrite=replace)
    os.makedirs(out, exist_ok=True)
    _write_json(os.path.join(out, "export.json"), {
        "path": os.path.realpath(e.path), "sha256": _file_sha256(e.path)})
    report(describe_export(e))
    total = time.perf_counter() - t0
    report(f"quickstart done in {_fmt_time(total)} (search {_fmt_time(s.seconds)}, "
           f"train {_fmt_time(t.seconds)}, export {_fmt_time(e.seconds)}): test accuracy "
           f"{100 * t.test_accuracy:.2f}%; genotype {rel(s.genotype_path)}, model "
           f"{rel(t.model_path)}, ONNX {rel(e.path)}")
    return {"search": s, "train": t, "export": e, "seconds": total}


def describe_export(result: ExportRunResult) -> str:
    """One line: where the artifact went, its size, what it takes, its verification."""
    path = result.path
    total = (sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
                 for f in files) if os.path.isdir(path) else os.path.getsize(path))
    size = f"{total / 1e6:.2f} MB" if total >= 1e5 else f"{total / 1e3:.1f} kB"
    check = ("not verified (--no-verify)" if result.max_abs_diff is None
             else f"verified against the Keras model: max |Δlogits| = {result.max_abs_diff:.2e}")
    if result.agreement is not None and result.max_abs_diff is not None:
        check += (f", top-1 agreement {result.agreement:.1%}"
                  + (f" on {result.verified_on}" if result.verified_on else ""))
    if result.quantize != "none":
        check = f"{result.quantize} quantised; {check}"
    contract = result.input_contract or {}
    takes = ("raw images 0-255 " + "/".join(contract["dtype"].split(" or "))
             if contract.get("normalized_inside")
             else "images preprocessed as in training")
    shape = "x".join("N" if d is None else str(d) for d in contract.get("shape", []))
    return (f"exported {result.format} → {rel(path)} ({size}) in {_fmt_time(result.seconds)}; "
            f"input {shape} {takes}; {check}")


__all__ = ["EXPORT_DIR", "ExportRunResult", "RUN_FILES", "RunError", "RunInterrupted",
           "SEARCH_DEFAULTS", "SearchResult", "SigintWatchdog", "TRAIN_DEFAULTS",
           "TrainResult", "check_search_folder", "DATASET_DEFAULTS", "PAPER_SEARCH", "PAPER_TRAIN", "resolve_options",
           "check_writable", "default_export_path", "describe_export", "export_run",
           "interrupt_note", "load_genotype", "parse_primitives", "quickstart_run",
           "read_run", "search_run", "train_run"]
