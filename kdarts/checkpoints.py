"""Checkpoint files of a run folder: names, atomic writing, reading the state.

Light (no TensorFlow import), so a run folder can be inspected before any
network is built. :class:`kdarts.callbacks.EpochCheckpoint` writes them.

Example:
    >>> read_checkpoint_state("runs/train")   # doctest: +SKIP
    {'epoch': 3}
"""

from __future__ import annotations

import json
import os

from kdarts.atomic import atomic_write_bytes

CHECKPOINT_WEIGHTS = "checkpoint.weights.h5"
CHECKPOINT_STATE = "checkpoint.json"


def save_weights_atomically(model, path: str) -> None:
    """What ``model.save_weights(path)`` writes, through a temp file and a rename.

    The file is made in memory first (:func:`kdarts.compat.weights_h5_bytes`), so a full
    disk fails as one :class:`~kdarts.atomic.DiskFullError` and the previous file stays.
    """
    from kdarts.compat import weights_h5_bytes

    atomic_write_bytes(path, weights_h5_bytes(model))


def read_checkpoint_state(directory: str | os.PathLike) -> dict | None:
    """``checkpoint.json`` of ``directory`` if both checkpoint files exist, else None.

    Raises:
        ValueError: the state file is unreadable or has no integer ``epoch``.
    """
    directory = os.fspath(directory)
    weights = os.path.join(directory, CHECKPOINT_WEIGHTS)
    state = os.path.join(directory, CHECKPOINT_STATE)
    if not (os.path.exists(weights) and os.path.exists(state)):
        return None
    try:
        with open(state, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{state}: unreadable checkpoint state ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("epoch"), int):
        raise ValueError(f"{state}: not a kdarts checkpoint (no integer 'epoch')")
    return data


__all__ = ["CHECKPOINT_STATE", "CHECKPOINT_WEIGHTS", "read_checkpoint_state",
           "save_weights_atomically"]
