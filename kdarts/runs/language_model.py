"""A language model's training on a corpus in its run folder, and generation from it.

The training is a run like every other (:class:`~kdarts.runs.fit.FolderFit`: folders,
lock, refusals, ``run.json``, callbacks, interrupt handling); only its loop is the
reference's own (SGD, switched to averaged SGD on a non-monotone validation loss:
:class:`~kdarts.recurrent.training.LanguageModelTrainer`), driving the run's callbacks,
and its checkpoint (``checkpoint/last``, after every epoch, resumed exactly) is the
trainer's, written by the one checkpoint writer (:mod:`kdarts.checkpoints`).

Example:
    >>> t = recurrent_train_run("runs/rsearch", "runs/rtrain")   # doctest: +SKIP
    >>> t.metrics["test_perplexity"]                              # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import time
from typing import Callable

from kdarts.atomic import atomic_write_json
from kdarts.runs.fit import FolderFit, Job, RunSettings
from kdarts.runs.folder import RunFolder
from kdarts.runs.recurrent import RECURRENT_TRAIN_DEFAULTS, CorpusInfo, check_same_corpus, \
    corpus_label, corpus_record, load_corpus_splits, load_recurrent_genotype, size_to_corpus
from kdarts.runs.report import Report, fmt_time, kdarts_version, rel
from kdarts.runs.results import RunError, TrainResult
from kdarts.runs.resume import TRAINER_CHECKPOINT, metrics_summary, train_state
from kdarts.runs.watchdog import InterruptNote
from kdarts.spaces import archive_config, is_language_model_file

#: The trainer's folder inside a training's folder: its checkpoint (``last``) and the
#: best validation model (``best.keras``).
TRAIN_DIR = os.path.dirname(TRAINER_CHECKPOINT)


def recurrent_train_run(genotype, out: str, *, resume: bool | str = False,
                        overwrite: bool = False, stop_after_epoch: int | None = None,
                        report: Report | None = print, progress: bool = True,
                        resume_hint: str = "the same command with --resume",
                        before_tensorflow: Callable[[], None] | None = None,
                        note: InterruptNote | None = None, **options) -> TrainResult:
    """Train a recurrent genotype's language model (DARTS's SGD → ASGD recipe) in ``out``.

    Writes ``run.json``, ``history.csv`` and the trainer's checkpoint (``checkpoint/``,
    every epoch; resumed exactly), then ``model.keras`` (the best validation model,
    reload-verified) with its vocabulary beside it (``model.keras.vocab.json``) and
    ``metrics.json`` (valid and test perplexity).

    Args:
        genotype: a recurrent genotype JSON file, a search folder holding one, a preset
            name (``DARTS_V1``, ``DARTS_V2``) or a RecurrentGenotype.
        out, resume, overwrite, stop_after_epoch, report, progress, resume_hint,
            before_tensorflow, note: as for :func:`~kdarts.runs.train_run`.
        **options: any of :data:`~kdarts.runs.RECURRENT_TRAIN_DEFAULTS` (None: the
            default; a corpus folder's sizes follow its training tokens, up to the
            reference's, :func:`~kdarts.runs.recurrent.corpus_sizes`).

    Raises:
        RunError: bad options, genotype, corpus or folder (nothing touched).
        RunInterrupted: Ctrl-C; the message says what was kept.
    """
    settings = RunSettings.of(locals())
    geno = load_recurrent_genotype(genotype)
    sizes: list[str] = []
    opts = size_to_corpus("train", options, sizes.append)
    if opts["lr"] <= 0:
        raise RunError(f"--lr must be > 0, got {opts['lr']}")
    args = {"space": "recurrent", **{k: opts[k] for k in RECURRENT_TRAIN_DEFAULTS},
            "genotype": geno.to_dict()}
    folder = RunFolder(out, "train")
    with folder.lock():
        state, metrics = train_state(folder, args, resume, overwrite)
        if metrics is not None:
            settings.report(f"{rel(folder.out)} holds this training, complete: "
                            f"{metrics_summary(metrics)}")
            return TrainResult(out=folder.out, epochs_done=opts["epochs"], complete=True,
                               metrics=metrics)
        if state is None:  # what an interrupted first epoch left, if anything
            shutil.rmtree(folder.path(TRAIN_DIR), ignore_errors=True)
        job = Job(folder, opts, args, state, settings)
        load_corpus_splits(opts)  # its refusals before TensorFlow (the read is kept)
        for line in sizes:
            settings.report(line)
        return LanguageModelFit(job, geno).start(before_tensorflow)


def last_train_loss(path: str) -> float | None:
    """The last epoch's training loss in a language model's ``history.csv`` (None: no
    epoch)."""
    if not os.path.exists(path):
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["train_loss"]) if rows else None


def trainer_checkpoint(trainer, path: str):
    """A callback writing ``trainer``'s checkpoint to the folder ``path`` after each
    epoch (:meth:`~kdarts.recurrent.training.LanguageModelTrainer.save`)."""
    import keras

    class TrainerCheckpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            trainer.save(path)

    return TrainerCheckpoint()


class LanguageModelFit(FolderFit):
    """The language model's training in its folder: the corpus, the model and the
    reference's trainer, whose loop (:meth:`train`) drives the run's callbacks; what it
    writes: history, the trainer's checkpoint, the model and its metrics."""

    what = "training"
    bar_metrics = {"train_loss": "loss", "val_ppl": "val ppl"}

    def __init__(self, job: Job, genotype):
        super().__init__(job)
        self.genotype = genotype

    def load_data(self):
        opts = self.job.opts
        self.corpus, train, self.valid, self.test = load_corpus_splits(opts)
        info = CorpusInfo(corpus_label(opts["dataset"]), len(self.corpus.vocabulary),
                          len(train))
        return train, info, None

    def run_record(self) -> dict:
        return corpus_record(self.info)

    def check_resumed_data(self) -> None:
        check_same_corpus(self.job.folder, self.info, "train")

    def build(self):
        from kdarts.parameters import count_parameters
        from kdarts.recurrent.model import RecurrentLanguageModel
        from kdarts.recurrent.training import LanguageModelTrainer

        opts, folder = self.job.opts, self.job.folder
        self.model = RecurrentLanguageModel(self.info.vocab_size, self.genotype,
                                            units=opts["units"],
                                            vocabulary=self.corpus.vocabulary,
                                            seed=opts["seed"])
        self.trainer = LanguageModelTrainer(self.model, self.data, self.valid,
                                            batch_size=opts["batch_size"], bptt=opts["bptt"],
                                            learning_rate=opts["lr"], seed=opts["seed"])
        self.parameters = count_parameters(self.model)
        if self.job.state is None:
            return
        try:
            self.trainer.restore(folder.path(TRAINER_CHECKPOINT))
        except (ValueError, FileNotFoundError) as err:
            raise RunError(f"{err}; the checkpoint cannot be resumed: choose another --out") \
                from None
        self.initial_epoch = self.trainer.epoch
        self.settings.report(f"resuming {rel(folder.out)} after epoch {self.trainer.epoch} "
                             f"of {opts['epochs']}")

    def describe(self) -> str:
        opts, info = self.job.opts, self.info
        return (f"train: {info.name} ({info.num_train} training tokens, vocabulary "
                f"{info.vocab_size}), recurrent language model, {opts['units']} units, "
                f"{self.parameters / 1e3:.1f}k parameters, {opts['epochs']} epochs, bptt "
                f"{opts['bptt']}, batch {opts['batch_size']}")

    def writer_callbacks(self) -> list:
        from kdarts.callbacks import HistoryCSV

        folder = self.job.folder
        return [trainer_checkpoint(self.trainer, folder.path(TRAINER_CHECKPOINT)),
                HistoryCSV(folder.path("history.csv"))]

    def train(self, callbacks: list):
        """The trainer's epochs (its own loop: variable-length segments, the ASGD switch,
        the best validation model kept in ``checkpoint/best.keras``), each ending in the
        callbacks' ``on_epoch_end``, as Keras's ``fit`` drives them."""
        import keras

        trainer, model, epochs = self.trainer, self.model, self.job.opts["epochs"]
        history = keras.callbacks.History()
        hooks = keras.callbacks.CallbackList(callbacks + [history], model=model,
                                             epochs=epochs, steps=None, verbose=0)
        best = self.job.folder.path(os.path.join(TRAIN_DIR, "best.keras"))
        os.makedirs(os.path.dirname(best), exist_ok=True)
        model.stop_training = False
        hooks.on_train_begin()
        while (trainer.epoch < epochs and not model.stop_training
               and not self.converged()):
            epoch = trainer.epoch
            hooks.on_epoch_begin(epoch)
            try:
                record = trainer.run_epoch(best, on_step=lambda step, nll: (
                    hooks.on_train_batch_end(step, {"train_loss": nll})))
            except FloatingPointError as err:
                raise RunError(f"{err}: lower --lr") from None
            hooks.on_epoch_end(epoch, {key: float(record[key]) for key in (
                "train_loss", "val_loss", "val_ppl", "averaging", "switched")})
        hooks.on_train_end()
        return history

    def epochs_done(self) -> int:
        return self.trainer.epoch

    def converged(self) -> bool:
        """Whether ``patience`` epochs passed without a better validation loss (the
        reference's early stop): the training is then complete before its last epoch."""
        return self.trainer.since_best >= self.job.opts["patience"]

    def stopped_early(self, completed: int) -> bool:
        if completed < self.job.opts["epochs"] and self.converged():
            self.settings.report(f"converged after epoch {completed}: no better validation "
                                 f"loss in {self.job.opts['patience']} epochs")
            return False
        return super().stopped_early(completed)

    def run(self) -> TrainResult:
        """Trains, evaluates the best validation epoch, writes the model and metrics."""
        t_start = time.perf_counter()
        done = self.fit()
        if self.stopped_early(done):
            return TrainResult(out=self.job.out, epochs_done=done, complete=False)
        return self.finish(done, t_start)

    def finish(self, done: int, t_start: float) -> TrainResult:
        """The best validation model's perplexities, ``model.keras`` and ``metrics.json``."""
        from kdarts.export import ExportError
        from kdarts.recurrent.export import export_language_model, load_language_model
        from kdarts.recurrent.training import EVAL_BATCH_SIZE, TEST_BATCH_SIZE, \
            evaluate_perplexity

        job, report, bptt = self.job, self.settings.report, self.job.opts["bptt"]
        folder = job.folder
        best = load_language_model(folder.path(os.path.join(TRAIN_DIR, "best.keras")))
        valid_ppl = evaluate_perplexity(best, self.valid, EVAL_BATCH_SIZE, bptt)
        test_ppl = evaluate_perplexity(best, self.test, TEST_BATCH_SIZE, bptt)
        try:
            exported = export_language_model(best, folder.path("model.keras"), "keras")
        except (ExportError, ValueError) as err:
            raise RunError(str(err)) from None
        total = time.perf_counter() - t_start
        metrics = {
            "valid_perplexity": valid_ppl, "test_perplexity": test_ppl,
            "valid_loss": math.log(valid_ppl), "test_loss": math.log(test_ppl),
            "train_loss": last_train_loss(folder.path("history.csv")),
            "vocab_size": self.info.vocab_size, "parameters": self.parameters,
            "epochs": job.opts["epochs"],
            "train_seconds": round(self.fit_seconds, 1), "total_seconds": round(total, 1),
            "genotype": self.genotype.to_dict(), "args": job.args, "kdarts": kdarts_version(),
        }
        metrics_path = folder.path("metrics.json")
        atomic_write_json(metrics_path, metrics)
        report(f"test perplexity {test_ppl:.1f} ({len(self.test)} test tokens; valid "
               f"perplexity {valid_ppl:.1f}); trained in {fmt_time(self.fit_seconds)}")
        report(f"train done in {fmt_time(total)}: model → {rel(exported.path)} (the best "
               f"validation epoch, reload verified, max |Δ| {exported.max_abs_diff:.1e}; "
               f"vocabulary beside it), metrics → {rel(metrics_path)}")
        return TrainResult(out=job.out, epochs_done=done, complete=True, metrics=metrics,
                           seconds=total)


# ---------------------------------------------------------------------------- generate

def generate_run(model_path: str, prompt: str, n: int = 20, temperature: float = 1.0,
                 seed: int = 0, before_tensorflow: Callable[[], None] | None = None,
                 report: Report | None = None) -> str:
    """``n`` words sampled from a trained language model after ``prompt`` (words split on
    whitespace, lowercased as the corpus is); the same seed gives the same words.

    ``model_path`` is a language model's ``.keras`` file or a training folder holding one
    (``model.keras``). A prompt none of whose words the model knows is refused (RunError
    naming them: the model would read only ``<unk>``); unknown words among known ones
    are read as ``<unk>``, said in one line to ``report``. Checked before TensorFlow."""
    from kdarts.export import ModelLoadError, check_model_file

    words = prompt.lower().split()
    if not words:
        raise RunError("--prompt: give at least one word")
    if temperature < 0:
        raise RunError(f"--temperature must be >= 0, got {temperature}")
    if n < 1:
        raise RunError(f"--length must be >= 1, got {n}")
    if os.path.isdir(model_path):
        model_path = os.path.join(model_path, "model.keras")
    try:
        check_model_file(model_path)
    except ModelLoadError as err:
        raise RunError(str(err)) from None
    if not is_language_model_file(model_path):
        raise RunError(f"{rel(model_path)} is not a language model (a kdarts train run on a "
                       "corpus writes one); generate samples words from a language model")
    vocabulary = language_model_vocabulary(model_path)
    if vocabulary:
        known = set(vocabulary)
        unknown = list(dict.fromkeys(w for w in words if w not in known))
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more"
                                           if len(unknown) > 10 else "")
        if len(unknown) == len(set(words)):
            examples = ", ".join([w for w in vocabulary if not w.startswith("<")][:5])
            raise RunError(f"--prompt: no word of it is in {rel(model_path)}'s vocabulary of "
                           f"{len(vocabulary)} words (unknown: {shown}); the model would read "
                           f"only <unk>: give words of its corpus (e.g. {examples})")
        if unknown and report is not None:
            report(f"note: not in the model's vocabulary, read as <unk>: {shown}")
    if before_tensorflow is not None:
        before_tensorflow()
    from kdarts.recurrent.export import generate, load_language_model

    try:
        model = load_language_model(model_path)
    except (ModelLoadError, ValueError) as err:
        raise RunError(str(err)) from None
    return " ".join(generate(model, words, n, temperature=temperature, seed=seed))


def language_model_vocabulary(path: str) -> list[str] | None:
    """The vocabulary (id → word) a language model's ``.keras`` archive records in its
    config, read without TensorFlow; None if it records none."""
    inner = (archive_config(path) or {}).get("config")
    vocabulary = inner.get("vocabulary") if isinstance(inner, dict) else None
    return [str(w) for w in vocabulary] if isinstance(vocabulary, list) else None
