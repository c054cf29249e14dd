"""The method core both spaces' searches run (docs/method.md §2–7).

:mod:`.activations` (act(α): softmax, sigmoid, crb, with its pruning), :mod:`.schedules`
(when an α step is taken), :mod:`.regularizers` (proximity, ADMM and D in graph ops),
:mod:`.pruning` (the pruned-op policy's rules; no TensorFlow), :mod:`.alternating`
(:class:`~kdarts.search.alternating.AlternatingSearch`: the step, the base of both spaces'
search models) and :mod:`.callbacks` (the search record and its checkpoints). A space
brings its search model: :class:`kdarts.image.SearchNetwork`,
:class:`kdarts.recurrent.RecurrentSearchModel`. Nothing here imports a space.
"""

from kdarts.lazy_names import lazy_names as _lazy_names
from kdarts.parameters import count_parameters  # noqa: F401

# name → module holding it; imported (with TensorFlow) on first use, so the core's light
# module (pruning) imports without it
_LAZY = {
    "ArchitectureActivation": "kdarts.search.activations",
    "activate": "kdarts.search.activations",
    "prune": "kdarts.search.activations",
    "AlternatingSearch": "kdarts.search.alternating",
    "ADMM": "kdarts.search.regularizers",
    "Architecture": "kdarts.search.regularizers",
    "NoRegularizer": "kdarts.search.regularizers",
    "Proximity": "kdarts.search.regularizers",
    "Regularizer": "kdarts.search.regularizers",
    "admm_update": "kdarts.search.regularizers",
    "admm_update_reference": "kdarts.search.regularizers",
    "DynamicSchedule": "kdarts.search.schedules",
    "FixedSchedule": "kdarts.search.schedules",
    "dynamic_split_fraction": "kdarts.search.schedules",
    "update_fi_ewma": "kdarts.search.schedules",
}


__getattr__, __dir__ = _lazy_names("kdarts.search", globals(), _LAZY)

__all__ = ["count_parameters", *_LAZY]
