"""FusedSGD: Keras's SGD rule, one kernel per variable."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdarts.optimizers import FusedSGD


@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_sgd_steps_as_keras_sgd(nesterov):
    """The same weights and momenta as keras.optimizers.SGD over a few traced steps, a
    changing learning rate included; the momentum update is one fused kernel."""
    rng = np.random.default_rng(0)
    w0 = [rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(5,)).astype("float32")]
    grads = [[rng.normal(size=w.shape).astype("float32") for w in w0] for _ in range(4)]
    results = []
    for cls in (keras.optimizers.SGD, FusedSGD):
        variables = [keras.Variable(w.copy()) for w in w0]
        opt = cls(learning_rate=0.1, momentum=0.9, nesterov=nesterov)
        opt.build(variables)

        @tf.function
        def step(gs):
            opt.apply(gs, variables)

        for i, gs in enumerate(grads):
            opt.learning_rate.assign(0.1 / (i + 1))
            step([tf.constant(g) for g in gs])
        results.append(([np.asarray(v) for v in variables],
                        [np.asarray(m) for m in opt.momentums], step))
    (w_keras, m_keras, _), (w_fused, m_fused, fused_step) = results
    for a, b in zip(w_keras + m_keras, w_fused + m_fused):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    assert not np.allclose(w_fused[0], w0[0])  # it moved
    graph = fused_step.get_concrete_function(
        [tf.TensorSpec(w.shape, tf.float32) for w in w0]).graph
    kinds = [op.type for op in graph.get_operations()]
    assert kinds.count("ResourceApplyKerasMomentum") == 2
    assert "AssignAddVariableOp" not in kinds  # no separate w ← w + m
    restored = FusedSGD.from_config(FusedSGD(0.025, momentum=0.9, nesterov=nesterov).get_config())
    assert isinstance(restored, FusedSGD) and restored.momentum == 0.9
    assert restored.nesterov == nesterov
