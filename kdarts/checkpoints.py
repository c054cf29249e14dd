"""A run's checkpoint: where it lives, the one writer, the one reader, the resume rule.

Every run (a search of either space, a training, a language model's training) keeps
one checkpoint, replaced after each epoch: a payload (the model's state: a weights
file, or a folder of variables) and its state (``{"epoch": completed epochs, ...}``,
JSON). :func:`write_checkpoint` writes both so that a failure at any point (a full
disk: :class:`~kdarts.atomic.DiskFullError`, one line) leaves the previous pair;
:func:`read_checkpoint_state` reads the state back and :func:`resume_epoch` says where
the run continues.

Light (no TensorFlow import), so a run folder can be inspected before any
network is built. :class:`kdarts.callbacks.EpochCheckpoint` and
:class:`kdarts.recurrent.training.LanguageModelTrainer` write through it.

Example:
    >>> read_checkpoint_state("runs/train")   # doctest: +SKIP
    {'epoch': 3}
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

from kdarts.atomic import atomic_file, atomic_write_json

CHECKPOINT_WEIGHTS = "checkpoint.weights.h5"
CHECKPOINT_STATE = "checkpoint.json"
#: A checkpoint folder's state file, inside the folder.
FOLDER_STATE = "state.json"


@dataclasses.dataclass(frozen=True)
class CheckpointFiles:
    """Where a checkpoint lives: its ``payload`` (a file, or a folder) and its ``state``
    (a JSON file beside a payload file, inside a payload folder)."""

    payload: str
    state: str

    @classmethod
    def weights(cls, directory: str | os.PathLike) -> "CheckpointFiles":
        """``checkpoint.weights.h5`` and ``checkpoint.json`` in ``directory`` (a Keras
        model's: searches and image trainings)."""
        directory = os.path.abspath(os.fspath(directory))
        return cls(os.path.join(directory, CHECKPOINT_WEIGHTS),
                   os.path.join(directory, CHECKPOINT_STATE))

    @classmethod
    def folder(cls, path: str | os.PathLike) -> "CheckpointFiles":
        """The folder ``path`` holding the payload's files and ``state.json`` (a language
        model trainer's)."""
        path = os.path.abspath(os.fspath(path))
        return cls(path, os.path.join(path, FOLDER_STATE))

    @property
    def state_inside(self) -> bool:
        return os.path.dirname(self.state) == self.payload


def _files(where: "CheckpointFiles | str | os.PathLike") -> CheckpointFiles:
    return where if isinstance(where, CheckpointFiles) else CheckpointFiles.weights(where)


def write_checkpoint(where: "CheckpointFiles | str | os.PathLike",
                     write_payload: Callable[[str], None], state: dict,
                     size: int | None = None) -> None:
    """Replace the checkpoint at ``where`` (a :class:`CheckpointFiles`, or a folder for
    its weights pair) with ``write_payload``'s and ``state``, keeping the last good one.

    ``write_payload(tmp)`` writes the new payload to the new path ``tmp`` (a file, or a
    folder it makes). The new payload and the new state are both complete on disk
    before either replaces its predecessor, so a write that fails leaves the previous
    pair (a full disk raises :class:`~kdarts.atomic.DiskFullError` naming the file;
    ``size``: the bytes the payload needs, if known).
    """
    files = _files(where)
    if not isinstance(state.get("epoch"), int):
        raise ValueError(f"a checkpoint's state needs an integer 'epoch', got {state!r}")
    os.makedirs(os.path.dirname(files.payload), exist_ok=True)
    with atomic_file(files.payload, size=size) as tmp:
        write_payload(tmp)
        inside = files.state_inside
        atomic_write_json(os.path.join(tmp, FOLDER_STATE) if inside else files.state, state)


def read_checkpoint_state(where: "CheckpointFiles | str | os.PathLike") -> dict | None:
    """The state of the checkpoint at ``where`` (a :class:`CheckpointFiles`, or a folder
    for its weights pair) if its payload and state both exist, else None.

    Raises:
        ValueError: the state file is unreadable or has no integer ``epoch``.
    """
    files = _files(where)
    if not (os.path.exists(files.payload) and os.path.exists(files.state)):
        return None
    try:
        with open(files.state, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{files.state}: unreadable checkpoint state ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("epoch"), int):
        raise ValueError(f"{files.state}: not a kdarts checkpoint (no integer 'epoch')")
    return data


def resume_epoch(state: dict | None, counted: int | None = None) -> int:
    """The epoch a run continues at: the completed epochs its checkpoint's state records
    (0 without a checkpoint). ``counted``: the epochs the restored model counts itself
    (a search's step counter); a checkpoint that disagrees is refused (ValueError).

    Example:
        >>> resume_epoch(None), resume_epoch({"epoch": 3}), resume_epoch({"epoch": 3}, 3)
        (0, 3, 3)
    """
    epoch = 0 if state is None else int(state["epoch"])
    if counted is not None and counted != epoch:
        raise ValueError(f"the checkpoint records {epoch} epochs, but its model counts "
                         f"{counted}")
    return epoch


__all__ = ["CHECKPOINT_STATE", "CHECKPOINT_WEIGHTS", "CheckpointFiles", "FOLDER_STATE",
           "read_checkpoint_state", "resume_epoch", "write_checkpoint"]
