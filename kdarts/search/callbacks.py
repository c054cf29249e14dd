"""Callbacks for a search (the recorder serves both spaces; the rest the image search's
:class:`~kdarts.image.SearchNetwork`, whose step counters the recurrent search's
``checkpoint.json`` shares).

* :class:`SearchRecorder`: the α trajectory (activated weights, masks and the
  genotype at every epoch end) and the schedule's per-step information (FI,
  its EWMA, the threshold, α steps, pruned ops) in one JSON file, the input of
  :mod:`kdarts.plots`.
* :class:`SearchCheckpoint`: the whole search state (weights, α, both
  optimisers' slots, schedule/regulariser variables) at every epoch end, kept
  as the last complete checkpoint.
* :class:`SearchTensorBoard`: the same information as TensorBoard event files:
  scalars per step and per epoch, act(α) as images and histograms, the
  genotype as text.

Both write atomically (temp file + rename), so a search killed at any moment
leaves the previous complete file in place, and both continue a resumed search
(``fit(..., initial_epoch=e)`` on a model restored with ``load_weights``).

Example:
    >>> model.fit(weight_ds, epochs=10, steps_per_epoch=steps, callbacks=[
    ...     SearchRecorder("run/search_record.json"), SearchCheckpoint("run")])
    >>> record = load_record("run/search_record.json")
    >>> record["epochs"][-1]["genotype"]["normal"][0]
    ['sep_conv_3x3', 0]
"""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np

from kdarts.callbacks import EpochCheckpoint
from kdarts.checkpoints import CHECKPOINT_STATE, CHECKPOINT_WEIGHTS
from kdarts.atomic import atomic_write_text

RECORD_VERSION = 1

#: Per-batch log entries kept by :class:`SearchRecorder` (SearchNetwork's train_step logs).
#: (``budget_dual`` and ``expected_cost_ratio``: with the budget's expected-cost term only.)
BATCH_KEYS = ("step_fi", "fi_ewma", "threshold", "took_alpha_step", "pruned_ops",
              "alpha_steps", "loss", "budget_dual", "expected_cost_ratio")


def load_record(path: str | os.PathLike) -> dict:
    """Read a search record JSON written by :class:`SearchRecorder`."""
    with open(os.fspath(path), encoding="utf-8") as f:
        record = json.load(f)
    if not isinstance(record, dict) or "epochs" not in record or "batches" not in record:
        raise ValueError(f"{os.fspath(path)}: not a kdarts search record "
                         "(expected an object with 'epochs' and 'batches')")
    return record


def _float(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _completed(model) -> tuple[int, int]:
    """``(search_step, completed_epochs)`` from the model's state variables."""
    step = int(model.search_step.numpy())
    spe = max(1, int(round(float(model.steps_per_epoch.numpy()))))
    return step, step // spe


def record_cells(architecture) -> list[str]:
    """The record's names of a search's cell types: the image network's ``normal`` and
    ``reduce``; the recurrent search's one unnamed cell is ``recurrent``."""
    return [name or "recurrent" for name in architecture.cells]


class SearchRecorder(keras.callbacks.Callback):
    """Record α and the schedule of a search to a JSON file, rewritten at every epoch end.

    The file holds (an image search; the recurrent search's one cell is ``recurrent``:
    ``alpha_recurrent``, ``mask_recurrent``)::

        {"version": 1, "primitives": [...], "activation": "crb", "steps": 4,
         "cells": ["normal", "reduce"], "inputs": 2, "keep": 2, "steps_per_epoch": 40,
         "epochs": [{"epoch": 0, "step": 0, "alpha_normal": [[...14 x ops...]],
                     "alpha_reduce": [[...]], "mask_normal": [[...]], "mask_reduce": [[...]],
                     "genotype": {...}, "logs": {...}}, ...],
         "batches": [{"step": 1, "step_fi": ..., "fi_ewma": ..., "threshold": ...,
                      "took_alpha_step": 0.0, "pruned_ops": 0.0, "alpha_steps": 0.0,
                      "loss": ...}, ...]}

    ``alpha_*`` are the *activated* weights ``act(α)``; entry ``epoch: e`` is the
    state after ``e`` completed epochs (``0``: before training). ``inputs``: a node's
    edges beyond its predecessors among the nodes (a cell's inputs); ``keep``: the
    edges the genotype keeps per node.

    On a resumed search (a restored model whose ``search_step`` is past 0) the
    existing file is read and its entries after the restored step are dropped,
    so the record continues exactly as an uninterrupted search would have
    written it.

    Args:
        path: the JSON file.
        every_batch: also record the per-step schedule information.
        initial_epoch: the epochs completed when ``fit`` starts, for a search whose
            epochs have no fixed number of steps (the recurrent search's segments vary
            in length, its short epochs end in steps that change nothing): steps are
            then the model's clock, and a step that did not advance it is not
            recorded. None: the clock divided by the epoch's steps.
    """

    def __init__(self, path: str | os.PathLike, every_batch: bool = True,
                 initial_epoch: int | None = None):
        super().__init__()
        self.path = os.path.abspath(os.fspath(path))
        self.every_batch = bool(every_batch)
        self.initial_epoch = None if initial_epoch is None else int(initial_epoch)
        self.record: dict = {}
        self._epoch = 0
        self._steps = 1
        self._last_step = 0

    # -- state ------------------------------------------------------------------------
    def _snapshot(self, epoch: int, step: int, logs: dict | None = None) -> dict:
        model = self.model
        architecture = model.architecture
        names = record_cells(architecture)
        entry = {"epoch": int(epoch), "step": int(step)}
        for name, act in zip(names, architecture.activated()):
            entry[f"alpha_{name}"] = act.numpy().tolist()
        for name, mask in zip(names, architecture.masks):
            entry[f"mask_{name}"] = mask.numpy().tolist()
        entry["genotype"] = model.genotype().to_dict()
        if logs:
            entry["logs"] = {k: _float(v) for k, v in logs.items()}
        return entry

    def _load_existing(self, step: int, epoch: int) -> dict | None:
        if not os.path.exists(self.path):
            return None
        try:
            record = load_record(self.path)
        except (OSError, ValueError):
            return None
        record["epochs"] = [e for e in record["epochs"] if int(e["epoch"]) <= epoch]
        record["batches"] = [b for b in record["batches"] if int(b["step"]) <= step]
        return record

    def write(self) -> None:
        """Write the record now (atomically)."""
        atomic_write_text(self.path, json.dumps(self.record, separators=(",", ":")) + "\n")

    # -- keras hooks --------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        model = self.model
        step, epoch = _completed(model)
        if self.initial_epoch is not None:
            epoch = self.initial_epoch
        self._last_step = step
        self._steps = int((self.params or {}).get("steps") or
                          round(float(model.steps_per_epoch.numpy())))
        record = self._load_existing(step, epoch) if step > 0 else None
        if record is None:
            record = {"version": RECORD_VERSION, "epochs": [], "batches": []}
        record.update(
            version=RECORD_VERSION,
            primitives=list(model.primitives),
            activation=model.activation,
            steps=int(model.steps),
            cells=record_cells(model.architecture),
            inputs=int(model.architecture.inputs),
            keep=int(model.architecture.keep),
            steps_per_epoch=self._steps,
            total_epochs=int((self.params or {}).get("epochs") or 0),
        )
        if not any(int(e["epoch"]) == epoch for e in record["epochs"]):
            record["epochs"].append(self._snapshot(epoch, step))
        self.record = record
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.write()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        if not self.every_batch or logs is None:
            return
        if self.initial_epoch is None:
            step = self._epoch * self._steps + int(batch) + 1
        else:
            step = int(self.model.search_step.numpy())
            if step == self._last_step:  # a step that changed nothing (an epoch's padding)
                return
        self._last_step = step
        entry = {"step": step}
        for key in BATCH_KEYS:
            if key in logs:
                entry[key] = _float(logs[key])
        self.record["batches"].append(entry)

    def on_epoch_end(self, epoch, logs=None):
        step, _ = _completed(self.model)
        self.record["epochs"] = [e for e in self.record["epochs"] if int(e["epoch"]) <= epoch]
        self.record["epochs"].append(self._snapshot(epoch + 1, step, logs))
        self.write()


class SearchCheckpoint(EpochCheckpoint):
    """Save the complete search state at every epoch end, keeping the last good one.

    Writes ``checkpoint.weights.h5`` (``model.save_weights``: weights, α, masks,
    both optimisers' slots and every schedule/regulariser variable) and
    ``checkpoint.json`` ``{"epoch": completed epochs, "search_step": ...,
    "alpha_steps": ...}`` (:func:`kdarts.checkpoints.write_checkpoint`).

    Resume: rebuild and compile the model with the same arguments, call
    ``model.build_optimizers()``, ``model.load_weights(directory/checkpoint.weights.h5)``,
    then ``fit(..., initial_epoch=search_step // steps_per_epoch)``
    (:func:`checkpoint_epoch`).

    Args:
        directory: an existing or new folder.
    """

    def __init__(self, directory: str | os.PathLike):
        super().__init__(directory, state=_search_state)


def search_counters(model) -> dict:
    """A search model's step counters, for ``checkpoint.json`` (either space)."""
    return {"search_step": int(model.search_step.numpy()),
            "alpha_steps": int(model.alpha_steps.numpy())}


def _search_state(model) -> dict:
    return {"epoch": _completed(model)[1], **search_counters(model)}


def checkpoint_epoch(model) -> int:
    """The epoch a restored search model resumes at (``search_step // steps_per_epoch``).

    Call after ``load_weights``; raises ``ValueError`` if the checkpoint was not
    written at an epoch boundary.
    """
    step = int(model.search_step.numpy())
    spe = max(1, int(round(float(model.steps_per_epoch.numpy()))))
    if step % spe:
        raise ValueError(f"the checkpoint holds {step} search steps, not a whole number of "
                         f"epochs of {spe} steps")
    return step // spe


#: Per-step scalars :class:`SearchTensorBoard` writes (``step/<name>``), from train_step's logs.
STEP_SCALARS = ("loss", "accuracy", "step_fi", "fi_ewma", "threshold", "took_alpha_step",
                "alpha_steps", "pruned_ops", "lr")


class SearchTensorBoard(keras.callbacks.Callback):
    """Write a search to TensorBoard event files in ``log_dir``.

    * scalars ``step/<name>`` every ``update_freq`` steps (:data:`STEP_SCALARS`:
      weight loss and accuracy, FI, its EWMA, the threshold, whether an α step
      was taken, α steps so far, pruned ops, learning rate), at the search step;
    * scalars ``epoch/<name>`` at every epoch end: every epoch log (loss,
      accuracy, search loss, regulariser, FI, FI EWMA, threshold, α steps,
      pruned ops, lr);
    * ``alpha/normal`` and ``alpha/reduce``: act(α) as images (one row per edge,
      one column per candidate op, viridis colours on the fixed scale 0..1 so
      epochs compare), and the same values as histograms;
    * ``genotype``: the discretised cells as text.

    Epoch summaries are written at the epoch count (0: before training) and
    step summaries at the search step, both read from the model's state: a
    resumed search continues its curves where the checkpoint was taken (the
    steps redone after it are written again, with the same values, since a
    resumed search repeats them exactly).

    Args:
        log_dir: the folder for the event files (``tensorboard --logdir log_dir``).
        update_freq: write the step scalars every this many steps (0: never).

    Example:
        >>> model.fit(weight_ds, epochs=8, steps_per_epoch=steps,
        ...           callbacks=[SearchTensorBoard("runs/search/tensorboard")])
    """

    CELL = 12  # pixels per α entry in the images

    def __init__(self, log_dir: str | os.PathLike, update_freq: int = 1):
        super().__init__()
        self.log_dir = os.path.abspath(os.fspath(log_dir))
        self.update_freq = int(update_freq)
        self._writer = None

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        os.makedirs(self.log_dir, exist_ok=True)
        self._writer = tf.summary.create_file_writer(self.log_dir)
        if int(self.model.search_step.numpy()) == 0:
            self._write_epoch(0, {})

    def on_train_batch_end(self, batch, logs=None):
        if not self.update_freq or not logs:
            return
        step = int(self.model.search_step.numpy())
        if step % self.update_freq:
            return
        import tensorflow as tf

        with self._writer.as_default(step=step):
            for key in STEP_SCALARS:
                value = _float(logs.get(key))
                if value is not None:
                    tf.summary.scalar(f"step/{key}", value)

    def on_epoch_end(self, epoch, logs=None):
        self._write_epoch(int(epoch) + 1, logs or {})

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _write_epoch(self, epoch: int, logs: dict) -> None:
        import tensorflow as tf

        model = self.model
        with self._writer.as_default(step=epoch):
            for key, value in sorted(logs.items()):
                value = _float(value)
                if value is not None:
                    tf.summary.scalar(f"epoch/{key}", value)
            for kind, alpha in zip(("normal", "reduce"), model.activated_weights()):
                alpha = np.asarray(alpha, dtype=np.float32)
                tf.summary.image(f"alpha/{kind}", alpha_image(alpha, self.CELL)[None],
                                 description=f"act(α) of the {kind} cell: rows are edges, "
                                             f"columns the ops {', '.join(model.primitives)}")
                tf.summary.histogram(f"alpha/{kind}", alpha)
            tf.summary.text("genotype", "\n".join(
                "    " + line for line in str(model.genotype()).splitlines()))
        self._writer.flush()


def alpha_image(alpha: np.ndarray, cell: int = 12) -> np.ndarray:
    """An ``(edges, ops)`` matrix of values in [0, 1] → uint8 RGB, viridis, ``cell`` px per entry.

    Example:
        >>> alpha_image(np.array([[0.0, 1.0]]), cell=2).shape
        (2, 4, 3)
    """
    from matplotlib import colormaps

    colours = colormaps["viridis"](np.clip(alpha, 0.0, 1.0))[..., :3]
    big = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)
    return np.round(255 * big).astype(np.uint8)


__all__ = ["SearchRecorder", "SearchCheckpoint", "SearchTensorBoard", "STEP_SCALARS",
           "alpha_image", "load_record", "checkpoint_epoch", "CHECKPOINT_WEIGHTS",
           "CHECKPOINT_STATE"]
