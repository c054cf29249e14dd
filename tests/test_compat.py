"""Each private Keras/TensorFlow hook in kdarts.compat still does what kdarts needs.

A failure here after an upgrade names the hook that moved: fix it in kdarts/compat.py
(the only place that touches it) and widen the bounds in pyproject.toml."""

import contextlib
import inspect
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdarts import compat
from kdarts.runtime import LEAN_GRAPH_REWRITES, lean_graph_optimization


def _minor(version: str) -> tuple:
    return tuple(int(p) for p in version.split(".")[:2])


def test_installed_versions_are_the_tested_ones():
    assert _minor(keras.version()) == _minor(compat.TESTED["keras"])
    assert _minor(tf.__version__) == _minor(compat.TESTED["tensorflow"])


def _tiny_data(n=8):
    x = np.arange(n * 3, dtype="float32").reshape(n, 3) / 10
    return tf.data.Dataset.from_tensor_slices((x, np.arange(n) % 2)).batch(4)


def _dense_model(*bases):
    class Net(*bases, keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)
            self.seen = []

        def call(self, x):
            return self.dense(x)

    return Net()


class _Record:
    """Records what reaches Keras's own _maybe_symbolic_build."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        self.seen.append((iterator, data_batch))
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


def test_keras_fit_calls_maybe_symbolic_build_with_iterator_and_data_batch():
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    params = list(inspect.signature(TensorFlowTrainer._maybe_symbolic_build).parameters)
    assert params == ["self", "iterator", "data_batch"]
    model = _dense_model(_Record)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(_tiny_data(), epochs=1, verbose=0, shuffle=False)
    assert len(model.seen) == 1 and model.seen[0][0] is not None  # fit's epoch iterator


def test_symbolic_build_only_if_unbuilt_skips_keras_build():
    model = _dense_model(compat.SymbolicBuildOnlyIfUnbuilt, _Record)
    model(np.zeros((1, 3), "float32"))  # built before fit, as the search models' fit does
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(_tiny_data(), epochs=1, verbose=0, shuffle=False)
    assert model.seen == []


def test_symbolic_build_from_element_spec_builds_from_zeros_under_a_strategy():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = _dense_model(compat.SymbolicBuildFromElementSpec, _Record)
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    assert model._distribute_strategy is not None  # the attribute the hook reads
    model.fit(_tiny_data(), epochs=1, verbose=0, shuffle=False)
    (iterator, batch), = model.seen
    assert iterator is None
    x, y = batch  # zeros shaped as the dataset's elements, from the epoch iterator's adapter
    assert x.shape == (1, 3) and y.shape == (1,) and not np.any(x.numpy())


def test_learning_rate_schedule():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    assert compat.learning_rate_schedule(keras.optimizers.SGD(0.1)) is None
    assert compat.learning_rate_schedule(keras.optimizers.SGD(schedule)) is schedule
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(schedule))
    assert compat.learning_rate_schedule(scaled) is schedule


def test_variable_index_addresses_the_momentum_slots():
    a, b = keras.Variable(np.zeros((2,)), name="a"), keras.Variable(np.zeros((3, 1)), name="b")
    opt = keras.optimizers.SGD(0.1, momentum=0.9)
    opt.build([a, b])
    assert compat.variable_index(opt, a) == 0 and compat.variable_index(opt, b) == 1
    assert tuple(opt.momentums[compat.variable_index(opt, b)].shape) == (3, 1)


def test_loss_tracker_is_the_logged_loss():
    model = _dense_model()
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    tracker = compat.loss_tracker(model)
    assert isinstance(tracker, keras.metrics.Mean) and tracker.name == "loss"
    history = model.fit(_tiny_data(), epochs=1, verbose=0, shuffle=False).history
    assert tracker in model.metrics
    assert float(tracker.result()) == pytest.approx(history["loss"][-1])


def test_sublayers_are_recursive_without_the_model():
    model = _dense_model()
    model.inner = keras.Sequential([keras.layers.Dense(2, name="deep")])
    names = {layer.name for layer in compat.sublayers(model)}
    assert "deep" in names and model.dense.name in names and model.name not in names


def test_own_variables_number_a_weight_files_entries(tmp_path):
    """own_variables is the list Keras numbers a layer's entries in a weight file by:
    its own variables, trainable first, without its sublayers'."""
    model = _dense_model()
    model(np.zeros((1, 3), np.float32))
    with compat.unlocked_state(model):
        state = model.add_weight(shape=(), initializer="ones", trainable=False, name="state")
        scale = model.add_weight(shape=(2,), initializer="ones", name="scale")
    own = compat.own_variables(model)
    assert own == [scale, state]
    assert not any(v is w for v in own for w in model.dense.weights)
    store = {}
    model.save_own_variables(store)
    assert [store[str(i)].shape for i in range(len(store))] == [tuple(v.shape) for v in own]


def test_built_input_shape_is_what_build_was_given():
    layer = keras.layers.Dense(2)
    assert compat.built_input_shape(layer) is None
    layer.build((4, 3))
    assert tuple(compat.built_input_shape(layer)) == (4, 3)
    model = _dense_model()
    model(np.zeros((5, 3), np.float32))
    assert tuple(compat.built_input_shape(model))[1:] == (3,)


def test_unlocked_state_lets_a_built_layer_take_a_variable():
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    with pytest.raises(ValueError, match="already built"):
        layer.add_weight(shape=(), name="late")
    with compat.unlocked_state(layer):
        late = layer.add_weight(shape=(), name="late", trainable=False)
    assert any(v is late for v in layer.non_trainable_variables)
    with pytest.raises(ValueError, match="already built"):  # locked again
        layer.add_weight(shape=(), name="later")


def test_function_call_options_carry_the_grappler_config():
    saved = compat.function_call_options()
    assert isinstance(saved.config_proto_serialized, bytes)
    config = tf.compat.v1.ConfigProto.FromString(saved.config_proto_serialized)
    config.graph_options.rewrite_options.meta_optimizer_iterations = 1
    options = compat.make_function_call_options(saved.executor_type, config)
    compat.set_function_call_options(options)
    try:
        now = tf.compat.v1.ConfigProto.FromString(
            compat.function_call_options().config_proto_serialized)
        assert now.graph_options.rewrite_options.meta_optimizer_iterations == 1
        assert float(tf.function(lambda v: v * 2.0)(tf.constant(3.0))) == 6.0
    finally:
        compat.set_function_call_options(saved)
    assert compat.function_call_options() is saved
    with lean_graph_optimization():  # kdarts.runtime's use of it
        rewrites = tf.compat.v1.ConfigProto.FromString(
            compat.function_call_options().config_proto_serialized).graph_options.rewrite_options
        assert all(getattr(rewrites, k) == v for k, v in LEAN_GRAPH_REWRITES.items())
    assert compat.function_call_options() is saved


def _step_graph(lean: bool):
    """A step with the patterns ACD orders (a read after an assign, a gradient, a tf.data
    reduction of a dataset that reads a variable), traced with or without ``lean_tracing``."""
    v = tf.Variable(2.0, name="v")
    w = tf.Variable(1.0, name="w")

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.square(x * v)
        v.assign_sub(0.1 * tape.gradient(loss, v))
        # The reduction's only input is the dataset (a variant): tf.data's resolver finds
        # the variable the map reads.
        w.assign(tf.data.Dataset.range(3).map(lambda i: tf.cast(i, tf.float32) * v)
                 .reduce(0.0, lambda s, x: s + x))
        return v.read_value() + w.read_value()

    with compat.lean_tracing() if lean else contextlib.nullcontext():
        graph = step.get_concrete_function(tf.TensorSpec((), tf.float32)).graph
    return step, graph


def _placeholder_frames() -> tuple:
    with compat.lean_tracing():
        with tf.Graph().as_default():
            frames = tuple((f.filename, f.name) for f in tf.constant(1.0).op.traceback)
    assert frames[-1] == (compat.__file__, "_op_stack_trace_not_recorded")
    return frames


def test_lean_tracing_builds_the_same_graph_without_op_stack_traces():
    from tensorflow.python.framework import auto_control_deps
    from tensorflow.python.util import tf_stack

    # Its fast path knows exactly these rules; a new one in an upgrade must be looked at.
    assert set(auto_control_deps._acd_resource_resolvers_registry.list()) <= \
        compat.KNOWN_ACD_RESOLVERS
    originals = (tf_stack.extract_stack, auto_control_deps._get_resource_inputs)

    def structure(graph):
        return {op.name: (op.type, [t.name for t in op.inputs],
                          sorted(c.name for c in op.control_inputs))
                for op in graph.get_operations()}

    full_step, full = _step_graph(lean=False)
    lean_step, lean = _step_graph(lean=True)
    assert structure(lean) == structure(full)  # same ops, inputs and control dependencies
    assert any(op.control_inputs for op in lean.get_operations())
    # every lean op shares the placeholder trace, which names itself (XLA needs a frame)
    assert {tuple((f.filename, f.name) for f in op.traceback)
            for op in lean.get_operations()} == {_placeholder_frames()}
    assert all(op.traceback[-1].name != "_op_stack_trace_not_recorded"
               for op in full.get_operations())
    assert float(lean_step(tf.constant(1.5))) == float(full_step(tf.constant(1.5)))
    assert (tf_stack.extract_stack, auto_control_deps._get_resource_inputs) == originals


def test_lean_tracing_is_per_thread_and_nests():
    import threading

    from tensorflow.python.util import tf_stack

    def frames():
        with tf.Graph().as_default():
            op = tf.constant(1.0).op
        return [(f.filename, f.lineno, f.name) for f in op.traceback]

    def in_thread():
        out = {}
        thread = threading.Thread(target=lambda: out.setdefault("frames", frames()))
        thread.start()
        thread.join(timeout=60)
        return out["frames"]

    original = tf_stack.extract_stack
    alone = in_thread()
    with compat.lean_tracing():
        placeholder = frames()
        assert placeholder[-1][0] == compat.__file__
        assert placeholder[-1][2] == "_op_stack_trace_not_recorded"
        with compat.lean_tracing():
            assert frames() == placeholder
        assert frames() == placeholder      # still inside the outer one
        assert in_thread() == alone         # another thread keeps its whole stack
        assert tf_stack.extract_stack is not original
    assert tf_stack.extract_stack is original
    assert frames()[-1][2] != "_op_stack_trace_not_recorded"


def test_lean_in_other_threads_carries_the_callers_lean_tracing():
    import threading

    def last_frame():
        with tf.Graph().as_default():
            return tf.constant(1.0).op.traceback[-1].name

    def on_thread(fn):
        out = []
        thread = threading.Thread(target=lambda: out.append(fn()))
        thread.start()
        thread.join(timeout=60)
        return out[0]

    assert compat.lean_in_other_threads(last_frame) is last_frame  # outside: as it is
    with compat.lean_tracing():
        wrapped = compat.lean_in_other_threads(last_frame)
        assert on_thread(last_frame) != "_op_stack_trace_not_recorded"
        assert on_thread(wrapped) == "_op_stack_trace_not_recorded"
    assert last_frame() != "_op_stack_trace_not_recorded"


@pytest.mark.slow
def test_onednn_enabled_follows_tensorflows_switch():
    import subprocess
    import sys

    assert isinstance(compat.onednn_enabled(), bool)
    code = "from kdarts import compat; print(compat.onednn_enabled())"
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "False"   # oneDNN off: TensorFlow's own kernels


def test_weights_h5_bytes_is_what_save_weights_writes(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    path = tmp_path / "memory.weights.h5"
    path.write_bytes(compat.weights_h5_bytes(model))
    model.save_weights(tmp_path / "keras.weights.h5")
    for source in (path, tmp_path / "keras.weights.h5"):
        other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        other.compile(optimizer="adam", loss="mse")
        other.optimizer.build(other.trainable_variables)
        other.load_weights(source)
        for a, b in zip(model.variables + model.optimizer.variables,
                        other.variables + other.optimizer.variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
