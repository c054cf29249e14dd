"""``train_run``: training a genotype's network from scratch in its own folder."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Callable

from kdarts.atomic import atomic_write_json
from kdarts.genotype import GenotypeError
from kdarts.image.genotype import Genotype, resolve_genotype
from kdarts.runs.defaults import TRAIN_DEFAULTS, check_data_options, check_imagenet_size, \
    resolve_options, tensorboard_available
from kdarts.runs.fit import FolderFit, Job, RunSettings
from kdarts.runs.folder import RunFolder
from kdarts.runs.report import Report, fmt_time, kdarts_version, rel, train_summary
from kdarts.runs.results import RunError, TrainResult
from kdarts.runs.resume import metrics_summary, train_state, worker_state
from kdarts.runs.watchdog import InterruptNote


def load_genotype(spec: str | Genotype) -> Genotype:
    """A genotype from a JSON file, a search folder holding one, or a preset name."""
    if isinstance(spec, str) and os.path.isdir(spec):
        spec = os.path.join(spec, "genotype.json")
    try:
        return resolve_genotype(spec)
    except GenotypeError as err:
        raise RunError(str(err)) from None


@dataclasses.dataclass
class TrainJob(Job):
    """A checked training: a :class:`~kdarts.runs.fit.Job` and the genotype it trains."""

    genotype: Genotype | None = None


def train_options(options: dict, genotype: Genotype) -> tuple[dict, dict]:
    """``(options, run.json's args)`` of a training, checked without TensorFlow."""
    opts = resolve_options("train", options)
    check_data_options(opts)
    if opts["imagenet_stem"]:
        check_imagenet_size(opts)
    return opts, {**{k: opts[k] for k in TRAIN_DEFAULTS}, "genotype": genotype.to_dict()}


def train_run(genotype: str | Genotype, out: str, *, resume: bool | str = False,
              overwrite: bool = False, download: bool = False, data_dir: str | None = None,
              stop_after_epoch: int | None = None, report: Report | None = print,
              progress: bool = True, resume_hint: str = "the same command with --resume",
              tensorboard: bool = False, strategy: str = "default",
              sync_batch_norm: bool = True,
              before_tensorflow: Callable[[], None] | None = None,
              note: InterruptNote | None = None,
              **options) -> TrainResult:
    """Train a genotype's network from scratch in the folder ``out``.

    Writes ``run.json``, ``history.csv`` and a checkpoint every epoch, then
    ``model.keras`` (reload-verified; it takes raw images, see
    :mod:`kdarts.preprocessing`) and ``metrics.json`` (test accuracy, parameters,
    times, the genotype, the arguments and the model's input contract).

    Args:
        genotype: a genotype JSON file, a search folder, a preset name, or a Genotype.
        out: the run folder (new, empty, or this training's own); locked while the
            training runs.
        resume: continue from the checkpoint (True), start fresh (False), or whichever
            applies, reusing a complete training (``"auto"``).
        overwrite: delete a previous training's files in ``out`` and start over.
        download, data_dir: see :func:`kdarts.data.load_dataset`.
        stop_after_epoch: end after this many epochs (checkpointed; resume later).
        report, progress, resume_hint, note: as for :func:`~kdarts.runs.search_run`.
        tensorboard: also write TensorBoard event files (per-epoch loss,
            accuracy, learning rate) to ``out/tensorboard`` (Keras's callback).
        strategy, sync_batch_norm: as for :func:`~kdarts.runs.search_run`: the batch
            size is the global batch, the gradients are summed over the replicas before
            clipping, and only the chief writes files. Drop-path masks are drawn per
            replica.
        before_tensorflow: as for :func:`~kdarts.runs.search_run`.
        **options: any of :data:`~kdarts.runs.TRAIN_DEFAULTS`; those left out (or None)
            take the dataset's defaults (:func:`~kdarts.runs.resolve_options`);
            ``dataset`` and ``image_size`` as for :func:`~kdarts.runs.search_run`.

    Raises:
        RunError: bad options, genotype or folder (nothing touched), data not loadable.
        RunInterrupted: Ctrl-C; the message says what was kept.
    """
    settings = RunSettings.of(locals())
    geno = load_genotype(genotype)
    opts, args = train_options(options, geno)
    if tensorboard:
        tensorboard_available()
    if not 0.0 <= opts["drop_path"] < 1.0:
        raise RunError(f"--drop-path must be in [0, 1), got {opts['drop_path']}")
    from kdarts.runtime import is_chief

    folder = RunFolder(out, "train")
    chief = is_chief(strategy)
    # the chief checks, locks and writes the folder; a worker only reads its checkpoint
    with folder.lock() if chief else contextlib.nullcontext():
        if chief:
            state, metrics = train_state(folder, args, resume, overwrite)
        else:
            state, metrics = worker_state(folder, resume), None
        if metrics is not None:
            settings.report(f"{rel(folder.out)} holds this training, complete: "
                            f"{metrics_summary(metrics)}")
            return TrainResult(out=folder.out, epochs_done=opts["epochs"], complete=True,
                               metrics=metrics)
        job = TrainJob(folder, opts, args, state, settings, geno)
        return TrainFit(job).start(before_tensorflow)


class TrainFit(FolderFit):
    """The training's data, :class:`~kdarts.image.EvalNetwork` with its learning-rate
    schedule, and what it writes: the checkpoint, history, model and metrics."""

    what = "training"

    def load_data(self):
        from kdarts.data import train_datasets

        opts, settings = self.job.opts, self.settings
        train_ds, self.test_ds, info, steps = train_datasets(
            opts["dataset"], batch_size=opts["batch_size"], seed=opts["seed"],
            cutout=opts["cutout"], data_dir=settings.data_dir,
            max_examples=opts["max_examples"], download=settings.download,
            initial_epoch=self.initial_epoch, image_size=opts["image_size"])
        return train_ds, info, steps

    def build(self):
        from kdarts.callbacks import restore_checkpoint
        from kdarts.image import EvalNetwork, compile_eval_network
        from kdarts.image.costs import network_madds
        from kdarts.ops import MIXED_PRECISION

        opts, info = self.job.opts, self.info
        # a model saved with the run names its dataset, not its path: it travels
        dataset = (os.path.basename(info.name.rstrip(os.sep)) if os.path.isabs(info.name)
                   else info.name)
        model = EvalNetwork(self.job.genotype, info.num_classes, channels=opts["channels"],
                            layers=opts["layers"], auxiliary=opts["auxiliary"],
                            drop_path_prob=opts["drop_path"], seed=opts["seed"],
                            mean=info.mean, std=info.std, dataset=dataset,
                            class_names=info.class_names or None,
                            imagenet_stem=opts["imagenet_stem"],
                            sync_batch_norm=self.settings.sync_batch_norm and self.replicas > 1,
                            dtype=MIXED_PRECISION if opts["mixed_precision"] else None)
        model.build((None,) + tuple(info.image_shape))
        self.schedule_callbacks = compile_eval_network(
            model, epochs=opts["epochs"], steps_per_epoch=self.steps_per_epoch, lr=opts["lr"])
        self.model = model
        self.parameters = model.parameter_count()
        self.madds = network_madds(model)
        if self.job.state is not None:
            restore_checkpoint(model, self.job.out)
            self.settings.report(f"resuming {rel(self.job.out)} after epoch "
                                 f"{self.initial_epoch} of {opts['epochs']}")

    def describe(self) -> str:
        return train_summary(self.job.opts, self.info, self.parameters, self.steps_per_epoch,
                             self.replicas_note(), self.madds)

    def model_callbacks(self) -> list:
        return list(self.schedule_callbacks)

    def writer_callbacks(self) -> list:
        from kdarts.callbacks import EpochCheckpoint, HistoryCSV

        return [EpochCheckpoint(self.job.out), HistoryCSV(self.job.folder.path("history.csv"))]

    def tensorboard_callback(self):
        import keras

        # per-epoch scalars indexed by the epoch, so a resumed run continues its curves
        return keras.callbacks.TensorBoard(self.tensorboard_dir(), write_graph=False,
                                           update_freq="epoch")

    def run(self) -> TrainResult:
        """Fits, evaluates, then (the chief) writes ``model.keras`` and ``metrics.json``."""
        from kdarts.export import ExportError
        from kdarts.image.export import export_model

        t_start = time.perf_counter()
        done = self.fit()
        job, settings, model, info = self.job, self.settings, self.model, self.info
        epochs, out, report = job.opts["epochs"], job.out, settings.report
        if self.stopped_early(done):
            return TrainResult(out=out, epochs_done=done, complete=False)

        result = model.evaluate(self.test_ds, return_dict=True, verbose=0)
        test_acc, test_loss = float(result["accuracy"]), float(result["loss"])
        if not self.chief:
            report(f"worker done: test accuracy {100 * test_acc:.2f}% on {info.num_test} "
                   "test images; the chief writes model.keras and metrics.json")
            return TrainResult(out=out, epochs_done=done, complete=True)
        try:
            exported = export_model(model, job.folder.path("model.keras"), "keras")
        except (ExportError, ValueError) as err:
            raise RunError(str(err)) from None
        total = time.perf_counter() - t_start
        history = self.history.history
        metrics = {
            "test_accuracy": test_acc, "test_loss": test_loss,
            "train_accuracy": float(history["accuracy"][-1]),
            "train_loss": float(history["loss"][-1]),
            "num_test": info.num_test, "parameters": self.parameters, "madds": self.madds,
            "epochs": epochs,
            "train_seconds": round(self.fit_seconds, 1), "total_seconds": round(total, 1),
            "genotype": job.genotype.to_dict(), "input": model.input_contract(),
            "class_names": list(info.class_names) or None,
            "args": {k: job.opts[k] for k in TRAIN_DEFAULTS}, "kdarts": kdarts_version(),
        }
        metrics_path = job.folder.path("metrics.json")
        atomic_write_json(metrics_path, metrics)
        report(f"test accuracy {100 * test_acc:.2f}% on {info.num_test} test images "
               f"(test loss {test_loss:.3f}); trained in {fmt_time(self.fit_seconds)}")
        report(f"train done in {fmt_time(total)}: model → {rel(exported.path)} (reload "
               f"verified, max |Δ| {exported.max_abs_diff:.1e}; takes raw images, pixel "
               f"values 0-255), metrics → {rel(metrics_path)}")
        return TrainResult(out=out, epochs_done=done, complete=True, metrics=metrics,
                           seconds=total)
