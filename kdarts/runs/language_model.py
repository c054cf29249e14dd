"""A language model's training on a corpus in its run folder, and generation from it.

The training uses the folders, lock, refusals and interrupt handling of every kdarts run
(:mod:`kdarts.runs.fit`); its loop is the reference's own (SGD, switched to averaged SGD
on a non-monotone validation loss: :class:`~kdarts.recurrent.training.LanguageModelTrainer`),
which checkpoints in ``checkpoint/`` after every epoch and resumes exactly.

Example:
    >>> t = recurrent_train_run("runs/rsearch", "runs/rtrain")   # doctest: +SKIP
    >>> t.metrics["test_perplexity"]                              # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import time
from typing import Callable

from kdarts.atomic import atomic_write_json, atomic_write_text
from kdarts.runs.fit import FolderFit, Job, RunSettings, checkpoint_note, seed_everything
from kdarts.runs.folder import TRAINER_LAST, RunFolder, metrics_summary
from kdarts.runs.recurrent import RECURRENT_TRAIN_DEFAULTS, corpus_label, \
    load_corpus_splits, load_recurrent_genotype, size_to_corpus
from kdarts.runs.report import Report, fmt_time, kdarts_version, rel
from kdarts.runs.results import RunError, TrainResult
from kdarts.runs.watchdog import InterruptNote
from kdarts.spaces import archive_config, is_language_model_file

#: The trainer's own checkpoint folder inside a training's folder.
TRAIN_CHECKPOINT = os.path.dirname(TRAINER_LAST)


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
        state, metrics = folder.train_state(args, resume, overwrite)
        if metrics is not None:
            settings.report(f"{rel(folder.out)} holds this training, complete: "
                            f"{metrics_summary(metrics)}")
            return TrainResult(out=folder.out, epochs_done=opts["epochs"], complete=True,
                               metrics=metrics)
        if state is None:  # what an interrupted first epoch left, if anything
            shutil.rmtree(folder.path(TRAIN_CHECKPOINT), ignore_errors=True)
        job = Job(folder, opts, args, state, settings)
        load_corpus_splits(opts)  # its refusals before TensorFlow (the read is kept)
        for line in sizes:
            settings.report(line)
        return LanguageModelFit(job, geno).start(before_tensorflow)


def _write_history(path: str, records: list[dict]) -> None:
    keys = ["epoch", "train_loss", "val_loss", "val_ppl", "averaging", "switched"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(path, buffer.getvalue())


def _read_history(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


class LanguageModelFit(FolderFit):
    """The language model's training in its folder. The reference's trainer has its own
    loop (the SGD → ASGD switch, its checkpoint), so this uses the run skeleton's start,
    notes and stop messages, not its Keras ``fit``."""

    what = "training"

    def __init__(self, job: Job, genotype):
        super().__init__(job)
        self.genotype = genotype

    def run(self) -> TrainResult:
        """Trains, evaluates the best validation epoch, writes the model and metrics."""
        from tqdm.auto import tqdm

        from kdarts.export import ExportError
        from kdarts.parameters import count_parameters
        from kdarts.recurrent.export import export_language_model, load_language_model
        from kdarts.recurrent.language_model import RecurrentLanguageModel
        from kdarts.recurrent.training import (
            EVAL_BATCH_SIZE,
            TEST_BATCH_SIZE,
            LanguageModelTrainer,
            evaluate_perplexity,
        )

        job, settings, geno = self.job, self.settings, self.genotype
        folder, opts, args, state = job.folder, job.opts, job.args, job.state
        t_start = time.perf_counter()
        corpus, train, valid, test = load_corpus_splits(opts)
        vocab = len(corpus.vocabulary)
        out, epochs, report = folder.out, opts["epochs"], settings.report
        if state is None:
            folder.write_run({"kdarts": kdarts_version(), "args": args, "vocab_size": vocab,
                              "num_train_tokens": int(len(train))})
        seed_everything(opts["seed"])
        model = RecurrentLanguageModel(vocab, geno, units=opts["units"],
                                       vocabulary=corpus.vocabulary, seed=opts["seed"])
        trainer = LanguageModelTrainer(model, train, valid, batch_size=opts["batch_size"],
                                       bptt=opts["bptt"], learning_rate=opts["lr"],
                                       seed=opts["seed"])
        checkpoint = folder.path(TRAIN_CHECKPOINT)
        if state is not None:
            try:
                trainer.restore(folder.path(TRAINER_LAST))
            except (ValueError, FileNotFoundError) as err:
                raise RunError(f"{err}; the checkpoint cannot be resumed: choose another --out") \
                    from None
            report(f"resuming {rel(out)} after epoch {trainer.epoch} of {epochs}")
        parameters = count_parameters(model)
        report(f"train: {corpus_label(opts['dataset'])} ({len(train)} training tokens, "
               f"vocabulary {vocab}), recurrent language model, {opts['units']} units, "
               f"{parameters / 1e3:.1f}k parameters, {epochs} epochs, bptt {opts['bptt']}, "
               f"batch {opts['batch_size']}")
        history_path = folder.path("history.csv")
        rows = [r for r in _read_history(history_path) if int(r["epoch"]) < trainer.epoch]
        target = epochs if settings.stop_after_epoch is None else min(
            epochs, settings.stop_after_epoch)
        bar = tqdm(total=epochs, initial=trainer.epoch, desc="epochs", unit="epoch",
                   disable=not settings.progress, leave=True, dynamic_ncols=True)

        def log(record: dict) -> None:
            """After each epoch, which the trainer has checkpointed in checkpoint/last."""
            rows.append({**record, "epoch": record["epoch"] - 1})
            _write_history(history_path, rows)
            settings.note.set(checkpoint_note(self.what, record["epoch"], epochs, out,
                                              settings.resume_hint))
            bar.update(1)
            bar.set_postfix({"loss": f"{record['train_loss']:.3g}",
                             "val ppl": f"{record['val_ppl']:.1f}"}, refresh=False)

        t_fit = time.perf_counter()
        try:
            trainer.fit(target, checkpoint_dir=checkpoint, patience=epochs + 1, log=log)
        except FloatingPointError as err:
            raise RunError(f"{err}: lower --lr") from None
        finally:
            bar.close()
        fit_seconds = time.perf_counter() - t_fit
        if self.stopped_early(trainer.epoch):
            return TrainResult(out=out, epochs_done=trainer.epoch, complete=False)
        best_path = os.path.join(checkpoint, "best.keras")
        best = load_language_model(best_path)
        valid_ppl = evaluate_perplexity(best, valid, EVAL_BATCH_SIZE, opts["bptt"])
        test_ppl = evaluate_perplexity(best, test, TEST_BATCH_SIZE, opts["bptt"])
        try:
            exported = export_language_model(best, folder.path("model.keras"), "keras")
        except (ExportError, ValueError) as err:
            raise RunError(str(err)) from None
        total = time.perf_counter() - t_start
        metrics = {
            "valid_perplexity": valid_ppl, "test_perplexity": test_ppl,
            "valid_loss": math.log(valid_ppl), "test_loss": math.log(test_ppl),
            "train_loss": float(rows[-1]["train_loss"]) if rows else None,
            "vocab_size": vocab, "parameters": parameters, "epochs": epochs,
            "train_seconds": round(fit_seconds, 1), "total_seconds": round(total, 1),
            "genotype": geno.to_dict(), "args": args, "kdarts": kdarts_version(),
        }
        metrics_path = folder.path("metrics.json")
        atomic_write_json(metrics_path, metrics)
        report(f"test perplexity {test_ppl:.1f} ({len(test)} test tokens; valid perplexity "
               f"{valid_ppl:.1f}); trained in {fmt_time(fit_seconds)}")
        report(f"train done in {fmt_time(total)}: model → {rel(exported.path)} (the best "
               f"validation epoch, reload verified, max |Δ| {exported.max_abs_diff:.1e}; "
               f"vocabulary beside it), metrics → {rel(metrics_path)}")
        return TrainResult(out=out, epochs_done=trainer.epoch, complete=True, metrics=metrics,
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
