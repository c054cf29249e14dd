"""Layers and graph helpers both spaces' networks share, below either half.

PyTorch's BatchNorm (:class:`BatchNormalization`: its momentum, ε and unbiased moving
variance, one fused kernel) and its moments over every replica (:func:`global_moments`),
PyTorch's default init (:class:`FanInUniform`: every conv and dense kernel of the image
networks starts as U(±1/√fan_in)), one constant node per value in a traced graph
(:func:`graph_constant`), and the dtype policy a network hands its sublayers
(:func:`own_dtype_policy`, :data:`MIXED_PRECISION`). The image space's candidate
operations are :mod:`kdarts.image.operations`; the recurrent cell's,
:mod:`kdarts.recurrent.operations`.

Example:
    >>> import numpy as np
    >>> from kdarts.ops import BatchNormalization
    >>> bn = BatchNormalization(momentum=0.9, epsilon=1e-5)
    >>> bn(np.zeros((2, 4, 4, 8), "float32")).shape
    (2, 4, 4, 8)
"""

from __future__ import annotations

import contextlib
import functools
import math
import weakref

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
