"""``export_run``: a trained ``.keras`` model to ONNX, SavedModel, ``.keras`` or LiteRT,
every path checked before TensorFlow is imported. A language model (a training on a
corpus) goes to :func:`kdarts.recurrent.export_language_model` (``.keras``, SavedModel,
ONNX, its vocabulary beside the artifact)."""

from __future__ import annotations

import os
import time
from typing import Callable

from kdarts.data.catalog import DatasetError
from kdarts.export import SUFFIXES, suffix_error
from kdarts.geometry import MIN_IMAGE_SIZE
from kdarts.runs.defaults import check_data_options
from kdarts.runs.folder import check_writable
from kdarts.runs.report import data_label, describe_export, fmt_time, rel
from kdarts.runs.results import ExportRunResult, RunError, RunInterrupted
from kdarts.spaces import IMAGE, RECURRENT_SPACE, space_for

#: Where exports go by default.
EXPORT_DIR = "saved_models"
#: Training images an int8 LiteRT export is calibrated on (a seeded sample of ``--data``).
REPRESENTATIVE_EXAMPLES = 200
#: Test images a LiteRT export from ``--data`` is verified on (a seeded sample).
VERIFY_EXAMPLES = 200
#: The formats a language model exports to (no LiteRT: its step is a recurrent cell of
#: kdarts ops that the image networks' LiteRT path does not cover).
LANGUAGE_MODEL_FORMATS = RECURRENT_SPACE.export_formats
#: The ONNX forms of a language model (see :mod:`kdarts.recurrent.export`).
LANGUAGE_MODEL_FORMS = ("batch", "step")


def default_export_path(model_path: str, fmt: str, quantize: str = "none") -> str:
    """``runs/x/train/model.keras`` → ``saved_models/x-train.onnx`` (``.keras``, a
    folder, ``x-train.tflite``, ``x-train_int8.tflite``); ``nets/digits.keras`` →
    ``saved_models/digits.onnx``.

    A training's ``model.keras`` is named after its run folder and the folder above
    it: trainings are often all called ``train`` (``runs/<experiment>/train``).
    """
    path = os.path.abspath(model_path)
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem == "model":
        run = os.path.dirname(path)
        names = [os.path.basename(os.path.dirname(run)), os.path.basename(run)]
        stem = "-".join(name for name in names if name) or stem
    if quantize != "none":
        stem += f"_{quantize}"
    return os.path.join(EXPORT_DIR, stem + SUFFIXES[fmt])


def export_run(model_path: str, fmt: str = "onnx", out: str | None = None,
               verify: bool = True, input_dtype: str = "float32", quantize: str = "none",
               data: str | None = None, overwrite: bool = False,
               before_tensorflow: Callable[[], None] | None = None,
               form: str | None = None) -> ExportRunResult:
    """Export a ``.keras`` model (see :func:`kdarts.image.export.export`), checking the path first.

    Every check below is made before TensorFlow is imported, and nothing is written
    when one fails.

    Args:
        out: the destination (default :func:`default_export_path`). An existing one is
            refused unless ``overwrite``; the model itself (or a folder holding it) and
            a folder that is not a SavedModel are always refused.
        quantize: LiteRT quantisation (``fmt="tflite"``), see
            :data:`kdarts.image.export.QUANTIZATIONS`.
        data: a dataset (as ``--dataset`` takes: TFDS name, folder, ``.npz``) for
            LiteRT: ``int8`` calibrates on :data:`REPRESENTATIVE_EXAMPLES` of its
            training images, and a LiteRT model is verified on :data:`VERIFY_EXAMPLES`
            of its test images (seeded samples). Required for ``int8``.
        overwrite: replace an existing artifact at ``out``.
        before_tensorflow: called once everything is checked, before TensorFlow is
            imported (the command line sets TensorFlow's threads there).
        form: a language model's ONNX form, ``"batch"`` (default) or ``"step"``
            (generation); see :mod:`kdarts.recurrent.export`.

    A language model (a ``.keras`` archive holding a RecurrentLanguageModel) exports to
    ``keras``, ``saved_model`` or ``onnx`` with its vocabulary beside the artifact
    (``<name>.vocab.json``), verified against Keras on both forms; ``tflite``,
    ``quantize``, ``data`` and ``input_dtype`` are image-network options and refused.

    Raises:
        RunError: a bad destination (suffix, a file in the way, not writable, existing
            without ``overwrite``, the model itself), bad
            ``quantize``/``data``, a model that cannot be loaded, data that does not
            fit the model, or an export that fails verification.
    """
    # a file of neither space takes the image path, whose checks name what is wrong
    if space_for(saved_model=model_path, default=IMAGE) is RECURRENT_SPACE:
        return _export_language_model(model_path, fmt, out, verify, input_dtype, quantize,
                                      data, overwrite, before_tensorflow, form)
    if form is not None:
        raise RunError(f"--form applies to a language model's ONNX export; "
                       f"{rel(model_path)} is not a language model")
    out = os.path.abspath(out or default_export_path(model_path, fmt, quantize))
    problem = suffix_error(out, fmt)
    if problem:
        raise RunError(f"--out: {problem}")
    _check_litert_options(fmt, quantize, data)
    _check_source_and_destination(model_path, out, fmt, overwrite, before_tensorflow)
    t_start = time.perf_counter()
    from kdarts.export import ExportError, ModelLoadError, load_model
    from kdarts.image.export import export_model

    try:
        model = load_model(model_path)
    except ModelLoadError as err:
        raise RunError(str(err)) from None
    representative = samples = None
    if data is not None:
        representative, samples = _export_images(model, data, quantize)
    try:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        result = export_model(model, out, fmt, verify=verify, input_dtype=input_dtype,
                        quantize=quantize, representative_data=representative,
                        sample_inputs=samples)
    except (ExportError, ValueError, TypeError) as err:
        raise RunError(str(err)) from None
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted; nothing was written to {rel(out)} (an export "
                             "is moved into place only once verified)") from None
    verified_on = None if samples is None else (
        f"{len(samples)} test images of {rel(data) if os.path.exists(data) else data}")
    seconds = time.perf_counter() - t_start
    return ExportRunResult(path=result.path, format=fmt, max_abs_diff=result.max_abs_diff,
                           input_contract=result.input_contract, seconds=seconds,
                           quantize=quantize, agreement=result.agreement,
                           verified_on=verified_on, **_measured_costs(model, result.path, fmt,
                                                                     quantize, input_dtype))


#: Timed invocations of an exported artifact (after a tenth as many untimed ones).
LATENCY_REPEATS = 200


def _measured_costs(model, path: str, fmt: str, quantize: str, input_dtype: str) -> dict:
    """Parameters and multiply-adds of an image network, and its float ONNX or LiteRT
    artifact's median latency (batch 1, one thread: what a budget's latency predicts)."""
    from kdarts.image.costs import network_madds

    if not hasattr(model, "parameter_count"):
        return {}
    costs = {"parameters": int(model.parameter_count()), "madds": int(network_madds(model))}
    runtime = {"onnx": "onnx", "tflite": "litert"}.get(fmt)
    if runtime is None or quantize != "none" or input_dtype != "float32":
        return costs
    from kdarts.export.artifact import quiet_native_stderr
    from kdarts.image.latency import check_runtime, time_model

    try:
        check_runtime(runtime)
    except ImportError:  # the artifact is verified elsewhere; no runtime, no timing
        return costs
    shape = (1,) + tuple(model.get_build_config()["input_shape"])[1:]
    with open(path, "rb") as f:
        artifact = f.read()
    with quiet_native_stderr():  # LiteRT announces its CPU delegate there
        costs["latency_ms"] = time_model(runtime, artifact, shape, repeats=LATENCY_REPEATS,
                                         warmup=LATENCY_REPEATS // 10)
    return costs


def _check_litert_options(fmt: str, quantize: str, data: str | None) -> None:
    """RunError for ``--quantize`` or ``--data`` without ``--format tflite``, int8 without
    ``--data``, or ``--data`` that cannot be read."""
    from kdarts.image.export import QUANTIZATIONS

    if quantize not in QUANTIZATIONS or (fmt != "tflite" and quantize != "none"):
        raise RunError(f"--quantize {quantize} applies to --format tflite only"
                       if quantize in QUANTIZATIONS else
                       f"--quantize: one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if data is None and quantize == "int8":
        raise RunError("--quantize int8 calibrates on training images: name them with --data "
                       "(the dataset the model was trained on)")
    if data is not None:
        if fmt != "tflite":
            raise RunError("--data applies to --format tflite (calibration and verification)")
        # a folder is read at the model's size, unknown until it is loaded: any size
        # passes this check (the rest of it, classes and files, is done now)
        check_data_options({"dataset": data, "image_size": [MIN_IMAGE_SIZE] * 2
                            if os.path.isdir(data) else None})


def _export_language_model(model_path: str, fmt: str, out: str | None, verify: bool,
                           input_dtype: str, quantize: str, data: str | None,
                           overwrite: bool, before_tensorflow, form: str | None
                           ) -> ExportRunResult:
    """:func:`export_run` for a language model: the same checks first, then
    :func:`kdarts.recurrent.export.export_language_model`."""
    name = rel(model_path)
    if fmt not in LANGUAGE_MODEL_FORMATS:
        raise RunError(f"--format {fmt}: {name} is a language model, which exports to "
                       f"{', '.join(LANGUAGE_MODEL_FORMATS)} (LiteRT is for image networks)")
    if quantize != "none":
        raise RunError(f"--quantize {quantize}: {name} is a language model; quantisation is "
                       "for LiteRT exports of image networks")
    if data is not None:
        raise RunError(f"--data: {name} is a language model; --data calibrates and verifies "
                       "LiteRT exports of image networks")
    if input_dtype != "float32":
        raise RunError(f"--input-dtype {input_dtype}: {name} is a language model, which takes "
                       "int32 word ids")
    if form is not None and form not in LANGUAGE_MODEL_FORMS:
        raise RunError(f"--form: one of {', '.join(LANGUAGE_MODEL_FORMS)}, got {form!r}")
    if form is not None and fmt != "onnx":
        raise RunError(f"--form applies to --format onnx (a {fmt} export holds both forms)")
    out = os.path.abspath(out or default_export_path(model_path, fmt))
    problem = suffix_error(out, fmt)
    if problem:
        raise RunError(f"--out: {problem}")
    _check_source_and_destination(model_path, out, fmt, overwrite, before_tensorflow)
    t_start = time.perf_counter()
    from kdarts.export import ExportError, ModelLoadError
    from kdarts.recurrent.export import export_language_model, load_language_model

    try:
        model = load_language_model(model_path)
    except (ModelLoadError, ValueError) as err:
        raise RunError(" ".join(str(err).split())) from None
    try:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        result = export_language_model(model, out, fmt, form=form, verify=verify)
    except (ExportError, ValueError, TypeError) as err:
        raise RunError(" ".join(str(err).split())) from None
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted; nothing was written to {rel(out)} (an export "
                             "is moved into place only once verified)") from None
    return ExportRunResult(path=result.path, format=fmt, max_abs_diff=result.max_abs_diff,
                           input_contract=result.input_contract,
                           seconds=time.perf_counter() - t_start)


def describe_export_run(result: ExportRunResult) -> str:
    """One line on an export: :func:`~kdarts.runs.describe_export` for an image network;
    for a language model, its forms, vocabulary file and verification."""
    contract = result.input_contract or {}
    if contract.get("kind") != "recurrent_language_model":
        return describe_export(result)
    from kdarts.recurrent.export import vocabulary_path

    path = result.path
    total = (sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
                 for f in files) if os.path.isdir(path) else os.path.getsize(path))
    size = f"{total / 1e6:.2f} MB" if total >= 1e5 else f"{total / 1e3:.1f} kB"
    forms = " and ".join(f"{name} ({', '.join(f['inputs'])} → {', '.join(f['outputs'])})"
                         for name, f in contract.get("forms", {}).items())
    check = ("not verified (--no-verify)" if result.max_abs_diff is None
             else "verified against the Keras model: max |Δ| = "
                  f"{result.max_abs_diff:.2e}")
    return (f"exported language model {result.format} → {rel(path)} ({size}) in "
            f"{fmt_time(result.seconds)}; vocabulary {contract.get('vocab_size')} words → "
            f"{rel(vocabulary_path(path))}; {forms}; {check}")


def _same_file(a: str, b: str) -> bool:
    """Whether two existing paths are one file (symlinks resolved, hard links too)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, AttributeError):  # no samefile on this platform or file system
        return os.path.realpath(a) == os.path.realpath(b)


def _check_source_and_destination(model_path: str, out: str, fmt: str, overwrite: bool,
                                  before_tensorflow) -> None:
    """The checks every export makes before TensorFlow loads: ``out`` writable, the model
    file's name and zip header (no TensorFlow), the destination not the source; then
    ``before_tensorflow``."""
    check_writable(out, "--out", folder=fmt == "saved_model")
    from kdarts.export import ModelLoadError, check_model_file

    try:
        check_model_file(model_path)
    except ModelLoadError as err:
        raise RunError(str(err)) from None
    _check_destination(model_path, out, fmt, overwrite)
    if before_tensorflow is not None:
        before_tensorflow()


def _check_destination(model_path: str, out: str, fmt: str, overwrite: bool) -> None:
    """Refuse an export that would replace its own model, a destination the format cannot
    use (:func:`kdarts.export.check_destination`), or (unless ``overwrite``) any existing
    artifact."""
    from kdarts.export import ExportError, check_destination

    if not os.path.lexists(out):
        return
    if _same_file(model_path, out):
        other = "" if rel(model_path) == rel(out) else f" ({rel(model_path)})"
        raise RunError(f"--out {rel(out)} is the model being exported{other}: exporting "
                       "over it would lose the training archive; choose another --out")
    real_out = os.path.realpath(out)
    if os.path.isdir(out) and os.path.commonpath(
            [os.path.realpath(model_path), real_out]) == real_out:
        raise RunError(f"--out {rel(out)} holds the model being exported "
                       f"({rel(model_path)}); choose another --out")
    try:
        check_destination(os.path.abspath(out), fmt)
    except ExportError as err:
        raise RunError(f"--out: {str(err).removeprefix('export: ')}; choose another --out") \
            from None
    if os.path.isdir(out) and not [e for e in os.listdir(out) if not e.startswith(".")]:
        return  # an empty folder: nothing to lose
    if not overwrite:
        raise RunError(f"--out {rel(out)} already exists; pass --overwrite to replace it, "
                       "or choose another --out")


def _export_images(model, data: str, quantize: str):
    """``(representative training images or None, verification test images)`` from ``data``.

    A folder is read at the model's image size (resizing images of another size).
    """
    from kdarts.data.sources import sample_images
    from kdarts.export import input_contract

    shape = tuple(input_contract(model)["shape"][1:])
    spec = os.path.abspath(data) if os.path.exists(data) else data
    try:
        source = _open_for(spec, shape)
        representative = (sample_images(source, source.train, REPRESENTATIVE_EXAMPLES, seed=0)
                          if quantize == "int8" else None)
        # seeded, not the first ones: a folder's test split is ordered by class
        samples = sample_images(source, source.test, VERIFY_EXAMPLES, seed=0)
    except (DatasetError, ValueError) as err:
        raise RunError(" ".join(str(err).split())) from None
    return representative, samples


def _open_for(spec: str, shape: tuple):
    """Opens ``spec`` and checks its images fit a model taking ``shape`` (H, W, C)."""
    from kdarts.data.sources import open_source

    size = tuple(shape[:2]) if os.path.isdir(spec) else None
    source = open_source(spec, image_size=size)
    if tuple(source.info.image_shape) != tuple(shape):
        raise RunError(f"--data {data_label(source.info)} has images of "
                       f"{'x'.join(map(str, source.info.image_shape))}, the model takes "
                       f"{'x'.join(map(str, shape))}")
    return source
