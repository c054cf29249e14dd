"""The search's option names, in one place that imports no TensorFlow.

The command line takes its choices from here and the runs build the search's parts
from here, so a new activation, schedule or regulariser is registered once.

Example:
    >>> from kdarts.options import REGULARIZERS, make_regularizer
    >>> sorted(REGULARIZERS)
    ['admm', 'none', 'proximity']
"""

from __future__ import annotations

import importlib

ACTIVATIONS: tuple[str, ...] = ("crb", "softmax")
SCHEDULES: tuple[str, ...] = ("dynamic", "fixed")
SPLITS: tuple[str, ...] = ("dynamic", "half")
ADMM_VARIANTS: tuple[str, ...] = ("spec", "reference")

#: Regularisers by name: "module:Class", imported on use (the classes need TensorFlow).
REGULARIZERS: dict[str, str] = {
    "proximity": "kdarts.search.regularizers:Proximity",
    "admm": "kdarts.search.regularizers:ADMM",
    "none": "kdarts.search.regularizers:NoRegularizer",
}


def _load(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def make_regularizer(name: str, opts: dict):
    """The regulariser registered as ``name``, configured from the run's options
    (``rho``, ``admm_every``, ``admm_variant``)."""
    if name not in REGULARIZERS:
        raise ValueError(f"unknown regulariser {name!r}; valid: {', '.join(REGULARIZERS)}")
    cls = _load(REGULARIZERS[name])
    if name == "proximity":
        return cls(rho=opts["rho"])
    if name == "admm":
        return cls(rho=opts["rho"], every=opts["admm_every"], variant=opts["admm_variant"])
    return cls()
