"""The search's option names, in one place that imports no TensorFlow.

The command line takes its choices from here and the runs build the search's parts
from here, so a new activation, schedule or regulariser is registered once. A new
regulariser is a class in its own module (a :class:`kdarts.search.regularizers.Regularizer`
with a ``from_options`` classmethod) and one line in :data:`REGULARIZERS`.

Example:
    >>> from kdarts.options import REGULARIZERS, make_regularizer
    >>> sorted(REGULARIZERS)
    ['admm', 'none', 'proximity']
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

ACTIVATIONS: tuple[str, ...] = ("crb", "softmax")
#: α-step schedules by name: "module:Class", imported on use (the classes need TensorFlow).
SCHEDULE_CLASSES: dict[str, str] = {
    "dynamic": "kdarts.search.schedules:DynamicSchedule",
    "fixed": "kdarts.search.schedules:FixedSchedule",
}
SCHEDULES: tuple[str, ...] = tuple(SCHEDULE_CLASSES)
#: The recurrent search's schedules: also the authors' dynamic one as their code runs it
#: (``DynamicSchedule(latch=True)``; docs/fidelity.md).
RECURRENT_SCHEDULES: tuple[str, ...] = SCHEDULES + ("dynamic-latched",)
SPLITS: tuple[str, ...] = ("dynamic", "half")
ADMM_VARIANTS: tuple[str, ...] = ("spec", "reference")
#: Where α's Adam adds ε: ``"keras"`` (before the bias correction, Keras's Adam, the
#: default) or ``"torch"`` (after it, as the authors' PyTorch: kdarts.optimizers.TorchAdam).
ARCH_EPSILONS: tuple[str, ...] = ("keras", "torch")
#: crb: how the step leaves pruned ops out (``SearchNetwork.compile(skip_pruned_ops=...)``)
SKIP_PRUNED_MODES: tuple[str, ...] = ("auto", "levels", "every_step", "never")
#: Those the recurrent cell computes (it has no per-step gathers).
RECURRENT_SKIP_PRUNED_MODES: tuple[str, ...] = ("auto", "levels", "never")

#: Regularisers by name: "module:Class", imported on use (the classes need TensorFlow).
REGULARIZERS: dict[str, str] = {
    "proximity": "kdarts.search.regularizers:Proximity",
    "admm": "kdarts.search.regularizers:ADMM",
    "none": "kdarts.search.regularizers:NoRegularizer",
}


def _registered(registry: Mapping[str, str], name: str, what: str) -> type:
    """The class ``registry`` names ``name`` (imports its module); ValueError if none."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; valid: {', '.join(registry)}")
    module, _, attribute = registry[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def regularizer_class(name: str) -> type:
    """The class registered as ``name`` in :data:`REGULARIZERS` (imports its module)."""
    return _registered(REGULARIZERS, name, "regulariser")


def make_regularizer(name: str, opts: Mapping[str, Any]):
    """The regulariser registered as ``name``, built from a run's options by its class's
    ``from_options`` (``rho``, ``admm_every``, ``admm_variant``: each class reads its own)."""
    return regularizer_class(name).from_options(opts)


def make_schedule(opts: Mapping[str, Any]):
    """The α-step schedule of a run's options: ``schedule`` (one of :data:`SCHEDULES`, or
    ``"dynamic-latched"``), ``every`` and, for the dynamic one, ``threshold``."""
    latched = opts["schedule"] == "dynamic-latched"
    name = "dynamic" if latched else opts["schedule"]
    schedule = _registered(SCHEDULE_CLASSES, name, "schedule")
    if name == "dynamic":
        return schedule(every=opts["every"], initial_threshold=opts["threshold"],
                        **({"latch": True} if latched else {}))
    return schedule(every=opts["every"])


def make_arch_optimizer(opts: Mapping[str, Any], beta_1: float):
    """α's Adam of a run's options: ``arch_lr``, β₁ ``beta_1`` (the space's reference:
    0.5 image, 0.9 recurrent), β₂ 0.999, ε 1e-8 placed as ``arch_epsilon`` says (one of
    :data:`ARCH_EPSILONS`; absent: Keras's)."""
    placement = opts.get("arch_epsilon", "keras")
    if placement not in ARCH_EPSILONS:
        raise ValueError(f"unknown arch_epsilon {placement!r}; valid: {', '.join(ARCH_EPSILONS)}")
    if placement == "torch":
        from kdarts.optimizers import TorchAdam as Adam
    else:
        from keras.optimizers import Adam
    return Adam(learning_rate=opts["arch_lr"], beta_1=beta_1, beta_2=0.999, epsilon=1e-8)
