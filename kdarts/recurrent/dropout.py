"""Variational ("locked") dropout masks of the AWD-LSTM family, as pure functions.

A locked mask drops the same units at every time step of a sequence: it is drawn
once per forward pass with shape (batch, units) and broadcast over time. Embedding
dropout drops whole words: one mask entry per row of the embedding matrix. Kept
entries are scaled by ``1/keep`` so the expected value is unchanged. Masks are
drawn with stateless random ops from an explicit seed pair, so the model keeps its
dropout state as a plain counter variable that every checkpoint captures, and they
are the same in the graph step and under XLA (:func:`stateless_uniform`).

Example:
    >>> mask = locked_mask(4, 8, 0.5, seed=[1, 0])
    >>> sorted(set(mask.numpy().ravel().tolist())) == [0.0, 2.0]
    True
"""

from __future__ import annotations

import tensorflow as tf


def stateless_uniform(shape, seed) -> tf.Tensor:
    """Uniform float32 draws in [0, 1) from a stateless ``seed`` (two integers), the same
    numbers in eager, graph and XLA-compiled code.

    They are ``tf.random.stateless_uniform(shape, seed)``'s numbers on the CPU. That op
    names no algorithm by default, and even with ``alg="philox"`` its XLA kernel turns
    the random bits into floats otherwise than the CPU and GPU kernels do, so a step
    compiled with XLA would draw other masks. The Philox bits agree everywhere: they are
    drawn here and made floats as the CPU and GPU kernels make them (the low 23 bits as
    the mantissa of a float in [1, 2), minus 1).
    """
    bits = tf.random.stateless_uniform(shape, seed=tf.cast(seed, tf.int64), minval=None,
                                       maxval=None, dtype=tf.uint32, alg="philox")
    mantissa = tf.bitwise.bitwise_and(bits, tf.constant(0x7FFFFF, tf.uint32))
    exponent = tf.constant(0x3F800000, tf.uint32)  # 2⁰: the float in [1, 2)
    return tf.bitcast(tf.bitwise.bitwise_or(mantissa, exponent), tf.float32) - 1.0


def locked_mask(batch: int, units: int, rate: float, seed) -> tf.Tensor | None:
    """A (batch, units) mask of 0 and ``1/(1 − rate)``, or None at rate 0 (no dropout).

    ``seed``: a stateless seed, two integers (a tensor of shape [2]).
    """
    if not rate:
        return None
    if not 0.0 < rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    keep = 1.0 - rate
    u = stateless_uniform((batch, units), seed)
    return tf.cast(u < keep, tf.float32) / keep


def embedding_mask(vocab_size: int, rate: float, seed) -> tf.Tensor | None:
    """A (vocab_size, 1) mask dropping whole words of the embedding matrix, or None at rate 0."""
    return locked_mask(vocab_size, 1, rate, seed)


def draw_masks(vocab_size: int, batch, units: int, rates: dict, seed: int, draw) -> dict:
    """One forward pass's five masks (embedding rows, then the locked input, x, h and
    output masks), each from seed pair ``(seed, 5·draw + k)``: ``draw`` counts forward
    passes, so consecutive passes never share a stream. ``rates`` holds ``dropout_e``,
    ``dropout_i``, ``dropout_x``, ``dropout_h``, ``dropout``."""
    first = tf.cast(draw, tf.int64) * 5

    def pair(k):
        return tf.stack([tf.constant(seed, tf.int64), first + k])

    return {"embedding": embedding_mask(vocab_size, rates["dropout_e"], pair(0)),
            "input": locked_mask(batch, units, rates["dropout_i"], pair(1)),
            "x": locked_mask(batch, units, rates["dropout_x"], pair(2)),
            "h": locked_mask(batch, units, rates["dropout_h"], pair(3)),
            "output": locked_mask(batch, units, rates["dropout"], pair(4))}


def apply_mask(x, mask, time_axis: int | None = None):
    """``x · mask``, the mask broadcast over ``time_axis`` when given; ``x`` if mask is None."""
    if mask is None:
        return x
    return x * (mask if time_axis is None else tf.expand_dims(mask, time_axis))
