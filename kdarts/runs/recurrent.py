"""The recurrent space in run folders: a cell search and a language model's training on a
corpus, generation from a trained model.

A dataset that is a corpus (:data:`~kdarts.recurrent.corpus.EMBEDDED_CORPUS` or a
folder holding ``train.txt``, ``valid.txt``, ``test.txt``) selects the recurrent space;
so does a recurrent ``genotype.json`` (it has a ``"recurrent"`` key) given to a
training. The folders, their lock, the refusals, the per-epoch checkpoint and exact
resume are the convolutional runs' (:mod:`kdarts.runs`).

Example:
    >>> s = recurrent_search_run("runs/rsearch")                  # doctest: +SKIP
    >>> t = recurrent_train_run(s.genotype_path, "runs/rtrain")   # doctest: +SKIP
    >>> t.metrics["test_perplexity"]                              # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shutil
import time
from typing import Callable

from kdarts.atomic import atomic_write_json, atomic_write_text
from kdarts.checkpoints import CHECKPOINT_STATE, CHECKPOINT_WEIGHTS
from kdarts.genotype import GenotypeError
from kdarts.runs.fit import RunSettings, epoch_note, seed_everything
from kdarts.runs.folder import RunFolder, describe_diff, read_json
from kdarts.runs.report import Report, fmt_time, kdarts_version, quiet, rel
from kdarts.runs.results import RunError, SearchResult, TrainResult
from kdarts.runs.watchdog import InterruptNote

#: The corpus every install carries (CPython's documentation, PTB-tokenised).
EMBEDDED_CORPUS = "kdarts_text"
#: The files a corpus folder holds (the Penn Treebank layout).
CORPUS_FILES = ("train.txt", "valid.txt", "test.txt")

#: Recurrent search defaults: DARTS-PRIME's method (crb, dynamic schedule, proximity) at
#: a size the embedded corpus searches in about a minute on 2 CPU cores. As for the small
#: image searches, α's learning rate is scaled up and the dynamic schedule's threshold
#: set in the range of this model's FI (about 2-15), so that α moves and crb prunes in
#: so few steps. The weights' learning rate is the reference's 20 divided by 4: at 32
#: units, 20 (with the first α steps) makes the weights diverge (the loss climbs from
#: 7.3 to 17 in 4 epochs and the FI to 1e7); at 5 the loss falls (6.2 → 5.8).
RECURRENT_SEARCH_DEFAULTS: dict = dict(
    dataset=EMBEDDED_CORPUS, epochs=4, activation="crb", schedule="dynamic", every=10,
    arch_lr=0.02, threshold=10.0, reg="proximity", rho=0.1, admm_every=10,
    admm_variant="spec", batch_size=32, units=32, bptt=20, vocab_size=1000, lr=5.0,
    max_tokens=None, seed=0, unrolled=False)
#: Language-model training defaults for the embedded corpus (small and short).
RECURRENT_TRAIN_DEFAULTS: dict = dict(
    dataset=EMBEDDED_CORPUS, epochs=3, units=64, bptt=20, batch_size=32, vocab_size=1000,
    lr=20.0, max_tokens=None, seed=0)
#: The reference's sizes (DARTS's train.py for PTB), the defaults for a corpus folder.
PTB_TRAIN: dict = dict(units=850, bptt=35, batch_size=64, vocab_size=None, epochs=50)
#: The reference's search sizes for a corpus folder.
PTB_SEARCH: dict = dict(units=300, bptt=35, batch_size=256, vocab_size=None, epochs=50,
                        arch_lr=3e-3, threshold=1.0)

#: What a language-model training writes in its folder (beside run.json).
TRAIN_FILES = ("run.json", "model.keras", "model.keras.vocab.json", "metrics.json",
               "history.csv", "checkpoint")
#: The trainer's own checkpoint folder inside a training's folder.
TRAIN_CHECKPOINT = "checkpoint"


# ------------------------------------------------------------------------- what is what

def is_corpus(dataset: str | None) -> bool:
    """Whether ``--dataset`` names a corpus: the embedded one, or a folder holding
    ``train.txt``, ``valid.txt`` and ``test.txt``."""
    if dataset is None:
        return False
    if dataset == EMBEDDED_CORPUS:
        return True
    return os.path.isdir(dataset) and all(
        os.path.isfile(os.path.join(dataset, name)) for name in CORPUS_FILES)


def is_recurrent_genotype(spec) -> bool:
    """Whether ``spec`` is a recurrent genotype file (or a search folder holding one)."""
    from kdarts.recurrent.genotype import RecurrentGenotype

    if isinstance(spec, RecurrentGenotype):
        return True
    if not isinstance(spec, str):
        return False
    path = os.path.join(spec, "genotype.json") if os.path.isdir(spec) else spec
    if not (path.endswith(".json") and os.path.isfile(path)):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "recurrent" in data


def load_recurrent_genotype(spec):
    """A recurrent genotype from a JSON file, a search folder holding one, or a preset
    name (``DARTS_V1``, ``DARTS_V2``); RunError naming the file otherwise."""
    from kdarts.recurrent.genotype import resolve_recurrent_genotype

    if isinstance(spec, str) and os.path.isdir(spec):
        spec = os.path.join(spec, "genotype.json")
    try:
        return resolve_recurrent_genotype(spec)
    except GenotypeError as err:
        raise RunError(" ".join(str(err).split())) from None


def check_corpus(dataset: str) -> str:
    """The corpus ``dataset`` canonical (a folder absolute); RunError if it is not one."""
    if dataset == EMBEDDED_CORPUS:
        return dataset
    if not is_corpus(dataset):
        missing = [n for n in CORPUS_FILES
                   if not os.path.isfile(os.path.join(dataset, n))] if os.path.isdir(dataset) \
            else None
        what = (f"holds no {', '.join(missing)}" if missing else "is not a folder")
        raise RunError(f"--dataset {dataset} {what}: a corpus is {EMBEDDED_CORPUS!r} or a "
                       f"folder holding {', '.join(CORPUS_FILES)}")
    return os.path.abspath(dataset)


def resolve_recurrent_options(command: str, options: dict) -> dict:
    """Every option of a recurrent ``search``/``train`` run: those given (not None), else
    the reference's sizes for a corpus folder, else the embedded corpus's."""
    base = {"search": RECURRENT_SEARCH_DEFAULTS, "train": RECURRENT_TRAIN_DEFAULTS}[command]
    unknown = set(options) - set(base)
    if unknown:
        raise TypeError(f"recurrent {command}: unknown option(s) {', '.join(sorted(unknown))}")
    given = {k: v for k, v in options.items() if v is not None}
    dataset = check_corpus(given.get("dataset", base["dataset"]))
    paper = {} if dataset == EMBEDDED_CORPUS else {"search": PTB_SEARCH,
                                                   "train": PTB_TRAIN}[command]
    opts = {**base, **{k: v for k, v in paper.items() if k in base}, **given,
            "dataset": dataset}
    for key, low in (("units", 1), ("bptt", 2), ("batch_size", 1), ("epochs", 1)):
        if opts[key] < low:
            raise RunError(f"--{key.replace('_', '-')} must be >= {low}, got {opts[key]}")
    if opts["vocab_size"] is not None and opts["vocab_size"] < 3:
        raise RunError(f"--vocab-size must be >= 3 (<unk>, <eos> and a word), got "
                       f"{opts['vocab_size']}")
    return opts


def _load_corpus(opts: dict):
    """``(corpus, train, valid, test)`` token ids, cut to ``max_tokens``; RunError if the
    corpus cannot be read or is too short for the batch."""
    from kdarts.recurrent.corpus import CorpusError, load_corpus

    try:
        corpus = load_corpus(opts["dataset"], opts["vocab_size"])
    except (CorpusError, OSError, ValueError) as err:
        raise RunError(" ".join(str(err).split())) from None
    cap = opts["max_tokens"]
    splits = [s if not cap else s[:cap] for s in (corpus.train, corpus.valid, corpus.test)]
    name = _corpus_label(opts["dataset"])
    for split, label in zip(splits, ("train", "valid")):
        if len(split) < 3 * opts["batch_size"]:
            raise RunError(f"{name}: the {label} split has {len(split)} tokens, too few for "
                           f"--batch-size {opts['batch_size']} (at least 3 tokens per "
                           "stream); lower --batch-size or raise --max-tokens")
    return corpus, *splits


def _corpus_label(dataset: str) -> str:
    return rel(dataset) if os.path.isabs(dataset) else dataset


def _check_args(folder: RunFolder, args: dict, what: str, order: list[str]) -> dict | None:
    """The folder's run.json if it holds this recurrent run; RunError for another run."""
    run = folder.read_run()
    if run is None:
        return None
    old = run["args"]
    if old.get("space") != "recurrent":
        raise RunError(f"--out {rel(folder.out)} holds an image {what} run, not a recurrent "
                       "one; choose another --out")
    if old != args:
        raise RunError(f"--out {rel(folder.out)} holds a different recurrent {what} run "
                       f"({describe_diff(old, args, order)}); choose another --out (or pass "
                       "its arguments, see its run.json)")
    return run


# ------------------------------------------------------------------------------ search

def recurrent_search_run(out: str, *, resume: bool | str = False,
                         stop_after_epoch: int | None = None, report: Report | None = print,
                         progress: bool = True,
                         resume_hint: str = "the same command with --resume",
                         before_tensorflow: Callable[[], None] | None = None,
                         note: InterruptNote | None = None, **options) -> SearchResult:
    """Search a recurrent cell on a corpus in the folder ``out``.

    Writes ``run.json`` (the arguments, first), ``history.csv`` and a checkpoint
    (``checkpoint.weights.h5``, ``checkpoint.json``) every epoch, then
    ``genotype.json`` (a :class:`~kdarts.recurrent.RecurrentGenotype`) and
    ``genotype.png``. The weights learn on the training text, α on the validation
    text (DARTS's recurrent search), in the authors' variable-length segments.

    Args:
        out, resume, stop_after_epoch, report, progress, resume_hint, before_tensorflow,
            note: as for :func:`~kdarts.runs.search_run`.
        **options: any of :data:`RECURRENT_SEARCH_DEFAULTS` (None: the default);
            ``dataset`` is ``"kdarts_text"`` or a corpus folder; ``max_tokens`` cuts
            every split to its first N tokens.

    Raises:
        RunError: bad options, corpus or folder (nothing touched).
        RunInterrupted: Ctrl-C; the message says what was kept.
    """
    settings = RunSettings(stop_after_epoch=stop_after_epoch, report=report or quiet,
                           progress=progress, resume_hint=resume_hint,
                           note=note or InterruptNote())
    opts = resolve_recurrent_options("search", options)
    from kdarts.options import ACTIVATIONS, REGULARIZERS, SCHEDULES

    for key, valid in (("activation", ACTIVATIONS), ("schedule", SCHEDULES),
                       ("reg", list(REGULARIZERS))):
        if opts[key] not in valid:
            raise RunError(f"--{key}: one of {', '.join(valid)}, got {opts[key]!r}")
    args = {"space": "recurrent", **{k: opts[k] for k in RECURRENT_SEARCH_DEFAULTS}}
    folder = RunFolder(out, "search")
    with folder.lock():
        run = _check_args(folder, args, "search", list(args))
        state = folder.checkpoint_state() if run else None
        if resume is True and state is None:
            raise RunError(f"--resume: no checkpoint in {rel(folder.out)} (written at the "
                           "end of each epoch); run without --resume to start the search")
        if state is not None and not resume:
            raise RunError(f"--out {rel(folder.out)} already holds this search (checkpoint "
                           f"after epoch {state.get('epoch')} of {opts['epochs']}); pass "
                           "--resume to continue it, or choose another --out")
        if state is None:
            settings.note.set("no epoch of the search completed, so there is no checkpoint "
                              "to resume; run the same command again to start over")
        t_start = time.perf_counter()
        try:
            if before_tensorflow is not None:
                before_tensorflow()
            return _search(folder, opts, args, state, settings, t_start)
        except KeyboardInterrupt:
            raise settings.note.interrupted() from None


class _SearchCheckpoint:
    """Keras callback factory: the weights, α, optimizers and clock after every epoch."""

    @staticmethod
    def make(folder: RunFolder):
        import keras

        from kdarts.checkpoints import save_weights_atomically

        class SearchEpochCheckpoint(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                save_weights_atomically(self.model, folder.path(CHECKPOINT_WEIGHTS))
                atomic_write_json(folder.path(CHECKPOINT_STATE), {
                    "epoch": epoch + 1, "search_step": int(self.model.search_step.numpy()),
                    "alpha_steps": int(self.model.alpha_steps.numpy())})

        return SearchEpochCheckpoint()


def _search(folder: RunFolder, opts: dict, args: dict, state: dict | None,
            settings: RunSettings, t_start: float) -> SearchResult:
    import keras

    from kdarts.callbacks import EpochProgress, HistoryCSV, StopAfterEpoch
    from kdarts.options import make_regularizer
    from kdarts.recurrent.data import BPTTStream
    from kdarts.recurrent.model import RecurrentSearchModel
    from kdarts.search import DynamicSchedule, FixedSchedule

    corpus, train, valid, _ = _load_corpus(opts)
    vocab = len(corpus.vocabulary)
    seed_everything(opts["seed"])
    model = RecurrentSearchModel(vocab, opts["units"], activation=opts["activation"],
                                 seed=opts["seed"])
    batch, bptt = opts["batch_size"], opts["bptt"]
    model.build((batch, bptt))
    initial = model.genotype()
    schedule = (DynamicSchedule(every=opts["every"], initial_threshold=opts["threshold"])
                if opts["schedule"] == "dynamic" else FixedSchedule(every=opts["every"]))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=opts["lr"]),
                  arch_optimizer=keras.optimizers.Adam(learning_rate=opts["arch_lr"],
                                                       beta_1=0.9, beta_2=0.999,
                                                       epsilon=1e-8),
                  schedule=schedule, regularizer=make_regularizer(opts["reg"], opts),
                  search_data=BPTTStream(valid, batch, bptt, seed=opts["seed"]),
                  unrolled=opts["unrolled"])
    train_stream = BPTTStream(train, batch, bptt, seed=opts["seed"])
    epochs, out, report = opts["epochs"], folder.out, settings.report
    initial_epoch = 0
    if state is None:
        folder.write_run({"kdarts": kdarts_version(), "args": args, "vocab_size": vocab,
                          "num_train_tokens": int(len(train)),
                          "initial_genotype": initial.to_dict()})
    else:
        model.optimizer.build(model.weight_variables)
        model.arch_optimizer.build(model.arch_variables)
        model.load_weights(folder.path(CHECKPOINT_WEIGHTS))
        initial_epoch = int(state["epoch"])
        if initial_epoch < epochs:
            report(f"resuming {rel(out)} after epoch {initial_epoch} of {epochs} "
                   f"({int(model.search_step.numpy())} steps, "
                   f"{int(model.alpha_steps.numpy())} α steps)")
    if initial_epoch < epochs:
        report(f"search: {_corpus_label(opts['dataset'])} ({len(train)} training tokens, "
               f"vocabulary {vocab}), recurrent cell, {opts['activation']} / "
               f"{opts['schedule']} k={opts['every']}"
               + (f" from threshold {opts['threshold']:g}" if opts["schedule"] == "dynamic"
                  else "") + f" / α lr {opts['arch_lr']:g} / {opts['reg']} ρ={opts['rho']}, "
               f"{opts['units']} units, bptt {bptt}, batch {batch}, {train_stream.nominal_steps}"
               " steps per epoch; the first epoch starts with tracing the step")
    bar = EpochProgress({"loss": "loss", "alpha_steps": "α steps", "pruned_ops": "pruned"},
                        integer_labels=("α steps", "pruned"))
    callbacks = [HistoryCSV(folder.path("history.csv")), _SearchCheckpoint.make(folder),
                 epoch_note(settings.note, "search", out, epochs, settings.resume_hint)]
    if settings.progress:
        callbacks.append(bar)
    if settings.stop_after_epoch is not None:
        callbacks.append(StopAfterEpoch(settings.stop_after_epoch))
    history = None
    if initial_epoch < epochs:
        try:
            history = model.fit(train_stream, epochs=epochs, initial_epoch=initial_epoch,
                                callbacks=callbacks, verbose=0)
        finally:
            bar.close()
    done = initial_epoch + (len(history.history.get("loss", [])) if history else 0)
    alpha_steps = int(model.alpha_steps.numpy())
    result = SearchResult(out=out, epochs_done=done, complete=done >= epochs,
                          alpha_steps=alpha_steps)
    if done < epochs:
        report(f"stopped after epoch {done} of {epochs}; checkpoint in {rel(out)}: "
               f"{settings.resume_hint} continues it")
        return result
    settings.note.set(f"the search completed and its checkpoint is in {rel(out)}: "
                      f"{settings.resume_hint} writes its genotype and plot again")
    from kdarts.plots import plot_genotype
    from kdarts.recurrent.genotype import RecurrentGenotype

    genotype = model.genotype()
    genotype.save(result.genotype_path)
    plot_genotype(genotype, folder.path("genotype.png"))
    valid_ppl = model.evaluate(valid, batch_size=10, bptt=bptt)["perplexity"]
    pruned = int(round(float((1.0 - model.mask.numpy()).sum())))
    run = read_json(folder.path("run.json"), "run.json")
    initial = RecurrentGenotype.from_dict(run.get("initial_genotype", initial.to_dict()))
    total = time.perf_counter() - t_start
    report(str(genotype))
    report(f"search done in {fmt_time(total)} ({done} epochs, "
           f"{int(model.search_step.numpy())} weight steps, {alpha_steps} α steps"
           + (f", {pruned} of {model.mask.numpy().size} ops pruned"
              if opts["activation"] == "crb" else "")
           + f"; valid perplexity {valid_ppl:.1f}; the cell "
           + ("differs from" if genotype != initial else "equals")
           + f" the initial α's): genotype → {rel(result.genotype_path)}; history, "
           f"checkpoint and genotype.png in {rel(out)}")
    return dataclasses.replace(result, genotype=genotype, pruned_ops=pruned, seconds=total)


# ------------------------------------------------------------------------------- train

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
        **options: any of :data:`RECURRENT_TRAIN_DEFAULTS` (None: the default; a corpus
            folder takes the reference's sizes, :data:`PTB_TRAIN`).

    Raises:
        RunError: bad options, genotype, corpus or folder (nothing touched).
        RunInterrupted: Ctrl-C; the message says what was kept.
    """
    settings = RunSettings(stop_after_epoch=stop_after_epoch, report=report or quiet,
                           progress=progress, resume_hint=resume_hint,
                           note=note or InterruptNote())
    geno = load_recurrent_genotype(genotype)
    opts = resolve_recurrent_options("train", options)
    if opts["lr"] <= 0:
        raise RunError(f"--lr must be > 0, got {opts['lr']}")
    args = {"space": "recurrent", **{k: opts[k] for k in RECURRENT_TRAIN_DEFAULTS},
            "genotype": geno.to_dict()}
    folder = RunFolder(out, "train")
    with folder.lock():
        if overwrite and os.path.isdir(folder.out):
            folder.read_run()  # refuses other kinds of run and unrelated files
            _remove(folder)
        run = _check_args(folder, args, "training", list(args))
        metrics_path = folder.path("metrics.json")
        if run is not None and os.path.exists(metrics_path):
            metrics = read_json(metrics_path, "metrics.json")
            if resume == "auto":
                return TrainResult(out=folder.out, epochs_done=opts["epochs"], complete=True,
                                   metrics=metrics)
            raise RunError(f"--out {rel(folder.out)} already holds this training, complete "
                           f"(test perplexity {float(metrics.get('test_perplexity', 0)):.1f})"
                           "; choose another --out or pass --overwrite to train again")
        last = os.path.join(folder.path(TRAIN_CHECKPOINT), "last")
        state = _trainer_state(last) if run is not None else None
        if resume is True and state is None:
            raise RunError(f"--resume: no checkpoint in {rel(folder.out)} (written at the end "
                           "of each epoch); run without --resume to start the training")
        if state is not None and not resume:
            raise RunError(f"--out {rel(folder.out)} already holds this training (checkpoint "
                           f"after epoch {state['epoch']} of {opts['epochs']}); pass --resume "
                           "to continue it, or --overwrite to start over")
        if state is None:
            settings.note.set("no epoch of the training completed, so there is no "
                              "checkpoint to resume; run the same command again to start "
                              "over")
            if run is not None:  # run.json only: an interrupted first epoch
                shutil.rmtree(folder.path(TRAIN_CHECKPOINT), ignore_errors=True)
        try:
            if before_tensorflow is not None:
                before_tensorflow()
            return _train(folder, opts, args, geno, state, settings)
        except KeyboardInterrupt:
            raise settings.note.interrupted() from None


def _remove(folder: RunFolder) -> None:
    for name in TRAIN_FILES:
        path = folder.path(name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)


def _trainer_state(last: str) -> dict | None:
    path = os.path.join(last, "state.json")
    if not os.path.exists(path):
        return None
    state = read_json(path, "the training's checkpoint state")
    if not isinstance(state.get("epoch"), int):
        raise RunError(f"{rel(path)}: not a kdarts checkpoint (no integer 'epoch'); the "
                       "checkpoint cannot be resumed: choose another --out")
    return state


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


def _train(folder: RunFolder, opts: dict, args: dict, geno, state: dict | None,
           settings: RunSettings) -> TrainResult:
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

    t_start = time.perf_counter()
    corpus, train, valid, test = _load_corpus(opts)
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
    last = os.path.join(checkpoint, "last")
    if state is not None:
        try:
            trainer.restore(last)
        except (ValueError, FileNotFoundError) as err:
            raise RunError(f"{err}; the checkpoint cannot be resumed: choose another --out") \
                from None
        report(f"resuming {rel(out)} after epoch {trainer.epoch} of {epochs}")
    parameters = count_parameters(model)
    report(f"train: {_corpus_label(opts['dataset'])} ({len(train)} training tokens, "
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
        rows.append({**record, "epoch": record["epoch"] - 1})
        _write_history(history_path, rows)
        bar.update(1)
        bar.set_postfix({"loss": f"{record['train_loss']:.3g}",
                         "val ppl": f"{record['val_ppl']:.1f}"}, refresh=False)

    trainer_log = log
    t_fit = time.perf_counter()
    try:
        # the trainer writes checkpoint/last after every epoch: a note for Ctrl-C
        def noted(record: dict) -> None:
            trainer_log(record)
            settings.note.set(f"the training's last checkpoint (epoch {record['epoch']} of "
                              f"{epochs}) is in {rel(out)}: {settings.resume_hint} "
                              "continues it")

        trainer.fit(target, checkpoint_dir=checkpoint, patience=epochs + 1, log=noted)
    except FloatingPointError as err:
        raise RunError(f"{err}: lower --lr") from None
    finally:
        bar.close()
    fit_seconds = time.perf_counter() - t_fit
    if trainer.epoch < epochs:
        report(f"stopped after epoch {trainer.epoch} of {epochs}; checkpoint in {rel(out)}: "
               f"{settings.resume_hint} continues it")
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
                 seed: int = 0, before_tensorflow: Callable[[], None] | None = None) -> str:
    """``n`` words sampled from a trained language model after ``prompt`` (words split on
    whitespace, lowercased as the corpus is); the same seed gives the same words.

    ``model_path`` is a language model's ``.keras`` file or a training folder holding one
    (``model.keras``)."""
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
    if before_tensorflow is not None:
        before_tensorflow()
    from kdarts.recurrent.export import generate, load_language_model

    try:
        model = load_language_model(model_path)
    except (ModelLoadError, ValueError) as err:
        raise RunError(str(err)) from None
    return " ".join(generate(model, words, n, temperature=temperature, seed=seed))


def is_language_model_file(path: str) -> bool:
    """Whether a ``.keras`` archive holds a RecurrentLanguageModel (its config, read
    without TensorFlow)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return False
    return isinstance(config, dict) and config.get("class_name") == "RecurrentLanguageModel"
