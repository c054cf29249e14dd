"""The search's optimizers: Keras's SGD with each variable's momentum update as one
TensorFlow kernel, and Adam with PyTorch's placement of ε.

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


@keras.saving.register_keras_serializable(package="kdarts")
class TorchAdam(keras.optimizers.Adam):
    """:class:`keras.optimizers.Adam` (same arguments, variables and checkpoints) that
    adds ε where PyTorch's ``torch.optim.Adam`` does, after the bias correction:

        w ← w − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)

    Keras adds ε to √v before correcting it, ``lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v + ε)``,
    which is PyTorch's rule with ε·√(1−β₂ᵗ) in place of ε: at step 1 with β₂ = 0.999
    Keras's ε weighs 31.6× PyTorch's, and α's first steps differ from the authors' on
    entries with small gradients (docs/fidelity.md). The default α optimizer stays
    Keras's Adam; this one reproduces the authors' α steps.

    Example:
        >>> from kdarts.optimizers import TorchAdam
        >>> opt = TorchAdam(learning_rate=3e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    """

    def update_step(self, gradient, variable, learning_rate):
        # Keras's update with ε·√(1−β₂ᵗ) as its ε is PyTorch's update with ε
        epsilon = self.epsilon
        step = tf.cast(self.iterations + 1, variable.dtype)
        self.epsilon = epsilon * tf.sqrt(1.0 - tf.pow(tf.cast(self.beta_2, variable.dtype), step))
        try:
            super().update_step(gradient, variable, learning_rate)
        finally:
            self.epsilon = epsilon


__all__ = ["FusedSGD", "TorchAdam"]
