"""The DARTS candidate operations (docs/method.md §1) as Keras layers, NHWC.

Shared by the search network's reference edge (:class:`kdarts.image.edge.MixedEdge`)
and the evaluation network's cells. ``affine=False`` gives the search network's
BatchNorm without scale/offset; ``affine=True`` the evaluation network's. The layers
beneath them that the recurrent space uses too (BatchNorm, the init, graph constants,
dtype policies) are :mod:`kdarts.ops`.

Every conv and dense kernel in kdarts (search and evaluation network) starts as
PyTorch's defaults start them, :class:`~kdarts.ops.FanInUniform`: U(±1/√fan_in).

Example:
    >>>     >>> from kdarts.image.operations import make_op
    >>> op = make_op("sep_conv_3x3", channels=8, strides=2, affine=True)
    >>> op(np.zeros((2, 16, 16, 8), "float32")).shape
    (2, 8, 8, 8)
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf
from keras import layers, ops

from kdarts.ops import BN_EPSILON, BN_MOMENTUM, BatchNormalization, FanInUniform

_PKG = "kdarts"


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
