"""The weight learning rate of the search and of the evaluation training, as the reference runs it.

Shared by the image half's search network and evaluation training
(:mod:`kdarts.image.search_model`, :mod:`kdarts.image.training`, which never import each
other). Pure functions of the epoch; ``epoch`` and ``epochs`` may be tensors.

Example:
    >>> round(float(epoch_learning_rate(0, 50, 0.025, 0.001)), 6)   # the search's first epoch
    0.024976
"""

from __future__ import annotations

import math

from keras import ops


def cosine_annealing(epoch, epochs, maximum: float, minimum: float = 0.0):
    """PyTorch's ``CosineAnnealingLR`` in closed form: ``η(epoch)``.

    ``η(e) = minimum + (maximum − minimum)·(1 + cos(π·e/epochs))/2``; ``epoch``
    and ``epochs`` may be tensors.

    Example:
        >>> float(cosine_annealing(50, 50, 0.025, 0.001))
        0.001
    """
    epoch = ops.cast(epoch, "float32")
    cosine = 0.5 * (1.0 + ops.cos(math.pi * epoch / ops.cast(epochs, "float32")))
    return minimum + (maximum - minimum) * cosine


def epoch_learning_rate(epoch, epochs, maximum: float, minimum: float = 0.0):
    """The learning rate the reference trains epoch ``epoch`` (0-based) at: ``η(epoch + 1)``.

    DARTS and DARTS-PRIME call the scheduler's ``step()`` at the *start* of every
    epoch, so the first epoch already runs at ``η(1)`` (0.024976 for the search's
    0.025 → 0.001 over 50 epochs) and the last one at ``η(epochs) = minimum``.
    Past ``epochs`` the rate stays at ``minimum``.
    """
    epoch = ops.minimum(ops.cast(epoch, "float32") + 1.0, ops.cast(epochs, "float32"))
    return cosine_annealing(epoch, epochs, maximum, minimum)


__all__ = ["cosine_annealing", "epoch_learning_rate"]
