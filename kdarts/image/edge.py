"""Mixed edges of the search cell: the plain reference and the fused fan-out.

:class:`MixedEdge` is one edge as DARTS writes it: every candidate op on the
edge's input, weighted by ``act(α)``. :class:`FanOut` computes *all* the mixed
edges that leave one node at once, which is the same mathematics with far fewer
(and wider) kernels:

- pools and the identity give the same result on every outgoing edge, and so
  does the search network's BN without scale/offset that follows a pool (same
  input, same statistics): computed once per node;
- the convolutions of one kind (e.g. every ``sep_conv_3x3`` leaving the node)
  run as one convolution over all those edges;
- with ``crb``, a pruned op runs with zero kernels (a select on the small kernels: its
  weight is 0, but NaN·0 is NaN) and its BN statistics stay, as if it had not run; no
  ``tf.cond``, whose branch functions and gradient bookkeeping would multiply the
  step's graph and its warm-up (docs/design.md, "Why op counts matter"). With
  ``skip_pruned`` only the edges that keep a conv op are gathered into its kernels:
  fewer FLOPs when many ops are pruned, but the gathers, scatters and dynamic shapes
  nearly double the step's graph (and its warm-up). An op pruned on every edge then
  runs on one edge, not on zero edges: oneDNN's kernels (TensorFlow's default on many
  x86 CPUs) refuse zero-size filters and abort the process on a max-pool gradient of
  zero images;
- a conv op's ``act(α)`` is the scale of its last (fused) BN, which weights each edge's
  output and, backward, yields α's gradient; the pools and the identity are weighted
  into the outgoing edges by one matmul (and, with ``skip_pruned``, each conv op's
  gathered edges by one of their own).

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

from dataclasses import dataclass, field
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from kdarts.image.genotype import CRB_PRIMITIVES  # noqa: F401  (doc example)
from kdarts.image.operations import check_primitives, make_op, pool_3x3, symmetric_pad
from kdarts.ops import (
    BN_EPSILON,
    BN_MOMENTUM,
    FanInUniform,
    _replicas,
    fused_batch_norm,
    global_moments,
    graph_constant,
)

_PKG = "kdarts"
_CONV_KERNELS = {"sep_conv_3x3": 3, "sep_conv_5x5": 5, "dil_conv_3x3": 3, "dil_conv_5x5": 5}

#: Depthwise k×k then 1×1 composes into one dense kernel while C·k² (taps per output) is
#: at most this: fewer, wider kernels against more FLOPs, which grow with C·k². Tuned with
#: ``tools/bench_search.py --config small|reference`` (C=8 and C=16 cells).
_COMPOSE_MAX_TAPS = 400


def _conv(x, kernel, strides: int, dilation: int = 1, depthwise: bool = False,
          pad_input: bool = True):
    """A k×k conv padded as PyTorch pads it; a dilated one runs on the d×d sub-grids of ``x``.

    Padding is symmetric (k//2 each side), so at stride 2 output pixel ``i`` is centred
    on input pixel ``2i``, the reference's grid. At stride 1 that is TF's "same"; at
    stride 2 (TF's "same" would pad only after, for even sizes) the input is padded and
    convolved "valid" (``pad_input``): passed as the conv's explicit padding instead, the
    backward pass falls back from oneDNN to TF's own, slower kernels
    (``tools/bench_search.py`` times the step). XLA compiles its own kernels and keeps the explicit padding (the padded form
    changed its fusion enough to move the unrolled step's α by 5e-5 from the graph's).

    A dilated conv only mixes pixels of one sub-grid, so it is a plain conv on each
    (TF's own dilated path needs static channel counts, which pruning makes dynamic).
    At stride d only the first sub-grid is needed: the dilated conv at stride 1
    sampled every d pixels (the reference's grid).
    """
    ks = kernel.shape[0]

    def conv(x, stride):
        padding = "SAME"
        if stride != 1 and pad_input:
            x, padding = symmetric_pad(x, ks // 2), "VALID"
        elif stride != 1:
            padding = [[0, 0], [ks // 2] * 2, [ks // 2] * 2, [0, 0]]
        if depthwise:
            return tf.nn.depthwise_conv2d(x, kernel, [1, stride, stride, 1], padding)
        return tf.nn.conv2d(x, kernel, stride, padding)

    if dilation == 1:
        return conv(x, strides)
    if strides == dilation:
        return conv(_subgrid(x, dilation), 1)
    if strides != 1:
        raise ValueError(f"dilated conv: strides {strides} with dilation {dilation}")
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    pad = [[0, (-h) % dilation], [0, (-w) % dilation]]  # zero rows act as the "same" padding
    y = conv(tf.space_to_batch_nd(x, [dilation, dilation], pad), 1)
    return tf.batch_to_space(y, [dilation, dilation], pad)


def _shape(dims):
    """``dims`` for a reshape or transpose: a shared constant when static."""
    if isinstance(dims, (list, tuple)) and all(isinstance(d, int) for d in dims):
        return graph_constant(tuple(dims))
    return dims  # a tensor, or dims with a dynamic size


def _reshape(x, dims):
    return tf.reshape(x, _shape(dims))


def _transpose(x, perm):
    return tf.transpose(x, _shape(perm))


def _subgrid(x, step: int, offset: int = 0):
    """``x[:, offset::step, offset::step, :]``. For sizes that ``step`` divides, a reshape
    and a plain slice: their gradient is a pad, cheaper than a strided slice's
    ``StridedSliceGrad`` (the slice is full-size backward either way)."""
    h, w, c = x.shape[1:]
    if h is None or w is None or c is None or h % step or w % step:
        return x[:, offset::step, offset::step, :]
    grid = _reshape(x, [-1, h // step, step, w // step, step * c])
    y = tf.slice(grid, graph_constant((0, 0, offset, 0, offset * c)),
                 graph_constant((-1, h // step, 1, w // step, c)))
    return _reshape(y, [-1, h // step, w // step, c])


def _zero_unless(alive, params: dict) -> dict:
    """An op's kernels where ``alive``, else zeros of their shape; its BN statistics
    (pairs) as they are. ``alive``: a scalar bool tensor (whole kernels) or one per edge
    (their rows), reshaped once per kernel rank."""
    masks, out = {}, {}
    for name, v in params.items():
        if isinstance(v, tuple):
            out[name] = v
            continue
        v = tf.convert_to_tensor(v)
        rank = v.shape.rank
        if rank not in masks:
            masks[rank] = _reshape(alive, [-1] + [1] * (rank - 1))
        # zeros of the full shape (a broadcast scalar would add a reduction to the
        # gradient), as one ZerosLike node (tf.zeros_like makes a fill and two constants)
        out[name] = tf.where(masks[rank], v, tf.raw_ops.ZerosLike(x=v))
    return out


def normalize(y, fused: bool = True, scale=None):
    """Batch-normalise the columns of ``y`` (N, F): ``((y − mean) / √(var + ε), mean, var)``
    with the biased variance in the output and the unbiased one (× N/(N−1)) returned, as
    PyTorch feeds its moving variance. Only ``y``'s gradient flows (and ``scale``'s):
    mean and var feed the moving averages.

    ``scale`` (F,): multiplies the normalised columns. The fan-out passes an edge's
    ``act(α)`` here, so the fused kernel weights its output and its gradient gives α's
    (see :meth:`FanOut.call`).

    ``fused``: one kernel each way (``FusedBatchNormV3`` on ``y`` seen as a (1, N, 1, F)
    image, and its gradient) instead of the formula and its backward as a dozen
    elementwise ops and column means: fewer ops to trace and fewer kernel launches. Not under XLA, whose fused BN
    takes the variance as E[y²] − E[y]² (relative error 3e-2 for a mean of 100 against a
    spread of 1; TensorFlow's CPU kernels and the formula below are within 3e-6).
    """
    if fused:
        rows, cols = (d if d is not None else tf.shape(y)[i] for i, d in enumerate(y.shape))
        out, mean, var = fused_batch_norm(_reshape(y, [1, rows, 1, cols]), scale)
        return _reshape(out, [rows, cols]), tf.stop_gradient(mean), tf.stop_gradient(var)
    out, mean, var = _normalize_two_pass(y)
    return (out if scale is None else out * scale), mean, var


@tf.custom_gradient
def _normalize_two_pass(y):
    """:func:`normalize` as a centred two-pass formula, with a hand-written backward (one
    pass of two column means) instead of autodiff's chain of broadcasts and tiles."""
    mean = tf.reduce_mean(y, axis=0)
    centered = y - mean
    var = tf.reduce_mean(tf.square(centered), axis=0)
    inv = tf.math.rsqrt(var + BN_EPSILON)
    out = centered * inv
    n = tf.cast(tf.shape(y)[0], y.dtype)

    def grad(d_out, *_):
        return inv * (d_out - tf.reduce_mean(d_out, axis=0)
                      - out * tf.reduce_mean(d_out * out, axis=0))

    return (out, mean, var * n / tf.maximum(n - 1.0, 1.0)), grad


@tf.custom_gradient
def normalize_across_replicas(y):
    """:func:`normalize` with the statistics of the global batch (synchronised BN).

    Column sums of ``y`` and ``y²`` (and, backward, of the two gradient terms) are
    all-reduced over the replicas of the current ``tf.distribute`` strategy, so every
    replica normalises with the mean and variance a single device would compute for the
    whole global batch. Outside a multi-replica context it equals :func:`normalize`.
    """
    mean, var = global_moments(y)
    centered = y - mean
    inv = tf.math.rsqrt(var + BN_EPSILON)
    out = centered * inv
    ctx = tf.distribute.get_replica_context()
    sum_ = lambda t: ctx.all_reduce(tf.distribute.ReduceOp.SUM, t)  # noqa: E731
    n = tf.cast(tf.shape(y)[0] * ctx.num_replicas_in_sync, y.dtype)  # equal shards

    def grad(d_out, *_):
        d_sum, d_out_sum = tf.unstack(sum_(tf.stack([tf.reduce_sum(d_out, 0),
                                                     tf.reduce_sum(d_out * out, 0)])))
        return inv * (d_out - d_sum / n - out * (d_out_sum / n))

    unbiased = var * n / tf.maximum(n - 1.0, 1.0)  # as normalize returns it
    return (out, mean, unbiased), grad


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
            run = lambda op=op, i=i: (  # noqa: E731
                tf.cast(weights[i], self.compute_dtype) * op(x, training=training))
            if active is None:
                outputs.append(run())
            else:
                outputs.append(tf.cond(active[i], run, lambda: tf.zeros(shape, x.dtype)))
        return tf.add_n(outputs)

    def get_config(self) -> dict:
        return {**super().get_config(), "channels": self.channels, "strides": self.strides,
                "primitives": list(self.primitives)}


@dataclass
class _FanInput:
    """What every op of one :meth:`FanOut.call` shares (:meth:`FanOut._prepare`)."""

    x: tf.Tensor
    training: bool
    kept: tuple | None  # edges per op column kept when traced, or None: all
    skip: bool  # gather the alive edges at every step
    spatial: tuple  # (B, H', W') of the outputs
    relu_x: tf.Tensor
    n: object  # B·H'·W'
    dtype: tf.DType
    w_cols: list = field(default_factory=list)  # act(α) per op column, compute dtype
    w32_cols: list | None = None  # the same in float32 (the subsets' BN scales)
    a_cols: list | None = None  # the alive masks per op column
    scales: list | None = None  # every edge's BN scales per op column
    first_edge: tf.Tensor | None = None


@dataclass
class _FanTerms:
    """One fan-out's op outputs by route, before :meth:`FanOut._combine` sums them."""

    mixed: list = field(default_factory=list)  # (k, N·C): gathered ops, already placed
    weighted: list = field(default_factory=list)  # (N, C, k), each × act(α)
    shared: list = field(default_factory=list)  # (N·C,): ops the same on every edge
    shared_w: list = field(default_factory=list)  # their act(α) columns
    subsets: list = field(default_factory=list)  # (N, C, j), × act(α)
    subset_edges: list = field(default_factory=list)  # their edges


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
        self.synchronized = False  # BN statistics over all replicas (set by the network)
        # crb: run each conv op on the edges that keep it only (set by the network's
        # compile(skip_pruned_ops=True)); the same outputs, fewer FLOPs, a larger graph
        self.skip_pruned = False
        # under XLA (set by the network when compiled with jit_compile): static shapes
        # only, so no per-op subsets of edges, and the BN's two-pass form
        self.static_shapes = False
        # crb: per column of α, the edges whose op was alive when the step was traced (a
        # tuple of edge indices each), or None: every op on every edge. Set by the network
        # around its train step (SearchNetwork.make_train_function). Pruning is for good,
        # so every edge alive now was alive then: the others are never computed, and those
        # pruned since run with zero kernels. Static shapes: XLA compiles it.
        self.kept = None
        c, k = self.channels, self.num_edges
        self._params: dict[str, dict[str, keras.Variable]] = {}

        def conv(name, shape, fan_in):
            # PyTorch's default conv init, as every kernel in kdarts: U(±1/√fan_in)
            return self.add_weight(shape=shape, name=name, initializer=FanInUniform(fan_in))

        def stats(name, shape):
            # under tf.distribute each replica updates its own copy (of the same values
            # with synchronised BN); a checkpoint keeps the first replica's
            return (self.add_weight(shape=shape, name=f"{name}_mean", initializer="zeros",
                                    trainable=False, autocast=False),
                    self.add_weight(shape=shape, name=f"{name}_var", initializer="ones",
                                    trainable=False, autocast=False))

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
    # Inside a fan-out, stacked edges are laid out (N, C, k), N = B·H·W, edge index
    # fastest: every kernel below can write that layout directly (a conv's output
    # channels, a block-diagonal 1×1). The conv ops' outputs, weighted by their BN, are
    # summed and made edge-major (k, N·C) by one transpose per fan-out; the shared ops
    # (pools, identity) are weighted into the edges by one matmul that writes (k, N·C).
    @staticmethod
    def _take(var, idx):
        return var if idx is None else tf.gather(var, idx)

    def _bn(self, y, stats, idx, training, alive=None, scale=None):
        """BN without scale/offset on (N, C, k'); only the rows ``idx`` of the stats move,
        and only where ``alive`` (a scalar bool tensor, or one per row; None: always).
        ``scale`` (C·k',), float32: column (c, q) multiplied by it, edge q's ``act(α)``.

        As PyTorch (and :class:`kdarts.ops.BatchNormalization`): normalised with the
        biased batch variance, the moving variance fed the unbiased one (× N/(N−1)).
        """
        mean_var, var_var = stats  # (k, C)
        dtype = y.dtype  # float16 under mixed precision: statistics in float32
        y = tf.cast(y, tf.float32)
        shape = tf.shape(y)
        if training:
            replicas = _replicas() if self.synchronized else 1
            rows = y.shape[0] if y.shape[0] is not None else shape[0]  # static: fewer ops
            flat = _reshape(y, [rows, -1])
            # var: the unbiased one, for the moving average
            if replicas > 1:
                flat, mean, var = normalize_across_replicas(flat)
                flat = flat if scale is None else flat * scale
            else:
                flat, mean, var = normalize(flat, fused=not self.static_shapes, scale=scale)
            # mean and variance move together, stacked (k, 2, C): one chain of ops, not two
            value = _transpose(_reshape(tf.stack([mean, var]), [2, self.channels, -1]),
                                 [2, 0, 1])  # (k', 2, C)
            moving = tf.stack([mean_var, var_var], axis=1)
            new = (graph_constant(BN_MOMENTUM, tf.float32) * self._take(moving, idx)
                   + graph_constant(1.0 - BN_MOMENTUM, tf.float32) * value)
            if idx is not None:
                new = tf.tensor_scatter_nd_update(moving, tf.expand_dims(idx, 1), new)
            if alive is not None:  # a pruned op's statistics stay
                new = tf.where(_reshape(alive, [-1, 1, 1]), new, moving)
            new_mean, new_var = tf.unstack(new, axis=1)
            mean_var.assign(new_mean)
            var_var.assign(new_var)
            return tf.cast(_reshape(flat, shape), dtype)
        mean = tf.transpose(self._take(mean_var, idx))  # (C, k')
        var = tf.transpose(self._take(var_var, idx))
        y = (y - mean) * tf.math.rsqrt(var + BN_EPSILON)
        if scale is not None:
            y = y * _reshape(scale, [self.channels, -1])
        return tf.cast(y, dtype)

    def _count(self, idx):
        """Edges an op runs on: all (a Python int: static shapes) or the gathered ``idx``
        (static when ``idx`` is a constant list), counted once per op rather than by each
        kernel from its tensors' shapes."""
        if idx is None:
            return self.num_edges
        return idx.shape[0] if idx.shape[0] is not None else tf.size(idx)

    def _pointwise(self, y, pw, spatial, k):
        """Edge q's 1×1 conv ``pw[q]`` on edge q's channels: (N, C·k') → (N, C, k').

        The k' 1×1 convs run as one block-diagonal matmul: wasteful in FLOPs, cheap in
        time at these widths, and it keeps the (N, C, k) layout.
        """
        b, h, w = spatial
        c = self.channels
        eye = (graph_constant(np.eye(k), pw.dtype) if isinstance(k, int)  # one shared node
               else tf.eye(k, dtype=pw.dtype))
        block = tf.einsum("qcd,qr->cqdr", pw, eye)
        z = tf.matmul(_reshape(y, [b * h * w, c * k]), _reshape(block, [c * k, c * k]))
        return _reshape(z, [b * h * w, c, k])

    def _separable_fan(self, x, dw, pw, strides, spatial, k, dilation=1):
        """depthwise k×k then 1×1, one (dw, pw) pair per edge, on one input → (N', C, k).

        For few channels each pair composes into one dense k×k kernel and all edges'
        kernels stack into a single oneDNN convolution: more FLOPs, but one dense kernel
        instead of a depthwise conv plus a batched matmul. The composed kernel's FLOPs
        grow with C·k² taps per output, so past ``_COMPOSE_MAX_TAPS`` the depthwise form
        is used (the trade: kernel count against FLOPs; ``tools/bench_search.py
        --config reference`` times the step on both sides of it).
        """
        ks, c = dw.shape[1], self.channels
        b, h, w = spatial  # explicit sizes, not -1: they stay static where they can
        if c * ks * ks <= _COMPOSE_MAX_TAPS:
            kernel = _reshape(tf.einsum("qijc,qcd->ijcdq", dw, pw), [ks, ks, c, c * k])
            y = _conv(x, kernel, strides, dilation, pad_input=not self.static_shapes)
            return _reshape(y, [b * h * w, c, k])
        kernel = _transpose(dw, [1, 2, 3, 0])  # (ks, ks, C, k): channel multiplier k
        y = _conv(x, kernel, strides, dilation, depthwise=True,  # channels (c, q)
                  pad_input=not self.static_shapes)
        return self._pointwise(y, pw, spatial, k)

    def _separable_each(self, y, dw, pw, spatial, k):
        """Edge q's depthwise k×k then 1×1 on edge q's tensor: (N, C, k) → (N, C, k)."""
        b, h, w = spatial
        c, ks = self.channels, dw.shape[1]
        kernel = _reshape(_transpose(dw, [1, 2, 3, 0]), [ks, ks, c * k, 1])
        z = tf.nn.depthwise_conv2d(_reshape(y, [b, h, w, c * k]), kernel, [1, 1, 1, 1], "SAME")
        return self._pointwise(z, pw, spatial, k)

    def _sep_conv(self, x, p, idx, training, spatial, alive=None, scale=None):
        k = self._count(idx)
        y = self._separable_fan(x, self._take(p["dw1"], idx), self._take(p["pw1"], idx),
                                self.strides, spatial, k)
        y = tf.nn.relu(self._bn(y, p["bn1"], idx, training, alive))
        y = self._separable_each(y, self._take(p["dw2"], idx), self._take(p["pw2"], idx),
                                 spatial, k)
        return self._bn(y, p["bn2"], idx, training, alive, scale)

    def _dil_conv(self, x, p, idx, training, spatial, alive=None, scale=None):
        y = self._separable_fan(x, self._take(p["dw"], idx), self._take(p["pw"], idx),
                                self.strides, spatial, self._count(idx), dilation=2)
        return self._bn(y, p["bn"], idx, training, alive, scale)

    def _factorized_reduce(self, x, p, idx, training, spatial, alive=None, scale=None):
        if x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0:  # the shifted grid's padding is
            odd = _subgrid(x, 2, 1)                      # never sampled: one slice
        else:
            shifted = tf.slice(x, graph_constant((0, 1, 1, 0)), graph_constant((-1, -1, -1, -1)))
            odd = tf.pad(shifted, [[0, 0], [0, 1], [0, 1], [0, 0]])[:, ::2, ::2, :]
        c, n, k = self.channels, spatial[0] * spatial[1] * spatial[2], self._count(idx)
        halves = []
        for sub, weights in ((_subgrid(x, 2), p["fr1"]), (odd, p["fr2"])):
            w = self._take(weights, idx)  # (k, C, C_half): 1×1 stride-2 conv per edge
            kernel = _reshape(_transpose(w, [1, 2, 0]), [c, -1])  # columns (d, q)
            y = tf.matmul(_reshape(sub, [n, c]), kernel)
            halves.append(_reshape(y, [n, w.shape[-1], k]))
        return self._bn(tf.concat(halves, axis=1), p["bn"], idx, training, alive, scale)

    # -- the layer -----------------------------------------------------------------------
    def call(self, x, weights, active=None, training=None):
        """``x`` (B, H, W, C) → the outgoing edges' outputs (k, B, H', W', C).

        Each op takes one of four routes (:meth:`_route`), its output gathered in a
        :class:`_FanTerms`; :meth:`_combine` then sums every route into the k edges with
        as few matmuls as there are routes.
        """
        fan = self._prepare(x, weights, active, bool(training))
        terms = _FanTerms()
        for col, op in enumerate(self.primitives):
            self._route(fan, terms, col, op)
        return self._combine(fan, terms)

    def _prepare(self, x, weights, active, training: bool) -> "_FanInput":
        """What every op of this call shares: the input and its ReLU, act(α)'s columns,
        the shape, and which edges the trace computes."""
        weights32 = tf.cast(weights, tf.float32)  # the BN scales below
        weights = tf.cast(weights, x.dtype)  # act(α) is float32; float16 compute mixes in it
        kept = None if active is None else self.kept
        skip = (self.skip_pruned and not self.static_shapes and active is not None
                and kept is None)
        s, k, c = self.strides, self.num_edges, self.channels
        b = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
        h, w = -(-x.shape[1] // s), -(-x.shape[2] // s)
        fan = _FanInput(x=x, training=training, kept=kept, skip=skip, spatial=(b, h, w),
                        relu_x=tf.nn.relu(x),  # shared by every conv op leaving this node
                        n=b * h * w, dtype=weights.dtype)
        # one unstack per fan-out instead of a strided slice (and its gradient) per use
        fan.w_cols = tf.unstack(weights, axis=1)
        fan.w32_cols = tf.unstack(weights32, axis=1) if kept is not None else None
        if active is not None:
            fan.a_cols = tf.unstack(active, axis=1)
        if not skip:  # each op's edge weights over its columns (c, q): the BN scales below
            fan.scales = tf.unstack(_reshape(tf.tile(_transpose(weights32, [1, 0]), [1, c]),
                                             [len(self.primitives), c * k]))
        else:
            fan.first_edge = tf.range(k) == 0
        return fan

    def _mix(self, fan: "_FanInput", column, row):
        """(N, C, j) copies weighted into the k edges by row (j, k): (k, N·C)."""
        j = row.shape[0] if row.shape[0] is not None else tf.shape(row)[0]
        return tf.matmul(row, _reshape(column, [fan.n * self.channels, j]),
                         transpose_a=True, transpose_b=True)

    def _route(self, fan: "_FanInput", terms: "_FanTerms", col: int, op: str) -> None:
        """Computes op ``col`` on the edges the trace keeps, into ``terms``: an op the
        same on every edge once (shared), a conv op on the edges kept when traced
        (subsets), on every edge (weighted), or on the edges alive at this step
        (gathered, ``skip_pruned_ops="every_step"``)."""
        if op == "none":
            return  # contributes zeros: nothing to compute
        k, c, n = self.num_edges, self.channels, fan.n
        edges = None if fan.kept is None else tuple(fan.kept[col])
        if edges is not None and not edges:
            return  # pruned on every edge when traced: its weights 0, statistics kept
        if edges is not None and len(edges) == k:
            edges = None
        x, training, spatial = fan.x, fan.training, fan.spatial
        if op == "skip_connect" and self.strides == 1:  # the identity: one copy, no compute
            terms.shared.append(_reshape(x, [n * c]))
            terms.shared_w.append(fan.w_cols[col])
        elif op in ("max_pool_3x3", "avg_pool_3x3"):  # the same on every edge: one copy
            # a pool pruned on every edge still runs (its weights are 0, its BN
            # statistics kept): no slice of the batch, whose gradient is a full-size
            # tensor, and oneDNN aborts on a max-pool gradient of zero images
            alive = None if fan.a_cols is None else tf.reduce_any(fan.a_cols[col])
            terms.shared.append(_reshape(self._shared(op, x, training, spatial, alive),
                                         [n * c]))
            terms.shared_w.append(fan.w_cols[col])
        elif edges is not None:
            # the edges kept when traced, as constant indices (static shapes); one
            # pruned since runs with zero kernels, its statistics rows kept
            idx = graph_constant(edges)
            on = fan.a_cols[col]  # (k,): the statistics move where alive, after the scatter
            params = _zero_unless(on, self._params[op])  # the small kernels
            scale = _reshape(tf.tile(tf.expand_dims(tf.gather(fan.w32_cols[col], idx), 0),
                                     [c, 1]), [c * len(edges)])
            terms.subsets.append(self._conv_op(op)(fan.relu_x, params, idx, training, spatial,
                                                   on, scale=scale))
            terms.subset_edges.extend(edges)
        elif not fan.skip:  # every edge; a pruned one with zero kernels, its statistics kept
            params, on = self._params[op], None
            if fan.a_cols is not None:
                on = fan.a_cols[col]
                params = _zero_unless(on, params)
            # the edges' weights are the last BN's scale: its kernel weights the output
            # and its gradient yields α's, with no matmul by diag(act(α)) either way
            terms.weighted.append(self._conv_op(op)(fan.relu_x, params, None, training,
                                                    spatial, on, scale=fan.scales[col]))
        else:
            # only the edges that keep the op reach its kernels; an op pruned on every
            # edge runs them on edge 0 alone (weight 0, BN statistics kept): oneDNN
            # refuses zero-size kernels
            alive = tf.reduce_any(fan.a_cols[col])
            keep = tf.logical_or(fan.a_cols[col],
                                 tf.logical_and(tf.logical_not(alive), fan.first_edge))
            idx = tf.cast(_reshape(tf.where(keep), [-1]), tf.int32)
            # expand_dims, not [:, None]: a strided slice's gradient costs far more
            row = (tf.one_hot(idx, k, dtype=fan.dtype)
                   * tf.expand_dims(tf.gather(fan.w_cols[col], idx), 1))
            # such an op computes with zero kernels: a select on its small kernels, not
            # on its large output (NaN·0 is NaN: the 0 weight alone would not drop it)
            params = _zero_unless(alive, self._params[op])
            y = self._conv_op(op)(fan.relu_x, params, idx, training, spatial, alive)
            terms.mixed.append(self._mix(fan, y, row))

    def _combine(self, fan: "_FanInput", terms: "_FanTerms"):
        """Every route's outputs summed into the k edges: (k, B, H', W', C)."""
        k, c, n = self.num_edges, self.channels, fan.n
        sums = list(terms.mixed)
        if terms.subsets:  # placed into their edges by one matmul with a 0/1 matrix (J, k)
            place = np.zeros((len(terms.subset_edges), k))
            place[np.arange(len(terms.subset_edges)), terms.subset_edges] = 1.0
            sums.append(self._mix(fan, tf.concat(terms.subsets, axis=2),
                                  graph_constant(place, fan.dtype)))
        if terms.shared:  # into the k edges by one matmul (j, k)ᵀ·(j, N·C) → (k, N·C)
            sums.append(tf.matmul(tf.stack(terms.shared_w), tf.stack(terms.shared),
                                  transpose_a=True))
        if terms.weighted:  # summed in (N, C, k), then edge-major: one transpose per fan-out
            sums.append(_transpose(_reshape(tf.add_n(terms.weighted), [n * c, k]), [1, 0]))
        if not sums:  # every op pruned on every edge when traced
            sums.append(tf.zeros([k, n * c], fan.x.dtype))
        b, h, w = fan.spatial
        return _reshape(tf.add_n(sums), [k, b, h, w, c])

    def _conv_op(self, op: str):
        return {"sep": self._sep_conv, "dil": self._dil_conv,
                "ski": self._factorized_reduce}[op[:3]]

    def _shared(self, op, x, training, spatial, alive=None):
        """A pool and its BN, identical on every edge: one copy, (N', C, 1).

        ``alive`` False (pruned on every edge): the BN statistics stay as they are.

        The pool is :func:`kdarts.image.operations.pool_3x3`, the evaluation network's.
        """
        y = pool_3x3(x, op[:3], self.strides)
        b, h, w = spatial
        y = _reshape(y, [b * h * w, self.channels, 1])
        return self._bn(y, self._params[op]["bn"], None, training, alive)

    def get_config(self) -> dict:
        return {**super().get_config(), "channels": self.channels, "strides": self.strides,
                "primitives": list(self.primitives), "num_edges": self.num_edges}
