"""The fit every run makes in its folder: a search (either space), a training, a
language model's training.

:class:`FolderFit` is the one skeleton: open the strategy, load the data (a data error
is a :class:`~kdarts.runs.RunError`), check a resumed run's data or write ``run.json``,
seed, build the model in the strategy's scope, report, assemble the callbacks (the
chief's writers, the interrupt note, the progress bar, TensorBoard, stop-after-epoch),
train, and count the epochs done. :class:`~kdarts.runs.search.SearchFit`,
:class:`~kdarts.runs.train.TrainFit`, :class:`~kdarts.runs.recurrent.RecurrentSearchFit`
and :class:`~kdarts.runs.language_model.LanguageModelFit` fill in the data, the model
and the callbacks; the language model trains in its own loop (:meth:`FolderFit.train`),
which drives the same callbacks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings

from kdarts.atomic import DiskFullError
from kdarts.checkpoints import resume_epoch
from kdarts.data.catalog import DatasetError
from kdarts.data.files import DataNotice
from kdarts.runs.folder import TENSORBOARD_DIR, RunFolder
from kdarts.runs.report import Report, kdarts_version, quiet, rel, replicas_note
from kdarts.runs.results import RunError
from kdarts.runs.watchdog import InterruptNote


@dataclasses.dataclass
class RunSettings:
    """How a run is carried out (not recorded in ``run.json``): see
    :func:`~kdarts.runs.search_run` for each."""

    download: bool = False
    data_dir: str | None = None
    stop_after_epoch: int | None = None
    report: Report = quiet
    progress: bool = True
    resume_hint: str = "the same command with --resume"
    tensorboard: bool = False
    strategy: str = "default"
    sync_batch_norm: bool = True
    note: InterruptNote = dataclasses.field(default_factory=InterruptNote)

    @classmethod
    def of(cls, arguments: dict) -> "RunSettings":
        """The settings among a run function's ``arguments`` (its ``locals()``); a None
        ``report`` is silence and a None ``note`` a fresh one."""
        names = {field.name for field in dataclasses.fields(cls)}
        given = {name: value for name, value in arguments.items() if name in names}
        given["report"] = given.get("report") or quiet
        given["note"] = given.get("note") or InterruptNote()
        return cls(**given)


@dataclasses.dataclass
class Job:
    """A checked run: its folder, resolved options (``opts``), ``run.json``'s ``args``,
    the checkpoint state to resume from (None: a fresh start) and its settings."""

    folder: RunFolder
    opts: dict
    args: dict
    state: dict | None
    settings: RunSettings

    @property
    def out(self) -> str:
        return self.folder.out


@contextlib.contextmanager
def data_notices():
    """Keeps :class:`~kdarts.data.files.DataNotice` warnings off stderr: a run reports
    the same lines (``info.notes``) as lines of its output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNotice)
        yield


def open_strategy(name: str, batch_size: int):
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


def seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


def checkpoint_note(what: str, epoch: int, total: int, out: str, resume_hint: str) -> str:
    """What an interruption leaves once epoch ``epoch`` of ``total`` is checkpointed."""
    return (f"the {what}'s last checkpoint (epoch {epoch} of {total}) is in {rel(out)}: "
            f"{resume_hint} continues it")


def epoch_note(note: InterruptNote, what: str, out: str, total: int, resume_hint: str):
    """A callback keeping the interrupt note current after each checkpoint."""
    import keras

    class EpochNote(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            note.set(checkpoint_note(what, epoch + 1, total, out, resume_hint))

    return EpochNote()


class FolderFit:
    """Fits a :class:`Job`'s model in its folder; subclasses fill in the hooks.

    After :meth:`fit`: ``model``, ``info``, ``steps_per_epoch``, ``initial_epoch``,
    ``history``, ``chief``, ``replicas`` and ``fit_seconds`` are set.
    """

    #: The run's name in messages ("search", "training").
    what = "run"
    #: The progress bar's metrics and their labels, and the integer-valued labels.
    bar_metrics: dict = {"loss": "loss", "accuracy": "acc"}
    bar_integers: tuple = ()

    def __init__(self, job: Job):
        self.job = job
        self.settings = job.settings
        self.initial_epoch = resume_epoch(job.state)

    # hooks ------------------------------------------------------------------------

    def load_data(self):
        """``(fit data, info, steps per epoch)``; may raise DatasetError/ValueError."""
        raise NotImplementedError

    def build(self):
        """Builds ``self.model`` (in the strategy's scope) and restores a resumed run's
        checkpoint, setting ``self.initial_epoch``."""
        raise NotImplementedError

    def describe(self) -> str | None:
        """The line reported before fitting (None: nothing)."""
        return None

    def model_callbacks(self) -> list:
        """Callbacks the model needs on every worker (a learning-rate schedule)."""
        return []

    def writer_callbacks(self) -> list:
        """Callbacks writing the folder's files (the chief only)."""
        return []

    def tensorboard_callback(self):
        raise NotImplementedError

    def run_record(self) -> dict:
        """What ``run.json`` records of the data, beside the arguments (a resumed run's
        data is checked against it)."""
        info = self.info
        return {"steps_per_epoch": self.steps_per_epoch, "num_classes": info.num_classes,
                "image_shape": list(info.image_shape), "num_train": info.num_train}

    def check_resumed_data(self) -> None:
        """RunError if a resumed run's data is not what ``run.json`` recorded."""
        self.job.folder.check_same_data(self.info)

    def fit_steps(self) -> int | None:
        """``steps_per_epoch`` for ``model.fit`` (None: the dataset's length)."""
        return None

    def epochs_done(self) -> int:
        return self.initial_epoch + len(self.history.history.get("loss", []))

    # the skeleton -----------------------------------------------------------------

    def fit(self) -> int:
        """Runs the skeleton; returns the epochs done."""
        from kdarts.callbacks import EpochProgress

        self.prepare()
        bar = EpochProgress(self.bar_metrics, integer_labels=self.bar_integers)
        callbacks = self.callbacks(bar)
        t_fit = time.perf_counter()
        try:
            self.history = self.train(callbacks)
        finally:
            bar.close()
        self.fit_seconds = time.perf_counter() - t_fit
        return self.epochs_done()

    def prepare(self) -> None:
        """The strategy, the data, the model (restored when resumed), ``run.json``."""
        job, settings = self.job, self.settings
        opts = job.opts
        self.strategy, self.chief, self.replicas = open_strategy(settings.strategy,
                                                                 opts["batch_size"])
        try:
            with data_notices():
                self.data, self.info, self.steps_per_epoch = self.load_data()
        except (DatasetError, ValueError) as err:
            raise RunError(str(err)) from None
        for line in self.info.notes:
            settings.report(line)
        if job.state is not None:
            self.check_resumed_data()
        seed_everything(opts["seed"])
        with self.strategy.scope():  # model, optimizers and restored state: on every replica
            self.build()
        if job.state is None and self.chief:
            job.folder.write_run({"kdarts": kdarts_version(), "args": job.args,
                                  **self.run_record()})
        elif self.chief:  # accepted to resume: an older run.json is kept in today's form
            job.folder.upgrade_run()
        line = self.describe()
        if line:
            settings.report(line)

    def callbacks(self, bar) -> list:
        """The model's callbacks, the chief's writers and interrupt note, the progress
        ``bar``, TensorBoard and stop-after-epoch."""
        from kdarts.callbacks import StopAfterEpoch

        job, settings, epochs = self.job, self.settings, self.job.opts["epochs"]
        callbacks = self.model_callbacks()
        if self.chief:  # only the chief writes; every worker reads its checkpoint to resume
            callbacks += self.writer_callbacks() + [
                epoch_note(settings.note, self.what, job.out, epochs, settings.resume_hint)]
        if settings.progress:
            callbacks.append(bar)
        if settings.tensorboard and self.chief:
            callbacks.append(self.tensorboard_callback())
        if settings.stop_after_epoch is not None:
            callbacks.append(StopAfterEpoch(settings.stop_after_epoch))
        return callbacks

    def train(self, callbacks: list):
        """Trains from ``initial_epoch`` to the last epoch with ``callbacks`` (Keras's
        ``fit``); returns the History. A model with its own loop overrides this and
        drives the callbacks itself."""
        steps = self.fit_steps()
        return self.model.fit(self.data, epochs=self.job.opts["epochs"],
                              initial_epoch=self.initial_epoch, callbacks=callbacks,
                              verbose=0, shuffle=False,
                              **({} if steps is None else {"steps_per_epoch": steps}))

    def start(self, before_tensorflow, *args):
        """:meth:`run` (with ``args``) after ``before_tensorflow``, the interrupt note set
        to what the folder holds first; Ctrl-C raises the note's RunInterrupted, a full
        disk a RunError saying what was kept (the note) in one line."""
        job, note = self.job, self.settings.note
        if job.state is None:
            note.set(f"no epoch of the {self.what} completed, so there is no checkpoint to "
                     "resume; run the same command again to start over")
        else:
            note.set(checkpoint_note(self.what, job.state["epoch"], job.opts["epochs"],
                                     job.out, self.settings.resume_hint))
        try:
            if before_tensorflow is not None:
                before_tensorflow()
            return self.run(*args)
        except KeyboardInterrupt:
            raise note.interrupted() from None
        except DiskFullError as err:
            raise RunError(f"{err.strerror}; {note.text}") from None

    def run(self, *args):
        """Fits and writes the run's results."""
        raise NotImplementedError

    def found_genotype(self):
        """The genotype a complete search writes (the model's)."""
        return self.model.genotype()

    def stopped_early(self, completed: int) -> bool:
        """Whether the run ended before its last epoch; if so, says where to continue."""
        epochs = self.job.opts["epochs"]
        if completed >= epochs:
            return False
        self.settings.report(f"stopped after epoch {completed} of {epochs}; checkpoint in "
                             f"{rel(self.job.out)}: {self.settings.resume_hint} continues it")
        return True

    def tensorboard_dir(self) -> str:
        return self.job.folder.path(TENSORBOARD_DIR)

    def replicas_note(self) -> str:
        return replicas_note(self.job.opts["batch_size"], self.replicas,
                             self.settings.strategy, self.settings.sync_batch_norm)
