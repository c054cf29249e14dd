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
