"""Each job's resume policy: whether it starts, resumes or reuses what its folder holds.

A folder is accepted when it is new, empty, or holds this kind of run with the same
arguments (to resume, or to reuse when complete); anything else is refused with a
one-line :class:`~kdarts.runs.RunError` before any data is loaded, and nothing in it
is touched. ``resume`` is True (``--resume``), False, or ``"auto"`` (whichever
applies).

* a search (either space): :func:`search_state`;
* a training (an image network, or a language model, whose trainer keeps its
  checkpoint in a folder, :data:`TRAINER_CHECKPOINT`): :func:`train_state`;
* a worker of a multi-worker job, which only reads the chief's checkpoint:
  :func:`worker_state`.

Example:
    >>> folder = RunFolder("runs/search", "search")      # doctest: +SKIP
    >>> with folder.lock():                              # doctest: +SKIP
    ...     state = search_state(folder, args, resume="auto")
"""

from __future__ import annotations

import os

from kdarts.runs.defaults import with_later_options
from kdarts.runs.folder import RUN_FILES, RunFolder, read_json, space_of
from kdarts.runs.report import rel
from kdarts.runs.results import RunError

#: Where a language model's trainer keeps its last epoch's checkpoint, in a training folder.
TRAINER_CHECKPOINT = os.path.join("checkpoint", "last")


def describe_diff(old: dict, new: dict, order: list[str]) -> str:
    """``key: old → new`` for every argument that differs, in ``order``."""
    keys = sorted(set(old) | set(new), key=lambda k: order.index(k) if k in order else 99)
    return "; ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}"
                     for k in keys if old.get(k) != new.get(k))


def metrics_summary(metrics: dict) -> str:
    """A finished training's headline figure, as its metrics.json gives it."""
    if "test_perplexity" in metrics:
        return f"test perplexity {float(metrics['test_perplexity']):.1f}"
    return f"test accuracy {100 * float(metrics.get('test_accuracy', 0)):.2f}%"


def _article(space: str) -> str:
    return "an image" if space == "image" else f"a {space}"


def _kind(args: dict) -> str:
    """"recurrent " for a recurrent run's arguments, "" for an image run's."""
    return "recurrent " if space_of(args) == "recurrent" else ""


def previous_args(folder: RunFolder, run: dict | None, args: dict) -> dict | None:
    """The arguments of the run the folder holds (run.json's, in today's form, with the
    options added since at the value it ran with:
    :func:`kdarts.runs.defaults.with_later_options`), to compare
    with ``args``; RunError if it is the other search space's run."""
    if run is None:
        return None
    old = run["args"]
    if space_of(old) != space_of(args):
        noun = "search" if folder.command == "search" else "training"
        raise RunError(f"--out {rel(folder.out)} holds {_article(space_of(old))} {noun} "
                       f"run, not {_article(space_of(args))} one; choose another --out")
    return with_later_options(old, args)


def job_checkpoint(folder: RunFolder, args: dict) -> dict | None:
    """The state of the checkpoint this job keeps in ``folder`` (None without one)."""
    if folder.command == "train" and space_of(args) == "recurrent":
        return folder.checkpoint_state(TRAINER_CHECKPOINT)
    return folder.checkpoint_state()


def search_state(folder: RunFolder, args: dict, resume: bool | str) -> dict | None:
    """The checkpoint state a search resumes from, or None for a fresh start; RunError
    otherwise."""
    out = folder.out
    run = folder.read_run()
    old = previous_args(folder, run, args)
    state = job_checkpoint(folder, args) if run else None
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


def train_state(folder: RunFolder, args: dict, resume: bool | str, overwrite: bool
                ) -> tuple[dict | None, dict | None]:
    """``(checkpoint state, finished metrics)`` a training continues from; RunError if
    refused. ``overwrite`` deletes this command's files from the folder (only those)
    and starts over."""
    if _without_run(folder, overwrite):
        return None, None
    run = folder.read_run()  # refuses other kinds of run and unrelated files
    if overwrite:
        folder.remove_run_files()
        return None, None
    if run is None:
        return None, None
    out = folder.out
    if previous_args(folder, run, args) != args:
        raise RunError(f"--out {rel(out)} holds a different {_kind(args)}training run "
                       f"({describe_diff(run['args'], args, list(args))}); choose another "
                       "--out, or pass --overwrite to replace it")
    state = job_checkpoint(folder, args)
    metrics_path = folder.path("metrics.json")
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


def _without_run(folder: RunFolder, overwrite: bool) -> bool:
    """A training folder holding only training files but no run.json (an older
    kdarts's): refused, or with ``overwrite`` emptied (True: start afresh)."""
    if not os.path.isdir(folder.out) or os.path.exists(folder.path("run.json")):
        return False
    entries = folder.entries()
    if not entries or not set(entries) <= set(RUN_FILES[folder.command]):
        return False
    if not overwrite:
        folder.refuse_without_run("choose another --out or pass --overwrite to replace them")
    folder.remove_run_files()
    return True


def worker_state(folder: RunFolder, resume: bool | str) -> dict | None:
    """A non-chief worker's checkpoint state: the chief's, read from the folder."""
    state = folder.checkpoint_state() if resume else None
    if resume is True and state is None:
        raise RunError(f"--resume: no checkpoint in {rel(folder.out)}; every worker reads "
                       "the chief's, so --out must be a folder all workers see")
    return state
