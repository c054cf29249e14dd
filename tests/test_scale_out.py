"""The search and training steps off the host's Python: XLA and tf.distribute.

XLA runs in this process; the two-device search runs in a child process, which must
configure its logical devices before TensorFlow starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdarts import compat
from kdarts.image import EvalNetwork, SearchNetwork, compile_eval_network
from kdarts.image.budget import Budget, genotype_cost
from kdarts.image.costs import CostTable
from kdarts.image.genotype import DARTS_V2, num_edges
from kdarts.ops import BatchNormalization
from kdarts.search import ADMM, DynamicSchedule, FixedSchedule, Proximity

from test_search_fit import TINY, datasets

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def xla_allowed():
    """Keras silently drops jit_compile while TensorFlow's op determinism is on (another
    test in this process may have turned it on): off for the test, then restored. The
    public API can only turn it on; Keras itself reads it from the same module."""
    from tensorflow.python.framework import config

    was_on = config.is_op_determinism_enabled()
    config.disable_op_determinism()
    yield
    if was_on:
        config.enable_op_determinism()


class _Alphas(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.alpha = []

    def on_train_batch_end(self, batch, logs=None):
        self.alpha.append([a.numpy().copy() for a in self.model.arch_variables])


@pytest.mark.slow
@pytest.mark.parametrize("activation, regularizer, schedule, unrolled", [
    ("crb", ADMM(0.1, every=1), DynamicSchedule(every=2, initial_threshold=40.0), False),
    ("softmax", Proximity(0.1), FixedSchedule(every=2), True),
], ids=["crb-admm-dynamic", "softmax-proximity-fixed-unrolled"])
def test_xla_search_step_equals_the_graph_step(xla_allowed, monkeypatch, activation,
                                               regularizer, schedule, unrolled):
    """jit_compile=True compiles the whole search step (α step, weight step, both
    schedules, proximity's and ADMM's discretisation, ADMM's Z/U update, crb pruning,
    DARTS's unrolled α gradient); loss and α follow the non-XLA run step by step. The
    two cases hold every graph op the other combinations use (all 14 were checked
    once: α within 3.2e-7 of the graph run).

    XLA's kernels round differently from the graph's in the last bit; where a ReLU's
    input lies within that bit of 0, the gradient takes another way and the runs part at
    once (loss 1.4e-4 apart at step 1 in the unrolled case, one thread per kernel on a
    2-core AMD EPYC). So the network's ReLUs are softplus here (8e-8): what is compared
    is the compilation, not which side of a kink a rounding falls.
    """
    monkeypatch.setattr(tf.nn, "relu", tf.nn.softplus)  # what kdarts's and Keras's ReLUs call
    weight_ds, search_ds = datasets()
    keras.utils.set_random_seed(0)
    model = SearchNetwork(4, activation=activation, **TINY)
    model.build((8, 8, 8, 3))
    start = model.get_weights()
    runs = []
    for jit in (False, True):
        model.set_weights(start)
        model.compile(schedule=schedule, regularizer=regularizer, search_data=search_ds,
                      arch_optimizer=keras.optimizers.Adam(3e-3, beta_1=0.5),
                      unrolled=unrolled, jit_compile=jit)
        assert model.jit_compile is jit
        # the network's own BNs take TensorFlow's fused kernel, except under XLA
        bns = [bn for bn in compat.sublayers(model) if isinstance(bn, BatchNormalization)]
        assert bns and all(bn.fused_kernel is not jit for bn in bns)
        alphas = _Alphas()
        history = model.fit(weight_ds, epochs=2, steps_per_epoch=3, verbose=0,
                            callbacks=[alphas]).history
        runs.append((history, alphas.alpha))
    (h0, a0), (h1, a1) = runs
    assert h0["alpha_steps"] == h1["alpha_steps"]
    assert 2 <= h0["alpha_steps"][-1] < 6  # steps with and without an α step
    np.testing.assert_allclose(h1["loss"], h0["loss"], rtol=1e-4)
    np.testing.assert_allclose(h1["search_loss"], h0["search_loss"], rtol=1e-4)
    for step0, step1 in zip(a0, a1):
        for x0, x1 in zip(step0, step1):
            np.testing.assert_allclose(x1, x0, atol=1e-5)
    assert np.abs(a0[-1][0] - a0[0][0]).max() > 1e-3  # α did move


class _Projections(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.z = []

    def on_train_batch_end(self, batch, logs=None):
        self.z.append([z.numpy().copy() for z in self.model.regularizer_state["z"]])


@pytest.mark.slow
def test_xla_compiles_a_budgeted_search_and_projects_as_the_graph_does(xla_allowed):
    """Under a budget, jit_compile=True compiles D_B into the step: ADMM's Z (D_B of
    act + U, every α step) is the graph run's at every step and within the budget, and
    the α-step decisions agree. α itself parts from the graph run's by ~1e-4 from the
    second α step on (the two round the CE gradient differently and Adam's second step
    magnifies it where its two gradients nearly cancel), so it is not compared here; the
    unbudgeted step is, in the test above."""
    weight_ds, search_ds = datasets()
    keras.utils.set_random_seed(0)
    model = SearchNetwork(4, activation="crb", **TINY)
    model.build((8, 8, 8, 3))
    start = model.get_weights()
    # sep_conv 10, max_pool 1, skip 0, fixed 5: one sep_conv at most
    per_op = {t: np.tile([1.0, 0.0, 10.0], (num_edges(2), 1)) for t in ("normal", "reduce")}
    budget = Budget(CostTable("params", per_op, 5.0, TINY["primitives"]), 16.0)
    runs = []
    for jit in (False, True):
        model.set_weights(start)
        model.compile(schedule=DynamicSchedule(every=2, initial_threshold=40.0),
                      regularizer=ADMM(0.1, every=1), search_data=search_ds,
                      arch_optimizer=keras.optimizers.Adam(3e-3, beta_1=0.5),
                      jit_compile=jit, budget=budget)
        assert model.jit_compile is jit
        projections = _Projections()
        history = model.fit(weight_ds, epochs=2, steps_per_epoch=3, verbose=0,
                            callbacks=[projections]).history
        runs.append((history, projections.z))
    (h0, z0), (h1, z1) = runs
    assert h0["alpha_steps"] == h1["alpha_steps"] and h0["alpha_steps"][-1] >= 3
    projected = 0
    for step, (graph, xla) in enumerate(zip(z0, z1)):
        for a, b in zip(graph, xla):
            np.testing.assert_array_equal(b, a, err_msg=f"step {step}")
        if all(set(np.unique(z)) <= {0.0, 1.0} for z in xla):  # Z starts at act(α₀)
            projected += 1
            onehots = dict(zip(("normal", "reduce"), xla))
            assert genotype_cost(onehots, per_op, 5.0) <= budget.limit, f"step {step}"
    assert projected >= 3
    # the budget binds: D of the final weights would cost more
    free = model.architecture
    free = type(free)(**{**free.__dict__, "project": None})
    d = dict(zip(("normal", "reduce"), [h.numpy() for h in
                                        free.discretized(model.activated_weights())]))
    assert genotype_cost(d, per_op, 5.0) > budget.limit


@pytest.mark.slow
def test_xla_evaluation_training_step_equals_the_graph_step(xla_allowed):
    """The evaluation network's step under XLA (drop-path off: XLA draws other masks
    from the same seed) gives the non-XLA losses and weights."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 10, 16).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(0)  # the same initial weights
        model = EvalNetwork(DARTS_V2, num_classes=10, channels=4, layers=3, auxiliary=True,
                            drop_path_prob=0.0, seed=0)
        model.build((None, 8, 8, 3))
        callbacks = compile_eval_network(model, epochs=2, steps_per_epoch=2, jit_compile=jit)
        assert model.jit_compile is jit
        history = model.fit(ds, epochs=2, verbose=0, callbacks=callbacks).history
        results.append((history["loss"], model.get_weights()))
    (l0, w0), (l1, w1) = results
    np.testing.assert_allclose(l1, l0, rtol=1e-4)
    for u, v in zip(w0, w1):
        np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-4)  # BN variances of raw pixels


@pytest.mark.slow
def test_mirrored_search_and_training_on_two_devices_equal_one_device(tmp_path):
    """MirroredStrategy on two logical CPU devices with synchronised BN: each replica
    takes half the global batch, gradients and BN statistics are all-reduced, and the
    search (α steps taken and skipped, crb pruning, proximity; with the budget's
    expected-cost term and its dual too) and the evaluation network's training follow one
    device on the same global batch."""
    out = tmp_path / "result.json"
    # a half batch's sums round differently from a whole one's, in the last bit with any
    # kernels (oneDNN's or Eigen's); the child's networks have no ReLU or max pool whose
    # gradient that bit could flip (its docstring), so α stays within 3e-7 of one device's
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, os.path.join(HERE, "distributed_search.py"), str(out)],
                   check=True, timeout=600, env=env, cwd=str(tmp_path))
    result = json.loads(out.read_text())
    one, two = result["one"], result["mirrored"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert two["took"] == one["took"]
    assert 0 < sum(one["took"]) < len(one["took"])  # both branches of the schedule ran
    for step, (a1, a2) in enumerate(zip(one["alpha"], two["alpha"])):
        for x1, x2 in zip(a1, a2):
            assert np.abs(np.array(x1) - np.array(x2)).max() <= 1e-4, f"step {step}"
    assert np.abs(np.array(one["alpha"][-1]) - np.array(one["alpha"][0])).max() > 1e-3
    assert two["genotype"] == one["genotype"]
    # D_B on every replica: within the budget D would exceed
    assert one["genotype_cost"] <= 2.0 < one["free_cost"]
    assert two["replica_spread"] == 0.0  # every replica holds the same α, weights, state
    assert two["trace_count"] == 1
    # the budget's expected-cost term: λ is updated on every replica, as on one device
    one, two = result["dual_one"], result["dual_mirrored"]
    assert two["took"] == one["took"] and two["replica_spread"] == 0.0
    assert max(one["duals"]) > 0
    np.testing.assert_allclose(two["duals"], one["duals"], rtol=1e-4, atol=1e-6)
    for step, (a1, a2) in enumerate(zip(one["alpha"], two["alpha"])):
        for x1, x2 in zip(a1, a2):
            assert np.abs(np.array(x1) - np.array(x2)).max() <= 1e-4, f"step {step}"
    one, two = result["one"], result["mirrored"]
    # traced lean on every thread, the replicas' threads included (compat.lean_tracing)
    for run in (two, result["train_mirrored"]):
        own, ops = run["own_traces"]
        assert ops > 100 and own == 0, run["own_traces"]
    # the evaluation network's training, clipped every step: clipping after the all-reduce
    # gives one device's step (Keras's own step clips each replica's share: 3e-4 apart)
    one, two = result["train_one"], result["train_mirrored"]
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    for step, (w1, w2) in enumerate(zip(one["weights"], two["weights"])):
        for x1, x2 in zip(w1, w2):
            assert np.abs(np.array(x1) - np.array(x2)).max() <= 1e-5, f"step {step}"
    assert max(np.abs(np.array(x1) - np.array(x0)).max()
               for x0, x1 in zip(one["weights"][0], one["weights"][-1])) > 1e-4


def _half_convolutions(fn, *args) -> int:
    """Convolutions computed in float16 in the traced ``fn`` (nested functions included)."""
    graph = tf.function(fn).get_concrete_function(*args).graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return sum(n.op in ("Conv2D", "DepthwiseConv2dNative") and n.attr["T"].type == tf.float16
               for n in nodes)


@pytest.mark.slow
def test_mixed_precision_search_scales_the_loss_and_keeps_state_float32():
    """mixed_float16: the network computes in float16 while α, BN statistics, logits and
    loss stay float32; both optimizers scale the loss, and a step whose float16
    gradients overflow changes nothing but halves the scale (FI's EWMA keeps its value)."""
    weight_ds, search_ds = datasets()
    keras.utils.set_random_seed(0)
    model = SearchNetwork(4, activation="crb", dtype="mixed_float16", **TINY)
    model.build((8, 8, 8, 3))
    model.compile(search_data=search_ds, schedule="fixed", arch_optimizer=keras.optimizers.Adam(0.05))
    for opt in (model.optimizer, model.arch_optimizer):
        assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
    alpha0 = [a.numpy().copy() for a in model.arch_variables]
    history = model.fit(weight_ds, epochs=1, steps_per_epoch=4, verbose=0).history
    assert np.isfinite(history["loss"][0]) and np.isfinite(history["search_loss"][0])
    assert history["alpha_steps"][0] == 4  # the fixed schedule with k=1: every step
    assert model.trace_count == 1
    assert max(np.abs(a.numpy() - a0).max() for a, a0 in zip(model.arch_variables, alpha0)) > 1e-3
    stats = [v for v in model.non_trainable_variables if v.name.endswith(("_mean", "_var"))]
    assert stats and all(v.dtype == "float32" for v in model.arch_variables + stats)
    assert model(tf.zeros((2, 8, 8, 3))).dtype == tf.float32
    pair = (tf.TensorSpec((8, 8, 8, 3), tf.float32), tf.TensorSpec((8,), tf.int32))
    assert _half_convolutions(model.train_step, (pair, pair)) > 10
    genotype = model.genotype()
    genotype.validate()
    assert {op for op, _ in genotype.normal + genotype.reduce} <= set(TINY["primitives"])

    # an overflow: both steps are skipped, both scales halve, the FI EWMA is kept
    for opt in (model.optimizer, model.arch_optimizer):
        opt.dynamic_scale.assign(2.0 ** 100)
    before = [v.numpy().copy() for v in model.trainable_variables]
    ewma = float(model.fi_ewma.numpy())
    model.fit(weight_ds, epochs=5, initial_epoch=4, steps_per_epoch=1, verbose=0)  # 1 step
    assert int(model.search_step.numpy()) == 5
    for v, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    assert float(model.fi_ewma.numpy()) == ewma
    for opt in (model.optimizer, model.arch_optimizer):
        assert float(opt.dynamic_scale.numpy()) == 2.0 ** 99


@pytest.mark.slow
def test_mixed_precision_training_exports_float32(tmp_path):
    """A mixed_float16 evaluation network trains with Keras's loss scaling, and its ONNX
    export takes and returns float32, computes in float32 and agrees with it."""
    import onnx

    from kdarts.image.export import export

    keras.utils.set_random_seed(0)
    model = EvalNetwork(DARTS_V2, num_classes=4, channels=4, layers=3, mean=[0.5] * 3,
                        std=[0.25] * 3, seed=0, dtype="mixed_float16")
    model.build((None, 8, 8, 3))
    callbacks = compile_eval_network(model, epochs=1, steps_per_epoch=2)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    x = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3)).astype("float32")
    history = model.fit(x, np.arange(16) % 4, batch_size=8, verbose=0, callbacks=callbacks)
    assert np.isfinite(history.history["loss"][0])
    assert _half_convolutions(lambda t: model(t, training=False),
                              tf.TensorSpec((1, 8, 8, 3), tf.float32)) > 0
    result = export(model, tmp_path / "m.onnx", "onnx", sample_inputs=x[:3])
    assert result.max_abs_diff <= 1e-4  # the artifact against the model's float32 copy
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert [t.type.tensor_type.elem_type for t in (*graph.input, *graph.output)] == [
        onnx.TensorProto.FLOAT] * 2
    assert not [t for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    logits = session.run(None, {graph.input[0].name: x[:3]})[0]
    mixed = np.asarray(model(x[:3]))
    np.testing.assert_allclose(logits, mixed, atol=2e-2 * np.abs(mixed).max())
