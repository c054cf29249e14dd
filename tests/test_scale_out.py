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

from kdarts.eval import EvalNetwork, compile_eval_network
from kdarts.genotype import DARTS_V2
from kdarts.search import ADMM, DynamicSchedule, SearchNetwork

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
def test_xla_search_step_equals_the_graph_step(xla_allowed):
    """jit_compile=True compiles the whole search step (α step, weight step, dynamic
    schedule, ADMM's discretisation and Z/U update, crb pruning); loss and α follow the
    non-XLA run step by step. (crb × ADMM × dynamic holds every graph op the other
    combinations use; each combination compiles for a minute on 2 cores.)"""
    activation, regularizer = "crb", ADMM(0.1, every=1)
    schedule = DynamicSchedule(every=2, initial_threshold=40.0)
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
                      jit_compile=jit)
        assert model.jit_compile is jit
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
def test_mirrored_search_on_two_devices_equals_one_device(tmp_path):
    """MirroredStrategy on two logical CPU devices with synchronised BN: each replica
    takes half the global batch, gradients and BN statistics are all-reduced, and the
    search (α steps taken and skipped, crb pruning, proximity) follows the one-device
    search on the same global batch."""
    out = tmp_path / "result.json"
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
    assert two["replica_spread"] == 0.0  # every replica holds the same α, weights, state
    assert two["trace_count"] == 1
