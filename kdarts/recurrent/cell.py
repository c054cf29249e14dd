"""DARTS's recurrent search cell as a Keras layer.

One time step maps the input ``x`` and the previous hidden state ``h`` to the next:

* state 0, a highway mix: ``c0, h0 = split(W0·[x, h])``, ``s0 = h + σ(c0)·(tanh(h0) − h)``;
* ``steps`` nodes (8), node ``k`` reading every earlier state ``s_j``:
  ``c, g = split(W_k·s_j)`` and ``s_k = Σ_j Σ_f act(α)[j, f] · (s_j + σ(c)·(f(g) − s_j))``
  over the candidate activations ``f`` (tanh, relu, sigmoid, identity; ``none`` adds 0);
* the output (and next hidden state) is the mean of the ``steps`` nodes.

As the authors' search cell has it, state 0 and every node are batch-normalised
(no scale or offset) by one shared normalisation whose moving statistics every use
updates in turn (PyTorch's ``BatchNorm1d(affine=False)``: momentum 0.1, ε 1e-5, the
biased batch variance to normalise, the unbiased one into the moving average).

Example:
    >>> import tensorflow as tf
    >>> cell = RecurrentSearchCell(8, CRB_RECURRENT_PRIMITIVES)
    >>> outputs, last = cell(tf.zeros([5, 4, 8]), tf.zeros([4, 8]), tf.fill([36, 4], 0.25))
    >>> outputs.shape, last.shape
    (TensorShape([5, 4, 8]), TensorShape([4, 8]))
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from kdarts.recurrent.genotype import (
    CRB_RECURRENT_PRIMITIVES,  # noqa: F401  (the doc example's)
    RECURRENT_PRIMITIVES,
    num_recurrent_edges,
)

INIT_RANGE = 0.04
"""The authors' (and DARTS's) uniform init range of every recurrent and embedding weight."""

BN_MOMENTUM = 0.1  # PyTorch's convention: new = (1 − m)·old + m·batch
BN_EPSILON = 1e-5

HIGHWAY_ACTIVATIONS = {
    "tanh": tf.tanh,
    "relu": tf.nn.relu,
    "sigmoid": tf.sigmoid,
    "identity": lambda x: x,
}


def check_recurrent_primitives(primitives: Sequence[str]) -> tuple[str, ...]:
    primitives = tuple(primitives)
    unknown = [p for p in primitives if p not in RECURRENT_PRIMITIVES]
    if unknown or not primitives or len(set(primitives)) != len(primitives):
        raise ValueError(f"recurrent primitives must be distinct names from "
                         f"{', '.join(RECURRENT_PRIMITIVES)}; got {list(primitives)}")
    if all(p == "none" for p in primitives):
        raise ValueError("recurrent primitives need an operation other than 'none'")
    return primitives


def highway(state, gate, candidate):
    """``s + c·(f(h) − s)``: the gate ``c`` moves the state towards ``f(h)``."""
    return state + gate * (candidate - state)


def batch_norm_step(x, moving_mean, moving_var, training: bool):
    """Normalise ``x`` (batch, units) without scale/offset; ``(y, mean, var)`` after this use.

    Training: the batch's moments normalise, and the moving averages take the batch mean
    and the unbiased batch variance. Inference: the moving averages normalise.
    """
    if not training:
        return (x - moving_mean) * tf.math.rsqrt(moving_var + BN_EPSILON), moving_mean, moving_var
    mean, var = tf.nn.moments(x, axes=[0])
    n = tf.cast(tf.shape(x)[0], x.dtype)
    y = (x - mean) * tf.math.rsqrt(var + BN_EPSILON)
    unbiased = var * n / (n - 1.0)
    return (y, (1.0 - BN_MOMENTUM) * moving_mean + BN_MOMENTUM * mean,
            (1.0 - BN_MOMENTUM) * moving_var + BN_MOMENTUM * unbiased)


def mix_node(states, gates, candidates, weights, primitives: Sequence[str]):
    """One node's weighted sum over its incoming edges and candidate activations.

    ``states``, ``gates``, ``candidates``: (edges, batch, units), the gate σ(c) and the
    pre-activation ``h`` of each incoming edge; ``weights``: (edges, ops) act(α) rows.
    ``Σ_f w·(s + c·(f(h) − s)) = Σ_f w·s + c·(Σ_f w·f(h) − Σ_f w·s)``: the states are
    weighted once, not once per op.
    """
    columns = [k for k, p in enumerate(primitives) if p != "none"]
    w = tf.gather(weights, columns, axis=1)  # (edges, ops'), `none` contributes zero
    activated = tf.stack([HIGHWAY_ACTIVATIONS[primitives[k]](candidates) for k in columns])
    mixed = tf.einsum("eo,oebu->ebu", w, activated)
    total = tf.reduce_sum(w, axis=1)[:, None, None]
    return tf.reduce_sum(highway(total * states, gates, mixed), axis=0)


@keras.saving.register_keras_serializable(package="kdarts")
class RecurrentSearchCell(keras.layers.Layer):
    """DARTS's recurrent search cell over a sequence (time-major), α given at call time.

    Args:
        units: hidden size (the authors' ``nhid``; their search ties it to the input size).
        primitives: candidate activations (:data:`RECURRENT_PRIMITIVES`, or without
            ``none`` for crb).
        steps: intermediate nodes (8).
        batch_norm: normalise state 0 and every node, as the authors' search cell does.

    Call arguments:
        inputs: (time, batch, features). hidden: (batch, units), the state before the
        first step. weights: act(α), (36, ops). x_mask, h_mask: variational dropout masks
        (batch, features) and (batch, units), the same at every step (or None).
        training: batch statistics (and moving-average updates) or the moving averages.

    Returns ``(outputs, last)``: every step's hidden state (time, batch, units) and the last.
    """

    def __init__(self, units: int, primitives: Sequence[str] = RECURRENT_PRIMITIVES,
                 steps: int = 8, batch_norm: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.primitives = check_recurrent_primitives(primitives)
        self.steps = int(steps)
        self.batch_norm = bool(batch_norm)

    def build(self, input_shape, *args):
        features = int(input_shape[-1])
        init = keras.initializers.RandomUniform(-INIT_RANGE, INIT_RANGE)
        u = self.units
        # W0's rows: the input's first, then the hidden state's (the reference's [x, h])
        self.w0 = self.add_weight(shape=(features + u, 2 * u), initializer=init, name="w0")
        self.node_kernels = self.add_weight(shape=(self.steps, u, 2 * u), initializer=init,
                                            name="node_kernels")
        self.moving_mean = self.add_weight(shape=(u,), initializer="zeros", trainable=False,
                                           name="moving_mean")
        self.moving_variance = self.add_weight(shape=(u,), initializer="ones",
                                               trainable=False, name="moving_variance")
        self.built = True

    def _normalize(self, x, stats, training):
        if not self.batch_norm:
            return x, stats
        y, mean, var = batch_norm_step(x, stats[0], stats[1], training)
        return y, (mean, var)

    def _step(self, x_part, h, weights, h_mask, stats, training, w0_h, later_kernels):
        """One time step from the input's share of ``W0·[x, h]``: ``(h_next, stats)``.

        ``later_kernels[j]``: ``[W_j, …, W_{steps-1}]`` side by side (units, 2·units·(steps − j)).
        State j meets every later node's kernel in one matmul as soon as it exists, not
        once per node: the same products as the per-node form, in 8 wider matmuls.
        """
        u = self.units
        hm = h if h_mask is None else h * h_mask
        c0, h0 = tf.split(x_part + tf.matmul(hm, w0_h), 2, axis=-1)
        s0, stats = self._normalize(highway(h, tf.sigmoid(c0), tf.tanh(h0)), stats, training)
        states, projections = [s0], []
        for k in range(self.steps):
            s = states[k]
            projections.append(tf.matmul(s if h_mask is None else s * h_mask, later_kernels[k]))
            # node k's share of each earlier state's projection
            ch = tf.stack([p[:, 2 * u * (k - j):2 * u * (k - j + 1)]
                           for j, p in enumerate(projections)])
            c, g = tf.split(ch, 2, axis=-1)
            first = k * (k + 1) // 2
            s, stats = self._normalize(
                mix_node(tf.stack(states), tf.sigmoid(c), g, weights[first:first + k + 1],
                         self.primitives), stats, training)
            states.append(s)
        return tf.add_n(states[1:]) / float(self.steps), stats

    def call(self, inputs, hidden, weights, x_mask=None, h_mask=None, training=None,
             kernels=None, length=None, update_stats=True):
        """``kernels``: ``(w0, node_kernels)`` to use instead of the layer's own (a virtual
        weight step's). ``length``: the segment's valid steps (a scalar tensor) when the
        inputs are padded at the end: ``last`` and the moving statistics are then those
        after step ``length``. ``update_stats``: False leaves the moving statistics alone."""
        training = bool(training)
        weights = tf.convert_to_tensor(weights, self.compute_dtype)
        expected = (num_recurrent_edges(self.steps), len(self.primitives))
        if tuple(weights.shape) != expected:
            raise ValueError(f"RecurrentSearchCell: weights have shape {tuple(weights.shape)}, "
                             f"expected {expected}")
        x = inputs if x_mask is None else inputs * x_mask[None]
        features = int(inputs.shape[-1])
        # the input's share of W0·[x, h] for every step at once: one matmul, not T
        w0, node_kernels = (self.w0, self.node_kernels) if kernels is None else kernels
        w0, node_kernels = tf.convert_to_tensor(w0), tf.convert_to_tensor(node_kernels)
        x_part = tf.einsum("tbi,iv->tbv", x, w0[:features])
        w0_h = w0[features:]
        later = [tf.concat(tf.unstack(node_kernels[j:]), axis=-1) for j in range(self.steps)]
        stats = (tf.convert_to_tensor(self.moving_mean), tf.convert_to_tensor(self.moving_variance))

        def step(carry, x_t):
            h, mean, var = carry
            h, (mean, var) = self._step(x_t, h, weights, h_mask, (mean, var), training, w0_h,
                                        later)
            return h, mean, var

        outputs, means, variances = tf.scan(step, x_part,
                                            initializer=(tf.convert_to_tensor(hidden), *stats))
        # padding sits after the valid steps, which never read it: the state and the
        # statistics after step `length` are exactly an unpadded segment's
        end = (tf.shape(outputs)[0] if length is None else tf.cast(length, tf.int32)) - 1
        if training and self.batch_norm and update_stats:
            self.moving_mean.assign(tf.gather(means, end))
            self.moving_variance.assign(tf.gather(variances, end))
        return outputs, tf.gather(outputs, end)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units,
                "primitives": list(self.primitives), "steps": self.steps,
                "batch_norm": self.batch_norm}
