"""Keras callbacks for run folders, shared by searches and trainings.

* :class:`EpochCheckpoint`: the model's whole state (weights, optimizer slots,
  every state variable) after each epoch, written atomically; the last good
  one is always on disk. Resume with :func:`restore_checkpoint`.
* :class:`HistoryCSV`: one row of logs per epoch, only the columns that have
  values (Keras's ``CSVLogger`` adds an all-``NA`` ``val_*`` column per metric
  when there is no validation data); a resumed run keeps its earlier rows.
* :class:`EpochProgress`: a tqdm bar per epoch with a few chosen metrics.
* :class:`StopAfterEpoch`: end ``fit`` after a given epoch (tests, time slices).

Example:
    >>> model.fit(ds, epochs=10, callbacks=[
    ...     EpochCheckpoint("runs/train"), HistoryCSV("runs/train/history.csv")])
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from typing import Callable

import keras
import numpy as np

from kdarts.atomic import atomic_write_text, write_synced
from kdarts.checkpoints import (
    CHECKPOINT_STATE,
    CHECKPOINT_WEIGHTS,
    read_checkpoint_state,
    resume_epoch,
    write_checkpoint,
)
from kdarts.compat import weights_h5_bytes


class EpochCheckpoint(keras.callbacks.Callback):
    """Save the model's complete state after every epoch, keeping the last good one.

    Writes ``checkpoint.weights.h5`` (``model.save_weights``: weights, optimizer
    slots and iteration count, non-trainable state such as BN statistics and
    random-generator seeds) and ``checkpoint.json`` ``{"epoch": completed epochs,
    "seed_states": ...}`` (the random generators' states, which ``save_weights`` leaves
    out) through :func:`kdarts.checkpoints.write_checkpoint`. Like Keras's
    ``BackupAndRestore``, resuming from it (:func:`restore_checkpoint` then
    ``fit(initial_epoch=epoch)``) ends with the weights an uninterrupted run gives,
    provided the data pipeline also resumes at that epoch.

    Args:
        directory: an existing or new folder.
        state: optional ``model → dict`` of extra entries for ``checkpoint.json``.
    """

    def __init__(self, directory: str | os.PathLike,
                 state: Callable[[keras.Model], dict] | None = None):
        super().__init__()
        self.directory = os.path.abspath(os.fspath(directory))
        self.state = state

    def on_train_begin(self, logs=None):
        os.makedirs(self.directory, exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        state = {"epoch": int(epoch) + 1, **(self.state(self.model) if self.state else {})}
        seeds = {v.path: np.asarray(v).tolist() for v in _unsaved_variables(self.model)}
        if seeds:
            state["seed_states"] = seeds
        weights = weights_h5_bytes(self.model)
        write_checkpoint(self.directory, lambda tmp: write_synced(tmp, weights), state,
                         size=len(weights))


def _unsaved_variables(model) -> list:
    """State that ``save_weights`` leaves out: the random generators' seeds (drop-path),
    without which a resumed run would draw other random numbers."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in saved]


def restore_checkpoint(model, directory: str | os.PathLike) -> int:
    """Load ``directory``'s checkpoint into a built, compiled model; returns its epoch.

    The optimizer's slots must exist first (``optimizer.build(...)``), so that
    they are restored too.
    """
    state = read_checkpoint_state(directory)
    if state is None:
        raise ValueError(f"{os.fspath(directory)}: no checkpoint ({CHECKPOINT_WEIGHTS} and "
                         f"{CHECKPOINT_STATE})")
    model.load_weights(os.path.join(os.fspath(directory), CHECKPOINT_WEIGHTS))
    seeds = state.get("seed_states", {})
    variables = _unsaved_variables(model)
    paths = [v.path for v in variables]
    if not set(paths) <= set(seeds) and len(seeds) == len(variables):
        # the same model built in a process that had built others first: the generators'
        # names carry Keras's process-wide counters, their order is the model's own
        paths = list(seeds)
    for variable, path in zip(variables, paths):
        value = np.asarray(seeds[path], dtype=variable.dtype) if path in seeds else None
        if value is None or value.shape != tuple(variable.shape):
            raise ValueError(f"{os.fspath(directory)}: the checkpoint has no state for "
                             f"{variable.path}; it was written by another model")
        variable.assign(value)
    return resume_epoch(state)


def _cell(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return repr(value) if math.isfinite(value) else "nan"


class HistoryCSV(keras.callbacks.Callback):
    """Per-epoch logs as CSV (``epoch`` first, then the logged keys), rewritten atomically.

    Only keys that were logged get a column. A resumed ``fit(initial_epoch=e)``
    keeps the file's rows of epochs ``< e`` and drops later ones.

    Args:
        path: the CSV file.
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = os.path.abspath(os.fspath(path))
        self.keys: list[str] = []
        self.rows: list[dict] = []

    def on_train_begin(self, logs=None):
        self.rows, self.keys = [], []
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        if self._started:
            return
        self._started = True  # the first epoch of this fit: resumed if past 0
        if epoch > 0 and os.path.exists(self.path):
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                self.keys = [k for k in (reader.fieldnames or []) if k != "epoch"]
                self.rows = [r for r in reader
                             if r.get("epoch", "").isdigit() and int(r["epoch"]) < epoch]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for key in sorted(logs):
            if key not in self.keys:
                self.keys.append(key)
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch]
        self.rows.append({"epoch": str(epoch), **{k: _cell(v) for k, v in logs.items()}})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, ["epoch"] + self.keys, restval="",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())


class EpochProgress(keras.callbacks.Callback):
    """A tqdm progress bar per epoch showing the chosen logs.

    Args:
        keys: log name → short label, e.g. ``{"loss": "loss", "accuracy": "acc"}``.
        integer_labels: labels shown without decimals.
    """

    def __init__(self, keys: dict[str, str], integer_labels: tuple[str, ...] = ()):
        super().__init__()
        self.keys = dict(keys)
        self.integer_labels = tuple(integer_labels)
        self.bar = None
        self.first = True

    def _postfix(self, logs) -> dict:
        out = {}
        for key, label in self.keys.items():
            if logs and key in logs:
                value = float(logs[key])
                out[label] = (f"{value:.0f}" if label in self.integer_labels
                              else f"{value:.3g}")
        return out

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm

        params = self.params or {}
        desc = f"epoch {epoch + 1}/{params.get('epochs', '?')}"
        if self.first:
            desc += " (tracing)"
        interactive = sys.stderr.isatty()
        self.bar = tqdm(total=params.get("steps"), desc=desc, unit="step", leave=True,
                        dynamic_ncols=True, mininterval=0.2 if interactive else 5.0)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is None:
            return
        if self.first:
            self.first = False
            self.bar.set_description(self.bar.desc.replace(" (tracing)", ""))
        self.bar.update(1)
        if batch % 5 == 0:
            self.bar.set_postfix(self._postfix(logs), refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.set_postfix(self._postfix(logs), refresh=False)
        self.close()

    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        """Close the open bar (also after an interrupted ``fit``)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StopAfterEpoch(keras.callbacks.Callback):
    """End ``fit`` once ``epochs`` epochs (counted from 0, not from initial_epoch) are done."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = int(epochs)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True


__all__ = ["EpochCheckpoint", "EpochProgress", "HistoryCSV", "StopAfterEpoch",
           "restore_checkpoint"]
