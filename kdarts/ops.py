"""The DARTS candidate operations (docs/method.md §1) as Keras layers, NHWC.

Shared by the search network's reference edge (:class:`kdarts.search.MixedEdge`)
and the evaluation network's cells. ``affine=False`` gives the search network's
BatchNorm without scale/offset; ``affine=True`` the evaluation network's.

Every conv and dense kernel in kdarts (search and evaluation network) starts as
PyTorch's defaults start them, :class:`FanInUniform`: U(±1/√fan_in).

Example:
    >>> import numpy as np
    >>> from kdarts.ops import make_op
    >>> op = make_op("sep_conv_3x3", channels=8, strides=2, affine=True)
    >>> op(np.zeros((2, 16, 16, 8), "float32")).shape
    (2, 8, 8, 8)
"""

from __future__ import annotations

import contextlib
import functools
import math
import weakref
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from kdarts import compat
from kdarts.runtime import silence_float16_notice

_PKG = "kdarts"
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1 expressed the Keras way
BN_EPSILON = 1e-5  # PyTorch's default, as in the reference code


_CONSTANTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # graph → {key: tensor}


def graph_constant(value, dtype=tf.int32):
    """``value`` (a number, tuple or numpy array) as one constant node per traced graph,
    shared by every op that uses it: otherwise every reshape, BN and scalar product
    makes its own, and tracing and graph optimisation scale with the graph's size
    (docs/design.md, "Why op counts matter"). Eagerly, a plain constant."""
    dtype = tf.as_dtype(dtype)  # a Keras variable's dtype is a string
    if tf.executing_eagerly():
        return tf.constant(value, dtype)
    array = np.asarray(value, dtype.as_numpy_dtype)
    graph = tf.compat.v1.get_default_graph()
    cache = _CONSTANTS.setdefault(graph, {})
    key = (dtype, array.shape, array.tobytes())
    if key not in cache:
        with graph.control_dependencies(None):  # usable anywhere in the graph
            cache[key] = tf.constant(array, dtype)
    return cache[key]


def fused_batch_norm(image, scale=None, offset=None, epsilon: float = BN_EPSILON):
    """A training batch norm of the NHWC ``image`` (float32) as TensorFlow's fused kernel,
    one each way: ``(normalised·scale + offset, batch mean, unbiased batch variance)``.

    The kernel normalises with the biased batch variance and returns the unbiased one
    (× n/(n−1)), which PyTorch's moving variance takes. ``scale``/``offset`` None: ones
    and zeros, shared constants when the channel count is static. Not for XLA, whose
    fused BN takes the variance as E[x²] − E[x]² (3e-2 off for a mean of 100 against a
    spread of 1).
    """
    c = image.shape[-1]
    if isinstance(c, int):  # shared constants, not a fill and its two inputs each
        ones = graph_constant(np.ones(c), tf.float32)
        zeros = graph_constant(np.zeros(c), tf.float32)
    else:
        c = tf.shape(image)[-1]
        ones, zeros = tf.ones([c], tf.float32), tf.zeros([c], tf.float32)
    y, mean, variance = tf.raw_ops.FusedBatchNormV3(
        x=image, scale=ones if scale is None else scale,
        offset=zeros if offset is None else offset, mean=zeros, variance=ones,
        epsilon=epsilon, is_training=True, data_format="NHWC")[:3]
    return y, mean, variance


@keras.saving.register_keras_serializable(package=_PKG)
class FanInUniform(keras.initializers.RandomUniform):
    """PyTorch's default init of conv and linear layers: U(±1/√fan_in).

    ``kaiming_uniform_(a=√5)`` on a weight gives exactly this bound, and so does
    PyTorch's init of a linear layer's bias. ``fan_in`` is the inputs one output
    sees: in_channels/groups × k × k for a conv, so k×k for a depthwise conv
    (``depthwise=True``; Keras's depthwise kernels are (k, k, C, 1)). Without
    ``fan_in`` it is read from the kernel's shape, all axes but the last (Keras's
    (k, k, in, out) conv and (in, out) dense kernels); a bias needs it given.

    Args:
        fan_in: the fan-in, when the shape does not tell it (biases, fused kernels).
        depthwise: the kernel is a Keras depthwise kernel (k, k, C, multiplier).
        seed: as for :class:`keras.initializers.RandomUniform`.

    Example:
        >>> conv = keras.layers.Conv2D(16, 3, kernel_initializer=FanInUniform())
        >>> dense = keras.layers.Dense(10, kernel_initializer=FanInUniform(),
        ...                            bias_initializer=FanInUniform(fan_in=64))
        >>> w = FanInUniform(depthwise=True)((3, 3, 8, 1))   # bound 1/√9
    """

    def __init__(self, fan_in: int | None = None, depthwise: bool = False, seed=None):
        super().__init__(seed=seed)
        self.fan_in = None if fan_in is None else int(fan_in)
        self.depthwise = bool(depthwise)

    def bound(self, shape) -> float:
        """``1/√fan_in`` for a variable of ``shape``."""
        if self.fan_in is not None:
            fan_in = self.fan_in
        elif self.depthwise:
            fan_in = math.prod(shape[:-2])
        elif len(shape) < 2:
            raise ValueError(f"FanInUniform: give fan_in for a variable of shape {tuple(shape)}")
        else:
            fan_in = math.prod(shape[:-1])
        return 1.0 / math.sqrt(max(fan_in, 1))

    def __call__(self, shape, dtype=None):
        bound = self.bound(shape)
        return keras.random.uniform(shape, minval=-bound, maxval=bound, seed=self.seed,
                                    dtype=dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        for key in ("minval", "maxval"):
            config.pop(key, None)
        return {**config, "fan_in": self.fan_in, "depthwise": self.depthwise}


@keras.saving.register_keras_serializable(package=_PKG)
class BatchNormalization(layers.BatchNormalization):
    """Keras's BatchNormalization with PyTorch's moving variance: the *unbiased* batch variance.

    PyTorch normalises a training batch with the biased variance but feeds the running
    average with the unbiased one (× n/(n−1), n = B·H·W values per channel); Keras uses
    the biased one for both. Only the training-time update differs: inference, the
    weights (same names and shapes) and everything else are Keras's. The class keeps
    Keras's name because Keras's weight files address layers held in lists by their
    class name: models and checkpoints saved with the plain layer load unchanged.

    Example:
        >>> import numpy as np
        >>> bn = BatchNormalization(momentum=0.9, epsilon=1e-5)
        >>> y = bn(np.array([[1.0], [3.0]], "float32"), training=True)
        >>> round(float(bn.moving_variance[0]), 6)   # 0.9·1 + 0.1·2 (unbiased 2, biased 1)
        1.1
    """

    #: Normalise a training batch with TensorFlow's fused kernel (``FusedBatchNormV3``:
    #: one kernel forward, one backward, instead of a dozen elementwise ops and column
    #: means). Not a config entry: the search network sets it when it compiles without
    #: XLA (see :func:`fused_batch_norm`).
    fused_kernel = False

    def call(self, inputs, training=None, mask=None):
        if (not (training and self.trainable) or mask is not None
                or getattr(self, "renorm", False)):
            return super().call(inputs, training=training, mask=mask)
        # as Keras: statistics in float32 at least (half precision overflows)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        axis = self.axis % len(x.shape)
        synchronized = self.synchronized and _replicas() > 1
        if (self.fused_kernel and not synchronized and axis == len(x.shape) - 1
                and len(x.shape) in (2, 4) and x.dtype == tf.float32):
            return self._fused_call(x)
        axes = [i for i in range(len(x.shape)) if i != axis]
        n = ops.cast(ops.size(x), x.dtype) / x.shape[axis]  # values per channel
        if synchronized:
            mean, variance = global_moments(x, tuple(axes))
            n = n * _replicas()  # replicas' shards are equal: n of the global batch
        else:
            mean, variance = ops.moments(x, axes)
        unbiased = variance * n / ops.maximum(n - 1.0, 1.0)
        m, dtype = self.momentum, self.moving_mean.dtype
        self.moving_mean.assign(self.moving_mean * m + ops.cast(mean, dtype) * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m
                                    + ops.cast(unbiased, dtype) * (1.0 - m))
        cast = lambda v: None if v is None else ops.cast(v, x.dtype)  # noqa: E731
        outputs = ops.batch_normalization(x, mean, variance, axis=self.axis,
                                          offset=cast(self.beta), scale=cast(self.gamma),
                                          epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)

    def _fused_call(self, x):
        """The training branch as :func:`fused_batch_norm`."""
        shape = tf.shape(x)
        image = x if len(x.shape) == 4 else tf.reshape(x, [1, -1, 1, x.shape[-1]])
        as32 = lambda v: None if v is None else tf.cast(v, tf.float32)  # noqa: E731
        y, mean, unbiased = fused_batch_norm(image, as32(self.gamma), as32(self.beta),
                                             self.epsilon)
        m, dtype = self.momentum, self.moving_mean.dtype
        self.moving_mean.assign(self.moving_mean * m + ops.cast(mean, dtype) * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m
                                    + ops.cast(unbiased, dtype) * (1.0 - m))
        return ops.cast(tf.reshape(y, shape), self.compute_dtype)


def global_moments(y, axes=(0,)):
    """Mean and biased variance of ``y`` over ``axes`` and over every replica's shard.

    Two all-reduces (the sum, then the centred squares), not E[y²] − E[y]²: that
    difference cancels badly when the mean is large against the spread, and the
    search then departs from the one-device search. Replicas hold equal shards.
    """
    ctx = tf.distribute.get_replica_context()
    sum_ = lambda t: ctx.all_reduce(tf.distribute.ReduceOp.SUM, t)  # noqa: E731
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(y), list(axes))), y.dtype)
    n = count * ctx.num_replicas_in_sync
    mean = sum_(tf.reduce_sum(y, axes)) / n
    shape = [1 if i in axes else -1 for i in range(len(y.shape))]
    var = sum_(tf.reduce_sum(tf.square(y - tf.reshape(mean, shape)), axes)) / n
    return mean, var


def _replicas() -> int:
    ctx = tf.distribute.get_replica_context()
    return 1 if ctx is None else ctx.num_replicas_in_sync


def synchronize_batch_norms(model: keras.layers.Layer, synchronized: bool = True) -> None:
    """Make every BN of ``model`` (fused fan-outs included) use the global batch's
    statistics under ``tf.distribute`` (``synchronized``) or each replica's own.

    A network calls this from its constructor with its ``sync_batch_norm`` option, so
    the choice travels in the network's config, not in each layer's.
    """
    for layer in compat.sublayers(model):
        if hasattr(layer, "synchronized"):
            layer.synchronized = bool(synchronized)


#: The mixed-precision policy kdarts offers (``--mixed-precision``): float16 compute,
#: float32 variables, dynamic loss scaling.
MIXED_PRECISION = "mixed_float16"


def is_mixed(layer: keras.layers.Layer) -> bool:
    """Whether any layer of ``layer`` (itself included) computes in another dtype than it
    stores its variables in, as under ``mixed_float16``."""
    return any(sub.dtype_policy.compute_dtype != sub.dtype_policy.variable_dtype
               for sub in [layer, *compat.sublayers(layer)])


@contextlib.contextmanager
def dtype_policy_scope(policy):
    """Layers created inside take ``policy`` (a name or ``keras.DTypePolicy``) unless given
    their own ``dtype``; Keras's global policy is restored on exit."""
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def own_dtype_policy(init):
    """Decorates a network's ``__init__``: the sublayers it creates take the network's
    ``dtype`` policy (e.g. ``dtype="mixed_float16"``), not Keras's global one, so the
    policy travels in the network's config and a loaded model computes as it was saved."""

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        dtype = kwargs.get("dtype")
        policy = keras.config.dtype_policy() if dtype is None else keras.dtype_policies.get(dtype)
        if policy.compute_dtype == "float16":
            silence_float16_notice()  # TensorFlow's misleading "DT_HALF only with AVX-512"
        with dtype_policy_scope(policy):
            init(self, *args, **kwargs)

    return wrapper


def batch_norm(affine: bool, name: str | None = None) -> BatchNormalization:
    """BatchNorm as the reference uses it (PyTorch's momentum, ε and moving variance);
    ``affine`` selects scale/offset."""
    return BatchNormalization(
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        center=affine,
        scale=affine,
        name=name,
    )


class _Op(layers.Layer):
    """Base: stores channels/strides/affine and serialises them."""

    def __init__(self, channels: int, strides: int = 1, affine: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.strides = int(strides)
        self.affine = bool(affine)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(channels=self.channels, strides=self.strides, affine=self.affine)
        return config


@keras.saving.register_keras_serializable(package=_PKG)
class ReLUConvBN(_Op):
    """ReLU → Conv k×k (no bias) → BN; the cell preprocessing and stem-like blocks."""

    def __init__(self, channels: int, kernel_size: int = 1, strides: int = 1,
                 affine: bool = True, **kwargs):
        super().__init__(channels, strides, affine, **kwargs)
        self.kernel_size = int(kernel_size)
        self.conv = layers.Conv2D(channels, kernel_size, strides=strides, padding="same",
                                  use_bias=False, kernel_initializer=FanInUniform(),
                                  name="conv")
        self.bn = batch_norm(affine, name="bn")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, x, training=None):
        return self.bn(self.conv(ops.relu(x)), training=training)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "kernel_size": self.kernel_size}


def _separable_init() -> dict:
    """A separable conv's initialisers: depthwise fan-in k×k, pointwise fan-in C."""
    return {"depthwise_initializer": FanInUniform(depthwise=True),
            "pointwise_initializer": FanInUniform()}


def symmetric_pad(x, pad: int):
    """Zero-pad height and width by ``pad`` on both sides (PyTorch's ``padding=pad``)."""
    return ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])


@keras.saving.register_keras_serializable(package=_PKG)
class SepConv(_Op):
    """Twice [ReLU → depthwise k×k → pointwise 1×1 → BN]; only the first carries the stride.

    Padding is PyTorch's symmetric ``k//2``, so at stride 2 output pixel ``i`` is
    centred on input pixel ``2i`` as in the reference. (TF's "same" pads only after
    for even sizes at stride 2, which centres on ``2i+1``.)
    """

    def __init__(self, channels: int, kernel_size: int = 3, strides: int = 1,
                 affine: bool = True, **kwargs):
        super().__init__(channels, strides, affine, **kwargs)
        self.kernel_size = int(kernel_size)
        # stride 1: "same" is already symmetric for an odd kernel
        self.sep1 = layers.SeparableConv2D(channels, kernel_size, strides=strides,
                                           padding="same" if strides == 1 else "valid",
                                           use_bias=False, name="sep1", **_separable_init())
        self.bn1 = batch_norm(affine, name="bn1")
        self.sep2 = layers.SeparableConv2D(channels, kernel_size, padding="same",
                                           use_bias=False, name="sep2", **_separable_init())
        self.bn2 = batch_norm(affine, name="bn2")

    def build(self, input_shape):
        pad = 2 * (self.kernel_size // 2) if self.strides > 1 else 0
        grow = lambda n: None if n is None else n + pad  # noqa: E731
        b, h, w, c = input_shape
        self.sep1.build((b, grow(h), grow(w), c))  # it sees the padded input
        mid = self.compute_output_shape(input_shape)
        self.bn1.build(mid)
        self.sep2.build(mid)
        self.bn2.build(mid)

    def call(self, x, training=None):
        x = ops.relu(x)
        if self.strides > 1:
            x = symmetric_pad(x, self.kernel_size // 2)
        x = self.bn1(self.sep1(x), training=training)
        return self.bn2(self.sep2(ops.relu(x)), training=training)

    def compute_output_shape(self, input_shape):
        return _strided_shape(input_shape, self.strides, self.channels)

    def get_config(self) -> dict:
        return {**super().get_config(), "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package=_PKG)
class DilConv(_Op):
    """ReLU → depthwise k×k dilation 2 (stride s) → pointwise 1×1 → BN.

    TensorFlow's convolutions refuse stride > 1 together with dilation > 1, so a
    strided dilated conv runs at stride 1 and keeps every other pixel (the
    PyTorch reference's sampling grid). Only the cheap depthwise part pays for it.
    """

    def __init__(self, channels: int, kernel_size: int = 3, strides: int = 1,
                 affine: bool = True, dilation: int = 2, **kwargs):
        super().__init__(channels, strides, affine, **kwargs)
        self.kernel_size = int(kernel_size)
        self.dilation = int(dilation)
        self.depthwise = layers.DepthwiseConv2D(
            kernel_size, padding="same", dilation_rate=dilation, use_bias=False,
            depthwise_initializer=FanInUniform(depthwise=True), name="depthwise")
        self.pointwise = layers.Conv2D(channels, 1, use_bias=False,
                                       kernel_initializer=FanInUniform(), name="pointwise")
        self.bn = batch_norm(affine, name="bn")

    def build(self, input_shape):
        self.depthwise.build(input_shape)
        self.pointwise.build(input_shape)
        self.bn.build(tuple(input_shape[:-1]) + (self.channels,))

    def call(self, x, training=None):
        x = self.depthwise(ops.relu(x))
        if self.strides > 1:
            x = x[:, :: self.strides, :: self.strides, :]
        return self.bn(self.pointwise(x), training=training)

    def compute_output_shape(self, input_shape):
        return _strided_shape(input_shape, self.strides, self.channels)

    def get_config(self) -> dict:
        return {**super().get_config(), "kernel_size": self.kernel_size,
                "dilation": self.dilation}


@keras.saving.register_keras_serializable(package=_PKG)
class FactorizedReduce(_Op):
    """ReLU → two 1×1 stride-2 convs (the second on the input shifted by one pixel) → concat → BN."""

    def __init__(self, channels: int, affine: bool = True, **kwargs):
        kwargs.pop("strides", None)
        super().__init__(channels, 2, affine, **kwargs)
        half = self.channels // 2
        self.conv1 = layers.Conv2D(half, 1, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=FanInUniform(), name="conv1")
        self.conv2 = layers.Conv2D(self.channels - half, 1, strides=2, padding="same",
                                   use_bias=False, kernel_initializer=FanInUniform(),
                                   name="conv2")
        self.bn = batch_norm(affine, name="bn")

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.conv2.build(input_shape)
        self.bn.build(_strided_shape(input_shape, 2, self.channels))

    def call(self, x, training=None):
        x = ops.relu(x)
        # shift by one pixel, zero-padded at the far edge so odd sizes still line up; a
        # plain slice, whose gradient is a pad (a strided slice's gradient writes a
        # full-size tensor)
        shifted = ops.pad(tf.slice(x, [0, 1, 1, 0], [-1, -1, -1, -1]),
                          [[0, 0], [0, 1], [0, 1], [0, 0]])
        y = ops.concatenate([self.conv1(x), self.conv2(shifted)], axis=-1)
        return self.bn(y, training=training)

    def compute_output_shape(self, input_shape):
        return _strided_shape(input_shape, 2, self.channels)


def pool_3x3(x, kind: str, strides: int = 1, inference: bool = False):
    """DARTS's 3×3 pool, padding 1: the max never sees the padding, the average excludes
    it (``count_include_pad=False``).

    At stride 2 the window of output pixel ``i`` is centred on input pixel ``2i``, the
    reference's grid (TF's "same" would pad only after, for even sizes). For training,
    the input is padded by 1 on each side, with the lowest float for the max and zeros
    for the average, which is then divided by each window's share of real pixels, and
    pooled "valid": less work, forward and backward, than a stride-1 pool with every
    other pixel kept, whose slice has a full-size gradient.

    ``inference=True`` (no gradient: evaluation and every export) computes the same
    values as that stride-1 pool, every other pixel kept: it pads nothing. A pad with
    the lowest float gets an int8 scale of ~1e36 in LiteRT, and the runtime aborts the
    process on the ADD that mixes it with a normal tensor; the average's division by the
    window shares is not an int8 op either.
    """
    if strides == 1 or inference:
        pool = tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d
        y = pool(x, 3, 1, "SAME")
        return y if strides == 1 else y[:, ::strides, ::strides, :]
    pad = [[0, 0], [1, 1], [1, 1], [0, 0]]
    if kind == "max":
        return tf.nn.max_pool2d(tf.pad(x, pad, constant_values=x.dtype.min), 3, strides,
                                "VALID")
    real = tf.nn.avg_pool2d(tf.pad(tf.ones_like(x[:1, :, :, :1]), pad), 3, strides, "VALID")
    return tf.nn.avg_pool2d(tf.pad(x, pad), 3, strides, "VALID") / real


@keras.saving.register_keras_serializable(package=_PKG)
class Pool(_Op):
    """3×3 max or average pool, padding 1 (:func:`pool_3x3`), optionally → BN.

    The search network follows every pool with a BN without scale/offset; the
    evaluation network uses the bare pool.
    """

    def __init__(self, channels: int, strides: int = 1, affine: bool = False,
                 kind: str = "max", with_bn: bool = False, **kwargs):
        super().__init__(channels, strides, affine, **kwargs)
        if kind not in ("max", "avg"):
            raise ValueError(f"Pool kind must be 'max' or 'avg', got {kind!r}")
        self.kind = kind
        self.with_bn = bool(with_bn)
        self.bn = batch_norm(affine, name="bn") if with_bn else None

    def build(self, input_shape):
        if self.bn is not None:
            self.bn.build(_strided_shape(input_shape, self.strides, input_shape[-1]))

    def call(self, x, training=None):
        y = pool_3x3(x, self.kind, self.strides, inference=not training)
        return self.bn(y, training=training) if self.bn is not None else y

    def compute_output_shape(self, input_shape):
        return _strided_shape(input_shape, self.strides, input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "kind": self.kind, "with_bn": self.with_bn}


@keras.saving.register_keras_serializable(package=_PKG)
class Identity(_Op):
    """The stride-1 ``skip_connect``."""

    def call(self, x, training=None):
        return x

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package=_PKG)
class Zero(_Op):
    """The ``none`` op: zeros, strided when the edge is strided."""

    def call(self, x, training=None):
        if self.strides > 1:
            x = x[:, :: self.strides, :: self.strides, :]
        return ops.zeros_like(x)

    def compute_output_shape(self, input_shape):
        return _strided_shape(input_shape, self.strides, input_shape[-1])


def _strided_shape(input_shape, strides: int, channels) -> tuple:
    b, h, w = input_shape[0], input_shape[1], input_shape[2]
    ceil = lambda n: None if n is None else -(-n // strides)  # noqa: E731
    return (b, ceil(h), ceil(w), channels)


OpBuilder = Callable[..., layers.Layer]

OPS: dict[str, OpBuilder] = {
    "none": lambda c, s, affine, search, name=None: Zero(c, s, affine, name=name),
    "max_pool_3x3": lambda c, s, affine, search, name=None: Pool(
        c, s, False, kind="max", with_bn=search, name=name),
    "avg_pool_3x3": lambda c, s, affine, search, name=None: Pool(
        c, s, False, kind="avg", with_bn=search, name=name),
    "skip_connect": lambda c, s, affine, search, name=None: (
        Identity(c, 1, affine, name=name) if s == 1 else FactorizedReduce(c, affine, name=name)),
    "sep_conv_3x3": lambda c, s, affine, search, name=None: SepConv(c, 3, s, affine, name=name),
    "sep_conv_5x5": lambda c, s, affine, search, name=None: SepConv(c, 5, s, affine, name=name),
    "dil_conv_3x3": lambda c, s, affine, search, name=None: DilConv(c, 3, s, affine, name=name),
    "dil_conv_5x5": lambda c, s, affine, search, name=None: DilConv(c, 5, s, affine, name=name),
}
"""Registry: primitive name → builder ``(channels, strides, affine, search, name)``."""


def make_op(name: str, channels: int, strides: int = 1, affine: bool = True,
            search: bool = False, layer_name: str | None = None) -> layers.Layer:
    """Build the primitive ``name``; ``search=True`` adds the search network's pool BN.

    Raises:
        ValueError: unknown primitive name (the message lists the valid ones).
    """
    if name not in OPS:
        raise ValueError(f"unknown primitive '{name}'; valid primitives: {', '.join(OPS)}")
    if strides not in (1, 2):
        raise ValueError(f"primitive '{name}': strides must be 1 or 2, got {strides}")
    return OPS[name](channels, strides, affine, search, name=layer_name)


def check_primitives(primitives) -> tuple[str, ...]:
    """Validate a primitive list; returns it as a tuple."""
    primitives = tuple(primitives)
    unknown = [p for p in primitives if p not in OPS]
    if unknown:
        raise ValueError(
            f"unknown primitive(s) {', '.join(map(repr, unknown))}; valid primitives: "
            f"{', '.join(OPS)}"
        )
    if len(set(primitives)) != len(primitives):
        raise ValueError(f"primitives contain duplicates: {list(primitives)}")
    if not [p for p in primitives if p != "none"]:
        raise ValueError("primitives need at least one op other than 'none'")
    return primitives
