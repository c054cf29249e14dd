"""Mixed edges of the search cell: the plain reference and the fused fan-out.

:class:`MixedEdge` is one edge as DARTS writes it: every candidate op on the
edge's input, weighted by ``act(α)``. :class:`FanOut` computes *all* the mixed
edges that leave one node at once, which is the same mathematics with far fewer
(and wider) kernels:

- pools and the identity give the same result on every outgoing edge, and so
  does the search network's BN without scale/offset that follows a pool (same
  input, same statistics): computed once per node;
- the convolutions of one kind (e.g. every ``sep_conv_3x3`` leaving the node)
  run as one depthwise conv with a channel multiplier and one batched 1×1 conv;
- with ``crb``, ops pruned on an edge are gathered out before the convolution,
  and an op pruned on every edge is skipped by a ``tf.cond``: pruned ops cost no
  compute.

Both are weight-for-weight the same network (``tests/test_search_network.py``
copies weights between them and compares outputs).

Example:
    >>> import numpy as np, tensorflow as tf
    >>> fan = FanOut(8, strides=1, primitives=CRB_PRIMITIVES, num_edges=3)
    >>> x = np.random.rand(2, 8, 8, 8).astype("float32")
    >>> w = tf.fill((3, 7), 0.5)
    >>> fan(x, w, training=True).shape   # one contribution per outgoing edge
    TensorShape([3, 2, 8, 8, 8])
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import tensorflow as tf

from kdarts.genotype import CRB_PRIMITIVES  # noqa: F401  (doc example)
from kdarts.ops import BN_EPSILON, BN_MOMENTUM, check_primitives, make_op

_PKG = "kdarts"
_CONV_KERNELS = {"sep_conv_3x3": 3, "sep_conv_5x5": 5, "dil_conv_3x3": 3, "dil_conv_5x5": 5}


def _dilated_depthwise(x, kernel, strides: int, dilation: int):
    """Depthwise "same" conv with dilation d, computed on the d×d sub-grids of ``x``.

    A dilated conv only mixes pixels of one sub-grid, so it is a plain conv on each
    (TF's own dilated path needs a static channel multiplier; the CPU kernel has no
    dilation). At stride d only the first sub-grid is needed: the strided output of
    the dilated conv at stride 1, sampled every d pixels (the reference's grid).
    """
    if strides == dilation:
        return tf.nn.depthwise_conv2d(x[:, ::dilation, ::dilation, :], kernel, [1, 1, 1, 1],
                                      "SAME")
    if strides != 1:
        raise ValueError(f"dilated depthwise: strides {strides} with dilation {dilation}")
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    pad = [[0, (-h) % dilation], [0, (-w) % dilation]]  # zero rows act as the "same" padding
    y = tf.space_to_batch_nd(x, [dilation, dilation], pad)
    y = tf.nn.depthwise_conv2d(y, kernel, [1, 1, 1, 1], "SAME")
    return tf.batch_to_space(y, [dilation, dilation], pad)


@keras.saving.register_keras_serializable(package=_PKG)
class MixedEdge(keras.layers.Layer):
    """One edge of a search cell: ``Σ_o act(α)_o · op_o(x)`` over the candidate ops.

    With an ``active`` mask (crb), a pruned op sits behind a ``tf.cond`` and is
    never run. ``none`` contributes zeros, so it is never computed at all.

    Args:
        channels: channels of the input and output.
        strides: 1, or 2 for edges leaving the input nodes of a reduction cell.
        primitives: candidate op names (columns of α).
    """

    def __init__(self, channels: int, strides: int = 1,
                 primitives: Sequence[str] = CRB_PRIMITIVES, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.strides = int(strides)
        self.primitives = check_primitives(primitives)
        self.candidate_ops = [
            make_op(p, channels, strides, affine=False, search=True, layer_name=p)
            for p in self.primitives
        ]

    def build(self, input_shape):
        for op in self.candidate_ops:
            op.build(input_shape)

    def call(self, x, weights, active=None, training=None):
        s = self.strides
        shape = tf.stack([tf.shape(x)[0], (tf.shape(x)[1] + s - 1) // s,
                          (tf.shape(x)[2] + s - 1) // s, self.channels])
        outputs = []
        for i, (name, op) in enumerate(zip(self.primitives, self.candidate_ops)):
            if name == "none":
                continue
            run = lambda op=op, i=i: weights[i] * op(x, training=training)  # noqa: E731
            if active is None:
                outputs.append(run())
            else:
                outputs.append(tf.cond(active[i], run, lambda: tf.zeros(shape, x.dtype)))
        return tf.add_n(outputs)

    def get_config(self) -> dict:
        return {**super().get_config(), "channels": self.channels, "strides": self.strides,
                "primitives": list(self.primitives)}


@keras.saving.register_keras_serializable(package=_PKG)
class FanOut(keras.layers.Layer):
    """All mixed edges leaving one node, computed together (see module docstring).

    ``call(x, weights, active=None)`` takes the node's tensor, the activated
    weights of its ``num_edges`` outgoing edges ``(num_edges, num_ops)`` (rows in
    destination order) and, for crb, the boolean ``active`` matrix of unpruned
    ops; it returns the edges' outputs stacked, ``(num_edges, B, H', W', C)``.
    """

    def __init__(self, channels: int, strides: int = 1,
                 primitives: Sequence[str] = CRB_PRIMITIVES, num_edges: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.strides = int(strides)
        self.primitives = check_primitives(primitives)
        self.num_edges = int(num_edges)
        c, k = self.channels, self.num_edges
        self._params: dict[str, dict[str, keras.Variable]] = {}

        def conv(name, shape, fan_in):
            # PyTorch's default conv init (kaiming-uniform, a=√5): U(±1/√fan_in)
            bound = 1.0 / math.sqrt(fan_in)
            return self.add_weight(shape=shape, name=name,
                                   initializer=keras.initializers.RandomUniform(-bound, bound))

        def stats(name, shape):
            return (self.add_weight(shape=shape, name=f"{name}_mean", initializer="zeros",
                                    trainable=False),
                    self.add_weight(shape=shape, name=f"{name}_var", initializer="ones",
                                    trainable=False))

        for op in self.primitives:
            p: dict = {}
            if op.startswith("sep_conv"):
                ks = _CONV_KERNELS[op]
                p["dw1"] = conv(f"{op}_dw1", (k, ks, ks, c), ks * ks)
                p["pw1"] = conv(f"{op}_pw1", (k, c, c), c)
                p["bn1"] = stats(f"{op}_bn1", (k, c))
                p["dw2"] = conv(f"{op}_dw2", (k, ks, ks, c), ks * ks)
                p["pw2"] = conv(f"{op}_pw2", (k, c, c), c)
                p["bn2"] = stats(f"{op}_bn2", (k, c))
            elif op.startswith("dil_conv"):
                ks = _CONV_KERNELS[op]
                p["dw"] = conv(f"{op}_dw", (k, ks, ks, c), ks * ks)
                p["pw"] = conv(f"{op}_pw", (k, c, c), c)
                p["bn"] = stats(f"{op}_bn", (k, c))
            elif op == "skip_connect" and self.strides == 2:
                p["fr1"] = conv(f"{op}_fr1", (k, c, c // 2), c)
                p["fr2"] = conv(f"{op}_fr2", (k, c, c - c // 2), c)
                p["bn"] = stats(f"{op}_bn", (k, c))
            elif op in ("max_pool_3x3", "avg_pool_3x3"):
                p["bn"] = stats(f"{op}_bn", (1, c))  # one BN: every edge sees the same pool
            self._params[op] = p

    # -- building blocks, each on the edges ``idx`` (None: all of them) ------------------
    # Stacked edge tensors are laid out (k, N, C) with N = B·H·W: 1×1 convs become one
    # batched matmul, BN statistics a reduction over axis 1.
    @staticmethod
    def _take(var, idx):
        return var if idx is None else tf.gather(var, idx)

    def _bn(self, y, stats, idx, training):
        """BN without scale/offset on (k, N, C); only the rows ``idx`` of the stats move."""
        mean_var, var_var = stats
        if training:
            mean = tf.reduce_mean(y, axis=1, keepdims=True)
            var = tf.reduce_mean(tf.square(y - tf.stop_gradient(mean)), axis=1, keepdims=True)
            for moving, value in ((mean_var, mean[:, 0, :]), (var_var, var[:, 0, :])):
                new = BN_MOMENTUM * self._take(moving, idx) + (1.0 - BN_MOMENTUM) * value
                if idx is not None:
                    new = tf.tensor_scatter_nd_update(moving, idx[:, None], new)
                moving.assign(new)
        else:
            mean = self._take(mean_var, idx)[:, None, :]
            var = self._take(var_var, idx)[:, None, :]
        return (y - mean) * tf.math.rsqrt(var + BN_EPSILON)

    def _depthwise_fan(self, x, dw, strides, dilation=1):
        """One input (B, H, W, C), one depthwise kernel per edge → (N', C, k)."""
        kernel = tf.transpose(dw, [1, 2, 3, 0])  # (ks, ks, C, k): channel multiplier k
        if dilation == 1:
            y = tf.nn.depthwise_conv2d(x, kernel, [1, strides, strides, 1], "SAME")
        else:
            y = _dilated_depthwise(x, kernel, strides, dilation)
        return tf.reshape(y, [-1, self.channels, tf.shape(dw)[0]])

    def _depthwise_each(self, y, dw, spatial):
        """Edge q's kernel on edge q's tensor: (k, N, C) → (N, k, C)."""
        b, h, w = spatial
        c = self.channels
        x = tf.reshape(tf.transpose(y, [1, 0, 2]), [b, h, w, -1])
        ks = dw.shape[1]
        kernel = tf.reshape(tf.transpose(dw, [1, 2, 0, 3]), [ks, ks, -1, 1])
        x = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME")
        return tf.reshape(x, [-1, tf.shape(dw)[0], c])

    def _sep_conv(self, x, p, idx, training, spatial):
        y = self._depthwise_fan(x, self._take(p["dw1"], idx), self.strides)
        y = self._bn(tf.einsum("ncq,qcd->qnd", y, self._take(p["pw1"], idx)), p["bn1"], idx,
                     training)
        y = self._depthwise_each(tf.nn.relu(y), self._take(p["dw2"], idx), spatial)
        return self._bn(tf.einsum("nqc,qcd->qnd", y, self._take(p["pw2"], idx)), p["bn2"], idx,
                        training)

    def _dil_conv(self, x, p, idx, training, spatial):
        y = self._depthwise_fan(x, self._take(p["dw"], idx), self.strides, dilation=2)
        return self._bn(tf.einsum("ncq,qcd->qnd", y, self._take(p["pw"], idx)), p["bn"], idx,
                        training)

    def _factorized_reduce(self, x, p, idx, training, spatial):
        shifted = tf.pad(x[:, 1:, 1:, :], [[0, 0], [0, 1], [0, 1], [0, 0]])
        a = tf.reshape(x[:, ::2, ::2, :], [-1, self.channels])
        b = tf.reshape(shifted[:, ::2, ::2, :], [-1, self.channels])
        y = tf.concat([tf.einsum("nc,qcd->qnd", a, self._take(p["fr1"], idx)),
                       tf.einsum("nc,qcd->qnd", b, self._take(p["fr2"], idx))], axis=-1)
        return self._bn(y, p["bn"], idx, training)

    # -- the layer -----------------------------------------------------------------------
    def call(self, x, weights, active=None, training=None):
        """``x`` (B, H, W, C) → the outgoing edges' outputs (k, B, H', W', C)."""
        training = bool(training)
        s = self.strides
        b = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
        h, w = -(-x.shape[1] // s), -(-x.shape[2] // s)
        spatial = (b, h, w)
        relu_x = tf.nn.relu(x)  # shared by every conv op leaving this node
        shared_cols, shared_outputs = [], []
        batched, batched_ids = [], []
        for col, op in enumerate(self.primitives):
            if op == "none":
                continue  # contributes zeros: nothing to compute
            if op in ("max_pool_3x3", "avg_pool_3x3", "skip_connect") and not (
                    op == "skip_connect" and s == 2):
                if op == "skip_connect":
                    y = tf.reshape(x, [-1, self.channels])
                else:
                    idx = None
                    if active is not None:  # [0] if any edge keeps the op, else []
                        idx = tf.cast(tf.where(tf.reduce_any(active[:, col], keepdims=True))[:, 0], tf.int32)
                    y = self._shared(op, x, idx, training)
                shared_cols.append(col)
                shared_outputs.append(y)
                continue
            fn = {"sep": self._sep_conv, "dil": self._dil_conv,
                  "ski": self._factorized_reduce}[op[:3]]
            if active is None:
                y = fn(relu_x, self._params[op], None, training, spatial)
                batched.append(y * weights[:, col][:, None, None])
            else:  # only the edges that keep the op: pruned ops never reach a kernel
                idx = tf.cast(tf.where(active[:, col])[:, 0], tf.int32)
                y = fn(relu_x, self._params[op], idx, training, spatial)
                batched.append(y * tf.gather(weights[:, col], idx)[:, None, None])
                batched_ids.append(idx)

        terms = []
        if shared_outputs:
            wts = tf.gather(weights, shared_cols, axis=1)  # (k, n_shared)
            terms.append(tf.einsum("ko,onc->knc", wts, tf.stack(shared_outputs)))
        if batched and active is None:
            terms.append(tf.add_n(batched))
        elif batched:
            terms.append(tf.math.unsorted_segment_sum(
                tf.concat(batched, 0), tf.concat(batched_ids, 0), self.num_edges))
        out = tf.add_n(terms) if len(terms) > 1 else terms[0]
        return tf.reshape(out, [self.num_edges, b, h, w, self.channels])

    def _shared(self, op, x, idx, training):
        """A pool and its BN, identical on every edge: (N', C), zeros if no edge keeps it."""
        if idx is not None:  # 0 or 1 copies of the input: an all-pruned pool never runs
            x = tf.reshape(tf.gather(x[None], idx), [-1] + x.shape[1:].as_list())
        pool = tf.nn.max_pool2d if op == "max_pool_3x3" else tf.nn.avg_pool2d
        y = pool(x, 3, self.strides, "SAME")  # TF's SAME average excludes the padding
        copies = 1 if idx is None else tf.size(idx)
        y = self._bn(tf.reshape(y, [copies, -1, self.channels]), self._params[op]["bn"], idx,
                     training)
        return y[0] if idx is None else tf.reduce_sum(y, axis=0)

    def get_config(self) -> dict:
        return {**super().get_config(), "channels": self.channels, "strides": self.strides,
                "primitives": list(self.primitives), "num_edges": self.num_edges}
