"""Process-wide TensorFlow settings that make the search fast on a CPU.

A search step is tens of thousands of small kernels. TensorFlow's default gives
every kernel all the cores (intra-op threads) *and* runs several kernels at once
(inter-op threads), so on a small CPU the threads fight over the cores. One
thread per kernel, with kernels running side by side, is faster (figures in
``docs/benchmarks.md``, measured with ``tools/bench_search.py --intra-op``).

Like any TensorFlow threading setting, it must be made before TensorFlow runs its
first op; the ``kdarts`` command line does it at start-up.

Example:
    >>> import kdarts
    >>> kdarts.set_cpu_threads(intra_op=1)   # first thing, before any model is built
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import tempfile

from kdarts import compat


#: What TensorFlow's native libraries print to stderr while they load, whatever
#: TF_CPP_MIN_LOG_LEVEL says: absl's notice, then INFO lines such as "oneDNN custom
#: operations are on" (Intel CPUs) or the CPU-feature note with its continuation line.
_LOAD_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|"
                         r"[IW]\d{4} |To enable the following instructions)")

#: TensorFlow's error line at its first float16 op where oneDNN is on (TensorFlow's default
#: on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX) but has no float16 kernels for
#: the CPU: those need AVX512_FP16 or AMX_FP16 (or AVX-NE-CONVERT), not just AVX-512. It
#: means float16 ops run on TensorFlow's own (Eigen) kernels, as on any other CPU.
_FLOAT16_NOTICE = re.compile(r"^E\d{4} .*oneDNN supports DT_HALF only on platforms with")


def _quiet_wanted() -> bool:
    """Whether TensorFlow's notices are to be kept off stderr: unless TF_CPP_MIN_LOG_LEVEL
    asks for everything (``0``). ``import kdarts`` sets it to 2 unless it is already set."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() not in ("", "0")


@contextlib.contextmanager
def _stderr_without(pattern: re.Pattern):
    """Within it, lines written to file descriptor 2 (by Python or native code) go to a
    temporary file; on exit every line not matching ``pattern`` is written back."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(True)
                    if not pattern.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tensorflow_quietly():
    """Import TensorFlow with its load-time INFO lines filtered from stderr; returns it.

    The native libraries write them to file descriptor 2 before any log setting applies,
    so stderr is sent to a temporary file while they load and every other line is
    written back. A no-op once TensorFlow is imported; a plain import if
    TF_CPP_MIN_LOG_LEVEL is ``0`` (all logs wanted).
    """
    import sys

    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if not _quiet_wanted():
        import tensorflow

        return tensorflow
    with _stderr_without(_LOAD_NOISE):
        import tensorflow
    return tensorflow


#: Calls made right after the process's first ``import tensorflow`` finishes, in order
#: (:func:`set_cpu_threads_on_import`); emptied as they run.
_AFTER_IMPORT: list = []


class _QuietTensorFlowImport:
    """A ``sys.meta_path`` finder for the first import of ``tensorflow`` (by a kdarts
    module, by Keras, or by the user after ``import kdarts``): it finds TensorFlow as
    Python would and runs its loading with the load-time lines filtered, as
    :func:`import_tensorflow_quietly` does, then makes the calls in :data:`_AFTER_IMPORT`;
    then it leaves ``sys.meta_path``."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        import importlib.util
        import sys

        if name != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(cls)
        spec = importlib.util.find_spec(name)  # the other finders' answer
        quiet = _quiet_wanted()
        if spec is None or spec.loader is None or not (quiet or _AFTER_IMPORT):
            return spec
        loader, exec_module = spec.loader, spec.loader.exec_module

        def exec_quietly(module):
            try:
                with _stderr_without(_LOAD_NOISE) if quiet else contextlib.nullcontext():
                    exec_module(module)
            finally:
                with contextlib.suppress(AttributeError):
                    del loader.exec_module  # the loader's own method again
            while _AFTER_IMPORT:  # TensorFlow is whole (and in sys.modules) by now
                _AFTER_IMPORT.pop(0)()

        loader.exec_module = exec_quietly
        return spec


def quiet_tensorflow_import() -> None:
    """Make the process's first ``import tensorflow`` quiet (``_QuietTensorFlowImport``);
    ``import kdarts`` calls it. Nothing to do once TensorFlow is imported."""
    import sys

    if "tensorflow" not in sys.modules and _QuietTensorFlowImport not in sys.meta_path:
        sys.meta_path.insert(0, _QuietTensorFlowImport)


def set_cpu_threads_on_import(intra_op: int = 1, inter_op: int = 0) -> None:
    """:func:`set_cpu_threads` now if TensorFlow is imported, else right after the
    process's first ``import tensorflow``, whoever makes it; TensorFlow is not imported
    here, so a process (or a test session) that never needs it never loads it.

    Raises:
        ValueError: a negative count (checked now, not at the import).
        RuntimeError: TensorFlow is imported and already runs with other threads.
    """
    import sys

    for name, value in (("intra_op", intra_op), ("inter_op", inter_op)):
        if int(value) < 0:
            raise ValueError(f"set_cpu_threads_on_import: {name} must be >= 0, got {value}")
    if "tensorflow" in sys.modules:
        set_cpu_threads(intra_op, inter_op)
        return
    _AFTER_IMPORT.append(functools.partial(set_cpu_threads, intra_op, inter_op))
    quiet_tensorflow_import()


_float16_notice_done = False


def silence_float16_notice() -> None:
    """Run a first float16 op with TensorFlow's once-per-process float16 notice
    (``_FLOAT16_NOTICE``) filtered from stderr, so it is not printed later.

    Called when a network is built with a float16 policy: TensorFlow's threads, logical
    devices and strategy are settled by then. Nothing is filtered if
    TF_CPP_MIN_LOG_LEVEL is ``0``.
    """
    global _float16_notice_done
    if _float16_notice_done or not _quiet_wanted():
        return
    _float16_notice_done = True
    tf = import_tensorflow_quietly()
    with _stderr_without(_FLOAT16_NOTICE):
        tf.zeros((), tf.float16)


def set_cpu_threads(intra_op: int = 1, inter_op: int = 0) -> None:
    """Set TensorFlow's threads per kernel (``intra_op``) and kernels in flight (``inter_op``).

    Args:
        intra_op: threads one kernel may use; 1 suits the search's many small kernels.
            0 leaves TensorFlow's default (all cores).
        inter_op: kernels run at once; 0 is TensorFlow's default (one per core).

    Raises:
        ValueError: a negative count.
        RuntimeError: TensorFlow has already run ops with other settings (it fixes its
            thread pools on first use); call this first thing in the process.
    """
    tf = import_tensorflow_quietly()

    for name, value in (("intra_op", intra_op), ("inter_op", inter_op)):
        if int(value) < 0:
            raise ValueError(f"set_cpu_threads: {name} must be >= 0, got {value}")
    threading = tf.config.threading
    if (threading.get_intra_op_parallelism_threads() == int(intra_op)
            and threading.get_inter_op_parallelism_threads() == int(inter_op)):
        return  # already so (TF's setters refuse even a no-op change once running)
    try:
        threading.set_intra_op_parallelism_threads(int(intra_op))
        threading.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError:
        raise RuntimeError(
            f"set_cpu_threads(intra_op={intra_op}, inter_op={inter_op}): TensorFlow is "
            "already running with intra_op="
            f"{threading.get_intra_op_parallelism_threads()}, inter_op="
            f"{threading.get_inter_op_parallelism_threads()} and cannot change its threads "
            "now; call it first thing in the process, before any model or tensor is "
            "created") from None


#: Graph-optimiser (grappler) settings for one very large step graph, such as the search
#: step's tens of thousands of nodes. Its first call spends most of its time optimising;
#: these shorten that warm-up at the same step time (figures in ``docs/benchmarks.md``,
#: measured with ``tools/bench_search.py --grappler``). They leave out passes that change no
#: arithmetic here: the second round of every pass (``meta_optimizer_iterations``: one),
#: the MLIR ``tfg`` pass, and the memory optimiser (its swapping and recomputation
#: heuristics are meant for GPU memory).
LEAN_GRAPH_REWRITES = {"meta_optimizer_iterations": 1, "disable_tfg_optimizer": True,
                       "memory_optimization": 1}


@functools.lru_cache(maxsize=8)
def _lean_options(serialized: bytes, executor_type):
    """The call options ``serialized`` with :data:`LEAN_GRAPH_REWRITES`, built once (a
    train function enters :func:`lean_graph_optimization` on every step)."""
    from tensorflow.core.protobuf import config_pb2

    config = config_pb2.ConfigProto.FromString(serialized)
    rewrites = config.graph_options.rewrite_options
    for field, value in LEAN_GRAPH_REWRITES.items():
        setattr(rewrites, field, value)
    return compat.make_function_call_options(executor_type, config)


@contextlib.contextmanager
def lean_graph_optimization():
    """Within it, ``tf.function`` calls on this thread are optimised with
    :data:`LEAN_GRAPH_REWRITES` added to TensorFlow's configuration, and traced under
    :func:`kdarts.compat.lean_tracing` (ops keep no Python stack trace: a runtime error
    in the graph names the op, not the line that made it).

    A function is optimised on its first call, with the options of that call, so every
    call of one function should be made alike (:func:`with_lean_graph_optimization`).
    TensorFlow sets these fields through no public API: they go into the per-thread
    call options that ``tf.config.optimizer.set_experimental_options`` fills.

    Example:
        >>> with lean_graph_optimization():
        ...     logs = step(iterator)   # doctest: +SKIP
    """
    saved = compat.function_call_options()
    compat.set_function_call_options(_lean_options(saved.config_proto_serialized,
                                                   saved.executor_type))
    try:
        with compat.lean_tracing():  # a first call traces: the same graph, sooner
            yield
    finally:
        compat.set_function_call_options(saved)


def with_lean_graph_optimization(fn):
    """``fn`` (a ``tf.function``) called under :func:`lean_graph_optimization` every time."""

    @functools.wraps(fn, updated=())
    def call(*args, **kwargs):
        with lean_graph_optimization():
            return fn(*args, **kwargs)

    call.lean_graph_optimization = True  # so a caller (or a test) can tell
    return call


class LeanTrainFunction:
    """Mixin for a ``keras.Model`` whose step is one large graph: its train function is
    Keras's on one device, the model's ``_replicated_train_function()`` under several
    replicas, and either is always called under :func:`lean_graph_optimization`.

    Example:
        >>> class Net(LeanTrainFunction, keras.Model):   # doctest: +SKIP
        ...     def _replicated_train_function(self): ...
    """

    def make_train_function(self, force: bool = False):
        if self.train_function is not None and not force:
            return self.train_function
        if self.distribute_strategy.num_replicas_in_sync == 1:
            super().make_train_function(force)  # Keras's sets train_function, returns None
            step = self.train_function
        else:
            step = self._replicated_train_function()
        self.train_function = with_lean_graph_optimization(step)
        return self.train_function


#: ``--strategy`` names: TensorFlow's own distribution strategies.
STRATEGIES = ("default", "mirrored", "multiworker")


def split_cpu(devices: int) -> None:
    """Present the CPU as ``devices`` logical devices, for MirroredStrategy on one machine.

    Like the thread settings, this must come before TensorFlow runs its first op. On a
    real multi-GPU machine leave it at 1: ``mirrored`` then uses the GPUs.

    Raises:
        ValueError: ``devices`` < 1.
        RuntimeError: TensorFlow is already running with another device layout.
    """
    import tensorflow as tf

    if int(devices) < 1:
        raise ValueError(f"split_cpu: devices must be >= 1, got {devices}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu)  # does not start TF
    if len(configured or [None]) == int(devices):
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * int(devices))
    except RuntimeError:
        raise RuntimeError(f"split_cpu({devices}): TensorFlow is already running; split the "
                           "CPU first thing in the process") from None


def make_strategy(name: str):
    """TensorFlow's distribution strategy called ``name`` (one of :data:`STRATEGIES`).

    * ``default``: the one device TensorFlow picks.
    * ``mirrored``: ``MirroredStrategy`` over every GPU, or, without GPUs, every
      logical CPU device (:func:`split_cpu`).
    * ``multiworker``: ``MultiWorkerMirroredStrategy``; the cluster and this process's
      task come from the ``TF_CONFIG`` environment variable. Create it first thing:
      TensorFlow requires it before any other op.

    Raises:
        ValueError: an unknown name, or ``TF_CONFIG`` missing or malformed.
    """
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = ([d.name for d in tf.config.list_logical_devices("GPU")]
                   or [d.name for d in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy(devices)
    if name == "multiworker":
        read_tf_config()  # a clear error before TensorFlow's own
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")


def read_tf_config() -> dict:
    """``TF_CONFIG`` (the cluster and this process's task), checked.

    Raises:
        ValueError: missing, not JSON, or without cluster.worker and task.type/index.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError("--strategy multiworker reads the cluster from TF_CONFIG, which "
                         "is not set (e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
                         "[\"host1:port\", \"host2:port\"]}, \"task\": {\"type\": "
                         "\"worker\", \"index\": 0}}')")
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        kind, index = config["task"]["type"], int(config["task"]["index"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"TF_CONFIG: expected JSON with cluster.worker (a list of "
                         f"host:port) and task.type/task.index, got {raw!r} ({err})") from None
    if kind == "worker" and not 0 <= index < len(workers):
        raise ValueError(f"TF_CONFIG: task index {index} is not among the "
                         f"{len(workers)} workers")
    return config


def is_chief(strategy_name: str) -> bool:
    """Whether this process writes the run's files: always, except on a multi-worker
    cluster's non-chief workers (the chief is task ``chief``, or ``worker`` 0 without one).

    Read from ``TF_CONFIG`` without starting TensorFlow, so a command can settle it before
    it looks at its folder.
    """
    if strategy_name != "multiworker":
        return True
    try:
        config = read_tf_config()
    except ValueError:
        return True  # make_strategy names the problem
    kind, index = config["task"]["type"], int(config["task"]["index"])
    return kind == "chief" or (kind == "worker" and index == 0
                               and "chief" not in config["cluster"])


def machine_kind() -> str:
    """What a record of exact numbers (``tools/record_runs.py``) or of timings
    (:mod:`kdarts.image.latency`) depends on: the CPU vendor, the widest vector ISA that
    oneDNN's kernels dispatch on (also inside TensorFlow's own matmuls), and whether
    TensorFlow runs oneDNN's kernels (``kdarts.compat.onednn_enabled``); e.g.
    ``"authenticamd-avx512-onednn"``. Linux only (``/proc/cpuinfo``); imports TensorFlow."""
    vendor, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id":
                    vendor = value.strip().lower()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    isa = next((name for name, flag in (("amx", "amx_tile"), ("avx512", "avx512f"),
                                        ("avx2", "avx2")) if flag in flags), "other")
    return f"{vendor}-{isa}-{'onednn' if compat.onednn_enabled() else 'eigen'}"


__all__ = ["LEAN_GRAPH_REWRITES", "LeanTrainFunction", "STRATEGIES", "is_chief",
           "import_tensorflow_quietly", "lean_graph_optimization", "machine_kind",
           "make_strategy",
           "quiet_tensorflow_import", "read_tf_config", "set_cpu_threads",
           "set_cpu_threads_on_import",
           "silence_float16_notice", "split_cpu", "with_lean_graph_optimization"]
