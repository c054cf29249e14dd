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
SCHEDULES: tuple[str, ...] = ("dynamic", "fixed")
SPLITS: tuple[str, ...] = ("dynamic", "half")
ADMM_VARIANTS: tuple[str, ...] = ("spec", "reference")
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


def regularizer_class(name: str) -> type:
    """The class registered as ``name`` in :data:`REGULARIZERS` (imports its module)."""
    if name not in REGULARIZERS:
        raise ValueError(f"unknown regulariser {name!r}; valid: {', '.join(REGULARIZERS)}")
    module, _, attribute = REGULARIZERS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def make_regularizer(name: str, opts: Mapping[str, Any]):
    """The regulariser registered as ``name``, built from a run's options by its class's
    ``from_options`` (``rho``, ``admm_every``, ``admm_variant``: each class reads its own)."""
    return regularizer_class(name).from_options(opts)


def make_schedule(opts: Mapping[str, Any]):
    """The α-step schedule of a run's options: ``schedule`` (one of :data:`SCHEDULES`),
    ``every`` and, for the dynamic one, ``threshold``."""
    from kdarts.search.schedules import DynamicSchedule, FixedSchedule

    if opts["schedule"] not in SCHEDULES:
        raise ValueError(f"unknown schedule {opts['schedule']!r}; valid: {', '.join(SCHEDULES)}")
    if opts["schedule"] == "dynamic":
        return DynamicSchedule(every=opts["every"], initial_threshold=opts["threshold"])
    return FixedSchedule(every=opts["every"])
