"""The method core both spaces' searches run (docs/method.md §2–7).

:mod:`.activations` (act(α): softmax, sigmoid, crb, with its pruning), :mod:`.schedules`
(when an α step is taken), :mod:`.regularizers` (proximity, ADMM and D in graph ops),
:mod:`.pruning` (the pruned-op policy's rules; no TensorFlow), :mod:`.alternating`
(:class:`~kdarts.search.alternating.AlternatingSearch`: the step, the base of both spaces'
search models) and :mod:`.callbacks` (the search record and its checkpoints). A space
brings its search model: :class:`kdarts.image.SearchNetwork`,
:class:`kdarts.recurrent.RecurrentSearchModel`. Nothing here imports a space.
"""

from kdarts.parameters import count_parameters
from kdarts.search.activations import ArchitectureActivation, activate, prune
from kdarts.search.alternating import AlternatingSearch
from kdarts.search.regularizers import (
    ADMM,
    Architecture,
    NoRegularizer,
    Proximity,
    Regularizer,
    admm_update,
    admm_update_reference,
)
from kdarts.search.schedules import (
    DynamicSchedule,
    FixedSchedule,
    dynamic_split_fraction,
    update_fi_ewma,
)

__all__ = ["ADMM", "AlternatingSearch", "Architecture", "ArchitectureActivation",
           "DynamicSchedule", "FixedSchedule", "NoRegularizer", "Proximity", "Regularizer",
           "activate", "admm_update", "admm_update_reference", "count_parameters",
           "dynamic_split_fraction", "prune", "update_fi_ewma"]
