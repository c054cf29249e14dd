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
:func:`unlocked_state`                   ``Layer._tracker`` (``lock``/``unlock``/``locked``)
:func:`function_call_options` and        ``tensorflow.python.eager.context``:
:func:`set_function_call_options`,       ``context().function_call_options``,
:func:`make_function_call_options`       ``FunctionCallOptions``
=======================================  ====================================================
"""

from __future__ import annotations

import contextlib

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


__all__ = ["SymbolicBuildFromElementSpec", "SymbolicBuildOnlyIfUnbuilt", "TESTED",
           "function_call_options", "learning_rate_schedule", "loss_tracker",
           "make_function_call_options", "set_function_call_options", "sublayers",
           "unlocked_state", "variable_index"]
