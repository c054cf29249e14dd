"""Callbacks for a :class:`~kdarts.search.network.SearchNetwork` search.

* :class:`SearchRecorder`: the α trajectory (activated weights, masks and the
  genotype at every epoch end) and the schedule's per-step information (FI,
  its EWMA, the threshold, α steps, pruned ops) in one JSON file, the input of
  :mod:`kdarts.plots`.
* :class:`SearchCheckpoint`: the whole search state (weights, α, both
  optimisers' slots, schedule/regulariser variables) at every epoch end, kept
  as the last complete checkpoint.

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

from kdarts.callbacks import EpochCheckpoint
from kdarts.checkpoints import CHECKPOINT_STATE, CHECKPOINT_WEIGHTS
from kdarts.genotype import atomic_write_text

RECORD_VERSION = 1

#: Per-batch log entries kept by :class:`SearchRecorder` (SearchNetwork's train_step logs).
BATCH_KEYS = ("step_fi", "fi_ewma", "threshold", "took_alpha_step", "pruned_ops",
              "alpha_steps", "loss")


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


class SearchRecorder(keras.callbacks.Callback):
    """Record α and the schedule of a search to a JSON file, rewritten at every epoch end.

    The file holds::

        {"version": 1, "primitives": [...], "activation": "crb", "steps": 4,
         "steps_per_epoch": 40,
         "epochs": [{"epoch": 0, "step": 0, "alpha_normal": [[...14 x ops...]],
                     "alpha_reduce": [[...]], "mask_normal": [[...]], "mask_reduce": [[...]],
                     "genotype": {...}, "logs": {...}}, ...],
         "batches": [{"step": 1, "step_fi": ..., "fi_ewma": ..., "threshold": ...,
                      "took_alpha_step": 0.0, "pruned_ops": 0.0, "alpha_steps": 0.0,
                      "loss": ...}, ...]}

    ``alpha_*`` are the *activated* weights ``act(α)``; entry ``epoch: e`` is the
    state after ``e`` completed epochs (``0``: before training).

    On a resumed search (a restored model whose ``search_step`` is past 0) the
    existing file is read and its entries after the restored step are dropped,
    so the record continues exactly as an uninterrupted search would have
    written it.

    Args:
        path: the JSON file.
        every_batch: also record the per-step schedule information.
    """

    def __init__(self, path: str | os.PathLike, every_batch: bool = True):
        super().__init__()
        self.path = os.path.abspath(os.fspath(path))
        self.every_batch = bool(every_batch)
        self.record: dict = {}
        self._epoch = 0
        self._steps = 1

    # -- state ------------------------------------------------------------------------
    def _snapshot(self, epoch: int, step: int, logs: dict | None = None) -> dict:
        model = self.model
        act_normal, act_reduce = (a.numpy().tolist() for a in model.activated_weights())
        entry = {
            "epoch": int(epoch),
            "step": int(step),
            "alpha_normal": act_normal,
            "alpha_reduce": act_reduce,
            "mask_normal": model.mask_normal.numpy().tolist(),
            "mask_reduce": model.mask_reduce.numpy().tolist(),
            "genotype": model.genotype().to_dict(),
        }
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
        entry = {"step": self._epoch * self._steps + int(batch) + 1}
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
    both optimisers' slots and every schedule/regulariser variable) through a
    temp file and a rename, then ``checkpoint.json``
    ``{"epoch": completed epochs, "search_step": ..., "alpha_steps": ...}``.

    Resume: rebuild and compile the model with the same arguments, call
    ``model.build_optimizers()``, ``model.load_weights(directory/checkpoint.weights.h5)``,
    then ``fit(..., initial_epoch=search_step // steps_per_epoch)``
    (:func:`checkpoint_epoch`).

    Args:
        directory: an existing or new folder.
    """

    def __init__(self, directory: str | os.PathLike):
        super().__init__(directory, state=_search_state)


def _search_state(model) -> dict:
    step, completed = _completed(model)
    return {"epoch": completed, "search_step": step,
            "alpha_steps": int(model.alpha_steps.numpy())}


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


__all__ = ["SearchRecorder", "SearchCheckpoint", "load_record", "checkpoint_epoch",
           "CHECKPOINT_WEIGHTS", "CHECKPOINT_STATE"]
