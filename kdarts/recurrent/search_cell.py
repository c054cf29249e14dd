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

from kdarts.ops import global_moments
from kdarts.recurrent.genotype import (
    CRB_RECURRENT_PRIMITIVES,  # noqa: F401  (the doc example's)
    RECURRENT_PRIMITIVES,
    num_recurrent_edges,
)
from kdarts.recurrent.operations import HIGHWAY_ACTIVATIONS, INIT_RANGE, highway

BN_MOMENTUM = 0.1  # PyTorch's convention: new = (1 − m)·old + m·batch
BN_EPSILON = 1e-5


def check_recurrent_primitives(primitives: Sequence[str]) -> tuple[str, ...]:
    primitives = tuple(primitives)
    unknown = [p for p in primitives if p not in RECURRENT_PRIMITIVES]
    if unknown or not primitives or len(set(primitives)) != len(primitives):
        raise ValueError(f"recurrent primitives must be distinct names from "
                         f"{', '.join(RECURRENT_PRIMITIVES)}; got {list(primitives)}")
    if all(p == "none" for p in primitives):
        raise ValueError("recurrent primitives need an operation other than 'none'")
    return primitives


def batch_norm_step(x, moving_mean, moving_var, training: bool):
    """Normalise ``x`` (batch, units) without scale/offset; ``(y, mean, var)`` after this use.

    Training: the batch's moments normalise, and the moving averages take the batch mean
    and the unbiased batch variance; under R replicas the batch is the global one (each
    replica holds an equal shard). Inference: the moving averages normalise.
    """
    if not training:
        return (x - moving_mean) * tf.math.rsqrt(moving_var + BN_EPSILON), moving_mean, moving_var
    ctx = tf.distribute.get_replica_context()
    replicas = 1 if ctx is None else ctx.num_replicas_in_sync
    if replicas > 1:  # the global batch's moments: every replica's shard
        mean, var = global_moments(x, (0,))
        n = tf.cast(tf.shape(x)[0] * replicas, x.dtype)
    else:  # one device: the graph is kept op for op, as grappler's rewrites set last bits
        mean, var = tf.nn.moments(x, axes=[0])
        n = tf.cast(tf.shape(x)[0], x.dtype)
    y = (x - mean) * tf.math.rsqrt(var + BN_EPSILON)
    unbiased = var * n / (n - 1.0)
    return (y, (1.0 - BN_MOMENTUM) * moving_mean + BN_MOMENTUM * mean,
            (1.0 - BN_MOMENTUM) * moving_var + BN_MOMENTUM * unbiased)


@keras.saving.register_keras_serializable(package="kdarts")
class RecurrentSearchCell(keras.layers.Layer):
    """DARTS's recurrent search cell over a sequence (time-major), α given at call time.

    Args:
        units: hidden size (the authors' ``nhid``; their search ties it to the input size).
        primitives: candidate activations
            (:data:`~kdarts.recurrent.genotype.RECURRENT_PRIMITIVES`, or without ``none``
            for crb).
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
        # one traced function per time step (see _traced_step); XLA would compile the
        # calls one by one, a longer warm-up, so an XLA step unrolls in place
        self.trace_step_once = True
        # per node, the predecessors whose edges the step computes (None: all); read at
        # trace time, set by the search for the edges that keep an op (pruning.py)
        self.kept_edges = None

    def build(self, input_shape, *args):
        features = int(input_shape[-1])
        init = keras.initializers.RandomUniform(-INIT_RANGE, INIT_RANGE)
        u = self.units
        # W0's rows: the input's first, then the hidden state's (the reference's [x, h])
        self.w0 = self.add_weight(shape=(features + u, 2 * u), initializer=init, name="w0")
        self.node_kernels = self.add_weight(shape=(self.steps, u, 2 * u), initializer=init,
                                            name="node_kernels")
        # float32 under mixed precision (autocast=False): the statistics need the range
        self.moving_mean = self.add_weight(shape=(u,), initializer="zeros", trainable=False,
                                           autocast=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape=(u,), initializer="ones",
                                               trainable=False, autocast=False,
                                               name="moving_variance")
        self.built = True

    def _traced_step(self):
        """:meth:`_step` as one function, traced once and called at every time step.

        Unrolled in place, a segment's step graph holds every time step's ops, and
        building them in Python dominates the warm-up; as calls of one function (and its
        one gradient function) it is built once per pass. TensorFlow inlines the calls
        before optimising, so the step runs the same kernels (not under XLA:
        :attr:`trace_step_once` is then False)."""
        functions = self.__dict__.setdefault("_step_functions", {})  # not tracked
        traced = functions.get(self.kept_edges)  # one per set of computed edges
        if traced is None:
            traced = functions[self.kept_edges] = tf.function(self._step, autograph=False)
        return traced

    def _incoming(self, k: int) -> list[int]:
        """The predecessors of node ``k`` whose edges the step computes."""
        return list(range(k + 1)) if self.kept_edges is None else list(self.kept_edges[k])

    def _normalize(self, x, stats, training):
        if not self.batch_norm:
            return x, stats
        # statistics in float32 (half precision overflows), as Keras's normalisation
        y, mean, var = batch_norm_step(tf.cast(x, stats[0].dtype), stats[0], stats[1], training)
        return tf.cast(y, x.dtype), (mean, var)

    def _node_weights(self, weights):
        """Per node ``k``: ``({op: (edges, 1, 1) act(α) column}, (edges, 1, 1) row sums)``
        over its ``k + 1`` incoming edges; `none` contributes 0 and is left out. Made once
        per call, outside the time loop."""
        nodes = []
        for k in range(self.steps):
            first = k * (k + 1) // 2
            w = weights[first:first + k + 1]
            if self.kept_edges is not None:
                w = tf.stack([w[j] for j in self._incoming(k)])
            columns = {p: w[:, i, None, None] for i, p in enumerate(self.primitives)
                       if p != "none"}
            nodes.append((columns, tf.add_n(list(columns.values()))))
        return nodes

    def _step(self, x_c, x_g, h, node_weights, h_mask, stats, training, w0_c, w0_g,
              kernels_c, kernels_g):
        """One time step: ``(h_next, stats)``. ``x_c``, ``x_g``: the input's share of
        ``W0·[x, h]`` (its gate and candidate halves); ``kernels_c[k]``, ``kernels_g[k]``:
        node k's kernel halves.

        As the authors' cell: node k multiplies the stack of the k + 1 states it reads
        (masked) by its kernel in one matmul per half, whose output is already in the
        (edges, batch, units) layout the mix reads (no slicing or stacking of products).
        Its mix ``Σ_e Σ_f w·(s + σ(c)·(f(g) − s))`` is computed as
        ``Σ_e W·s + σ(c)·(Σ_f w·f(g) − W·s)`` with ``W = Σ_f w``: the states are weighted
        once, not once per op.
        """
        u = self.units
        hm = h if h_mask is None else h * h_mask
        c0 = x_c + tf.matmul(hm, w0_c)
        g0 = x_g + tf.matmul(hm, w0_g)
        s0, stats = self._normalize(highway(h, tf.sigmoid(c0), tf.tanh(g0)), stats, training)
        stacked, states, nodes = s0[None], [s0], []
        for k in range(self.steps):
            if self.kept_edges is not None:  # only the edges that keep an op
                stacked = tf.stack([states[j] for j in self._incoming(k)])
            masked = stacked if h_mask is None else stacked * h_mask
            flat = tf.reshape(masked, [-1, u])
            edges = len(self._incoming(k))
            c = tf.reshape(tf.matmul(flat, kernels_c[k]), [edges, -1, u])
            g = tf.reshape(tf.matmul(flat, kernels_g[k]), [edges, -1, u])
            columns, total = node_weights[k]
            mixed = tf.add_n([w * HIGHWAY_ACTIVATIONS[p](g) for p, w in columns.items()])
            weighted = total * stacked
            s = tf.reduce_sum(highway(weighted, tf.sigmoid(c), mixed), axis=0)
            s, stats = self._normalize(s, stats, training)
            nodes.append(s)
            states.append(s)
            if k + 1 < self.steps and self.kept_edges is None:
                stacked = tf.concat([stacked, s[None]], axis=0)
        return tf.add_n(nodes) / float(self.steps), stats

    def call(self, inputs, hidden, weights, x_mask=None, h_mask=None, training=None,
             kernels=None, length=None, update_stats=True):
        """``kernels``: ``(w0, node_kernels)`` to use instead of the layer's own (a virtual
        weight step's). ``length``: the segment's valid steps (a scalar tensor) when the
        inputs are padded at the end: ``last`` and the moving statistics are then those
        after step ``length``. ``update_stats``: False leaves the moving statistics alone.

        A segment of static length is unrolled in the graph, one step after another (its
        backward pass then keeps every step's tensors as they are; a ``tf.scan`` pushes and
        pops each of them on stacks, which costs the backward pass a multiple of the
        forward's time). An unknown length runs a ``tf.scan`` of the same step, one
        iteration at a time.
        """
        training = bool(training)
        cast = lambda v: None if v is None else tf.cast(v, self.compute_dtype)  # noqa: E731
        inputs, hidden, x_mask, h_mask = (cast(v) for v in (inputs, hidden, x_mask, h_mask))
        weights = cast(weights)
        expected = (num_recurrent_edges(self.steps), len(self.primitives))
        if tuple(weights.shape) != expected:
            raise ValueError(f"RecurrentSearchCell: weights have shape {tuple(weights.shape)}, "
                             f"expected {expected}")
        x = inputs if x_mask is None else inputs * x_mask[None]
        features, u = int(inputs.shape[-1]), self.units
        w0, node_kernels = (self.w0, self.node_kernels) if kernels is None else kernels
        w0, node_kernels = cast(w0), cast(node_kernels)
        # the input's share of W0·[x, h] for every step at once: one matmul per half, not T
        x_c = tf.einsum("tbi,iv->tbv", x, w0[:features, :u])
        x_g = tf.einsum("tbi,iv->tbv", x, w0[:features, u:])
        fixed = (self._node_weights(weights), h_mask, training, w0[features:, :u],
                 w0[features:, u:], [node_kernels[k, :, :u] for k in range(self.steps)],
                 [node_kernels[k, :, u:] for k in range(self.steps)])
        one_step = self._traced_step() if self.trace_step_once else self._step

        def step(carry, x_t):
            h, mean, var = carry
            h, (mean, var) = one_step(x_t[0], x_t[1], h, fixed[0], fixed[1], (mean, var),
                                      *fixed[2:])
            return h, mean, var

        carry = (tf.convert_to_tensor(hidden), tf.convert_to_tensor(self.moving_mean),
                 tf.convert_to_tensor(self.moving_variance))
        if inputs.shape[0] is None:
            outputs, means, variances = tf.scan(step, (x_c, x_g), initializer=carry,
                                                parallel_iterations=1)
        else:
            history = []
            for x_t in zip(tf.unstack(x_c), tf.unstack(x_g)):
                carry = step(carry, x_t)
                history.append(carry)
            outputs, means, variances = (tf.stack(list(v)) for v in zip(*history))
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
