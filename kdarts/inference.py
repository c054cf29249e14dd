"""Run exported artifacts in their own runtimes: ONNX Runtime and LiteRT.

The runtimes are native code: a model they refuse can abort the process
(LiteRT checks a quantised op's scales with ``abort()``, and an int8 model whose
scales it refuses ends the process that runs it). :func:`run_isolated` therefore
runs an artifact in a child Python process, which imports neither TensorFlow
nor Keras, and turns a crash into :class:`RuntimeCrash`, one line naming the
signal. :func:`kdarts.image.export.export` verifies ONNX and LiteRT artifacts this way,
so a crash costs the export, never the caller's process or its files.

Example:
    >>> from kdarts.inference import run_isolated, tflite_logits, tflite_runner
    >>> logits = tflite_logits(tflite_runner("saved_models/digits.tflite"), images)
    >>> [[same]] = run_isolated("tflite", "saved_models/digits.tflite", [images])
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from typing import Mapping, Sequence

import numpy as np

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
#: Formats :func:`run_isolated` runs (the others need TensorFlow, as the caller has).
ISOLATED_FORMATS: tuple[str, ...] = ("onnx", "tflite")
#: Longest a child may take to load and run an artifact, in seconds.
CHILD_TIMEOUT = 600.0
_RUNTIMES = {"onnx": "ONNX Runtime", "tflite": "the LiteRT runtime"}


class RuntimeCrash(RuntimeError):
    """The runtime's process died on a signal (or was stopped after ``CHILD_TIMEOUT``).

    Attributes:
        signal_name: ``"SIGABRT"``, ``"SIGSEGV"``, ... or ``"timeout"``.
    """

    def __init__(self, message: str, signal_name: str):
        super().__init__(message)
        self.signal_name = signal_name


def as_uint8(images: np.ndarray) -> np.ndarray:
    """Raw pixels as uint8 (rounded and clipped to 0..255)."""
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def import_onnxruntime():
    """ONNX Runtime, or ImportError with the command that installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("ONNX Runtime, which is not installed: `pip install "
                          "onnxruntime` (or `pip install kdarts[onnx]`)") from None
    return onnxruntime


def import_litert():
    """LiteRT's interpreter module, or ImportError with the command that installs it."""
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        raise ImportError("the LiteRT interpreter, which is not installed: `pip install "
                          "ai-edge-litert` (or `pip install kdarts[litert]`)") from None
    return interpreter


def tflite_runner(path: str | os.PathLike):
    """The LiteRT interpreter's ``serving_default`` runner of a ``.tflite`` file.

    Example:
        >>> runner = tflite_runner("saved_models/digits.tflite")
        >>> logits = tflite_logits(runner, images)  # float32 (N, classes)
    """
    litert = import_litert()
    interpreter = litert.Interpreter(model_path=os.fspath(path))
    runner = interpreter.get_signature_runner("serving_default")
    runner.kdarts_interpreter = interpreter  # keeps the interpreter alive with the runner
    return runner


def tflite_logits(runner, images: np.ndarray) -> np.ndarray:
    """Float logits of a LiteRT runner for raw-pixel images (quantised in and out as needed)."""
    (spec,) = runner.get_input_details().values()
    (out_spec,) = runner.get_output_details().values()
    x = np.asarray(images)
    if spec["dtype"] == np.uint8:
        scale, zero_point = spec["quantization"]
        x = np.clip(np.rint(x / scale + zero_point), 0, 255).astype(np.uint8)
    (q,) = runner(**{INPUT_NAME: x.astype(spec["dtype"])}).values()
    if out_spec["dtype"] in (np.int8, np.uint8):
        scale, zero_point = out_spec["quantization"]
        return (q.astype("float32") - zero_point) * scale
    return q


def run_in_process(format: str, artifact: str, batches: Sequence[np.ndarray],
                   input_dtype: str = "float32") -> list[list[np.ndarray]]:
    """Each batch's logits from an ONNX or LiteRT artifact, in this process.

    ``input_dtype="uint8"`` feeds an ONNX model the batches as uint8; a LiteRT
    model's own input type decides there.
    """
    if format == "tflite":
        runner = tflite_runner(artifact)
        return [[np.asarray(tflite_logits(runner, x))] for x in batches]
    if format != "onnx":
        raise ValueError(f"run_in_process: format must be one of "
                         f"{', '.join(ISOLATED_FORMATS)}, got {format!r}")
    ort = import_onnxruntime()
    session = ort.InferenceSession(os.fspath(artifact), providers=["CPUExecutionProvider"])
    cast = as_uint8 if input_dtype == "uint8" else (lambda x: x)
    return [[session.run([OUTPUT_NAME], {INPUT_NAME: cast(x)})[0]] for x in batches]


def run_isolated(format: str, artifact: str | os.PathLike, batches: Sequence[np.ndarray],
                 input_dtype: str = "float32",
                 timeout: float = CHILD_TIMEOUT) -> list[list[np.ndarray]]:
    """:func:`run_in_process` in a child process: a native crash cannot take this one down.

    Returns:
        per batch, a one-element list with its logits.

    Raises:
        RuntimeCrash: the child died on a signal (the message names it) or ran
            longer than ``timeout`` seconds (then it is killed).
        RuntimeError: the child failed with a Python error; the message is its
            last line (e.g. an ImportError saying what to install).
    """
    arrays = {f"arr_{i}": np.asarray(b) for i, b in enumerate(batches)}
    out = _run_child({"format": format, "input_dtype": input_dtype}, artifact, arrays,
                     timeout)
    return [[out[f"arr_{i}"]] for i in range(len(batches))]


def run_onnx_isolated(artifact: str | os.PathLike, feeds: Sequence[Mapping[str, np.ndarray]],
                      outputs: Sequence[str],
                      timeout: float = CHILD_TIMEOUT) -> list[list[np.ndarray]]:
    """Per feed (input name → array), the ONNX artifact's ``outputs`` in ONNX Runtime, in a
    child process: any contract's inputs and outputs (a language model's tokens, or its
    token and hidden state). Raises as :func:`run_isolated` does."""
    arrays = {f"{i}/{name}": np.asarray(x) for i, feed in enumerate(feeds)
              for name, x in feed.items()}
    out = _run_child({"format": "onnx", "outputs": list(outputs)}, artifact, arrays, timeout)
    return [[out[f"{i}/{name}"] for name in outputs] for i in range(len(feeds))]


def _run_child(job: dict, artifact: str | os.PathLike, arrays: Mapping[str, np.ndarray],
               timeout: float) -> dict[str, np.ndarray]:
    """Run ``job`` on ``arrays`` in a child process (:func:`_child_main`); its reply."""
    artifact = os.fspath(artifact)
    runtime = _RUNTIMES.get(job["format"], job["format"])
    with tempfile.TemporaryDirectory(prefix=".kdarts-run-") as work:
        request, reply = os.path.join(work, "in.npz"), os.path.join(work, "out.npz")
        np.savez(request, **arrays)
        job = json.dumps({**job, "artifact": artifact, "request": request, "reply": reply})
        try:
            done = subprocess.run([sys.executable, "-m", "kdarts.inference", job],
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=timeout, env=_child_env())
        except subprocess.TimeoutExpired:
            raise RuntimeCrash(f"{runtime} did not finish running {artifact} within "
                               f"{timeout:g} s and was stopped", "timeout") from None
        if done.returncode < 0:
            name = _signal_name(-done.returncode)
            raise RuntimeCrash(f"{runtime} crashed with {name} while running {artifact} "
                               "(a native abort in the runtime)", name)
        if done.returncode != 0 or not os.path.exists(reply):
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(lines[-1] if lines else
                               f"{runtime} exited with status {done.returncode}")
        with np.load(reply) as out:
            return {name: out[name] for name in out.files}


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # the child must import this package as the parent does, from a source tree too
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _child_main(job_text: str) -> None:
    job = json.loads(job_text)
    with np.load(job["request"]) as request:
        arrays = {name: request[name] for name in request.files}
    if "outputs" in job:  # named feeds → named outputs (run_onnx_isolated)
        ort = import_onnxruntime()
        session = ort.InferenceSession(job["artifact"], providers=["CPUExecutionProvider"])
        feeds: dict[str, dict] = {}
        for key, x in arrays.items():
            index, name = key.split("/", 1)
            feeds.setdefault(index, {})[name] = x
        np.savez(job["reply"], **{f"{i}/{name}": y for i, feed in feeds.items()
                                  for name, y in zip(job["outputs"],
                                                     session.run(job["outputs"], feed))})
        return
    batches = [arrays[f"arr_{i}"] for i in range(len(arrays))]
    out = run_in_process(job["format"], job["artifact"], batches, job["input_dtype"])
    np.savez(job["reply"], **{f"arr_{i}": outputs[0] for i, outputs in enumerate(out)})


if __name__ == "__main__":
    _child_main(sys.argv[1])
