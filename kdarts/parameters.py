"""Counting a model's parameters, one way for every network kdarts builds.

Light (no TensorFlow import: it reads the variables' shapes), so the search, the
evaluation network and the recurrent models share it without importing each other.

Example:
    >>> import keras
    >>> layer = keras.layers.Dense(3)
    >>> layer.build((None, 4))
    >>> count_parameters(layer), count_parameters(layer, exclude=[layer.bias])
    (15, 12)
"""

from __future__ import annotations

import math
from typing import Iterable


def count_parameters(model, exclude: Iterable = ()) -> int:
    """Trainable scalars of ``model`` (a Keras model or layer), minus the variables in
    ``exclude`` (α, an auxiliary head's weights: compared by identity)."""
    skip = {id(v) for v in exclude}
    return int(sum(math.prod(v.shape) for v in model.trainable_variables
                   if id(v) not in skip))


__all__ = ["count_parameters"]
