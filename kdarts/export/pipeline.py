"""The one export pipeline, whatever the model's contract: write the artifact in a hidden
temp folder beside its destination, verify it in the runtime that will serve it, then
move it (and its side files) into place.

A failure at any step leaves the destination as it was: a half-written or unverified
artifact is never seen there. Each contract (:func:`kdarts.image.export.export_model`: images
→ logits; :func:`kdarts.recurrent.export.export_language_model`: tokens →
log-probabilities) checks its inputs and destination first, then hands this module its
writer, its verification and its side files. No TensorFlow at import.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Iterable, Mapping, TypeVar

import numpy as np

from kdarts.export.artifact import ExportError

T = TypeVar("T")


def write_verified(path: str, format: str, write: Callable[[str], None],
                   verify: Callable[[str], T] | None = None,
                   side_files: Mapping[str, str] | None = None) -> T | None:
    """Write, verify and move into place one artifact; returns what ``verify`` returned.

    Args:
        path: the absolute destination (checked already: :func:`check_destination`).
        format: the format's name, for messages.
        write: writes the artifact at the path it is given (in the temp folder).
        verify: runs the written artifact and raises ExportError if it is not the
            model's; None skips verification.
        side_files: destination → text, written beside the artifact once it is in place
            (a language model's vocabulary).

    Raises:
        ExportError: the temp folder cannot be made, writing failed, ``verify`` refused
            the artifact, or the move failed.
    """
    parent, name = os.path.split(path)
    try:
        workdir = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    except OSError as err:
        raise ExportError(f"export: cannot write in {parent} ({err.strerror})") from None
    try:
        artifact = os.path.join(workdir, name)
        try:
            write(artifact)
        except Exception as err:  # noqa: BLE001 - any writer failure is an export failure
            raise ExportError(
                f"export: writing the {format} artifact for {path} failed: "
                f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"
            ) from err
        checked = verify(artifact) if verify is not None else None
        staged = []
        for i, (destination, text) in enumerate((side_files or {}).items()):
            staged.append((os.path.join(workdir, f".side-{i}"), destination))
            with open(staged[-1][0], "w", encoding="utf-8") as f:
                f.write(text)
        move_into_place(artifact, path, workdir)
        for temporary, destination in staged:
            os.replace(temporary, destination)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return checked


def run_for_verification(format: str, path: str, run: Callable[[], T]) -> T:
    """``run()``: the artifact's outputs; any failure to run it becomes one ExportError
    (a runtime's crash in its child process names the signal)."""
    from kdarts.inference import RuntimeCrash

    try:
        return run()
    except ExportError:
        raise
    except RuntimeCrash as err:
        raise ExportError(f"export: verifying the {format} artifact for {path} failed: "
                          f"{err}; nothing was written") from None
    except Exception as err:  # noqa: BLE001 - an artifact that does not run fails export
        raise ExportError(
            f"export: the {format} artifact for {path} could not be run for verification: "
            f"{type(err).__name__}: {err}"
        ) from err


def max_abs_difference(pairs: Iterable[tuple[np.ndarray, np.ndarray]], what: str) -> float:
    """Largest |artifact − Keras| over ``(artifact's, Keras's)`` output pairs; NaN counts
    as infinite. ExportError if a pair's shapes differ (``what`` names the artifact)."""
    worst = 0.0
    for got, want in pairs:
        if np.shape(got) != np.shape(want):
            raise ExportError(f"export: {what} returns shape {np.shape(got)} where the model "
                              f"returns {np.shape(want)}; nothing was written")
        if np.size(want):
            diff = float(np.max(np.abs(np.asarray(got, np.float64) - want)))
            # NaN compares false with everything: count it as an infinite error
            worst = max(worst, diff if diff == diff else float("inf"))
    return worst


def check_tolerance(max_diff: float, atol: float, what: str) -> float:
    """``max_diff``, or ExportError if it exceeds ``atol``."""
    if not max_diff <= atol:
        raise ExportError(f"export: {what} differs from the Keras model by up to "
                          f"{max_diff:.3g} (tolerance {atol:g}); nothing was written",
                          max_abs_diff=max_diff)
    return max_diff


def move_into_place(artifact: str, path: str, workdir: str) -> None:
    """Rename the verified artifact to ``path``; keep the old one until that worked."""
    if os.path.isdir(artifact):
        backup = None
        if os.path.exists(path):
            # a folder cannot be replaced atomically: park the old one in the
            # temp folder (deleted afterwards) and put it back if the swap fails
            backup = os.path.join(workdir, ".previous")
            os.rename(path, backup)
        try:
            os.rename(artifact, path)
        except OSError as err:
            if backup is not None:
                os.rename(backup, path)
            raise ExportError(f"export: cannot move the artifact to {path} ({err})") from err
    else:
        try:
            os.replace(artifact, path)
        except OSError as err:
            raise ExportError(f"export: cannot move the artifact to {path} ({err})") from err


def check_destination(path: str, format: str) -> None:
    """Refuse a destination ``format`` cannot use: a missing or unwritable folder, a
    file where a folder goes or vice versa, or a non-empty folder that is not a
    SavedModel (replacing it would delete someone's files). No TensorFlow.

    Raises:
        ExportError: naming the path and the problem.
    """
    parent = os.path.dirname(path)
    if not os.path.exists(parent):
        raise ExportError(f"export: output folder {parent} does not exist (create it first)")
    if not os.path.isdir(parent):
        raise ExportError(f"export: {parent} is not a folder, so {path} cannot be written")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"export: output folder {parent} is not writable")
    if format == "saved_model":
        if os.path.isfile(path):
            raise ExportError(f"export: {path} is a file; a SavedModel is a folder")
        entries = sorted(e for e in os.listdir(path) if not e.startswith(".")) \
            if os.path.isdir(path) else []
        if entries and "saved_model.pb" not in entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise ExportError(f"export: {path} is a folder that is not a SavedModel (it "
                              f"holds {shown}); refusing to replace it")
    elif os.path.isdir(path):
        raise ExportError(f"export: {path} is a folder; the {format} format writes a file")


__all__ = ["check_destination", "check_tolerance", "max_abs_difference", "move_into_place",
           "run_for_verification", "write_verified"]
