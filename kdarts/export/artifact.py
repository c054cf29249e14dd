"""What every export shares: the artifact's input and output names, the input contract it
records, the result and the errors; the runtimes that verify artifacts.

Leaf of :mod:`kdarts.export` (each format's module imports it, it imports none of them);
no TensorFlow at import.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
#: Where the input contract goes: SavedModel extra asset, ONNX metadata key.
CONTRACT_FILE = "kdarts_input.json"
CONTRACT_KEY = "kdarts.input"


class ExportError(RuntimeError):
    """Writing or verifying an artifact failed; nothing was left at the destination.

    Attributes:
        max_abs_diff: the largest output difference found when verification
            failed on tolerance, else None.
    """

    def __init__(self, message: str, max_abs_diff: float | None = None):
        super().__init__(message)
        self.max_abs_diff = max_abs_diff


class ModelLoadError(ValueError):
    """A model file is missing or not a loadable Keras archive; the message says which and why."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`~kdarts.image.export.export_model` wrote.

    Attributes:
        path: absolute path of the artifact (a file, or a folder for SavedModel).
        format: one of :data:`kdarts.image.export.FORMATS`.
        max_abs_diff: largest |artifact − Keras| output difference over the
            verification inputs; None when ``verify=False``.
        input_contract: what the artifact takes (:func:`input_contract`).
        agreement: share of verification images whose top-1 class matches the
            Keras model's (LiteRT exports; None otherwise or without verification).
        quantize: the LiteRT quantisation (``"none"`` for the other formats).
    """

    path: str
    format: str
    max_abs_diff: float | None
    input_contract: dict | None = None
    agreement: float | None = None
    quantize: str = "none"


def input_contract(model) -> dict:
    """What ``model``'s inference graph takes: shape, dtype, pixel range, statistics.

    kdarts networks describe themselves (``model.input_contract()``); any other
    built model is described by its input shape only.
    """
    describe = getattr(model, "input_contract", None)
    if callable(describe):
        return describe()
    from kdarts.preprocessing import input_contract as describe_input

    return describe_input(image_shape(model), None)


def image_shape(model) -> tuple[int, int, int]:
    """(H, W, C) the model was built for: from its inputs or its build config."""
    shape = None
    try:
        shape = tuple(model.inputs[0].shape)  # functional models
    except (AttributeError, IndexError, TypeError, ValueError):
        if model.built:
            shape = (model.get_build_config() or {}).get("input_shape")
    if shape is None:
        raise ValueError(
            "export: the model is not built, so its image size is unknown; build it "
            "(model.build((None, H, W, C))) or pass sample_inputs"
        )
    shape = tuple(shape)
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise ValueError(
            f"export: need a fixed NHWC image size, the model records input shape {shape}; "
            "pass sample_inputs"
        )
    return tuple(int(d) for d in shape[1:])


def signature(image_shape, dtype: str = "float32", batch: int | None = None):
    """The input's ``tf.TensorSpec``: any batch of ``image_shape`` images, or ``batch``."""
    import tensorflow as tf

    return tf.TensorSpec((batch,) + tuple(image_shape), tf.as_dtype(dtype), name=INPUT_NAME)


def contract_text(contract: dict) -> str:
    return json.dumps(contract, indent=2) + "\n"


class quiet_tensorflow:
    """Silence TensorFlow's Python logger (grappler's lines during conversion)."""

    def __enter__(self):
        self.logger = logging.getLogger("tensorflow")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


class quiet_native_stderr:
    """Send what native code writes to stderr (file descriptor 2) to /dev/null meanwhile."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)


def import_runtime(format: str):
    """The runtime verifying ``format`` (:mod:`kdarts.inference`), or ExportError saying
    what to install."""
    from kdarts import inference

    try:
        return (inference.import_onnxruntime if format == "onnx"
                else inference.import_litert)()
    except ImportError as err:
        raise ExportError(f"export: verifying the {format} export needs {err}, or pass "
                          "verify=False") from None


__all__ = ["CONTRACT_FILE", "CONTRACT_KEY", "INPUT_NAME", "OUTPUT_NAME", "ExportError",
           "ExportResult", "ModelLoadError", "contract_text", "image_shape", "import_runtime",
           "input_contract", "quiet_native_stderr", "quiet_tensorflow", "signature"]
