"""Inference latency: ONNX Runtime vs TensorFlow for a small evaluation network.

Builds an :class:`kdarts.eval.EvalNetwork` (default DARTS_V2, C=8, 5 cells,
32x32x3 input, untrained weights), exports it with :func:`kdarts.export.export`
to ONNX and SavedModel in a temporary folder (removed afterwards), and times,
at each batch size, the median over ``--runs`` calls after ``--warmup`` calls:

* ``onnxruntime``: ``InferenceSession.run`` (CPU provider, default threads);
* ``tf.function``: the Keras model called directly (``training=False``) in a
  ``tf.function`` with a fixed input signature (no ``predict`` overhead);
* ``saved_model``: the reloaded SavedModel's ``serve`` function.

Every timed call includes getting the logits back as a NumPy array. The three
are interleaved call by call (fair on a shared machine); medians resist
outliers, but on a busy 2-core box the absolute numbers still move.

Usage:
    python tools/bench_inference.py [--runs 100] [--batch-sizes 1 64]
"""

from __future__ import annotations

import argparse
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genotype", default="DARTS_V2")
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import tensorflow as tf

    from kdarts.eval import EvalNetwork
    from kdarts.export import export

    shape = (args.image_size, args.image_size, 3)
    model = EvalNetwork(args.genotype, num_classes=10, channels=args.channels,
                        layers=args.layers, seed=0)
    model.build((None,) + shape)
    spec = tf.TensorSpec((None,) + shape, tf.float32)
    direct = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    rows = []
    with tempfile.TemporaryDirectory(prefix="kdarts-bench-") as folder:
        onnx_path = export(model, f"{folder}/net.onnx", format="onnx").path
        sm_path = export(model, f"{folder}/net_saved_model", format="saved_model").path
        session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        loaded = tf.saved_model.load(sm_path)

        rng = np.random.default_rng(0)
        for batch in args.batch_sizes:
            x = rng.standard_normal((batch,) + shape).astype("float32")
            x_tf = tf.constant(x)
            runs = max(10, args.runs if batch <= 8 else args.runs // 4)
            timings = median_ms({
                "onnxruntime": lambda: session.run(["logits"], {"images": x})[0],
                "tf.function": lambda: direct(x_tf).numpy(),
                "saved_model": lambda: loaded.serve(x_tf).numpy(),
            }, runs, args.warmup)
            rows.append((batch, runs, timings))

    print(f"{args.genotype}, C={args.channels}, {args.layers} cells, input {shape}, "
          f"{model.parameter_count():,} parameters; median latency in ms")
    header = (f"{'batch':>5} {'runs':>5} {'onnxruntime':>12} {'tf.function':>12} "
              f"{'saved_model':>12} {'tf.fn/ort':>10} {'sm/ort':>8}")
    print(header)
    print("-" * len(header))
    for batch, runs, t in rows:
        print(f"{batch:>5} {runs:>5} {t['onnxruntime']:>12.2f} {t['tf.function']:>12.2f} "
              f"{t['saved_model']:>12.2f} {t['tf.function'] / t['onnxruntime']:>9.2f}x "
              f"{t['saved_model'] / t['onnxruntime']:>7.2f}x")


if __name__ == "__main__":
    main()
