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
* a folder being written by another run (its ``.lock``) is refused the same way;
* a search or training checkpoints every epoch; ``resume=True`` continues it
  and ends exactly where an uninterrupted run would;
* an interruption (Ctrl-C) raises :class:`RunInterrupted` whose message says
  what was kept and how to continue.

The modules: :mod:`~kdarts.runs.defaults` (options), :mod:`~kdarts.runs.folder`
(:class:`RunFolder`: what a folder holds, its lock, its versioned ``run.json``),
:mod:`~kdarts.runs.resume` (each job's resume policy), :mod:`~kdarts.runs.fit`
(the skeleton every run fits in), :mod:`~kdarts.runs.search`,
:mod:`~kdarts.runs.train`, :mod:`~kdarts.runs.export`,
:mod:`~kdarts.runs.quickstart`, :mod:`~kdarts.runs.recurrent` (the recurrent space:
its options, corpus and cell search), :mod:`~kdarts.runs.language_model` (a language
model's training on a corpus, generation),
:mod:`~kdarts.runs.watchdog` (Ctrl-C) and :mod:`~kdarts.runs.report` (console lines).
None imports TensorFlow at import time.

Example:
    >>> from kdarts.runs import search_run, train_run, export_run
    >>> s = search_run("runs/search", epochs=8)
    >>> t = train_run(s.genotype_path, "runs/train")
    >>> e = export_run(t.model_path, "onnx")
    >>> t.test_accuracy, e.path
"""

from kdarts.runs.defaults import (
    DATASET_DEFAULTS,
    PAPER_SEARCH,
    PAPER_TRAIN,
    SEARCH_DEFAULTS,
    TRAIN_DEFAULTS,
    parse_primitives,
    resolve_options,
)
from kdarts.runs.export import EXPORT_DIR, default_export_path, describe_export_run, \
    export_run
from kdarts.runs.folder import LOCK_FILE, RUN_FILES, TENSORBOARD_DIR, RunFolder, \
    check_writable, read_run
from kdarts.runs.language_model import generate_run, recurrent_train_run
from kdarts.runs.quickstart import quickstart_run
from kdarts.runs.recurrent import RECURRENT_SEARCH_DEFAULTS, RECURRENT_TRAIN_DEFAULTS, \
    is_corpus, load_recurrent_genotype, recurrent_search_run
from kdarts.runs.report import describe_export, kdarts_version, rel
from kdarts.runs.results import ExportRunResult, RunError, RunInterrupted, SearchResult, \
    TrainResult
from kdarts.runs.search import SearchJob, check_search_folder, search_run
from kdarts.runs.train import TrainJob, load_genotype, train_run
from kdarts.runs.watchdog import InterruptNote, SigintWatchdog
from kdarts.spaces import is_language_model_file, is_recurrent_genotype

__all__ = ["DATASET_DEFAULTS", "EXPORT_DIR", "ExportRunResult", "InterruptNote", "LOCK_FILE",
           "PAPER_SEARCH", "PAPER_TRAIN", "RECURRENT_SEARCH_DEFAULTS",
           "RECURRENT_TRAIN_DEFAULTS", "RUN_FILES", "RunError", "RunFolder",
           "RunInterrupted", "SEARCH_DEFAULTS", "SearchJob", "SearchResult",
           "SigintWatchdog", "TENSORBOARD_DIR", "TRAIN_DEFAULTS", "TrainJob", "TrainResult",
           "check_search_folder", "check_writable", "default_export_path", "describe_export",
           "describe_export_run",
           "export_run", "generate_run", "is_corpus", "is_language_model_file",
           "is_recurrent_genotype", "kdarts_version", "load_genotype",
           "load_recurrent_genotype", "parse_primitives", "quickstart_run", "read_run",
           "recurrent_search_run", "recurrent_train_run", "rel", "resolve_options",
           "search_run", "train_run"]
