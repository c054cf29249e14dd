"""kdarts: differentiable architecture search (DARTS, DARTS-PRIME) for Keras 3."""

from kdarts.genotype import (
    CRB_PRIMITIVES,
    DARTS_V1,
    DARTS_V2,
    PRIMITIVES,
    Genotype,
    GenotypeError,
    discretize,
)

__version__ = "0.1.0"
from kdarts.search import (
    ADMM,
    DynamicSchedule,
    FixedSchedule,
    MixedEdge,
    NoRegularizer,
    Proximity,
    SearchNetwork,
    dynamic_split_fraction,
)
