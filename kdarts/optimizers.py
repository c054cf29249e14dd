"""Keras's SGD with each variable's momentum update as one TensorFlow kernel.

:class:`keras.optimizers.SGD` writes ``m ← μ·m − lr·g; w ← w + m`` as a dozen ops
per variable (casts, reads, products, a difference, two assignments). The search
network has 300-500 weight variables, so that is thousands of nodes in its step
graph, each traced in Python, optimised by grappler and launched on every step.
``ResourceApplyKerasMomentum`` is the same rule in one kernel.

Example:
    >>> import kdarts
    >>> opt = kdarts.FusedSGD(learning_rate=0.025, momentum=0.9)
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kdarts import compat


@keras.saving.register_keras_serializable(package="kdarts")
class FusedSGD(keras.optimizers.SGD):
    """:class:`keras.optimizers.SGD` (same arguments, same update, same variables and
    checkpoints) whose momentum update runs as one fused kernel per variable.

    Without momentum Keras's own update runs. A sparse gradient is made dense, as
    Keras's momentum update makes it anyway.
    """

    def update_step(self, gradient, variable, learning_rate):
        if not self.momentum:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        m = self.momentums[compat.variable_index(self, variable)]
        # m ← μ·m − lr·g; w ← w + m (Nesterov: w ← w + μ·m − lr·g), as Keras's SGD
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=m.handle, lr=tf.cast(learning_rate, dtype),
            grad=tf.convert_to_tensor(tf.cast(gradient, dtype)),
            momentum=tf.cast(self.momentum, dtype),
            use_nesterov=bool(self.nesterov))


__all__ = ["FusedSGD"]
