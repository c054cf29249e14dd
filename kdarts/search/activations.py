"""Activations of the architecture weights α (docs/method.md §2), as pure functions.

``softmax`` (DARTS) makes the ops of one edge compete; ``crb`` (clipped ReLU
with a permanent prune mask, Maile et al.) lets each op stand alone, so edges
are comparable with each other and an op whose α falls to 0 leaves the search.

Example:
    >>> import numpy as np
    >>> activate(np.array([[-0.1, 0.5, 1.7]], "float32"), "crb").numpy()
    array([[0. , 0.5, 1. ]], dtype=float32)
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kdarts.options import ACTIVATIONS  # noqa: F401  (the names, registered once)


def check_activation(kind: str) -> str:
    if kind not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{kind}'; valid: {', '.join(ACTIVATIONS)}")
    return kind


def activate(alpha, kind: str, mask=None) -> tf.Tensor:
    """Activated weights ``act(α)``: softmax per edge, or clip to [0, 1] (masked) for crb."""
    alpha = tf.convert_to_tensor(alpha, tf.float32)
    if kind == "softmax":
        return tf.nn.softmax(alpha, axis=-1)
    if kind == "crb":
        act = tf.clip_by_value(alpha, 0.0, 1.0)
        return act if mask is None else act * tf.cast(mask, act.dtype)
    check_activation(kind)


class AlphaInitializer(keras.initializers.Initializer):
    """docs/method.md §2 initial α: 1e-3·N(0,1) (softmax) or 1/num_ops + 1e-4·N(0,1) (crb).

    Draws from Keras's global seed, so ``keras.utils.set_random_seed`` fixes it.
    """

    def __init__(self, activation: str):
        self.activation = check_activation(activation)

    def __call__(self, shape, dtype=None):
        noise = keras.random.normal(shape, dtype=dtype or "float32")
        if self.activation == "softmax":
            return 1e-3 * noise
        return 1.0 / shape[-1] + 1e-4 * noise

    def get_config(self) -> dict:
        return {"activation": self.activation}


def prune(alpha, mask) -> tuple[tf.Tensor, tf.Tensor]:
    """The crb prune rule: an op with α ≤ 0 is masked for good and its α set to 0.

    Returns ``(alpha, mask)``; a masked entry stays masked whatever α does.
    """
    alpha = tf.convert_to_tensor(alpha, tf.float32)
    mask = tf.convert_to_tensor(mask, tf.float32)
    mask = mask * tf.cast(alpha > 0.0, tf.float32)
    return alpha * mask, mask


@keras.saving.register_keras_serializable(package="kdarts")
class ArchitectureActivation(keras.layers.Layer):
    """Layer form of :func:`activate`: ``(alpha, mask) → act(α)``."""

    def __init__(self, kind: str = "softmax", **kwargs):
        super().__init__(**kwargs)
        self.kind = check_activation(kind)

    def call(self, alpha, mask=None):
        return activate(alpha, self.kind, mask)

    def get_config(self) -> dict:
        return {**super().get_config(), "kind": self.kind}
