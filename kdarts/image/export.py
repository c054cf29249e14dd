"""The image contract: export a trained image network for inference (``.keras``, SavedModel,
ONNX or LiteRT), verified.

:func:`export_model` writes the *inference* graph (``training=False``: no
auxiliary head, no drop-path, BatchNorm with its moving statistics) with a
dynamic batch dimension, images ``[batch, H, W, C]`` in and logits out, then
(``verify=True``) reloads the artifact the way a user would and compares its
outputs with the Keras model's on sample inputs.

A network trained by kdarts normalises inside (:mod:`kdarts.preprocessing`),
so every artifact takes **raw images**: pixel values 0–255, float32 or uint8,
with the training data's channel count. Each artifact records that input
contract (:func:`~kdarts.export.input_contract`): the ``.keras`` config, the SavedModel's
``assets.extra/kdarts_input.json`` and ``input_contract()`` function, and the
ONNX file's ``metadata_props`` (key ``kdarts.input``) and input ``doc_string``,
the ``.tflite`` file's metadata entry ``kdarts.input`` (:func:`~kdarts.export.tflite_metadata`).

Artifacts (the file suffix each format takes is in :data:`~kdarts.export.SUFFIXES`):

* ``keras`` (``*.keras``): the whole model (``model.save``; the auxiliary head's
  weights and the optimizer state come along so training can resume). Reload
  with :func:`~kdarts.export.load_model`; it takes float32 or uint8 images.
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
An ``int8`` model must be all-integer (:func:`~kdarts.export.float_ops` finds no float op).

Example:
    >>> from kdarts.export import load_model
    >>> from kdarts.image.export import export_model
    >>> model = load_model("runs/eval/model.keras")
    >>> export_model(model, "saved_models/darts.onnx", format="onnx")
    ExportResult(path='.../saved_models/darts.onnx', format='onnx', max_abs_diff=4.1e-07)
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from kdarts.export import DEFAULT_OPSET, keras_archive, litert, onnx_file, saved_model, \
    suffix_error
from kdarts.export.artifact import (
    ExportError,
    ExportResult,
    image_shape,
    import_runtime,
    input_contract,
)
from kdarts.export.keras_archive import float32_copy
from kdarts.export.pipeline import check_destination, check_tolerance, max_abs_difference, \
    run_for_verification, write_verified

#: Each format's module: ``write`` (and ``run``, for those verified in this process).
FORMAT_MODULES = {"keras": keras_archive, "saved_model": saved_model, "onnx": onnx_file,
                  "tflite": litert}
FORMATS: tuple[str, ...] = tuple(FORMAT_MODULES)
"""The export formats, as accepted by :func:`export_model`."""

QUANTIZATIONS: tuple[str, ...] = ("none", "float16", "dynamic", "int8")
"""LiteRT quantisations (``quantize=``); the other formats take only ``"none"``."""
#: float16 tolerance on the logits, relative to max(1, max |Keras logits|).
FLOAT16_RTOL = 1e-2
#: Least top-1 agreement with Keras a quantised LiteRT model must reach.
MIN_AGREEMENT: dict[str, float] = {"dynamic": 0.98, "int8": 0.95}
#: Random images verifying a quantised model when no images are given.
_RANDOM_SAMPLES = 64

INPUT_DTYPES: tuple[str, ...] = ("float32", "uint8")


def export_model(model, path: str | os.PathLike, format: str = "keras", verify: bool = True,
                 sample_inputs: np.ndarray | Sequence[np.ndarray] | None = None,
                 atol: float = 1e-4, opset: int = DEFAULT_OPSET,
                 input_dtype: str = "float32", quantize: str = "none",
                 representative_data: np.ndarray | None = None,
                 min_agreement: float | None = None) -> ExportResult:
    """Export ``model``'s inference graph to ``path`` and check the artifact.

    Args:
        model: a built :class:`keras.Model` whose inference call returns
            one logits tensor (e.g. :class:`kdarts.image.EvalNetwork`). A
            mixed-precision model is exported as its float32 copy
            (:func:`~kdarts.export.float32_copy`).
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
        :class:`~kdarts.export.ExportResult`. Prints nothing.

    Raises:
        TypeError: ``model`` is not a Keras model.
        ValueError: unknown ``format`` (the message lists the valid ones), a
            path whose suffix does not fit the format (:data:`~kdarts.export.SUFFIXES`), a bad
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
            f"export: expected a keras.Model (e.g. kdarts.image.EvalNetwork or a model "
            f"from kdarts.export.load_model), got {type(model).__module__}."
            f"{type(model).__name__}"
        )
    _check_options(format, opset, atol, input_dtype)
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
    if verify and format in ("onnx", "tflite"):
        import_runtime(format)  # fail before any work if the checker is missing
    expected = [_keras_logits(model, x) for x in samples]
    hwc = tuple(samples[0].shape[1:])  # the image size every writer traces for
    contract = _artifact_contract(model, format, quantize, input_dtype)

    def write(artifact: str) -> None:
        if format == "tflite":
            litert.write(model, artifact, hwc, contract, quantize, representative)
        else:
            FORMAT_MODULES[format].write(model, artifact, hwc, int(opset), contract)

    def check(artifact: str) -> tuple[float, float | None]:
        tolerance = atol
        if quantize == "float16":
            tolerance = FLOAT16_RTOL * max(1.0, max(float(np.max(np.abs(e)))
                                                    for e in expected))
        return _verify(format, artifact, samples, expected, tolerance, path, contract,
                       quantize, min_agreement)

    checked = write_verified(path, format, write, check if verify else None)
    max_diff, agreement = checked if checked is not None else (None, None)
    return ExportResult(path=path, format=format, max_abs_diff=max_diff,
                        input_contract=contract, agreement=agreement, quantize=quantize)


def _artifact_contract(model, format: str, quantize: str, input_dtype: str) -> dict:
    """The model's input contract as ``format`` records it: the one input dtype of an ONNX
    or LiteRT file, the quantisation; refuses a uint8 input the model cannot take."""
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
    if contract.get("dtype") in INPUT_DTYPES and "description" in contract:
        # an ONNX or LiteRT input has one dtype: the text names it, not the Keras model's two
        contract["description"] = contract["description"].replace(
            "(float32 or uint8)", f"({contract['dtype']} only)")
    return contract


# -- destination and inputs ---------------------------------------------------


def _check_options(format: str, opset: int, atol: float, input_dtype: str) -> None:
    """ValueError for an unknown format or input dtype, an ONNX opset below 13, or a
    negative tolerance."""
    if format not in FORMATS:
        raise ValueError(f"export: unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    if format == "onnx" and int(opset) < 13:
        raise ValueError(f"export: ONNX opset must be >= 13, got {opset}")
    if not atol >= 0:
        raise ValueError(f"export: atol must be >= 0, got {atol}")
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"export: input_dtype must be one of {', '.join(INPUT_DTYPES)}, "
                         f"got {input_dtype!r}")


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
    shape = image_shape(model)
    return np.random.default_rng(0).integers(0, 256, (count,) + shape).astype("float32")


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
    shape = image_shape(model)
    rng = np.random.default_rng(0)
    if input_contract(model).get("normalized_inside"):
        # raw pixels, integer-valued so the uint8 entry points see the same images
        return [rng.integers(0, 256, (n,) + shape).astype("float32") for n in (1, 3)]
    return [rng.standard_normal((n,) + shape).astype("float32") for n in (1, 3)]


def _keras_logits(model, x: np.ndarray) -> np.ndarray:
    y = model(x, training=False)
    if isinstance(y, (tuple, list, dict)):
        raise ValueError(
            "export: the model's inference output must be one logits tensor, got "
            f"{type(y).__name__}"
        )
    return np.asarray(y)


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
    module = FORMAT_MODULES[format]
    if hasattr(module, "run"):  # verified in this process (TensorFlow's own loaders)
        return module.run(artifact, samples, raw=bool(contract.get("normalized_inside")))
    return inference.run_isolated(format, artifact, samples,
                                  input_dtype=contract.get("dtype", "float32"))


def _verify(format: str, artifact: str, samples, expected, atol: float, path: str,
            contract: dict | None = None, quantize: str = "none",
            min_agreement: float | None = None) -> tuple[float, float | None]:
    """Max |Δlogits| (checked against ``atol``) and, for LiteRT, top-1 agreement.

    Quantised LiteRT models (dynamic, int8) are held to the agreement
    threshold instead of ``atol``.
    """
    actual = run_for_verification(format, path, lambda: _run_artifact(
        format, artifact, samples, contract))
    pairs = [(got, want) for outputs, want in zip(actual, expected) for got in outputs]
    what = f"the {format} artifact for {path}"
    max_diff = max_abs_difference(pairs, what)
    same = sum(int(np.sum(np.argmax(got, -1) == np.argmax(want, -1)))
               for got, want in pairs if want.size)
    total = sum(len(want) for got, want in pairs if want.size)
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
    return check_tolerance(max_diff, atol, what), agreement


#: The name this function had first: ``from kdarts.image.export import export`` works too.
export = export_model

__all__ = ["FLOAT16_RTOL", "FORMATS", "FORMAT_MODULES", "INPUT_DTYPES", "MIN_AGREEMENT",
           "QUANTIZATIONS", "export", "export_model"]
