"""What the recurrent half's search and evaluation share: the cell's highway step, its
init, the tied embedding, and the language-modelling losses.

The search cell (:mod:`kdarts.recurrent.search_cell`) and the evaluation cell
(:mod:`kdarts.recurrent.cell`) run the same highway step; the search model
(:mod:`kdarts.recurrent.search_model`) and the language model (:mod:`kdarts.recurrent.model`)
create the same embedding and decoder bias (checkpoints address them by name and order), and
the search's step and the language model's training (:mod:`kdarts.recurrent.training`) take
the same loss, temporal activation regulariser and clipping factor. So both sides import
from here and neither imports the other. The image half's counterpart is
:mod:`kdarts.image.operations`.

Example:
    >>> import tensorflow as tf
    >>> float(highway(tf.constant(1.0), tf.constant(0.5), tf.constant(3.0)))
    2.0
"""

from __future__ import annotations

import keras
import tensorflow as tf

INIT_RANGE = 0.04
"""The authors' (and DARTS's) uniform init range of every recurrent and embedding weight."""


def add_tied_embedding(layer: keras.layers.Layer, vocab_size: int,
                       units: int) -> tuple[keras.Variable, keras.Variable]:
    """Add the word embedding (vocab_size × units, uniform ±INIT_RANGE) and the decoder
    bias (vocab_size, zeros) to ``layer``, in that order; returns ``(embedding, bias)``.

    The decoder is tied to the embedding: logits = h·Eᵀ + b. The names and the creation
    order are what checkpoints address, so the search model and the language model
    both create them here.
    """
    init = keras.initializers.RandomUniform(-INIT_RANGE, INIT_RANGE)
    embedding = layer.add_weight(shape=(vocab_size, units), initializer=init, name="embedding")
    bias = layer.add_weight(shape=(vocab_size,), initializer="zeros", name="decoder_bias")
    return embedding, bias


HIGHWAY_ACTIVATIONS = {
    "tanh": tf.tanh,
    "relu": tf.nn.relu,
    "sigmoid": tf.sigmoid,
    "identity": lambda x: x,
}


def highway(state, gate, candidate):
    """``s + c·(f(h) − s)``: the gate ``c`` moves the state towards ``f(h)``."""
    return state + gate * (candidate - state)


def clip_coefficient(norm, clip_norm: float) -> tf.Tensor:
    """PyTorch's ``clip_grad_norm_`` factor: ``min(1, clip/(norm + 1e-6))``."""
    return tf.minimum(1.0, clip_norm / (norm + 1e-6))


def time_mask(values, length):
    """``(values · valid, count)``: time-major ``values`` with steps from ``length`` on zeroed."""
    if length is None:
        return values, tf.cast(tf.size(values), values.dtype)
    valid = tf.range(tf.shape(values)[0]) < tf.cast(length, tf.int32)
    shape = tf.concat([tf.shape(values)[:1], tf.ones([tf.rank(values) - 1], tf.int32)], 0)
    valid = tf.reshape(tf.cast(valid, values.dtype), shape)
    per_step = tf.cast(tf.size(values) // tf.shape(values)[0], values.dtype)
    return values * valid, tf.cast(length, values.dtype) * per_step


def slowness_penalty(outputs, length=None) -> tf.Tensor:
    """The temporal activation regulariser: mean of (h_{t+1} − h_t)², outputs time-major
    (the first ``length`` steps when given)."""
    diff = tf.square(outputs[1:] - outputs[:-1])
    values, count = time_mask(diff, None if length is None else length - 1)
    return tf.reduce_sum(values) / count


def sequence_nll(log_probs, targets, length=None) -> tf.Tensor:
    """Mean negative log-likelihood of ``targets`` under time-major ``log_probs`` (time,
    ..., vocab), over the first ``length`` steps when given."""
    picked = tf.gather(log_probs, tf.cast(targets, tf.int32), batch_dims=log_probs.shape.rank - 1)
    values, count = time_mask(picked, length)
    return -tf.reduce_sum(values) / count
