"""Inference comparison for one trained network: Keras, SavedModel, ONNX Runtime, LiteRT.

Takes a ``model.keras`` written by ``kdarts train``, exports it with
:func:`kdarts.image.export.export` (each export verified as usual) to SavedModel,
ONNX and LiteRT with every quantisation (``none``, ``float16``, ``dynamic``,
``int8`` calibrated on 200 training images) in a temporary folder (removed
afterwards), and reports for each:

* the artifact's size on disk;
* the top-1 accuracy on the whole test split, fed the images as stored
  (float32 pixel values 0..255; uint8 for int8 LiteRT);
* the median latency at each batch size over ``--runs`` calls after
  ``--warmup`` calls, the candidates interleaved call by call (fair on a
  shared machine). Every timed call includes getting the logits back as a
  NumPy array.

Runtimes: Keras is the model called in a ``tf.function`` with a fixed input
signature (no ``predict`` overhead); SavedModel is the reloaded ``serve``
function; ONNX Runtime's CPU provider; LiteRT's interpreter (``ai-edge-litert``,
XNNPACK), one interpreter per batch size, input resized once. Every runtime
gets ``--threads`` threads per kernel (TensorFlow's intra-op threads, ONNX
Runtime's and LiteRT's threads; default 1, which is fastest for small
networks on a small shared CPU; 0 leaves each runtime's default).

The test split is the dataset in the training run's ``run.json`` (beside the
model), or ``--data``.

Usage:
    python tools/bench_inference.py runs/train/model.keras [--runs 100] [--batch-sizes 1 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def median_ms(fns: dict, runs: int, warmup: int) -> dict:
    """Median wall time in ms of each ``fns[name]()``.

    The candidates are interleaved call by call, so a load change on a
    shared machine hits them all alike instead of skewing one.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def size_of(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
                   for f in files)
    return os.path.getsize(path)


def litert_call(path: str, batch_shape: tuple, threads: int):
    """A function running a ``.tflite`` model on one batch (input resized once)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], batch_shape)
    interpreter.allocate_tensors()
    dtype = inp["dtype"]

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(inp["index"], x.astype(dtype, copy=False))
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return run


def accuracy(predict, images: np.ndarray, labels: np.ndarray, batch: int = 64) -> float:
    """Top-1 accuracy of ``predict(batch) -> logits`` over the images (last batch padded)."""
    correct = 0
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        n = len(x)
        if n < batch:  # fixed-shape runners: pad, then drop the padding's outputs
            x = np.concatenate([x, np.repeat(x[-1:], batch - n, axis=0)])
        correct += int(np.sum(np.argmax(predict(x)[:n], -1) == labels[start:start + n]))
    return correct / len(images)


def dataset_of(model_path: str, data: str | None) -> tuple[str, list | None]:
    """The test data: ``--data``, else the training run's dataset (its run.json)."""
    run_json = os.path.join(os.path.dirname(os.path.abspath(model_path)), "run.json")
    if data is None and os.path.exists(run_json):
        with open(run_json, encoding="utf-8") as f:
            args = json.load(f)["args"]
        return args["dataset"], args.get("image_size")
    return data or "kdarts_digits", None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model.keras written by kdarts train")
    parser.add_argument("--data", default=None,
                        help="dataset for accuracy and int8 calibration [default: the "
                             "training run's]")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import kdarts  # before TensorFlow loads: quiets its C++ logs

    if args.threads:
        kdarts.set_cpu_threads(intra_op=args.threads)
    import onnxruntime as ort
    import tensorflow as tf

    from kdarts.data.sources import open_source, sample_images
    from kdarts.export import load_model
    from kdarts.image.export import export_model

    model = load_model(args.model)
    spec, image_size = dataset_of(args.model, args.data)
    source = open_source(spec, image_size=image_size)
    images = sample_images(source, source.test, len(source.test))
    labels = np.asarray(source.test.labels)
    representative = sample_images(source, source.train, 200, seed=0)
    shape = tuple(source.info.image_shape)
    direct = tf.function(lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec((None,) + shape, tf.float32)])

    rows = {}  # name → (size in bytes, accuracy, {batch: fn})
    with tempfile.TemporaryDirectory(prefix="kdarts-bench-") as folder:
        t0 = time.perf_counter()
        paths = {"SavedModel": export_model(model, f"{folder}/sm", "saved_model").path,
                 "ONNX Runtime": export_model(model, f"{folder}/m.onnx", "onnx").path}
        for quantize in ("none", "float16", "dynamic", "int8"):
            paths[f"LiteRT {quantize}"] = export_model(
                model, f"{folder}/m_{quantize}.tflite", "tflite", quantize=quantize,
                representative_data=representative if quantize == "int8" else None).path
        print(f"exported and verified {len(paths)} artifacts in "
              f"{time.perf_counter() - t0:.0f} s")
        keras_size = size_of(args.model)
        loaded = tf.saved_model.load(paths["SavedModel"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(paths["ONNX Runtime"], options,
                                       providers=["CPUExecutionProvider"])
        callers = {
            "Keras (tf.function)": (keras_size, lambda b: lambda x: direct(x).numpy()),
            "SavedModel": (size_of(paths["SavedModel"]),
                           lambda b: lambda x: loaded.serve(x).numpy()),
            "ONNX Runtime": (size_of(paths["ONNX Runtime"]),
                             lambda b: lambda x: session.run(["logits"], {"images": x})[0]),
        }
        for quantize in ("none", "float16", "dynamic", "int8"):
            path = paths[f"LiteRT {quantize}"]
            callers[f"LiteRT {quantize}"] = (size_of(path), lambda b, p=path: litert_call(
                p, (b,) + shape, args.threads or None))
        for name, (size, make) in callers.items():
            run64 = make(64)
            rows[name] = [size, accuracy(run64, images, labels), {}]
        rng = np.random.default_rng(0)
        for batch in args.batch_sizes:
            x = images[rng.integers(0, len(images), batch)]
            x_tf = tf.constant(x)
            runs = max(10, args.runs if batch <= 8 else args.runs // 4)
            fns = {}
            for name, (_, make) in callers.items():
                fn = make(batch)
                feed = x_tf if name in ("Keras (tf.function)", "SavedModel") else x
                fns[name] = lambda fn=fn, feed=feed: fn(feed)
            for name, ms in median_ms(fns, runs, args.warmup).items():
                rows[name][2][batch] = ms

    params = model.parameter_count() if hasattr(model, "parameter_count") else model.count_params()
    print(f"{os.path.basename(os.path.dirname(os.path.abspath(args.model)))}: {params:,} "
          f"parameters, input {'x'.join(map(str, shape))}, {spec if not os.path.isabs(spec) else os.path.basename(spec)} "
          f"test split ({len(images)} images); median latency, {os.cpu_count()} CPU cores, "
          f"{args.threads or 'default'} thread(s) per kernel")
    batches = " | ".join(f"batch {b}" for b in args.batch_sizes)
    print(f"\n| runtime | size | test accuracy | {batches} |")
    print("|---|---|---|" + "---|" * len(args.batch_sizes))
    for name, (size, acc, times) in rows.items():
        cells = " | ".join(f"{times[b]:.2f} ms" for b in args.batch_sizes)
        print(f"| {name} | {size / 1e6:.2f} MB | {100 * acc:.2f} % | {cells} |")


if __name__ == "__main__":
    main()
