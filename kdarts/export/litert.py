"""The LiteRT format (``.tflite``): the converter through a SavedModel, float16, dynamic
and full-integer quantisation, the flatbuffer's metadata, and the checks that an int8
model is all-integer. The LiteRT interpreter verifies it in a child process
(:mod:`kdarts.inference`)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from kdarts.export.artifact import CONTRACT_KEY, OUTPUT_NAME, import_runtime, \
    quiet_native_stderr, quiet_tensorflow, signature


def write(model, artifact: str, hwc, contract: dict, quantize: str,
          representative: np.ndarray | None) -> None:
    """:func:`convert` → the int8 checks → flatbuffer + metadata at ``artifact``."""
    flatbuffer = convert(model, artifact + ".saved_model", hwc, quantize, representative)
    if quantize == "int8":
        flatbuffer = fold_requantize(flatbuffer)
        floats = float_ops(flatbuffer)
        if floats:
            raise ValueError(
                f"the int8 model is not all-integer: {len(floats)} op(s) compute in float "
                f"({', '.join(sorted(set(floats)))}); an int8 runtime would have to "
                "dequantise around them")
        scale, zero_point = _output_quantization(flatbuffer)
        contract["input_quantization"] = {"dtype": "uint8", "scale": 1.0, "zero_point": 0}
        contract["output_quantization"] = {"dtype": "int8", "scale": scale,
                                           "zero_point": zero_point}
        contract["description"] += (
            "; this int8 model takes uint8 images (the raw pixels: scale 1, zero point 0) "
            f"and returns int8 logits: logits = (q - {zero_point}) * {scale:.6g}")
    with open(artifact, "wb") as f:
        f.write(_with_metadata(flatbuffer, {CONTRACT_KEY: json.dumps(contract)}))


def convert(model, work: str, hwc, quantize: str = "none",
            representative: np.ndarray | None = None, batch: int | None = None) -> bytes:
    """SavedModel (serving_default) → ``tf.lite.TFLiteConverter`` → the flatbuffer of
    ``model``'s inference on images of size ``hwc``, without metadata.

    Through a SavedModel, as Keras's own LiteRT export does: the converter then
    freezes the variables (converting a concrete function of the live model
    leaves variable reads the interpreter cannot resolve). ``work`` is the SavedModel's
    folder, removed after. ``batch`` fixes the batch dimension (None: any batch, as
    exports take); :mod:`kdarts.image.latency` converts any Keras layer this way.

    Example:
        >>> flatbuffer = convert(model, "/tmp/model.saved_model", (8, 8, 3), batch=1)
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

    archive = keras.export.ExportArchive()
    archive.add_endpoint("serving_default", serve, input_signature=[signature(hwc, batch=batch)])
    try:
        with quiet_tensorflow():
            archive.write_out(work, verbose=False)
            converter = tf.lite.TFLiteConverter.from_saved_model(
                work, signature_keys=["serving_default"])
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
            with quiet_native_stderr():  # the calibrator prints its settings there
                return converter.convert()
    finally:
        shutil.rmtree(work, ignore_errors=True)


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


def _output_quantization(flatbuffer: bytes) -> tuple[float, int]:
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


def tflite_runner(path: str | os.PathLike):
    """The LiteRT interpreter's ``serving_default`` runner of a ``.tflite`` file
    (:func:`kdarts.inference.tflite_runner`).

    Example:
        >>> runner = tflite_runner("saved_models/digits.tflite")
        >>> logits = tflite_logits(runner, images)  # float32 (N, classes)
    """
    from kdarts import inference

    import_runtime("tflite")
    return inference.tflite_runner(path)


def tflite_logits(runner, images: np.ndarray) -> np.ndarray:
    """Float logits of a LiteRT runner for raw-pixel images
    (:func:`kdarts.inference.tflite_logits`)."""
    from kdarts import inference

    return inference.tflite_logits(runner, images)


__all__ = ["convert", "float_ops", "fold_requantize", "tflite_logits", "tflite_metadata", "tflite_runner",
           "write"]
