"""The search: supernet layers, activations, schedules, regularisers, callbacks."""

from kdarts.search.activations import ArchitectureActivation, activate, prune
from kdarts.search.cell import SearchCell
from kdarts.search.edge import FanOut, MixedEdge
from kdarts.search.network import SearchNetwork, count_parameters
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

__all__ = ["ADMM", "Architecture", "ArchitectureActivation", "DynamicSchedule", "FanOut",
           "FixedSchedule", "MixedEdge", "NoRegularizer", "Proximity", "Regularizer",
           "SearchCell", "SearchNetwork", "activate", "admm_update", "admm_update_reference",
           "count_parameters", "dynamic_split_fraction", "prune", "update_fi_ewma"]
