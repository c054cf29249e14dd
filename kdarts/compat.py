"""Every private Keras and TensorFlow hook kdarts relies on, in one place.

Keras 3 and TensorFlow give no public way to do a few things the search and the
evaluation training need. Each such hook is written here once, documented (what it is,
why kdarts needs it), and held by a test in ``tests/test_compat.py`` that fails by name
when an upgrade removes or changes it. ``pyproject.toml`` bounds Keras and TensorFlow to
the versions these tests passed with.

Tested with Keras 3.15.1 and TensorFlow (``tensorflow-cpu``) 2.21.0. Importing this
module imports neither (``kdarts.runtime`` uses it before TensorFlow starts).

=======================================  ====================================================
Hook                                     Keras / TensorFlow private it uses
=======================================  ====================================================
:class:`SymbolicBuildOnlyIfUnbuilt`      ``Trainer._maybe_symbolic_build(iterator,
:class:`SymbolicBuildFromElementSpec`    data_batch)``; the epoch iterator's
                                         ``data_adapter.get_tf_dataset()``;
                                         ``Model._distribute_strategy``
:func:`learning_rate_schedule`           ``BaseOptimizer._learning_rate``
:func:`variable_index`                   ``BaseOptimizer._get_variable_index``
:func:`loss_tracker`                     ``Trainer._loss_tracker``
:func:`sublayers`                        ``Layer._flatten_layers``
:func:`own_variables`                    ``Layer._trainable_variables``,
                                         ``Layer._non_trainable_variables``
:func:`built_input_shape`                ``Layer._build_shapes_dict``
:func:`unlocked_state`                   ``Layer._tracker`` (``lock``/``unlock``/``locked``)
:func:`function_call_options` and        ``tensorflow.python.eager.context``:
:func:`set_function_call_options`,       ``context().function_call_options``,
:func:`make_function_call_options`       ``FunctionCallOptions``
:func:`onednn_enabled`                   ``_pywrap_util_port.IsMklEnabled``
:func:`lean_tracing`                     ``tf_stack.extract_stack`` (an op's Python stack);
                                         ``auto_control_deps._get_resource_inputs`` and its
                                         resolver registry
:func:`weights_h5_bytes`                 ``saving_lib.H5IOStore`` (on an ``io.BytesIO``),
                                         ``saving_lib._save_state``
=======================================  ====================================================
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Callable

#: The versions ``tests/test_compat.py`` passed with (``pyproject.toml`` bounds them).
TESTED = {"keras": "3.15.1", "tensorflow": "2.21.0"}


# -- Keras's symbolic build before fit ---------------------------------------------------
class SymbolicBuildOnlyIfUnbuilt:
    """Mixin for a model whose ``fit`` builds it (variables, optimizers, metrics, loss)
    before Keras's: Keras's own build is then skipped.

    Under a distribution strategy Keras's ``fit`` first builds the model from one batch
    it reduces across replicas (``_maybe_symbolic_build``). The search models' streams
    are nested pairs of batches that MultiWorkerMirroredStrategy cannot reduce, and
    their ``fit`` has built everything already.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if not self.built:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


class SymbolicBuildFromElementSpec:
    """Mixin for a model whose compiled metrics are built, under a strategy, from zeros
    shaped as the dataset's elements instead of from its first batch.

    Keras (``_maybe_symbolic_build``) reads and reduces a first batch from a new pass
    over the data: that pass moves a reshuffling dataset on by an epoch, so training
    sees other batches than on one device, and MultiWorkerMirroredStrategy cannot run
    the reduction there. The metrics need only the batch's structure.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and getattr(self, "_distribute_strategy", None) is not None:
            import tensorflow as tf

            spec = iterator.data_adapter.get_tf_dataset().element_spec
            data_batch = tf.nest.map_structure(
                lambda s: tf.zeros([1 if d is None else d for d in s.shape], s.dtype), spec)
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


# -- optimizers ---------------------------------------------------------------------------
def learning_rate_schedule(optimizer):
    """The optimizer's learning-rate schedule, or None when its rate is a value.

    ``optimizer.learning_rate`` evaluates a schedule at the current iteration; the search
    must know whether there is one (it anneals a plain rate itself, and leaves a
    schedule alone), which only the private ``_learning_rate`` tells.
    """
    import keras

    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    rate = optimizer._learning_rate
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return rate
    return None


def variable_index(optimizer, variable) -> int:
    """The index of ``variable``'s slots in the optimizer's slot lists (``momentums``, ...).

    The fused momentum kernels and DARTS's unrolled step read a variable's momentum
    buffer, which Keras keeps in a list indexed by this private lookup.
    """
    return optimizer._get_variable_index(variable)


# -- models and layers ---------------------------------------------------------------------
def loss_tracker(model):
    """The ``Mean`` metric behind the ``loss`` a compiled model logs.

    A custom step that computes its loss itself (the search's, the replicated
    evaluation step's) updates it, as Keras's own ``train_step`` does.
    """
    return model._loss_tracker


def sublayers(model) -> list:
    """Every layer inside ``model`` (recursively), not the model itself."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def own_variables(layer) -> list:
    """The variables ``layer`` created itself (not its sublayers'), trainable first, in
    creation order: the list a weight file's entries for ``layer`` are numbered by.

    A model that reads weight files written before it had some of its variables maps
    the file's entries onto this list (``load_own_variables``).
    """
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def built_input_shape(layer):
    """The ``input_shape`` ``layer`` was built with (by ``build`` or its first call), or
    None: Keras records it only in a private dict."""
    return (getattr(layer, "_build_shapes_dict", None) or {}).get("input_shape")


@contextlib.contextmanager
def unlocked_state(layer):
    """Within it, ``layer`` takes new variables although it is built.

    Keras locks a layer's variable tracker when ``build`` returns; a regulariser's state
    is created at ``compile``, after the search network is built. Keras unlocks it the
    same way to untrack a variable.
    """
    tracker = layer._tracker
    was_locked = tracker.locked
    tracker.unlock()
    try:
        yield layer
    finally:
        if was_locked:
            tracker.lock()


# -- TensorFlow's per-thread function-call options ----------------------------------------
def function_call_options():
    """This thread's options for calling a ``tf.function``: its ``config_proto_serialized``
    (a ``ConfigProto`` with the grappler settings) and ``executor_type``.

    ``tf.config.optimizer.set_experimental_options`` fills them, but exposes only some of
    the rewriter's fields; kdarts sets others (``kdarts.runtime.LEAN_GRAPH_REWRITES``).
    """
    from tensorflow.python.eager import context

    return context.context().function_call_options


def set_function_call_options(options) -> None:
    """Make ``options`` (from :func:`function_call_options` or
    :func:`make_function_call_options`) this thread's."""
    from tensorflow.python.eager import context

    context.context().function_call_options = options


def make_function_call_options(executor_type, config_proto):
    """Function-call options with ``config_proto`` (a ``tf.compat.v1.ConfigProto``)."""
    from tensorflow.python.eager import context

    return context.FunctionCallOptions(executor_type=executor_type, config_proto=config_proto)


def onednn_enabled() -> bool:
    """Whether TensorFlow runs oneDNN's CPU kernels in this process (its default on CPUs
    with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX; ``TF_ENABLE_ONEDNN_OPTS`` overrides it).

    The kernels round differently from TensorFlow's own, so a record of exact numbers
    holds only on the kind of CPU, and the kernels, that wrote it.
    """
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


# -- tracing a large step graph -------------------------------------------------------------
#: ACD's resource resolvers (TensorFlow 2.21) whose rules :func:`lean_tracing` knows: they
#: give an op resources only through its resource-typed inputs, except for these op types.
KNOWN_ACD_RESOLVERS = frozenset({"_identity_resolver", "_resource_resolver",
                                 "tpu_replicated_input_resolver"})
_RESOURCES_WITHOUT_RESOURCE_INPUT = frozenset({
    "DatasetToSingleElement", "DatasetToTFRecord", "ReduceDataset",  # tf.data's resolver
    "TPUReplicatedInput"})                                           # the TPU resolver

_lean_thread = threading.local()   # .depth: this thread's nesting of lean_tracing()
_lean_lock = threading.Lock()
_lean_users = 0                    # threads inside lean_tracing(), under _lean_lock
_tensorflows: dict = {}            # name -> TensorFlow's own function, while replaced
_lean_replaced: list = []          # (module, name) replaced, while _lean_users > 0


def _in_lean_tracing() -> bool:
    return getattr(_lean_thread, "depth", 0) > 0


@functools.lru_cache(maxsize=1)
def _placeholder_stack():
    """The one stack trace every op traced under :func:`lean_tracing` shares, recorded once
    per process: a thread's few frames ending in ``_op_stack_trace_not_recorded``, so
    an error message that quotes it says what happened. Not empty: XLA's compiler crashes
    (SIGSEGV) on an op whose trace has no frame."""
    from tensorflow.python.util import tf_stack

    found = []
    thread = threading.Thread(target=_op_stack_trace_not_recorded, daemon=True,
                              args=(_tensorflows.get("extract_stack", tf_stack.extract_stack),
                                    found))
    thread.start()
    thread.join(timeout=60)
    if not found:
        raise RuntimeError("lean_tracing: could not record the placeholder stack trace")
    return found[0]


def _op_stack_trace_not_recorded(extract_stack, found: list) -> None:
    # An op traced by a kdarts train function names this frame, not the line that made it
    # (kdarts.compat.lean_tracing); trace the step outside one to see that line.
    found.append(extract_stack(stacklevel=1))


def _lean_extract_stack(stacklevel=1):
    """``tf_stack.extract_stack`` while replaced: the placeholder inside lean_tracing."""
    if _in_lean_tracing():
        return _placeholder_stack()
    return _tensorflows["extract_stack"](stacklevel=stacklevel + 1)  # + this frame


def _lean_get_resource_inputs(op):
    """``auto_control_deps._get_resource_inputs`` while replaced: nothing to scan inside
    lean_tracing for an op without a resource input (bar the resolvers' special types)."""
    if (_in_lean_tracing() and op.type not in _RESOURCES_WITHOUT_RESOURCE_INPUT
            and all(t.dtype != _RESOURCE for t in op.inputs)):
        return ()
    return _tensorflows["_get_resource_inputs"](op)


_RESOURCE = None  # tf.resource, set on the first install (this module imports no TF)


def _replacements() -> list:
    """``(module, name, lean function)`` for each TensorFlow function lean tracing
    replaces: the stack trace always, the ACD scan only under the resolvers it knows."""
    from tensorflow.python.framework import auto_control_deps
    from tensorflow.python.util import tf_stack

    targets = [(tf_stack, "extract_stack", _lean_extract_stack)]
    if set(auto_control_deps._acd_resource_resolvers_registry.list()) <= KNOWN_ACD_RESOLVERS:
        targets.append((auto_control_deps, "_get_resource_inputs", _lean_get_resource_inputs))
    return targets


def _install_lean_tracing() -> list:
    """Put the lean functions in TensorFlow's place (they call TensorFlow's own on threads
    outside :func:`lean_tracing`); returns what to restore. Cheap after the first time:
    a train function enters lean_tracing at every step."""
    global _RESOURCE
    from tensorflow.python.framework import dtypes

    _RESOURCE = dtypes.resource
    replaced = []
    for module, name, lean in _replacements():
        _tensorflows[name] = getattr(module, name)
        setattr(module, name, lean)
        replaced.append((module, name))
    _placeholder_stack()  # recorded before any op needs it
    return replaced


@contextlib.contextmanager
def lean_tracing():
    """Within it, ops this thread adds to a graph (tracing a ``tf.function``) are recorded
    without their own Python stack trace, and automatic control dependencies skip their
    resource scan for ops that have no resource input.

    Tracing the search step builds tens of thousands of ops, and TensorFlow's Python
    spends a sizeable share of that time on these two per-op chores
    (``tools/bench_search.py --full-tracing`` measures without them): the stack trace serves
    only error messages ("defined at ...", which then quote a placeholder frame,
    ``_op_stack_trace_not_recorded``), and the scan finds nothing in an op without
    resource inputs under the resolvers TensorFlow registers
    (:data:`KNOWN_ACD_RESOLVERS`; with any other resolver the scan runs as usual). The
    graph, its control dependencies and so every result are the same. Other threads are
    untouched; TensorFlow's functions are back when the last thread leaves.

    Example:
        >>> with lean_tracing():
        ...     step.get_concrete_function(spec)   # doctest: +SKIP
    """
    global _lean_users, _lean_replaced
    with _lean_lock:
        if _lean_users == 0:
            _lean_replaced = _install_lean_tracing()
        _lean_users += 1
    _lean_thread.depth = getattr(_lean_thread, "depth", 0) + 1
    try:
        yield
    finally:
        _lean_thread.depth -= 1
        with _lean_lock:
            _lean_users -= 1
            if _lean_users == 0:
                for module, name in _lean_replaced:
                    setattr(module, name, _tensorflows.pop(name))
                _lean_replaced = []


def lean_in_other_threads(fn: Callable) -> Callable:
    """``fn``, to be traced on another thread (a strategy's replica threads) as the calling
    thread traces: under :func:`lean_tracing` if that thread is inside it, else as it is.

    MirroredStrategy traces each replica's share of a step in a thread of its own, which
    :func:`lean_tracing` (per thread) would otherwise leave with both per-op chores.

    Example:
        >>> strategy.run(lean_in_other_threads(step_fn), args=(batch,))  # doctest: +SKIP
    """
    if not _in_lean_tracing():
        return fn

    @functools.wraps(fn)
    def lean(*args, **kwargs):
        with lean_tracing():
            return fn(*args, **kwargs)

    return lean


def weights_h5_bytes(model) -> bytes:
    """The ``.weights.h5`` file ``model.save_weights`` writes, made in memory.

    Keras's ``save_weights`` has h5py write straight to the file. When a write fails (a
    full disk), the HDF5 objects left open fail again each time one is freed: hundreds of
    tracebacks, and the interpreter can crash. Made in memory, the file is written by
    Python (:func:`kdarts.atomic.atomic_write_bytes`), whose failure is one ``OSError``.
    ``model.load_weights`` reads the result like any ``.weights.h5``.
    """
    import io

    from keras.src.saving import saving_lib

    if not model.built:
        raise ValueError("save the weights of a built model")
    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    try:
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",
                               visited_saveables=set())
    finally:
        store.close()
    return buffer.getvalue()


__all__ = ["KNOWN_ACD_RESOLVERS", "SymbolicBuildFromElementSpec", "SymbolicBuildOnlyIfUnbuilt",
           "TESTED", "built_input_shape", "function_call_options", "lean_in_other_threads", "lean_tracing",
           "learning_rate_schedule",
           "loss_tracker", "make_function_call_options", "onednn_enabled", "own_variables",
           "set_function_call_options", "sublayers", "unlocked_state", "variable_index",
           "weights_h5_bytes"]
