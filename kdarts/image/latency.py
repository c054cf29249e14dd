"""Latency of the evaluation network in a named runtime, as a cost table (docs/method.md §8).

The parameter and multiply-add tables (:mod:`kdarts.image.costs`) are counted; latency can
only be measured. As FBNet does, each distinct op the network may keep, at its channels,
stride and input shape, is built on its own, converted to the runtime and timed there:
batch 1, one thread, the median of many invocations after a warm-up, all graphs of a
table taking turns. An op is timed behind a node the runtime keeps (``x → x·½ → op``)
and costs that graph's time less the time of ``x → x·½`` alone: the invocation's and a
delegate partition's overheads, which a whole network pays once rather than once per op,
cancel (``_AfterScale``). The fixed part is a whole probe network's measured time
less its kept ops' table costs: the stem, every cell's preprocessing, the node sums and
concatenations, the head and the one invocation. A genotype's predicted latency is then
additive, as D_B (:mod:`kdarts.budget`) needs.

What an additive table cannot see: a runtime computes identical weightless ops on the
same input once (two max pools of one state in one cell run as one), and the ReLUs that
open the convolutions of one input are shared; such a genotype runs faster than
predicted. ``tools/latency_check.py`` measures the error on random genotypes
(docs/benchmarks.md, "Latency table").

Runtimes: ``"litert"`` (the LiteRT interpreter of ``ai-edge-litert``, ``num_threads=1``,
its default XNNPACK delegate) on the flatbuffer :func:`kdarts.export.litert.convert`
writes, and ``"onnx"`` (ONNX Runtime's CPU provider, one intra-op and one inter-op
thread, sequential) on the model :func:`kdarts.export.onnx_file.convert` writes. Both
with a fixed batch of 1.

A table is measured once per machine kind (:func:`kdarts.runtime.machine_kind`), runtime
and its version, converter, and network shape, and cached as JSON in
:func:`default_cache_dir` (``$KDARTS_CACHE/latency``, else
``$XDG_CACHE_HOME/kdarts/latency``, else ``~/.cache/kdarts/latency``).

Example:
    >>> from kdarts.image.genotype import DARTS_V2
    >>> table = latency_table("litert", num_classes=10, image_shape=(8, 8, 3),
    ...                       channels=16, layers=8)
    >>> table.kind, table.of(DARTS_V2)          # predicted milliseconds
    ('latency_ms', ...)
    >>> measure_latency(DARTS_V2, "litert", num_classes=10, image_shape=(8, 8, 3))
    ...
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from typing import Sequence

import keras
import numpy as np

from kdarts.atomic import atomic_write_json
from kdarts.image.costs import CostTable, op_positions, probe_network
from kdarts.image.genotype import CRB_PRIMITIVES, num_edges

#: The runtimes a latency table can be measured in.
RUNTIMES: tuple[str, ...] = ("litert", "onnx")
#: Each runtime's package, and the kdarts extra that installs it.
_PACKAGES = {"litert": ("the LiteRT interpreter (ai-edge-litert)", "litert"),
             "onnx": ("ONNX Runtime (onnxruntime)", "onnx")}
#: Timed invocations per graph (the median is kept), and untimed ones before them.
DEFAULT_REPEATS = 3000
DEFAULT_WARMUP = 100
#: Turns the graphs of one measurement take (:func:`time_models`).
DEFAULT_ROUNDS = 30
#: What a cache file's layout is; a file of another version is measured again.
CACHE_VERSION = 1
KIND = "latency_ms"


def check_runtime(runtime: str):
    """The runtime's Python module (``ai_edge_litert.interpreter`` or ``onnxruntime``).

    Raises:
        ValueError: ``runtime`` is not one of :data:`RUNTIMES` (the message names them).
        ImportError: its package is not installed; one line naming the pip extra.
    """
    from kdarts import inference

    if runtime not in RUNTIMES:
        raise ValueError(f"unknown latency runtime {runtime!r}; valid runtimes: "
                         f"{', '.join(RUNTIMES)}")
    try:
        return (inference.import_litert if runtime == "litert"
                else inference.import_onnxruntime)()
    except ImportError:
        package, extra = _PACKAGES[runtime]
        raise ImportError(f"latency in {runtime} needs {package}, which is not installed: "
                          f'pip install "kdarts[{extra}]"') from None


def runtime_versions(runtime: str) -> dict[str, str]:
    """The versions a measurement depends on: the runtime's and its converter's."""
    import tensorflow as tf

    check_runtime(runtime)
    if runtime == "litert":
        import ai_edge_litert

        return {"ai_edge_litert": ai_edge_litert.__version__, "tensorflow": tf.__version__}
    import onnxruntime
    import tf2onnx

    return {"onnxruntime": onnxruntime.__version__, "tf2onnx": tf2onnx.__version__,
            "tensorflow": tf.__version__}


def convert(layer, input_shape: Sequence[int], runtime: str) -> bytes:
    """The serialized model of ``layer``'s inference on one input of ``input_shape`` (batch
    included, fixed) in ``runtime``: a LiteRT flatbuffer or an ONNX model.

    The same conversion as ``kdarts export``'s (through a SavedModel for LiteRT, tf2onnx
    at the default opset for ONNX), with the batch fixed: a fixed shape lets the
    converter fold shape arithmetic, so the graph holds the kernels alone.
    """
    from kdarts.export import DEFAULT_OPSET
    from kdarts.export import litert, onnx_file
    from kdarts.export.artifact import OUTPUT_NAME, signature

    check_runtime(runtime)
    input_shape = tuple(int(d) for d in input_shape)
    if runtime == "litert":
        with tempfile.TemporaryDirectory(prefix=".kdarts-latency-") as work:
            return litert.convert(layer, os.path.join(work, "model"), input_shape[1:],
                                  batch=input_shape[0])
    import tensorflow as tf

    spec = signature(input_shape[1:], batch=input_shape[0])
    fn = tf.function(lambda images: {OUTPUT_NAME: layer(images, training=False)},
                     input_signature=[spec])
    return onnx_file.convert(fn, [spec], DEFAULT_OPSET).SerializeToString()


def _invoker(module, runtime: str, model: bytes, input_shape: Sequence[int]):
    """A call that runs ``model`` once on one thread, its input set once (values in
    [0, 1)); the runtime's objects live in its closure."""
    x = np.random.default_rng(0).random(tuple(input_shape), dtype=np.float32)
    if runtime == "litert":
        interpreter = module.Interpreter(model_content=model, num_threads=1)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        # invoke() alone: the input stays in place, outputs are not copied out
        return interpreter.invoke
    options = module.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = module.ExecutionMode.ORT_SEQUENTIAL
    session = module.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    binding = session.io_binding()
    # bound once, so each run neither converts the input nor allocates its output
    binding.bind_cpu_input(session.get_inputs()[0].name, x)
    binding.bind_output(session.get_outputs()[0].name, "cpu")
    return lambda: session.run_with_iobinding(binding)


def time_models(runtime: str, models: Sequence[tuple[bytes, Sequence[int]]],
                repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP,
                rounds: int = DEFAULT_ROUNDS) -> list[float]:
    """Median milliseconds of one invocation of each serialized model (:func:`convert`),
    given with its input shape, in ``runtime`` on one thread. Every measurement of this
    module comes through here.

    After ``warmup`` untimed invocations each, the models take turns: ``rounds`` times,
    each is invoked ``repeats // rounds`` times in a row, each invocation timed. A
    change in the machine's load while they are measured (other jobs on a shared CPU)
    then reaches every model alike instead of skewing the ones timed at that moment.
    """
    module = check_runtime(runtime)
    calls = [_invoker(module, runtime, model, shape) for model, shape in models]
    for call in calls:
        for _ in range(warmup):
            call()
    rounds = max(1, min(rounds, repeats))
    times = [np.empty(rounds * (repeats // rounds)) for _ in calls]
    for r in range(rounds):
        for i, call in enumerate(calls):
            for k in range(r * (repeats // rounds), (r + 1) * (repeats // rounds)):
                start = time.perf_counter_ns()
                call()
                times[i][k] = time.perf_counter_ns() - start
    return [float(np.median(t)) / 1e6 for t in times]


def time_model(runtime: str, model: bytes, input_shape: Sequence[int],
               repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP) -> float:
    """Median milliseconds of one invocation of one serialized ``model``
    (:func:`time_models`)."""
    return time_models(runtime, [(model, input_shape)], repeats, warmup)[0]


def measure_latency(network, runtime: str = "litert", *, num_classes: int | None = None,
                    image_shape: Sequence[int] | None = None, channels: int = 16,
                    layers: int = 8, stem_multiplier: int = 3,
                    repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP) -> float:
    """Measured milliseconds of one batch-1 inference of a whole network in ``runtime``.

    Args:
        network: a built Keras model (an :class:`~kdarts.image.EvalNetwork`), or a genotype
            (:class:`~kdarts.image.genotype.Genotype`, its dict, a name or a file) whose
            evaluation network is built here, without the auxiliary head (inference does
            not run it).
        runtime: one of :data:`RUNTIMES`.
        num_classes, image_shape, channels, layers, stem_multiplier: the network to build
            from a genotype (``image_shape``: H, W, C); a built model's own are used.
        repeats, warmup: timed and untimed invocations.

    Example:
        >>> measure_latency("DARTS_V2", "litert", num_classes=10, image_shape=(8, 8, 3))
        ...
    """
    check_runtime(runtime)
    if not isinstance(network, keras.Model):
        from kdarts.image.model import EvalNetwork

        if num_classes is None or image_shape is None:
            raise ValueError("measure_latency: a genotype needs num_classes and image_shape "
                             "to build its network")
        network = EvalNetwork(network, num_classes, channels=channels, layers=layers,
                              auxiliary=False, stem_multiplier=stem_multiplier)
        network.build((None, *image_shape))
    from kdarts.export.artifact import image_shape as built_shape

    shape = (1, *built_shape(network))
    return time_model(runtime, convert(network, shape, runtime), shape, repeats, warmup)


def default_cache_dir() -> str:
    """Where latency tables are cached: ``$KDARTS_CACHE/latency`` if ``KDARTS_CACHE`` is
    set (kdarts's cache folder), else ``$XDG_CACHE_HOME/kdarts/latency``, else
    ``~/.cache/kdarts/latency``."""
    root = os.environ.get("KDARTS_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                               ".cache")
        root = os.path.join(xdg, "kdarts")
    return os.path.join(root, "latency")


def cache_key(runtime: str, num_classes: int, image_shape: Sequence[int], channels: int,
              layers: int, primitives: Sequence[str] = CRB_PRIMITIVES, steps: int = 4,
              stem_multiplier: int = 3) -> dict:
    """What a measured table depends on: the machine kind, the runtime and the versions of
    it and its converter, and the network's shape and candidate ops."""
    from kdarts.runtime import machine_kind

    return {"machine": machine_kind(), "runtime": runtime,
            "versions": runtime_versions(runtime), "num_classes": int(num_classes),
            "image_shape": [int(d) for d in image_shape], "channels": int(channels),
            "layers": int(layers), "steps": int(steps), "stem_multiplier": int(stem_multiplier),
            "primitives": list(primitives)}


def cache_path(key: dict, cache_dir: str | os.PathLike | None = None) -> str:
    """The cache file of a table's ``key`` (:func:`cache_key`): one file per key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
    return os.path.join(os.fspath(cache_dir or default_cache_dir()),
                        f"{key['runtime']}-{digest[:16]}.json")


def _table_of(record: dict, key: dict) -> CostTable:
    """The table a cache record holds; ValueError (or KeyError, TypeError) if it is not a
    whole record of this key."""
    if record.get("version") != CACHE_VERSION or record.get("kind") != KIND:
        raise ValueError(f"not a version-{CACHE_VERSION} latency table")
    if record.get("key") != key:
        raise ValueError("its key differs from the table's")
    primitives = tuple(key["primitives"])
    shape = (num_edges(key["steps"]), len(primitives))
    per_op = {t: np.asarray(record["per_op"][t], dtype=np.float64) for t in ("normal", "reduce")}
    fixed = float(record["fixed"])
    if any(a.shape != shape for a in per_op.values()):
        raise ValueError(f"its tables are not {shape}")
    if not all(np.all(np.isfinite(a)) for a in per_op.values()) or not np.isfinite(fixed):
        raise ValueError("it holds a NaN or infinite cost")
    return CostTable(KIND, per_op, fixed, primitives)


def _read_cache(path: str, key: dict) -> CostTable | None:
    """The cached table at ``path``; None if there is none, or (with a one-line warning)
    if it cannot be read as this key's table."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        return _table_of(record, key)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        warnings.warn(f"latency table cache {path} is unreadable ({reason}); measuring "
                      "again", RuntimeWarning, stacklevel=3)
        return None


class _AfterScale(keras.layers.Layer):
    """The graph an op is timed in: ``x → x·½ → op``, or ``x → x·½`` alone (the baseline).

    A runtime pays a cost per graph it runs and per partition of it a delegate (LiteRT's
    XNNPACK) runs, besides each node's work; a whole network pays those once (or once per
    partition), not once per op. Timed alone, an op would carry them all, and a cheap op
    (a pool) is mostly that overhead. Behind a node the runtime keeps (a multiplication,
    cheap and never folded away) in both graphs, the difference is the op's work inside a
    partition, as in a whole network.
    """

    def __init__(self, op=None, **kwargs):
        super().__init__(**{"name": "after_scale", **kwargs})
        self.op = op

    def call(self, x, training=None):
        x = x * 0.5
        return x if self.op is None else self.op(x, training=training)


def _measure(key: dict, repeats: int, warmup: int, progress: bool) -> dict:
    """Measure a table: every distinct op key and the baseline graph of each input shape
    (:class:`_AfterScale`), and the probe network, all timed in turns
    (:func:`time_models`). Returns the cache record."""
    from kdarts.image.operations import make_op

    runtime, primitives, steps = key["runtime"], tuple(key["primitives"]), key["steps"]
    probe, network = probe_network(key["num_classes"], key["image_shape"], key["channels"],
                                   key["layers"], primitives, steps, key["stem_multiplier"])
    positions = list(op_positions(network, primitives, steps))
    # the identity converts to no op at all: the baseline graph itself, costing 0
    timed = [k for k in dict.fromkeys(k for *_, k in positions)
             if not (k[0] == "skip_connect" and k[2] == 1)]
    shapes = list(dict.fromkeys(at for *_, at in timed))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(timed) + len(shapes) + 2, desc=f"latency table ({runtime})",
                   unit="graph")
    models = []
    for name, c, stride, at in [(None, None, None, at) for at in shapes] + timed:
        op = None
        if name is not None:
            op = make_op(name, c, strides=stride, affine=True, search=False)
            op.build(at)
        models.append((convert(_AfterScale(op), at, runtime), at))
        if bar is not None:
            bar.update()
    network_shape = (1, *key["image_shape"])
    models.append((convert(network, network_shape, runtime), network_shape))
    if bar is not None:
        bar.update()
    measured = time_models(runtime, models, repeats, warmup)
    if bar is not None:
        bar.update()
        bar.close()
    baseline = dict(zip(shapes, measured[:len(shapes)]))
    op_ms = {k: 0.0 for *_, k in positions}
    op_ms.update({k: ms - baseline[k[3]]
                  for k, ms in zip(timed, measured[len(shapes):len(shapes) + len(timed)])})
    probe_ms = measured[-1]
    per_op = {t: np.zeros((num_edges(steps), len(primitives))) for t in ("normal", "reduce")}
    for t, row, j, k in positions:
        per_op[t][row, j] += op_ms[k]
    fixed = probe_ms - CostTable(KIND, per_op, 0.0, primitives).of(probe)
    return {
        "version": CACHE_VERSION, "kind": KIND, "key": key,
        "per_op": {t: a.tolist() for t, a in per_op.items()}, "fixed": fixed,
        "probe": {"genotype": probe.to_dict(), "measured_ms": probe_ms},
        "ops": [{"op": n, "channels": c, "stride": s, "input_shape": list(at), "ms": ms}
                for (n, c, s, at), ms in op_ms.items()],
        "baseline_ms": [{"input_shape": list(at), "ms": ms} for at, ms in baseline.items()],
        "repeats": repeats, "warmup": warmup,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def latency_table(runtime: str, num_classes: int, image_shape: Sequence[int], channels: int,
                  layers: int, primitives: Sequence[str] = CRB_PRIMITIVES, steps: int = 4,
                  stem_multiplier: int = 3, cache_dir: str | os.PathLike | None = None,
                  repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP,
                  progress: bool = False) -> CostTable:
    """The latency table (milliseconds) of the evaluation network ``kdarts train`` builds,
    in ``runtime`` on this machine: measured once, then read from the cache.

    Each (cell type, edge, op) costs the sum, over the cells of that type, of its op's
    measured time behind a kept node less that node's alone, at the op's input; the
    fixed part is a probe network's measured time less its ops' costs. The fixed part is
    what the measurement says, not clamped: it can be negative where ops on their own
    cost more than inside a whole network (a runtime fuses and merges a whole graph's
    ops). An op's cost is not clamped either; the normal cell's identity, which converts
    to no op at all, costs 0.

    Args:
        runtime: one of :data:`RUNTIMES`.
        num_classes, image_shape, channels, layers, stem_multiplier: the evaluation
            network's (image_shape is H, W, channels without the batch).
        primitives: the ops a search may keep (``none`` costs nothing).
        steps: intermediate nodes per cell.
        cache_dir: where tables are cached (default :func:`default_cache_dir`).
        repeats, warmup: timed and untimed invocations per measured graph.
        progress: show a progress bar while measuring.

    Returns:
        a :class:`~kdarts.image.costs.CostTable` of kind ``"latency_ms"``.

    Raises:
        ValueError: an unknown runtime (the message names the valid ones).
        ImportError: the runtime's package is missing (the message names the pip extra).

    Example:
        >>> table = latency_table("litert", 10, (8, 8, 3), channels=16, layers=8)
        >>> table.of(genotype)   # predicted milliseconds, batch 1, one thread
    """
    check_runtime(runtime)
    key = cache_key(runtime, num_classes, image_shape, channels, layers, primitives, steps,
                    stem_multiplier)
    path = cache_path(key, cache_dir)
    table = _read_cache(path, key)
    if table is not None:
        return table
    record = _measure(key, repeats, warmup, progress)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_json(path, record)
    return _table_of(record, key)


__all__ = ["DEFAULT_REPEATS", "DEFAULT_ROUNDS", "DEFAULT_WARMUP", "RUNTIMES", "cache_key",
           "cache_path", "check_runtime", "convert", "default_cache_dir", "latency_table",
           "measure_latency", "runtime_versions", "time_model", "time_models"]
