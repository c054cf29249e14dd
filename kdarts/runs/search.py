"""``search_run``: a cell search in its own folder."""

from __future__ import annotations

import contextlib
import dataclasses
import time
import types
from typing import Any, Callable

from kdarts.checkpoints import resume_epoch
from kdarts.budget import describe_cost, format_amount
from kdarts.runs.defaults import SEARCH_DEFAULTS, check_budget_options, check_data_options, \
    eval_network_size, fit_search_batch, parse_primitives, resolve_options, tensorboard_available
from kdarts.runs.fit import FolderFit, Job, RunSettings
from kdarts.runs.folder import RunFolder
from kdarts.runs.resume import search_state, worker_state
from kdarts.runs.report import Report, fmt_time, rel, search_summary
from kdarts.runs.results import RunError, SearchResult
from kdarts.runs.recipe import SearchDefaults, compile_args, genotype_cost, network_args, \
    search_budget, search_data
from kdarts.runs.watchdog import InterruptNote
from kdarts.spaces import IMAGE_SPACE, space_for


@dataclasses.dataclass
class SearchJob(Job):
    """A checked search: a :class:`~kdarts.runs.fit.Job` and its candidate ops (None:
    all); ``batch_note`` says the batch was lowered to fit small own data."""

    primitives: tuple[str, ...] | None = None
    batch_note: str | None = None


def search_options(options: dict) -> tuple[dict, dict, tuple | None, str | None]:
    """``(options, run.json's args, primitives, batch note)`` of a search, checked without
    TensorFlow; the note (or None) says the batch was lowered to fit small own data."""
    opts = resolve_options("search", options)
    check_data_options(opts)
    check_budget_options(opts)
    batch_note = fit_search_batch(opts, explicit=options.get("batch_size") is not None)
    primitives = parse_primitives(opts["primitives"], opts["activation"])
    opts["primitives"] = list(primitives) if primitives else None
    if opts["steps"] < 1:
        raise RunError(f"--steps must be >= 1, got {opts['steps']}")
    return opts, {key: opts[key] for key in SEARCH_DEFAULTS}, primitives, batch_note


def search_defaults(dataset: str = SEARCH_DEFAULTS["dataset"], **options: Any
                    ) -> SearchDefaults:
    """The options ``kdarts search --dataset DATASET`` would run with, and the parts to
    run them in Keras.

    Options left out (or None) take the dataset's defaults, as on the command line: on
    the built-in digits and other small data α's Adam learning rate 0.05 from a dynamic
    threshold of 50, on cifar10/cifar100 the paper's sizes and α step
    (:func:`~kdarts.runs.resolve_options`). The checks are the command's: a bad option or
    dataset raises :class:`~kdarts.runs.RunError` with its one line, and on own data (a
    folder or an ``.npz``) a default batch larger than the search split is lowered, the
    line saying so in ``notes``. Nothing is loaded and TensorFlow is not imported.

    Args:
        dataset: a TFDS name, a folder of class sub-folders or an ``.npz`` (a path is
            made absolute, as in ``run.json``).
        **options: any of :data:`~kdarts.runs.SEARCH_DEFAULTS` (``channels``,
            ``layers``, ``epochs``, ``arch_lr``, ``threshold``, ``seed``, ...).

    Raises:
        TypeError: an option ``kdarts search`` does not have.
        RunError: a bad value, a missing dataset, or a corpus (the recurrent space is
            searched by :func:`kdarts.runs.recurrent_search_run`).

    Example:
        >>> search = search_defaults("kdarts_digits", channels=4, epochs=1)
        >>> search["channels"], search["arch_lr"], search["schedule"]
        (4, 0.05, 'dynamic')
        >>> search_defaults("cifar10")["arch_lr"]
        0.0003
    """
    unknown = sorted(set(options) - set(SEARCH_DEFAULTS))
    if unknown:
        raise TypeError(f"search_defaults: unknown option(s) {', '.join(unknown)}; valid: "
                        f"{', '.join(sorted(SEARCH_DEFAULTS))}")
    if space_for(dataset=dataset) is not IMAGE_SPACE:
        raise RunError(f"search_defaults: {dataset} is a corpus (the recurrent space); "
                       "kdarts.runs.recurrent_search_run searches it")
    opts, _, _, batch_note = search_options({**options, "dataset": dataset})
    return SearchDefaults(types.MappingProxyType(dict(opts)),
                          () if batch_note is None else (batch_note,))


def check_search_folder(out: str, **options) -> None:
    """Raise :class:`~kdarts.runs.results.RunError` unless ``out`` is new or holds the
    search ``options`` describe (finished or not), as :func:`search_run` would; nothing
    is loaded or written."""
    search_state(RunFolder(out, "search"), search_options(options)[1], "auto")


def search_run(out: str, *, resume: bool | str = False, download: bool = False,
               data_dir: str | None = None, stop_after_epoch: int | None = None,
               report: Report | None = print, progress: bool = True,
               resume_hint: str = "the same command with --resume",
               tensorboard: bool = False, strategy: str = "default",
               sync_batch_norm: bool = True,
               before_tensorflow: Callable[[], None] | None = None,
               note: InterruptNote | None = None,
               **options) -> SearchResult:
    """Search a cell in the folder ``out`` (written: see :data:`~kdarts.runs.RUN_FILES`).

    Args:
        out: the run folder (new, empty, or this search's own to resume). It is locked
            while the search runs: a second run on it is refused.
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
            split across the replicas; only the chief writes files (and locks ``out``).
            Resuming under another strategy is allowed.
        sync_batch_norm: with several replicas, BN uses the global batch's statistics,
            so the search equals a one-device search of the same batch size.
        before_tensorflow: called once every option, the data and ``out`` are checked,
            before TensorFlow is imported (the command line sets TensorFlow's threads
            there, so a refusal comes at once).
        note: kept current with what an interruption would leave (the command line
            shares it with its :class:`~kdarts.runs.SigintWatchdog`).
        **options: any of :data:`~kdarts.runs.SEARCH_DEFAULTS`; those left out (or None)
            take the dataset's defaults (:func:`~kdarts.runs.resolve_options`).
            ``dataset`` is a TFDS name, a folder of class sub-folders or an ``.npz``
            (:mod:`kdarts.data.files`), ``image_size`` ``(H, W)`` resizes a folder's images.

    Raises:
        RunError: bad options or folder (nothing touched), or data that cannot be loaded.
        RunInterrupted: Ctrl-C; the message says what was kept.
    """
    settings = RunSettings.of(locals())
    opts, args, primitives, batch_note = search_options(options)
    if tensorboard:
        tensorboard_available()
    from kdarts.runtime import is_chief

    folder = RunFolder(out, "search")
    chief = is_chief(strategy)
    # the chief checks, locks and writes the folder; a worker only reads its checkpoint
    with folder.lock() if chief else contextlib.nullcontext():
        state = search_state(folder, args, resume) if chief else worker_state(folder, resume)
        job = SearchJob(folder, opts, args, state, settings, primitives, batch_note)
        return _run_search(job, before_tensorflow)


def _run_search(job: SearchJob, before_tensorflow) -> SearchResult:
    if job.batch_note:
        job.settings.report(job.batch_note)
    return SearchFit(job).start(before_tensorflow, time.perf_counter())


class SearchFit(FolderFit):
    """The search's data (weight and α splits), :class:`~kdarts.image.SearchNetwork`,
    and what it writes: the record, history, checkpoint, genotype and plots."""

    what = "search"
    bar_metrics = {"loss": "loss", "accuracy": "acc", "alpha_steps": "α steps",
                   "pruned_ops": "pruned", "expected_cost_ratio": "E/B", "budget_dual": "λ"}
    bar_integers = ("α steps", "pruned")

    def load_data(self):
        weight_ds, self.search_ds, info, steps = search_data(
            self.job.opts, data_dir=self.settings.data_dir, download=self.settings.download)
        return weight_ds, info, steps

    def build(self):
        from kdarts.callbacks import restore_checkpoint
        from kdarts.image import SearchNetwork
        from kdarts.search.callbacks import checkpoint_epoch

        # the same calls as kdarts.search_defaults's, so the Python API searches alike
        opts, info, out = self.job.opts, self.info, self.job.out
        self.budget = search_budget(opts, info)  # refused before the network is built
        model = SearchNetwork(**network_args(
            opts, info, sync_batch_norm=self.settings.sync_batch_norm and self.replicas > 1))
        model.build((None,) + tuple(info.image_shape))
        model.compile(**compile_args(opts, self.search_ds, self.budget))
        self.model = model
        if self.job.state is None:
            self.initial_epoch = 0
            return
        epochs = opts["epochs"]
        model.build_optimizers()
        try:
            restore_checkpoint(model, out)
            self.initial_epoch = resume_epoch(self.job.state, checkpoint_epoch(model))
        except ValueError as err:
            raise RunError(f"{rel(out)}: {err}") from None
        if self.initial_epoch >= epochs:
            self.settings.report(f"{rel(out)} holds a complete search ({self.initial_epoch} "
                                 "epochs); writing its genotype and plots again")
        else:
            self.settings.report(f"resuming {rel(out)} after epoch {self.initial_epoch} of "
                                 f"{epochs} ({int(model.search_step.numpy())} steps, "
                                 f"{int(model.alpha_steps.numpy())} α steps)")

    def describe(self) -> str | None:
        if self.initial_epoch >= self.job.opts["epochs"]:
            return None
        opts, budget = self.job.opts, ""
        if self.budget is not None:
            channels, layers = eval_network_size(opts)
            budget = (f", budget {self.budget.describe()} (evaluation network C={channels}, "
                      f"{layers} layers; the cheapest genotype costs "
                      f"{format_amount(self.budget.cheapest, self.budget.kind)})")
        line = search_summary(opts, self.info, self.steps_per_epoch, self.replicas_note(),
                              budget)
        if self.model.pruned_ops_mode(opts["batch_size"],
                                      opts["epochs"] * self.steps_per_epoch) == "levels":
            # say why the bar pauses when a quarter, half, three quarters are pruned
            line += "; traced again when 25, 50 and 75 % of the ops are pruned"
        return line

    def found_genotype(self):
        """The model's genotype with its cost recorded (genotype.json's ``cost``)."""
        genotype = self.model.genotype()
        return genotype.with_cost(genotype_cost(self.job.opts, self.info, genotype,
                                                self.budget))

    def writer_callbacks(self) -> list:
        from kdarts.callbacks import HistoryCSV
        from kdarts.search.callbacks import SearchCheckpoint, SearchRecorder

        folder = self.job.folder
        return [SearchRecorder(folder.path("search_record.json")),
                HistoryCSV(folder.path("history.csv")), SearchCheckpoint(folder.out)]

    def tensorboard_callback(self):
        from kdarts.search.callbacks import SearchTensorBoard

        return SearchTensorBoard(self.tensorboard_dir())

    def fit_steps(self) -> int | None:
        return self.steps_per_epoch

    def epochs_done(self) -> int:
        return int(self.model.search_step.numpy()) // self.steps_per_epoch

    def run(self, t_start: float) -> SearchResult:
        """Fits, then (the chief, once complete) writes the genotype and plots."""
        from kdarts.plots import plot_alpha, plot_schedule

        result, genotype = fit_search(self)
        if genotype is None:
            return result
        job, model, report, out = self.job, self.model, self.settings.report, self.job.out
        completed = result.epochs_done
        record = job.folder.path("search_record.json")
        plot_alpha(record, job.folder.path("alpha.png"))
        plot_schedule(record, job.folder.path("schedule.png"))
        total = time.perf_counter() - t_start
        pruned = int(sum(float((1 - m.numpy()).sum()) for m in (model.mask_normal,
                                                               model.mask_reduce)))
        report(str(genotype))
        report(describe_cost(genotype.cost))
        report(f"search done in {fmt_time(total)} ({completed} epochs, "
               f"{int(model.search_step.numpy())} weight steps, {result.alpha_steps} α steps"
               + (f", {pruned} ops pruned" if job.opts["activation"] == "crb" else "")
               + f"): genotype → {rel(result.genotype_path)}; record, history, checkpoint "
               f"and plots (alpha.png, schedule.png, genotype.png) in {rel(out)}")
        return dataclasses.replace(result, genotype=genotype, pruned_ops=pruned, seconds=total)


def fit_search(fit: FolderFit) -> tuple[SearchResult, object | None]:
    """``(result, genotype)`` of a search ``fit``: it fits, then, if the search is complete
    and this process is the chief, saves the found genotype and its drawing. The
    genotype is None (nothing written) if the run stopped early or on a worker."""
    from kdarts.plots import plot_genotype

    completed = fit.fit()
    model, out, epochs = fit.model, fit.job.out, fit.job.opts["epochs"]
    settings = fit.settings
    result = SearchResult(out=out, epochs_done=completed, complete=completed >= epochs,
                          alpha_steps=int(model.alpha_steps.numpy()))
    if not fit.chief:
        genotype = model.genotype() if result.complete else None
        settings.report(f"worker done after epoch {completed} of {epochs}: the chief writes "
                        "the run's files" + (f"; genotype {genotype}" if genotype else ""))
        return dataclasses.replace(result, genotype=genotype), None
    if fit.stopped_early(completed):
        return result, None
    settings.note.set(f"the search completed and its checkpoint is in {rel(out)}: "
                      f"{settings.resume_hint} writes its genotype and plots again")
    genotype = fit.found_genotype()
    genotype.save(result.genotype_path)
    plot_genotype(genotype, fit.job.folder.path("genotype.png"))
    return result, genotype
