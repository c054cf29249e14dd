"""Plain SGD that can switch to averaged SGD (ASGD), as the authors train a language model.

Their ``train_rnn.py`` (after AWD-LSTM) starts with SGD (lr 20, L2 8e-7, no momentum)
and, once the validation loss stops improving (:func:`should_switch_to_asgd`), swaps in
``torch.optim.ASGD(t0=0, lambd=0)``: the same step, plus a running average of the
iterates that validation, checkpoints and the test use. This module keeps PyTorch's
arithmetic exactly:

* the average after ASGD step ``k`` (1-based) is ``ax + μ_k·(p − ax)`` with
  ``μ_k = 1 / max(1, k − 1)`` (:func:`asgd_mu`): steps 1 and 2 copy ``p``, so the
  average is the mean of the iterates from the second ASGD step on;
* ASGD's step size ``η`` is the learning rate the *previous* step was given (their loop
  rescales the rate per batch by seq_len/bptt; ASGD reads it back one step late);
  the first ASGD step uses its own.

Example:
    >>> import numpy as np
    >>> avg, x = np.zeros(2), np.ones(2)
    >>> [float(asgd_mu(k)) for k in (1, 2, 3, 4)]
    [1.0, 1.0, 0.5, 0.3333333333333333]
    >>> asgd_average(avg, x, 3).tolist()
    [0.5, 0.5]
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import tensorflow as tf


def asgd_mu(step, t0: int = 0):
    """PyTorch ASGD's averaging weight at (1-based) step ``step``: 1/max(1, step − 1 − t0)."""
    if tf.is_tensor(step):
        return 1.0 / tf.maximum(1.0, tf.cast(step, tf.float32) - 1.0 - t0)
    return 1.0 / max(1.0, step - 1.0 - t0)


def asgd_average(average, value, step, t0: int = 0):
    """The running average after step ``step``: ``average + μ·(value − average)``, or a
    copy of ``value`` when μ is 1 (PyTorch copies there, exactly)."""
    mu = asgd_mu(step, t0)
    if tf.is_tensor(mu):
        value = tf.convert_to_tensor(value)
        mu = tf.cast(mu, value.dtype)
        return tf.where(tf.equal(mu, 1.0), value, average + mu * (value - average))
    return value if mu == 1.0 else average + mu * (value - average)


def should_switch_to_asgd(history: Sequence[float], val_loss: float, nonmono: int = 5) -> bool:
    """The authors' switch: ``len(history) > nonmono`` and ``val_loss`` is worse than the
    best of the losses before the last ``nonmono`` epochs (``history``: the validation
    losses of the SGD epochs before this one)."""
    if nonmono < 1:
        raise ValueError(f"nonmono must be >= 1, got {nonmono}")
    return len(history) > nonmono and val_loss > min(history[:-nonmono])


class AveragedSGD(tf.Module):
    """SGD with L2 added to the gradient, switchable to PyTorch's ASGD (t0 0, λ 0).

    Every piece of state is a variable (the switch flag, ASGD's step count and lagged
    step size, one average per weight), so a ``tf.train.Checkpoint`` of it resumes
    exactly.

    Args:
        weight_decay: the L2 coefficient added to each gradient (the authors' 8e-7).

    Example:
        >>> opt = AveragedSGD(weight_decay=0.0)
        >>> w = tf.Variable([1.0])
        >>> opt.build([w])
        >>> opt.apply([tf.constant([1.0])], [w], learning_rate=0.5)
        >>> opt.start_averaging()
        >>> opt.apply([tf.constant([1.0])], [w], learning_rate=0.5)
        >>> float(w.numpy()[0]), float(opt.averages[0].numpy()[0])
        (0.0, 0.0)
    """

    def __init__(self, weight_decay: float = 8e-7, name: str = "averaged_sgd"):
        super().__init__(name=name)
        self.weight_decay = float(weight_decay)
        self.averaging = tf.Variable(False, trainable=False, name="averaging")
        self.asgd_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="asgd_steps")
        self.eta = tf.Variable(0.0, trainable=False, name="eta")
        self.averages: list[tf.Variable] = []

    def build(self, variables: Sequence[tf.Variable]) -> None:
        """Create one average per variable (zeros, as PyTorch's state starts)."""
        if self.averages:
            if len(self.averages) != len(variables):
                raise ValueError(f"AveragedSGD: built for {len(self.averages)} variables, "
                                 f"given {len(variables)}")
            return
        self.averages = [tf.Variable(tf.zeros_like(v), trainable=False,
                                     name=f"average_{i}") for i, v in enumerate(variables)]

    def start_averaging(self) -> None:
        """Switch to ASGD: a fresh ASGD state (their loop builds a new optimizer)."""
        self.averaging.assign(True)
        self.asgd_steps.assign(0)
        for a in self.averages:
            a.assign(tf.zeros_like(a))

    def apply(self, grads, variables, learning_rate) -> None:
        """One step: ``p −= η·(g + λ·p)``; under ASGD, then the averages."""
        lr = tf.cast(learning_rate, tf.float32)
        averaging = tf.convert_to_tensor(self.averaging)
        step = self.asgd_steps.assign_add(tf.cast(averaging, tf.int64))
        # ASGD's η: set from the rate at its first step, then one step behind
        eta = tf.where(averaging, tf.where(tf.equal(step, 1), lr, self.eta), lr)
        for g, v, a in zip(grads, variables, self.averages):
            v.assign_sub(eta * (g + self.weight_decay * v))
            a.assign(tf.where(averaging, asgd_average(a, tf.convert_to_tensor(v), step), a))
        self.eta.assign(tf.where(averaging, lr, self.eta))

    @contextlib.contextmanager
    def averaged_weights(self, variables: Sequence[tf.Variable]) -> Iterator[None]:
        """Within the block the variables hold their averages (under ASGD; else unchanged),
        as the authors validate and save; the trained values come back afterwards."""
        if not bool(self.averaging.numpy()):
            yield
            return
        kept = [tf.identity(v) for v in variables]
        for v, a in zip(variables, self.averages):
            v.assign(a)
        try:
            yield
        finally:
            for v, k in zip(variables, kept):
                v.assign(k)
