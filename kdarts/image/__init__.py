"""The image space: DARTS's convolutional cells, searched and trained (DARTS's ``cnn/``).

Modules, by DARTS's file names: :mod:`.genotype` (the discrete cells, presets, D; no
TensorFlow), :mod:`.operations` (the candidate operations); the search: :mod:`.edge` (the
reference ``MixedEdge`` and the fused ``FanOut``), :mod:`.search_cell`, :mod:`.search_model`
(``SearchNetwork``: its gradients and data pairing; the step is the method core's,
:mod:`kdarts.search`), :mod:`.projection` (a budget's D_B in graph ops); for a found
genotype: :mod:`.cell`, :mod:`.model` (``EvalNetwork``), :mod:`.training` (DARTS's recipe),
:mod:`.replicas` (gradients all-reduced over replicas), :mod:`.costs` and :mod:`.latency`
(the cost tables a budget prices); :mod:`.export` (the image contract: images → logits).
The recurrent space, :mod:`kdarts.recurrent`, has the same files for its own cells.

Example:
    >>> from kdarts.image import DARTS_V2, EvalNetwork, compile_eval_network  # doctest: +SKIP
    >>> model = EvalNetwork(DARTS_V2, num_classes=10)          # C=36, 20 cells
    >>> callbacks = compile_eval_network(model, epochs=600, steps_per_epoch=521)
    >>> model.fit(train_ds, epochs=600, callbacks=callbacks)

The TensorFlow-backed names load on first use, so the genotypes stay light.
"""

from kdarts.image.genotype import (  # noqa: F401
    CRB_PRIMITIVES,
    DARTS_V1,
    DARTS_V2,
    PRESETS,
    PRIMITIVES,
    Genotype,
    discretize,
    resolve_genotype,
)
from kdarts.lazy_names import lazy_names as _lazy_names

_LAZY = {
    "MixedEdge": "kdarts.image.edge",
    "FanOut": "kdarts.image.edge",
    "SearchCell": "kdarts.image.search_cell",
    "SearchNetwork": "kdarts.image.search_model",
    "BudgetProjection": "kdarts.image.projection",
    "DropPath": "kdarts.image.cell",
    "EvalCell": "kdarts.image.cell",
    "AuxiliaryHead": "kdarts.image.model",
    "AuxiliaryHeadImageNet": "kdarts.image.model",
    "EvalNetwork": "kdarts.image.model",
    "ImageNetStem": "kdarts.image.model",
    "CoupledWeightDecaySGD": "kdarts.image.training",
    "DropPathSchedule": "kdarts.image.training",
    "EpochCosineDecay": "kdarts.image.training",
    "compile_eval_network": "kdarts.image.training",
    "cost_tables": "kdarts.image.costs",
    "latency_table": "kdarts.image.latency",
    "export_model": "kdarts.image.export",
}


__getattr__, __dir__ = _lazy_names("kdarts.image", globals(), _LAZY)

__all__ = ["CRB_PRIMITIVES", "DARTS_V1", "DARTS_V2", "PRESETS", "PRIMITIVES", "Genotype",
           "discretize", "resolve_genotype", *_LAZY]
