"""The recurrent space in run folders: what selects it, its options and corpus, and the
cell search (the language model's training is :mod:`kdarts.runs.language_model`).

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

import contextlib
import dataclasses
import math
import os
import time
from typing import Callable

from kdarts.genotype import GenotypeError
from kdarts.runs.fit import FolderFit, Job, RunSettings
from kdarts.runs.folder import RunFolder, read_json
from kdarts.runs.report import Report, fmt_time, rel
from kdarts.runs.resume import search_state, worker_state
from kdarts.runs.results import RunError, SearchResult
from kdarts.runs.watchdog import InterruptNote

# the corpus every install carries, the files a corpus folder holds, and the test for either
from kdarts.recurrent.corpus import CORPUS_FILES, EMBEDDED_CORPUS, is_corpus  # noqa: E402

#: Recurrent search defaults: DARTS-PRIME's method (crb, dynamic schedule, proximity) at
#: a size meant for a laptop CPU. As for the small image searches, α's learning rate is
#: scaled up and the dynamic schedule's threshold set in the range of this model's FI,
#: so that α moves and crb prunes in so few steps. The weights' learning rate is the
#: reference's 20 divided by 4: a 32-unit cell whose weights take the reference's rate
#: alongside the first α steps diverges (loss and FI climb), a quarter of it converges;
#: ``kdarts search --dataset kdarts_text --lr 20`` against the default shows the trade.
#: A corpus folder's rate grows with its size to the reference's 20 (:data:`PTB_SEARCH`).
RECURRENT_SEARCH_DEFAULTS: dict = dict(
    dataset=EMBEDDED_CORPUS, epochs=4, activation="crb", schedule="dynamic", every=10,
    arch_lr=0.02, threshold=10.0, reg="proximity", rho=0.1, admm_every=10,
    admm_variant="spec", batch_size=32, units=32, bptt=20, vocab_size=1000, lr=5.0,
    max_tokens=None, seed=0, unrolled=False, mixed_precision=False, skip_pruned_ops="auto",
    arch_epsilon="keras")
#: Language-model training defaults for the embedded corpus (small and short). ``patience``:
#: the training stops after this many epochs without a better validation loss (the
#: reference's train.py, ``--convergence`` 20 in the trainer).
RECURRENT_TRAIN_DEFAULTS: dict = dict(
    dataset=EMBEDDED_CORPUS, epochs=3, units=64, bptt=20, batch_size=32, vocab_size=1000,
    lr=20.0, max_tokens=None, seed=0, patience=20)
#: The reference's sizes (DARTS's train.py for PTB), the defaults for a corpus folder.
#: Its epochs are 1200 (up to; the early stop ends it sooner); 50 here, a cap a CPU can
#: reach, with the reference's early stop (``patience``) kept.
PTB_TRAIN: dict = dict(units=850, bptt=35, batch_size=64, vocab_size=None, epochs=50)
#: The reference's search sizes for a corpus folder, and its weights' learning rate (20,
#: train_search_rnn.py's ``--lr``).
PTB_SEARCH: dict = dict(units=300, bptt=35, batch_size=256, vocab_size=None, epochs=50,
                        arch_lr=3e-3, threshold=1.0, lr=20.0)
#: A corpus folder's default sizes follow its training tokens: the embedded corpus's
#: (:data:`RECURRENT_SEARCH_DEFAULTS`, :data:`RECURRENT_TRAIN_DEFAULTS`; it has about
#: 58,000) up to ``SMALL_CORPUS_TOKENS``, the reference's (:data:`PTB_SEARCH`,
#: :data:`PTB_TRAIN`; PTB has 929,589) from ``PTB_CORPUS_TOKENS``, in between
#: geometrically in the token count (:func:`corpus_sizes`).
SMALL_CORPUS_TOKENS = 60_000
PTB_CORPUS_TOKENS = 900_000
#: The sizes :func:`corpus_sizes` chooses, per command.
CORPUS_SIZED = {"search": ("units", "bptt", "batch_size", "epochs", "arch_lr", "threshold",
                           "lr"),
                "train": ("units", "bptt", "batch_size", "epochs")}

# ------------------------------------------------------------------------- what is what

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
    the reference's sizes for a corpus folder (:func:`size_to_corpus` then sizes them to
    its tokens), else the embedded corpus's."""
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
    for key, low in (("units", 1), ("bptt", 2), ("batch_size", 1), ("epochs", 1),
                     ("patience", 1)):
        if key not in opts:
            continue
        if opts[key] < low:
            raise RunError(f"--{key.replace('_', '-')} must be >= {low}, got {opts[key]}")
    if opts["vocab_size"] is not None and opts["vocab_size"] < 3:
        raise RunError(f"--vocab-size must be >= 3 (<unk>, <eos> and a word), got "
                       f"{opts['vocab_size']}")
    return opts


def _geometric(low: float, high: float, t: float) -> float:
    return low * (high / low) ** t


def _significant(value: float, digits: int = 2) -> float:
    return float(f"{value:.{digits}g}")


def corpus_sizes(command: str, num_train: int, num_valid: int | None = None,
                 bptt: int | None = None) -> dict:
    """The default sizes (:data:`CORPUS_SIZED`) of a ``search``/``train`` run on a corpus
    folder of ``num_train`` training tokens: the embedded corpus's up to
    :data:`SMALL_CORPUS_TOKENS`, the reference's from :data:`PTB_CORPUS_TOKENS`, in
    between each geometrically in the token count (bptt linearly, the batch a power of
    two). A small corpus gets a model and a batch small enough to take many steps (and
    α steps) per epoch; PTB gets the paper's (search: the weights' learning rate too,
    5 to 20). The batch is lowered (to a power of two)
    until every stream of the training and validation splits holds two segments of
    ``bptt`` (the given one, else the chosen one).

    Example:
        >>> corpus_sizes("train", 20_000)["units"], corpus_sizes("train", 929_589)["units"]
        (64, 850)
    """
    import math

    small = {"search": RECURRENT_SEARCH_DEFAULTS, "train": RECURRENT_TRAIN_DEFAULTS}[command]
    paper = {"search": PTB_SEARCH, "train": PTB_TRAIN}[command]
    t = math.log(max(num_train, 1) / SMALL_CORPUS_TOKENS) / math.log(
        PTB_CORPUS_TOKENS / SMALL_CORPUS_TOKENS)
    t = min(1.0, max(0.0, t))
    sizes = {
        "units": int(round(_geometric(small["units"], paper["units"], t) / 2) * 2),
        "bptt": int(round(small["bptt"] + (paper["bptt"] - small["bptt"]) * t)),
        "batch_size": 1 << int(round(math.log2(_geometric(small["batch_size"],
                                                          paper["batch_size"], t)))),
        "epochs": int(round(_geometric(small["epochs"], paper["epochs"], t))),
    }
    if t in (0.0, 1.0):  # the two tables' own values, not their rounding
        sizes = {k: (small if t == 0.0 else paper)[k] for k in sizes}
    if command == "search":
        for key in ("arch_lr", "threshold", "lr"):
            sizes[key] = (small[key] if t == 0.0 else paper[key] if t == 1.0
                          else _significant(_geometric(small[key], paper[key], t)))
    segment = 2 * ((bptt or sizes["bptt"]) + 1)
    tokens = min(num_train, num_train if num_valid is None else num_valid)
    while sizes["batch_size"] > 1 and sizes["batch_size"] * segment > tokens:
        sizes["batch_size"] //= 2
    return sizes


def _file_stamps(dataset: str) -> tuple:
    if dataset == EMBEDDED_CORPUS:
        return ()
    stamps = []
    for name in CORPUS_FILES:
        try:
            stat = os.stat(os.path.join(dataset, name))
        except OSError:
            return (None,)
        stamps.append((stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


_read_cache: dict = {}


def read_corpus(dataset: str, vocab_size: int | None):
    """The corpus ``dataset`` (:func:`~kdarts.recurrent.corpus.load_corpus`, numpy only),
    read once for a run's sizing and its fit (the last one read is kept while its files
    are unchanged); RunError naming the file if it cannot be read."""
    from kdarts.recurrent.corpus import CorpusError, load_corpus

    key = (dataset, vocab_size, _file_stamps(dataset))
    if key not in _read_cache:
        try:
            corpus = load_corpus(dataset, vocab_size)
        except (CorpusError, OSError, ValueError) as err:
            raise RunError(" ".join(str(err).split())) from None
        _read_cache.clear()
        _read_cache[key] = corpus
    return _read_cache[key]


def size_to_corpus(command: str, options: dict, report: Report | None = None) -> dict:
    """:func:`resolve_recurrent_options`, then, for a corpus folder, the sizes not given
    chosen from its training tokens (:func:`corpus_sizes`), said in one line to
    ``report``. A folder is read and its splits checked against the batch here
    (without TensorFlow), so a bad corpus is refused at once; a run checks the embedded
    corpus with :func:`load_corpus_splits` once its folder is checked, before
    TensorFlow."""
    opts = resolve_recurrent_options(command, options)
    if opts["dataset"] == EMBEDDED_CORPUS:
        return opts
    corpus = read_corpus(opts["dataset"], opts["vocab_size"])
    cap = opts["max_tokens"]
    num_train, num_valid = (len(s) if not cap else min(cap, len(s))
                            for s in (corpus.train, corpus.valid))
    given = {k for k, v in options.items() if v is not None}
    chosen = {k: v for k, v in corpus_sizes(
        command, num_train, num_valid, opts["bptt"] if "bptt" in given else None).items()
        if k not in given}
    opts.update(chosen)
    if chosen and report is not None:
        names = {"units": "units", "bptt": "bptt", "batch_size": "batch", "epochs": "epochs",
                 "arch_lr": "α lr", "threshold": "threshold", "lr": "lr"}
        parts = [(f"{opts[k]} {names[k]}" if k in ("units", "epochs")
                  else f"{names[k]} {opts[k]:g}") for k in CORPUS_SIZED[command] if k in chosen]
        report(f"sizes for {corpus_label(opts['dataset'])} ({num_train:,} training tokens, "
               f"vocabulary {len(corpus.vocabulary):,}): {', '.join(parts)} (the built-in "
               f"corpus's up to {SMALL_CORPUS_TOKENS:,} tokens, the paper's from "
               f"{PTB_CORPUS_TOKENS:,}; the options set others)")
    _check_batch(opts, num_train, num_valid)
    return opts


def _check_batch(opts: dict, num_train: int, num_valid: int) -> None:
    """RunError if the training or validation split is too short for the batch."""
    for count, label in ((num_train, "train"), (num_valid, "valid")):
        if count < 3 * opts["batch_size"]:
            raise RunError(f"{corpus_label(opts['dataset'])}: the {label} split has {count} "
                           f"tokens, too few for --batch-size {opts['batch_size']} (at least "
                           "3 tokens per stream); lower --batch-size or raise --max-tokens")


def load_corpus_splits(opts: dict):
    """``(corpus, train, valid, test)`` token ids, cut to ``max_tokens``; RunError if the
    corpus cannot be read or is too short for the batch."""
    corpus = read_corpus(opts["dataset"], opts["vocab_size"])
    cap = opts["max_tokens"]
    splits = [s if not cap else s[:cap] for s in (corpus.train, corpus.valid, corpus.test)]
    _check_batch(opts, len(splits[0]), len(splits[1]))
    return corpus, *splits


def corpus_label(dataset: str) -> str:
    """How messages name a corpus: the embedded one by name, a folder by its path."""
    return rel(dataset) if os.path.isabs(dataset) else dataset


# ------------------------------------------------------------------------------ search

@dataclasses.dataclass
class CorpusInfo:
    """What a recurrent run reports and records of its corpus."""

    name: str
    vocab_size: int
    num_train: int
    notes: tuple = ()


def corpus_record(info: CorpusInfo) -> dict:
    """What ``run.json`` records of a recurrent run's corpus."""
    return {"vocab_size": info.vocab_size, "num_train_tokens": info.num_train}


def check_same_corpus(folder: RunFolder, info: CorpusInfo, verb: str) -> None:
    """RunError if a resumed run's corpus is not what its ``run.json`` recorded
    (``verb``: what resuming would do on other text, "search" or "train")."""
    run = read_json(folder.path("run.json"), "run.json")
    then = (run.get("vocab_size"), run.get("num_train_tokens"))
    now = (info.vocab_size, info.num_train)
    if then != now:
        raise RunError(f"{info.name} changed since this run started (vocabulary, "
                       f"training tokens: {then} → {now}); resuming would {verb} on "
                       "other text: choose another --out")


def recurrent_search_run(out: str, *, resume: bool | str = False,
                         stop_after_epoch: int | None = None, report: Report | None = print,
                         progress: bool = True,
                         resume_hint: str = "the same command with --resume",
                         strategy: str = "default",
                         before_tensorflow: Callable[[], None] | None = None,
                         note: InterruptNote | None = None, **options) -> SearchResult:
    """Search a recurrent cell on a corpus in the folder ``out``.

    Writes ``run.json`` (the arguments and the initial α's cell), ``history.csv`` and a
    checkpoint (``checkpoint.weights.h5``, ``checkpoint.json``) every epoch, then
    ``genotype.json`` (a :class:`~kdarts.recurrent.RecurrentGenotype`) and
    ``genotype.png``. The weights learn on the training text, α on the validation
    text (DARTS's recurrent search), in the authors' variable-length segments. Every
    epoch ends in the validation loss (``history.csv``'s ``val_loss``); the genotype is
    the best validation epoch's (``best_epoch``), as the authors' search writes it.

    Args:
        out, resume, stop_after_epoch, report, progress, resume_hint, strategy,
            before_tensorflow, note: as for :func:`~kdarts.runs.search_run` (under several
            replicas the cell always normalises with the global batch's statistics).
        **options: any of :data:`RECURRENT_SEARCH_DEFAULTS` (None: the default);
            ``dataset`` is ``"kdarts_text"`` or a corpus folder; ``max_tokens`` cuts
            every split to its first N tokens.

    Raises:
        RunError: bad options, corpus or folder (nothing touched).
        RunInterrupted: Ctrl-C; the message says what was kept.
    """
    settings = RunSettings.of(locals())
    sizes: list[str] = []
    opts = size_to_corpus("search", options, sizes.append)
    from kdarts.options import ACTIVATIONS, ARCH_EPSILONS, RECURRENT_SCHEDULES, \
        RECURRENT_SKIP_PRUNED_MODES, REGULARIZERS

    for key, valid in (("activation", ACTIVATIONS), ("schedule", RECURRENT_SCHEDULES),
                       ("arch_epsilon", ARCH_EPSILONS),
                       ("reg", list(REGULARIZERS)),
                       ("skip_pruned_ops", RECURRENT_SKIP_PRUNED_MODES)):
        if opts[key] not in valid:
            raise RunError(f"--{key}: one of {', '.join(valid)}, got {opts[key]!r}")
    args = {"space": "recurrent", **{k: opts[k] for k in RECURRENT_SEARCH_DEFAULTS}}
    from kdarts.runtime import is_chief

    folder = RunFolder(out, "search")
    chief = is_chief(strategy)
    # the chief checks, locks and writes the folder; a worker only reads its checkpoint
    with folder.lock() if chief else contextlib.nullcontext():
        state = search_state(folder, args, resume) if chief else worker_state(folder, resume)
        job = Job(folder, opts, args, state, settings)
        load_corpus_splits(opts)  # its refusals before TensorFlow (the read is kept)
        for line in sizes:
            settings.report(line)
        return RecurrentSearchFit(job).start(before_tensorflow, time.perf_counter())


def epoch_steps(stream, epochs: int) -> tuple[int, int]:
    """The fewest and most segments an epoch of ``stream`` (a
    :class:`~kdarts.recurrent.data.BPTTStream`) reads in ``epochs`` epochs. The search
    runs every epoch for the most (the steps a progress bar counts), the shorter epochs
    ending in steps that change nothing (:func:`~kdarts.recurrent.data.search_segments`)."""
    lengths = [len(p) for p in stream.plan(epochs)]
    return min(lengths), max(lengths)


class RecurrentSearchFit(FolderFit):
    """The corpus's training and validation streams, the
    :class:`~kdarts.recurrent.RecurrentSearchModel`, and what it writes: history,
    checkpoint, genotype and its drawing."""

    what = "search"
    bar_metrics = {"loss": "loss", "alpha_steps": "α steps", "pruned_ops": "pruned"}
    bar_integers = ("α steps", "pruned")

    def load_data(self):
        from kdarts.recurrent.data import BPTTStream

        opts = self.job.opts
        corpus, train, self.valid, _ = load_corpus_splits(opts)
        self.info = CorpusInfo(corpus_label(opts["dataset"]), len(corpus.vocabulary),
                               len(train))
        stream = BPTTStream(train, opts["batch_size"], opts["bptt"], seed=opts["seed"])
        self.real_steps = epoch_steps(stream, opts["epochs"])
        return stream, self.info, self.real_steps[1]

    def run_record(self) -> dict:
        return {"steps_per_epoch": self.steps_per_epoch, **corpus_record(self.info),
                "initial_genotype": self.initial.to_dict()}

    def check_resumed_data(self) -> None:
        check_same_corpus(self.job.folder, self.info, "search")

    def build(self):
        import keras

        from kdarts.callbacks import restore_checkpoint
        from kdarts.ops import MIXED_PRECISION
        from kdarts.options import make_arch_optimizer, make_regularizer, make_schedule
        from kdarts.recurrent.data import BPTTStream
        from kdarts.recurrent.search_model import RecurrentSearchModel

        opts, batch, bptt = self.job.opts, self.job.opts["batch_size"], self.job.opts["bptt"]
        model = RecurrentSearchModel(self.info.vocab_size, opts["units"],
                                     activation=opts["activation"], seed=opts["seed"],
                                     dtype=MIXED_PRECISION if opts["mixed_precision"] else None)
        model.build((batch, bptt))
        self.initial = model.genotype()
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=opts["lr"]),
                      arch_optimizer=make_arch_optimizer(opts, beta_1=0.9),
                      schedule=make_schedule(opts),
                      regularizer=make_regularizer(opts["reg"], opts),
                      search_data=BPTTStream(self.valid, batch, bptt, seed=opts["seed"]),
                      unrolled=opts["unrolled"], skip_pruned_ops=opts["skip_pruned_ops"])
        self.model = model
        if self.job.state is None:
            return
        model.build_optimizers()
        try:
            self.initial_epoch = restore_checkpoint(model, self.job.out)
        except ValueError as err:
            raise RunError(f"{err}; the checkpoint cannot be resumed: choose another --out") \
                from None
        if self.initial_epoch < opts["epochs"]:
            self.settings.report(f"resuming {rel(self.job.out)} after epoch "
                                 f"{self.initial_epoch} of {opts['epochs']} "
                                 f"({int(model.search_step.numpy())} steps, "
                                 f"{int(model.alpha_steps.numpy())} α steps)")

    def describe(self) -> str | None:
        opts, info = self.job.opts, self.info
        if self.initial_epoch >= opts["epochs"]:
            return None
        low, high = self.real_steps
        return (f"search: {info.name} ({info.num_train} training tokens, vocabulary "
                f"{info.vocab_size}), recurrent cell, {opts['activation']} / "
                f"{opts['schedule']} k={opts['every']}"
                + (f" from threshold {opts['threshold']:g}" if opts["schedule"] != "fixed"
                   else "") + f" / α lr {opts['arch_lr']:g} / {opts['reg']} ρ={opts['rho']}, "
                f"{opts['units']} units, bptt {opts['bptt']}, batch {opts['batch_size']}, "
                f"{self.steps_per_epoch} steps per epoch"
                + (f" ({low} to {high} read text: segment lengths are drawn at random, and a "
                   "shorter epoch ends in empty steps)" if low != high else "")
                + "; the first epoch starts with tracing the step")

    def writer_callbacks(self) -> list:
        from kdarts.callbacks import EpochCheckpoint, HistoryCSV
        from kdarts.search.callbacks import SearchRecorder, search_counters

        from kdarts.recurrent.callbacks import BestValidationArchitecture

        folder, opts = self.job.folder, self.job.opts
        # the authors' result: the best validation epoch's α (its logs go into the
        # history, its state into the checkpoint, so a resumed search keeps it)
        self.best = BestValidationArchitecture(
            self.valid, bptt=opts["bptt"], epochs=opts["epochs"],
            best=(self.job.state or {}).get("best_validation"),
            initial_epoch=self.initial_epoch)
        best = self.best
        # the epoch is the callback's own count: segment lengths vary, so an epoch's steps
        # do not divide the clock as the image search's do
        return [SearchRecorder(folder.path("search_record.json"),
                               initial_epoch=self.initial_epoch),
                best, HistoryCSV(folder.path("history.csv")),
                EpochCheckpoint(folder.out,
                                state=lambda model: {**search_counters(model), **best.state()})]

    def run(self, t_start: float) -> SearchResult:
        """Fits, then (once complete) writes the genotype and its drawing."""
        from kdarts.plots import plot_alpha, plot_schedule
        from kdarts.recurrent.genotype import RecurrentGenotype
        from kdarts.runs.search import fit_search

        result, genotype = fit_search(self)
        if genotype is None:
            return result
        model, folder, opts = self.model, self.job.folder, self.job.opts
        record = folder.path("search_record.json")
        plot_alpha(record, folder.path("alpha.png"))
        plot_schedule(record, folder.path("schedule.png"))
        out, report, done = folder.out, self.settings.report, result.epochs_done
        kept = self.best.best
        pruned = int(round(float((1.0 - model.mask.numpy()).sum())))
        run = read_json(folder.path("run.json"), "run.json")
        initial = RecurrentGenotype.from_dict(run.get("initial_genotype",
                                                      self.initial.to_dict()))
        total = time.perf_counter() - t_start
        report(str(genotype))
        report(f"search done in {fmt_time(total)} ({done} epochs, "
               f"{int(model.search_step.numpy())} weight steps, {result.alpha_steps} α steps"
               + (f", {pruned} of {model.mask.numpy().size} ops pruned"
                  if opts["activation"] == "crb" else "")
               + (f"; the cell of epoch {kept['epoch']}, the best valid perplexity "
                  f"{math.exp(kept['val_loss']):.1f}, " if kept is not None else
                  "; no epoch had a finite validation loss: the last epoch's cell, ")
               + ("differs from" if genotype != initial else "equals")
               + f" the initial α's): genotype → {rel(result.genotype_path)}; record, "
               f"history, checkpoint and plots (alpha.png, schedule.png, genotype.png) in "
               f"{rel(out)}")
        return dataclasses.replace(result, genotype=genotype, pruned_ops=pruned, seconds=total)
