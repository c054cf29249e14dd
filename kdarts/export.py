"""Export a trained network for inference: ``.keras``, SavedModel, ONNX or LiteRT, verified.

:func:`export_model` writes the *inference* graph (``training=False``: no
auxiliary head, no drop-path, BatchNorm with its moving statistics) with a
dynamic batch dimension, images ``[batch, H, W, C]`` in and logits out, then
(``verify=True``) reloads the artifact the way a user would and compares its
outputs with the Keras model's on sample inputs.

A network trained by kdarts normalises inside (:mod:`kdarts.preprocessing`),
so every artifact takes **raw images**: pixel values 0–255, float32 or uint8,
with the training data's channel count. Each artifact records that input
contract (:func:`input_contract`): the ``.keras`` config, the SavedModel's
``assets.extra/kdarts_input.json`` and ``input_contract()`` function, and the
ONNX file's ``metadata_props`` (key ``kdarts.input``) and input ``doc_string``,
the ``.tflite`` file's metadata entry ``kdarts.input`` (:func:`tflite_metadata`).

Artifacts (the file suffix each format takes is in :data:`SUFFIXES`):

* ``keras`` (``*.keras``): the whole model (``model.save``; the auxiliary head's
  weights and the optimizer state come along so training can resume). Reload
  with :func:`load_model`; it takes float32 or uint8 images.
* ``saved_model`` (a folder): for ``tf.saved_model.load`` / TF-Serving.
  ``loaded.serve(images)`` returns the logits tensor; the ``serving_default``
  signature takes float32 ``images`` and returns ``{"logits": ...}``, and
  ``serving_uint8`` takes uint8 ``images``.
* ``onnx`` (``*.onnx``): one file, input ``images`` (float32, or uint8 with
  ``input_dtype="uint8"``), output ``logits`` (opset ≥ 13), converted with
  ``tf2onnx.convert.from_function``; verified with ONNX Runtime.
* ``tflite`` (``*.tflite``): LiteRT (TensorFlow Lite) flatbuffer, signature
  ``serving_default`` (input ``images``, output ``logits``), converted from a
  SavedModel with ``tf.lite.TFLiteConverter``; verified with the LiteRT
  interpreter (``ai-edge-litert``). ``quantize`` (:data:`QUANTIZATIONS`):

  - ``"none"``: float32, max |Δlogits| ≤ ``atol`` (1e-4) as for the other formats;
  - ``"float16"``: float16 weights (half the size), float32 input and output;
    max |Δlogits| ≤ :data:`FLOAT16_RTOL` × max(1, max |logits|): float16 keeps
    11 significant bits (relative rounding 2⁻¹¹ ≈ 5e-4 per weight), and the
    rounding of every layer's weights adds up through the network's depth;
  - ``"dynamic"``: int8 weights, float32 activations, input and output; top-1
    agreement with Keras ≥ :data:`MIN_AGREEMENT` ``["dynamic"]``;
  - ``"int8"``: full integer quantisation calibrated on ``representative_data``
    (images from the training data): every op in int8, **uint8 input holding the
    raw pixels** (scale 1, zero point 0: an input fake-quant op pins the range to
    0..255) and **int8 output** (``logits = (q - zero_point) * scale``, the
    parameters in the input contract's ``"output_quantization"`` and the
    interpreter's output details); top-1 agreement ≥ :data:`MIN_AGREEMENT` ``["int8"]``.

Writing is atomic: the artifact is written and verified in a hidden temp
sibling of ``path`` and only then renamed into place, so a failure leaves no
half-written file and an existing artifact at ``path`` is kept unless the new
one succeeded. ONNX Runtime and LiteRT verify in a child process
(:mod:`kdarts.inference`): a runtime that aborts on a model fails the export
with one line naming the signal, and the caller's process and files live on.
An ``int8`` model must be all-integer (:func:`float_ops` finds no float op).

Example:
    >>> from kdarts.export import export_model, load_model
    >>> model = load_model("runs/eval/model.keras")
    >>> export_model(model, "saved_models/darts.onnx", format="onnx")
    ExportResult(path='.../saved_models/darts.onnx', format='onnx', max_abs_diff=4.1e-07)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

FORMATS: tuple[str, ...] = ("keras", "saved_model", "onnx", "tflite")
"""The export formats, as accepted by :func:`export_model`."""

SUFFIXES: dict[str, str] = {"keras": ".keras", "saved_model": "", "onnx": ".onnx",
                            "tflite": ".tflite"}
"""The file suffix each format takes ('' for SavedModel: a folder, no file suffix)."""

QUANTIZATIONS: tuple[str, ...] = ("none", "float16", "dynamic", "int8")
"""LiteRT quantisations (``quantize=``); the other formats take only ``"none"``."""
#: float16 tolerance on the logits, relative to max(1, max |Keras logits|).
FLOAT16_RTOL = 1e-2
#: Least top-1 agreement with Keras a quantised LiteRT model must reach.
MIN_AGREEMENT: dict[str, float] = {"dynamic": 0.98, "int8": 0.95}
#: Random images verifying a quantised model when no images are given.
_RANDOM_SAMPLES = 64

#: Suffixes of files, refused as the name of a SavedModel folder.
_FILE_SUFFIXES = (".keras", ".onnx", ".h5", ".json", ".pb", ".tflite", ".zip", ".png")

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 13
INPUT_DTYPES: tuple[str, ...] = ("float32", "uint8")
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
    """What :func:`export_model` wrote.

    Attributes:
        path: absolute path of the artifact (a file, or a folder for SavedModel).
        format: one of :data:`FORMATS`.
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


def input_contract(model) -> dict:
    """What ``model``'s inference graph takes: shape, dtype, pixel range, statistics.

    kdarts networks describe themselves (``model.input_contract()``); any other
    built model is described by its input shape only.
    """
    describe = getattr(model, "input_contract", None)
    if callable(describe):
        return describe()
    from kdarts.preprocessing import input_contract as describe_input

    return describe_input(_image_shape(model), None)


def export_model(model, path: str | os.PathLike, format: str = "keras", verify: bool = True,
                 sample_inputs: np.ndarray | Sequence[np.ndarray] | None = None,
                 atol: float = 1e-4, opset: int = DEFAULT_OPSET,
                 input_dtype: str = "float32", quantize: str = "none",
                 representative_data: np.ndarray | None = None,
                 min_agreement: float | None = None) -> ExportResult:
    """Export ``model``'s inference graph to ``path`` and check the artifact.

    Args:
        model: a built :class:`keras.Model` whose inference call returns
            one logits tensor (e.g. :class:`kdarts.eval.EvalNetwork`). A
            mixed-precision model is exported as its float32 copy
            (:func:`float32_copy`).
        path: destination; a ``.keras`` file for ``keras``, a folder for
            ``saved_model``, a file (``.onnx`` by convention) for ``onnx``.
            Its parent folder must exist and be writable.
        format: ``"keras"``, ``"saved_model"``, ``"onnx"`` or ``"tflite"``.
        verify: reload the artifact (Keras loader, ``tf.saved_model.load``,
            ONNX Runtime, the LiteRT interpreter) and compare with the model's
            outputs (both dtypes where the artifact takes both).
        sample_inputs: one NHWC batch or a list of batches for verification;
            default: random batches of 1 and 3 images (integer pixel values
            0–255 for a model that normalises inside, else standard normal);
            for ``dynamic``/``int8`` LiteRT, ``representative_data`` if given,
            else 64 random images. They also fix the image size when the
            model does not record one.
        atol: largest tolerated absolute difference of the logits.
        opset: ONNX opset (≥ 13).
        input_dtype: the ONNX input's dtype, ``"float32"`` or ``"uint8"``
            (``.keras`` and SavedModel take both).
        quantize: LiteRT quantisation, one of :data:`QUANTIZATIONS` (see the
            module docstring for what each checks).
        representative_data: ``int8`` only (required): NHWC training images
            (pixel values 0..255) the quantisation ranges are calibrated on,
            a few hundred are plenty.
        min_agreement: least top-1 agreement for ``dynamic``/``int8``;
            default :data:`MIN_AGREEMENT`.

    Returns:
        :class:`ExportResult`. Prints nothing.

    Raises:
        TypeError: ``model`` is not a Keras model.
        ValueError: unknown ``format`` (the message lists the valid ones), a
            path whose suffix does not fit the format (:data:`SUFFIXES`), a bad
            ``opset``/``atol``/``input_dtype``,
            no known input shape, or an inference output that is not a single tensor.
        ExportError: the destination is unusable (missing or unwritable
            folder, a file where a folder is expected or vice versa), writing
            failed, ONNX Runtime or LiteRT is missing for verification, or the
            artifact's outputs differ by more than the tolerance (or agree on
            too few images); the message gives the numbers.

    Example:
        >>> export_model(model, "saved_models/digits_int8.tflite", format="tflite",
        ...              quantize="int8", representative_data=x_train[:200])  # doctest: +SKIP
        ExportResult(path='.../digits_int8.tflite', format='tflite', ..., agreement=1.0)
    """
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(
            f"export: expected a keras.Model (e.g. kdarts.eval.EvalNetwork or a model "
            f"from kdarts.export.load_model), got {type(model).__module__}."
            f"{type(model).__name__}"
        )
    if format not in FORMATS:
        raise ValueError(f"export: unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    if format == "onnx" and int(opset) < 13:
        raise ValueError(f"export: ONNX opset must be >= 13, got {opset}")
    if not atol >= 0:
        raise ValueError(f"export: atol must be >= 0, got {atol}")
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"export: input_dtype must be one of {', '.join(INPUT_DTYPES)}, "
                         f"got {input_dtype!r}")
    representative = _check_quantize(format, quantize, representative_data, min_agreement)
    path = os.path.abspath(os.fspath(path))
    problem = suffix_error(path, format)
    if problem:
        raise ValueError(f"export: {problem}")
    check_destination(path, format)
    model = float32_copy(model)

    if sample_inputs is None and quantize in ("dynamic", "int8"):
        # agreement is measured on real images where there are some
        sample_inputs = representative if representative is not None else _random_images(
            model, _RANDOM_SAMPLES)
    samples = _sample_batches(model, sample_inputs)
    if verify and format == "onnx":
        _import_onnxruntime()  # fail before any work if the checker is missing
    if verify and format == "tflite":
        _import_litert()
    expected = [_keras_logits(model, x) for x in samples]
    image_shape = tuple(samples[0].shape[1:])
    contract = dict(input_contract(model))
    raw = bool(contract.get("normalized_inside"))
    if format == "onnx":
        contract["dtype"] = input_dtype
    if format == "tflite":
        contract["dtype"] = "uint8" if quantize == "int8" else "float32"
        contract["quantize"] = quantize
        if quantize == "int8" and not raw:
            raise ValueError("export: quantize='int8' needs a model that normalises raw "
                             "pixels inside (built with mean/std): its uint8 input is the "
                             "raw pixels")
    if input_dtype == "uint8" and not raw:
        raise ValueError("export: input_dtype='uint8' needs a model that normalises raw "
                         "pixels inside (built with mean/std)")

    parent, name = os.path.split(path)
    try:
        workdir = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    except OSError as err:
        raise ExportError(f"export: cannot write in {parent} ({err.strerror})") from None
    try:
        artifact = os.path.join(workdir, name)
        try:
            if format == "tflite":
                _write_tflite(model, artifact, image_shape, contract, quantize,
                              representative)
            else:
                _WRITERS[format](model, artifact, image_shape, int(opset), contract)
        except Exception as err:  # noqa: BLE001 - any writer failure is an export failure
            raise ExportError(
                f"export: writing the {format} artifact for {path} failed: "
                f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"
            ) from err
        max_diff = agreement = None
        if verify:
            tolerance = atol
            if quantize == "float16":
                tolerance = FLOAT16_RTOL * max(1.0, max(float(np.max(np.abs(e)))
                                                        for e in expected))
            max_diff, agreement = _verify(format, artifact, samples, expected, tolerance,
                                          path, contract, quantize, min_agreement)
        _move_into_place(artifact, path, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return ExportResult(path=path, format=format, max_abs_diff=max_diff,
                        input_contract=contract, agreement=agreement, quantize=quantize)


def check_model_file(path: str | os.PathLike) -> None:
    """The checks :func:`load_model` makes before loading, without TensorFlow.

    Raises:
        ModelLoadError: the path is missing, is a folder, is not a ``.keras``
            file, or is not a zip archive (as every ``.keras`` file is).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelLoadError(f"{path}: no such file (expected a .keras model archive)")
    if os.path.isdir(path):
        hint = (" (it looks like a SavedModel: load it with tf.saved_model.load)"
                if os.path.exists(os.path.join(path, "saved_model.pb")) else "")
        raise ModelLoadError(f"{path}: is a folder, not a .keras model archive{hint}")
    if not path.endswith(".keras"):
        raise ModelLoadError(f"{path}: not a .keras file (Keras 3 archives end in .keras)")
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(
            f"{path}: not a valid Keras archive (a .keras file is a zip archive; this one "
            "is not, so it is truncated, corrupted or something else renamed)"
        )


def load_model(path: str | os.PathLike, compile: bool = False):
    """Load a ``.keras`` archive written by kdarts (or :func:`export_model`).

    kdarts's layers are registered on import, so no ``custom_objects`` are
    needed. ``compile=False`` (default) skips restoring the optimizer and
    loss: enough for inference and export.

    Raises:
        ModelLoadError: the path is missing, is a folder, is not a ``.keras``
            file, or is not a valid Keras archive; the message names the
            file and the reason.

    Example:
        >>> model = load_model("runs/eval/model.keras")
    """
    path = os.fspath(path)
    check_model_file(path)
    _register_kdarts_layers()
    import keras

    try:
        return keras.models.load_model(path, compile=compile)
    except Exception as err:  # noqa: BLE001 - report any loader failure the same way
        raise ModelLoadError(
            f"{path}: could not load the Keras archive: {type(err).__name__}: {err}"
        ) from err


# -- destination and inputs ---------------------------------------------------


def _check_quantize(format: str, quantize: str, representative_data,
                    min_agreement: float | None) -> np.ndarray | None:
    """Checks the LiteRT options; returns the representative images as float32 NHWC."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"export: quantize must be one of {', '.join(QUANTIZATIONS)}, got "
                         f"{quantize!r}")
    if format != "tflite" and quantize != "none":
        raise ValueError(f"export: quantize={quantize!r} applies to the tflite format only")
    if min_agreement is not None and not 0.0 <= min_agreement <= 1.0:
        raise ValueError(f"export: min_agreement must be in [0, 1], got {min_agreement}")
    if representative_data is None:
        if quantize == "int8":
            raise ValueError("export: quantize='int8' needs representative_data: a few "
                             "hundred training images (NHWC, pixel values 0..255) to "
                             "calibrate on (command line: --data)")
        return None
    if quantize != "int8" and quantize != "dynamic":
        raise ValueError("export: representative_data applies to quantize='int8' "
                         "(and verifies 'dynamic')")
    images = np.asarray(representative_data, dtype="float32")
    if images.ndim != 4 or not len(images):
        raise ValueError(f"export: representative_data must be NHWC images, got shape "
                         f"{images.shape}")
    return images


def _random_images(model, count: int) -> np.ndarray:
    """``count`` random raw-pixel images at the model's size (integer values 0..255)."""
    shape = _image_shape(model)
    return np.random.default_rng(0).integers(0, 256, (count,) + shape).astype("float32")


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


def _sample_batches(model, sample_inputs) -> list[np.ndarray]:
    if sample_inputs is not None:
        batches = [sample_inputs] if isinstance(sample_inputs, np.ndarray) or hasattr(
            sample_inputs, "shape") else list(sample_inputs)
        batches = [np.asarray(b, dtype="float32") for b in batches]
        if not batches or any(b.ndim != 4 for b in batches):
            raise ValueError(
                "export: sample_inputs must be one NHWC batch or a list of NHWC batches"
            )
        if not model.built:
            model(batches[0], training=False)
        return batches
    shape = _image_shape(model)
    rng = np.random.default_rng(0)
    if input_contract(model).get("normalized_inside"):
        # raw pixels, integer-valued so the uint8 entry points see the same images
        return [rng.integers(0, 256, (n,) + shape).astype("float32") for n in (1, 3)]
    return [rng.standard_normal((n,) + shape).astype("float32") for n in (1, 3)]


def float32_copy(model):
    """``model`` computing in float32: a mixed-precision model (float16 compute, float32
    variables) is rebuilt with the float32 policy and given the same weights; any other
    model is returned as it is.

    Every export runs this first, so artifacts take and return float32 (or uint8) and
    compute in float32 whatever precision the model trained in: every runtime runs them,
    and their logits are the trained model's up to float16 rounding.
    """
    import keras

    from kdarts.ops import dtype_policy_scope, is_mixed

    if not is_mixed(model):
        return model

    def float32(config):
        """The serialized model with every dtype policy float32 (names and other
        strings untouched)."""
        if isinstance(config, list):
            return [float32(v) for v in config]
        if not isinstance(config, dict):
            return config
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {k: "float32" if k == "dtype" and str(v).startswith("mixed_") else float32(v)
                for k, v in config.items()}

    config = float32(keras.saving.serialize_keras_object(model))
    with dtype_policy_scope("float32"):
        copy = keras.saving.deserialize_keras_object(config)
    if not copy.built:
        copy.build((None,) + _image_shape(model))
    copy.set_weights(model.get_weights())
    return copy


def _image_shape(model) -> tuple[int, int, int]:
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


def _keras_logits(model, x: np.ndarray) -> np.ndarray:
    y = model(x, training=False)
    if isinstance(y, (tuple, list, dict)):
        raise ValueError(
            "export: the model's inference output must be one logits tensor, got "
            f"{type(y).__name__}"
        )
    return np.asarray(y)


# -- writers ------------------------------------------------------------------


def _signature(image_shape, dtype: str = "float32"):
    import tensorflow as tf

    return tf.TensorSpec((None,) + tuple(image_shape), tf.as_dtype(dtype), name=INPUT_NAME)


def _contract_text(contract: dict) -> str:
    return json.dumps(contract, indent=2) + "\n"


def _write_keras(model, artifact: str, image_shape, opset: int, contract: dict) -> None:
    model.save(artifact)  # the contract is in the model's config (mean/std)


def _write_saved_model(model, artifact: str, image_shape, opset: int, contract: dict) -> None:
    import keras
    import tensorflow as tf

    # No archive.track(model): the archive already tracks every variable the
    # endpoints use, and tracking the whole model also saves its variable
    # lists again, which made saving ~4x slower.
    archive = keras.export.ExportArchive()
    serve = archive.add_endpoint(
        "serve", lambda images: model(images, training=False),
        input_signature=[_signature(image_shape)],
    )
    # serving_default names its output; it calls the traced `serve` rather
    # than tracing the network a second time
    archive.add_endpoint(
        "serving_default", lambda images: {OUTPUT_NAME: serve(images)},
        input_signature=[_signature(image_shape)],
    )
    if contract.get("normalized_inside"):
        archive.add_endpoint(
            "serving_uint8", lambda images: {OUTPUT_NAME: serve(tf.cast(images, tf.float32))},
            input_signature=[_signature(image_shape, "uint8")],
        )
    text = _contract_text(contract)
    archive.add_endpoint("input_contract", lambda: tf.constant(text), input_signature=[])
    archive.write_out(artifact, verbose=False)
    extra = os.path.join(artifact, "assets.extra")  # TF-Serving's folder for side files
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, CONTRACT_FILE), "w", encoding="utf-8") as f:
        f.write(text)


def _write_onnx(model, artifact: str, image_shape, opset: int, contract: dict) -> None:
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = _signature(image_shape, contract["dtype"])
    fn = tf.function(lambda images: {OUTPUT_NAME: model(images, training=False)},
                     input_signature=[spec])
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # tf2onnx logs its progress at INFO/WARNING
    try:
        with _quiet_tensorflow():
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=[spec], opset=opset)
    finally:
        logger.setLevel(level)
    _name_batch_dim(proto)
    proto.graph.input[0].doc_string = contract["description"]
    onnx.helper.set_model_props(proto, {CONTRACT_KEY: json.dumps(contract)})
    onnx.save(proto, artifact)


class _quiet_tensorflow:
    """Silence TensorFlow's Python logger (grappler's lines during conversion)."""

    def __enter__(self):
        self.logger = logging.getLogger("tensorflow")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


class _quiet_native_stderr:
    """Send what native code writes to stderr (file descriptor 2) to /dev/null meanwhile."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)


def _name_batch_dim(proto) -> None:
    """Name the dynamic batch dimension ``batch`` (tf2onnx leaves anonymous ``unk__N``)."""
    symbols = {v.type.tensor_type.shape.dim[0].dim_param
               for v in list(proto.graph.input) + list(proto.graph.output)
               if v.type.tensor_type.shape.dim}
    symbols.discard("")
    for value in list(proto.graph.input) + list(proto.graph.output) + list(
            proto.graph.value_info):
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param in symbols:
                d.dim_param = "batch"


def _write_tflite(model, artifact: str, image_shape, contract: dict, quantize: str,
                  representative: np.ndarray | None) -> None:
    """SavedModel (serving_default) → ``tf.lite.TFLiteConverter`` → flatbuffer + metadata.

    Through a SavedModel, as Keras's own LiteRT export does: the converter then
    freezes the variables (converting a concrete function of the live model
    leaves variable reads the interpreter cannot resolve).
    """
    import keras
    import tensorflow as tf

    def serve(images):
        if quantize == "int8":
            # pins the input range to 0..255, so the uint8 input is the raw pixels
            # (scale 1, zero point 0) whatever range the calibration images span
            images = tf.quantization.fake_quant_with_min_max_args(
                images, min=0.0, max=255.0, num_bits=8)
        return {OUTPUT_NAME: model(images, training=False)}

    saved = artifact + ".saved_model"
    archive = keras.export.ExportArchive()
    archive.add_endpoint("serving_default", serve, input_signature=[_signature(image_shape)])
    with _quiet_tensorflow():
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved, signature_keys=["serving_default"])
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.representative_dataset = lambda: (
                [representative[i:i + 1]] for i in range(len(representative)))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.int8
        with _quiet_native_stderr():  # the calibrator prints its settings there
            flatbuffer = converter.convert()
    shutil.rmtree(saved, ignore_errors=True)
    if quantize == "int8":
        flatbuffer = fold_requantize(flatbuffer)
        floats = float_ops(flatbuffer)
        if floats:
            raise ValueError(
                f"the int8 model is not all-integer: {len(floats)} op(s) compute in float "
                f"({', '.join(sorted(set(floats)))}); an int8 runtime would have to "
                "dequantise around them")
        scale, zero_point = _tflite_output_quantization(flatbuffer)
        contract["input_quantization"] = {"dtype": "uint8", "scale": 1.0, "zero_point": 0}
        contract["output_quantization"] = {"dtype": "int8", "scale": scale,
                                           "zero_point": zero_point}
        contract["description"] += (
            "; this int8 model takes uint8 images (the raw pixels: scale 1, zero point 0) "
            f"and returns int8 logits: logits = (q - {zero_point}) * {scale:.6g}")
    with open(artifact, "wb") as f:
        f.write(_with_metadata(flatbuffer, {CONTRACT_KEY: json.dumps(contract)}))


def fold_requantize(flatbuffer: bytes) -> bytes:
    """Replace each ``DEQUANTIZE`` → float → ``QUANTIZE`` pair by one integer ``QUANTIZE``.

    The converter writes such a pair where a tensor's calibrated range differs from its
    producer's: behind the input's fake quant (pinned to 0..255) when the calibration
    images span less, e.g. a dataset of dark images. LiteRT's ``QUANTIZE`` rescales
    int8 to int8 itself, so the float detour is not needed; the values are the same.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    code = {i: max(c.builtinCode, c.deprecatedBuiltinCode)
            for i, c in enumerate(model.operatorCodes)}
    integer = (schema.TensorType.INT8, schema.TensorType.UINT8)
    changed = False
    for graph in model.subgraphs:
        readers: dict[int, list] = {}
        for op in graph.operators:
            for t in op.inputs:
                readers.setdefault(int(t), []).append(op)
        kept = []
        for op in graph.operators:
            if code[op.opcodeIndex] != schema.BuiltinOperator.DEQUANTIZE:
                kept.append(op)
                continue
            source, middle = int(op.inputs[0]), int(op.outputs[0])
            users = readers.get(middle, [])
            if (graph.tensors[source].type in integer
                    and middle not in list(graph.outputs) and len(users) == 1
                    and code[users[0].opcodeIndex] == schema.BuiltinOperator.QUANTIZE):
                users[0].inputs[0] = source  # QUANTIZE reads the integer tensor itself
                changed = True
                continue
            kept.append(op)
        graph.operators = kept
    if not changed:
        return flatbuffer
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def float_ops(flatbuffer: bytes) -> list[str]:
    """Names of the ops of a LiteRT model that read or write a float tensor, one per op.

    Empty for a full-integer model. An ``int8`` export with any is refused: a
    ``DEQUANTIZE``/``QUANTIZE`` pair around a float op would run in float on an
    integer-only accelerator, or not at all.

    Example:
        >>> float_ops(open("saved_models/digits_int8.tflite", "rb").read())
        []
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    names = {code: name for name, code in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    floating = (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16,
                schema.TensorType.FLOAT64)
    found = []
    for graph in model.subgraphs:
        for op in graph.operators:
            tensors = [t for t in list(op.inputs) + list(op.outputs) if t >= 0]
            if any(graph.tensors[t].type in floating for t in tensors):
                code = model.operatorCodes[op.opcodeIndex]
                found.append(names.get(max(code.builtinCode, code.deprecatedBuiltinCode),
                                       str(code.builtinCode)))
    return found


def _tflite_output_quantization(flatbuffer: bytes) -> tuple[float, int]:
    """``(scale, zero_point)`` of a quantised model's (only) output tensor."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    quantization = graph.tensors[graph.outputs[0]].quantization
    return float(quantization.scale[0]), int(quantization.zeroPoint[0])


def _with_metadata(flatbuffer: bytes, entries: dict[str, str]) -> bytes:
    """Adds ``name → text`` entries to a TFLite model's ``metadata`` (one buffer each)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    for name, text in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(text.encode("utf-8"), np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        model.metadata = (model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def tflite_metadata(path: str | os.PathLike) -> dict[str, bytes]:
    """A ``.tflite`` model's metadata entries, ``name → bytes``.

    Example:
        >>> json.loads(tflite_metadata("saved_models/digits.tflite")["kdarts.input"])["shape"]
        [None, 8, 8, 3]
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(os.fspath(path))
    return {entry.name.decode("utf-8"): bytes(np.asarray(model.buffers[entry.buffer].data,
                                                         np.uint8))
            for entry in (model.metadata or [])}


_WRITERS: dict[str, Callable] = {
    "keras": _write_keras,
    "saved_model": _write_saved_model,
    "onnx": _write_onnx,
}


# -- verification -------------------------------------------------------------


def _run_artifact(format: str, artifact: str, samples: list[np.ndarray],
                  contract: dict | None = None) -> list[list[np.ndarray]]:
    """Load the artifact as a user would; per sample batch, each entry point's logits.

    Entry points that take uint8 get the samples as uint8 (integer pixel values).
    ONNX Runtime and LiteRT run in a child process (:func:`kdarts.inference.run_isolated`):
    a native abort there raises :class:`kdarts.inference.RuntimeCrash` here instead of
    ending this process.
    """
    from kdarts import inference

    contract = contract or {}
    raw = bool(contract.get("normalized_inside"))
    as_uint8 = inference.as_uint8
    if format == "keras":
        loaded = load_model(artifact)
        return [[np.asarray(loaded(x, training=False))]
                + ([np.asarray(loaded(as_uint8(x), training=False))] if raw else [])
                for x in samples]
    if format == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(artifact)
        signature = loaded.signatures["serving_default"]
        outputs = []
        for x in samples:
            out = [np.asarray(loaded.serve(tf.constant(x))),
                   np.asarray(signature(**{INPUT_NAME: tf.constant(x)})[OUTPUT_NAME])]
            if raw:
                uint8 = loaded.signatures["serving_uint8"]
                out.append(np.asarray(uint8(**{INPUT_NAME: tf.constant(as_uint8(x))})[
                    OUTPUT_NAME]))
            outputs.append(out)
        return outputs
    return inference.run_isolated(format, artifact, samples,
                                  input_dtype=contract.get("dtype", "float32"))


def tflite_runner(path: str | os.PathLike):
    """The LiteRT interpreter's ``serving_default`` runner of a ``.tflite`` file
    (:func:`kdarts.inference.tflite_runner`).

    Example:
        >>> runner = tflite_runner("saved_models/digits.tflite")
        >>> logits = tflite_logits(runner, images)  # float32 (N, classes)
    """
    from kdarts import inference

    _import_litert()
    return inference.tflite_runner(path)


def tflite_logits(runner, images: np.ndarray) -> np.ndarray:
    """Float logits of a LiteRT runner for raw-pixel images
    (:func:`kdarts.inference.tflite_logits`)."""
    from kdarts import inference

    return inference.tflite_logits(runner, images)


def _verify(format: str, artifact: str, samples, expected, atol: float, path: str,
            contract: dict | None = None, quantize: str = "none",
            min_agreement: float | None = None) -> tuple[float, float | None]:
    """Max |Δlogits| (checked against ``atol``) and, for LiteRT, top-1 agreement.

    Quantised LiteRT models (dynamic, int8) are held to the agreement
    threshold instead of ``atol``.
    """
    from kdarts.inference import RuntimeCrash

    try:
        actual = _run_artifact(format, artifact, samples, contract)
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
    max_diff, same, total = 0.0, 0, 0
    for outputs, want in zip(actual, expected):
        for got in outputs:
            if got.shape != want.shape:
                raise ExportError(
                    f"export: the {format} artifact for {path} returns shape {got.shape} "
                    f"where the model returns {want.shape}; nothing was written"
                )
            if want.size:
                diff = float(np.max(np.abs(got.astype("float64") - want)))
                # NaN compares false with everything: count it as an infinite error
                max_diff = max(max_diff, diff if diff == diff else float("inf"))
                same += int(np.sum(np.argmax(got, -1) == np.argmax(want, -1)))
                total += len(want)
    agreement = same / total if format == "tflite" and total else None
    if quantize in MIN_AGREEMENT:
        need = MIN_AGREEMENT[quantize] if min_agreement is None else min_agreement
        if not agreement >= need:
            raise ExportError(
                f"export: the {quantize} LiteRT model for {path} agrees with the Keras model's "
                f"top-1 class on {same} of {total} images ({agreement:.1%}, needed "
                f"{need:.0%}; max |Δlogits| {max_diff:.3g}); nothing was written",
                max_abs_diff=max_diff)
        return max_diff, agreement
    if not max_diff <= atol:
        raise ExportError(
            f"export: the {format} artifact for {path} differs from the Keras model by up "
            f"to {max_diff:.3g} (tolerance {atol:g}); nothing was written",
            max_abs_diff=max_diff,
        )
    return max_diff, agreement


def _move_into_place(artifact: str, path: str, workdir: str) -> None:
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


def _import_onnxruntime():
    return _import_runtime("onnx")


def _import_litert():
    return _import_runtime("tflite")


def _import_runtime(format: str):
    """The runtime verifying ``format`` (:mod:`kdarts.inference`), or ExportError saying
    what to install."""
    from kdarts import inference

    try:
        return (inference.import_onnxruntime if format == "onnx"
                else inference.import_litert)()
    except ImportError as err:
        raise ExportError(f"export: verifying the {format} export needs {err}, or pass "
                          "verify=False") from None


def _register_kdarts_layers() -> None:
    """Import the modules whose layers a kdarts archive may contain (registration): the
    image networks' and the recurrent language model's."""
    import kdarts.eval  # noqa: F401
    import kdarts.ops  # noqa: F401
    import kdarts.recurrent.language_model  # noqa: F401

    try:
        import kdarts.search  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name not in ("kdarts.search",):
            raise


#: The name this function had first: ``from kdarts.export import export`` keeps working.
export = export_model

