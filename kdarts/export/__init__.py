"""Export: write an artifact through a temp folder, verify it, move it into place.

The package serves every contract; each space states its own: :mod:`kdarts.image.export`
(images → logits, with quantisation: :func:`~kdarts.image.export.export_model`) and
:mod:`kdarts.recurrent.export` (tokens → log-probabilities, the vocabulary beside).
:mod:`~kdarts.export.pipeline` writes through a temp folder, verifies and moves into place,
for both; each format has a module with its ``write`` (:mod:`~kdarts.export.keras_archive`,
:mod:`~kdarts.export.saved_model`, :mod:`~kdarts.export.onnx_file`,
:mod:`~kdarts.export.litert`), and :mod:`~kdarts.export.artifact` holds what they share
(names, contract, errors, result). This module names the formats' file suffixes
(:func:`suffix_error`) and gathers the helpers callers use. A new format is its module
(``write``, and ``run`` if it is verified in this process rather than in a runtime's child
process) plus its entries in :data:`SUFFIXES` and the image contract's
:data:`~kdarts.image.export.FORMAT_MODULES`.

Example:
    >>> from kdarts.export import load_model, suffix_error
    >>> suffix_error("model.json", "onnx")
    "the onnx format writes a *.onnx file, got 'model.json'"
    >>> model = load_model("runs/eval/model.keras")     # doctest: +SKIP
"""

from __future__ import annotations

import os

from kdarts.export import keras_archive, litert, onnx_file, saved_model
from kdarts.export.artifact import (
    CONTRACT_FILE,
    CONTRACT_KEY,
    INPUT_NAME,
    OUTPUT_NAME,
    ExportError,
    ExportResult,
    ModelLoadError,
    input_contract,
)
from kdarts.export.keras_archive import check_model_file, float32_copy, load_model
from kdarts.export.litert import float_ops, fold_requantize, tflite_logits, tflite_metadata, \
    tflite_runner
from kdarts.export.pipeline import check_destination

SUFFIXES: dict[str, str] = {"keras": ".keras", "saved_model": "", "onnx": ".onnx",
                            "tflite": ".tflite"}
"""The file suffix each format takes ('' for SavedModel: a folder, no file suffix)."""

#: Suffixes of files, refused as the name of a SavedModel folder.
_FILE_SUFFIXES = (".keras", ".onnx", ".h5", ".json", ".pb", ".tflite", ".zip", ".png")

DEFAULT_OPSET = 13


def suffix_error(path: str, format: str) -> str | None:
    """Why ``path`` cannot hold a ``format`` artifact (its suffix), or None if it can.

    Example:
        >>> suffix_error("model.json", "onnx")
        "the onnx format writes a *.onnx file, got 'model.json'"
    """
    name = os.path.basename(os.fspath(path).rstrip(os.sep))
    if format == "saved_model":
        suffix = os.path.splitext(name)[1].lower()
        if suffix in _FILE_SUFFIXES:
            return (f"the saved_model format writes a folder (no file suffix), got "
                    f"{name!r}")
        return None
    if not name.endswith(SUFFIXES[format]):
        return f"the {format} format writes a *{SUFFIXES[format]} file, got {name!r}"
    return None


__all__ = ["CONTRACT_FILE", "CONTRACT_KEY", "DEFAULT_OPSET", "INPUT_NAME", "OUTPUT_NAME",
           "SUFFIXES", "ExportError", "ExportResult", "ModelLoadError", "check_destination",
           "check_model_file", "float32_copy", "float_ops", "fold_requantize", "input_contract",
           "keras_archive", "litert", "load_model", "onnx_file", "saved_model", "suffix_error",
           "tflite_logits", "tflite_metadata", "tflite_runner"]
