"""When to take an architecture (α) step (docs/method.md §5).

Each schedule is configuration plus pure update rules on tensors; the state
(step counter, FI EWMA, threshold) lives in variables on the model.

Example:
    >>> s = DynamicSchedule(every=10)
    >>> bool(s.decide(step=1, fi_ewma=0.5, threshold=1.0))
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import tensorflow as tf


def dynamic_split_fraction(every: int) -> float:
    """Share of the training data given to the search split under the dynamic split: 1/(1+k)."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return 1.0 / (1.0 + every)


@dataclass(frozen=True)
class FixedSchedule:
    """An α step on every ``every``-th weight step; ``every=1`` is DARTS."""

    every: int = 1

    def __post_init__(self):
        if int(self.every) < 1:
            raise ValueError(f"FixedSchedule.every must be >= 1, got {self.every}")

    def decide(self, step, fi_ewma=None, threshold=None) -> tf.Tensor:
        """``step`` counts weight steps from 1 (``(step+1) % k == 0`` with 0-based steps)."""
        return tf.equal(tf.math.floormod(tf.cast(step, tf.int64), self.every), 0)

    def next_threshold(self, threshold, took_alpha_step) -> tf.Tensor:
        return tf.convert_to_tensor(threshold, tf.float32)

    def get_config(self) -> dict:
        return {"name": "fixed", **asdict(self)}


@dataclass(frozen=True)
class DynamicSchedule:
    """The informed schedule: an α step when ``0 < FI_ewma < threshold``.

    After an α step the threshold shrinks by ``multiplier**-every``, after a step
    without one it grows by ``multiplier``, so on average one α step is taken per
    ``every`` weight steps, at moments when the weights have settled (low FI).

    ``latch=True`` is the authors' recurrent search as its code runs
    (``train_search_rnn.py``): once the rule has taken an α step in an epoch, every
    later step of that epoch takes one too, while the threshold still moves by the
    rule's own decision. Only :class:`~kdarts.recurrent.RecurrentSearchModel` honours
    it (the authors' convolutional loop has no latch); docs/fidelity.md.
    """

    every: int = 10
    multiplier: float = 1.05
    ewma: float = 0.2
    initial_threshold: float = 1.0
    latch: bool = False

    def __post_init__(self):
        if int(self.every) < 1:
            raise ValueError(f"DynamicSchedule.every must be >= 1, got {self.every}")
        if not self.multiplier > 1.0:
            raise ValueError(f"DynamicSchedule.multiplier must be > 1, got {self.multiplier}")
        if not 0.0 < self.ewma <= 1.0:
            raise ValueError(f"DynamicSchedule.ewma must be in (0, 1], got {self.ewma}")

    def decide(self, step, fi_ewma, threshold) -> tf.Tensor:
        fi_ewma = tf.convert_to_tensor(fi_ewma, tf.float32)
        return tf.logical_and(fi_ewma > 0.0, fi_ewma < threshold)

    def next_threshold(self, threshold, took_alpha_step) -> tf.Tensor:
        threshold = tf.convert_to_tensor(threshold, tf.float32)
        factor = tf.where(
            tf.convert_to_tensor(took_alpha_step),
            tf.constant(self.multiplier ** (-self.every), tf.float32),
            tf.constant(self.multiplier, tf.float32),
        )
        return threshold * factor

    def latched(self, take, latch) -> tf.Tensor:
        """Whether the step takes an α step: the rule's ``take``, or, latching, also any
        step after one in the same epoch (``latch``: an α step was taken this epoch)."""
        take = tf.convert_to_tensor(take)
        return tf.logical_or(take, tf.convert_to_tensor(latch)) if self.latch else take

    def get_config(self) -> dict:
        config = asdict(self)
        if not self.latch:  # the paper's rule: the config it always had
            del config["latch"]
        return {"name": "dynamic-latched" if self.latch else "dynamic", **config}


def update_fi_ewma(fi_ewma, fi, first, ewma: float = 0.2) -> tf.Tensor:
    """``FI_ewma ← FI`` on the first step, else ``e·FI + (1−e)·FI_ewma``."""
    fi = tf.convert_to_tensor(fi, tf.float32)
    fi_ewma = tf.convert_to_tensor(fi_ewma, tf.float32)
    return tf.where(tf.convert_to_tensor(first), fi, ewma * fi + (1.0 - ewma) * fi_ewma)


def add_schedule_state(model) -> None:
    """Give ``model`` the search's clock and schedule state, as non-trainable variables.

    ``search_step`` and ``alpha_steps`` (int64 counters), ``threshold`` (the dynamic
    schedule's, from 1), ``fi_ewma``, and ``total_epochs``/``steps_per_epoch`` (set by
    ``fit``): in that order, as weight files address a model's variables by creation
    order. Float32 and never autocast, so a mixed-precision model keeps them exact.
    """
    import keras

    def state(name: str, dtype: str = "float32", start: float = 0.0):
        return model.add_weight(shape=(), initializer=keras.initializers.Constant(start),
                                dtype=dtype, trainable=False, autocast=False, name=name)

    model.search_step = state("search_step", "int64")
    model.alpha_steps = state("alpha_steps", "int64")
    model.threshold = state("threshold", start=1.0)
    model.fi_ewma = state("fi_ewma")
    model.total_epochs = state("total_epochs", start=1.0)
    model.steps_per_epoch = state("steps_per_epoch", start=1.0)


def get_schedule(schedule) -> FixedSchedule | DynamicSchedule:
    """A schedule from an instance, ``"dynamic"``, ``"dynamic-latched"``, ``"fixed"`` or
    a config dict."""
    if isinstance(schedule, (FixedSchedule, DynamicSchedule)):
        return schedule
    if isinstance(schedule, str):
        schedule = {"name": schedule}
    if isinstance(schedule, dict):
        config = dict(schedule)
        name = config.pop("name", None)
        if name == "dynamic":
            return DynamicSchedule(**config)
        if name == "dynamic-latched":
            return DynamicSchedule(**{**config, "latch": True})
        if name == "fixed":
            return FixedSchedule(**config)
        raise ValueError(f"unknown schedule '{name}'; valid: dynamic, dynamic-latched, fixed")
    raise TypeError(f"schedule must be a schedule, a name or a dict, got {type(schedule).__name__}")
