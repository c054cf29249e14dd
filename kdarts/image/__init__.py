"""The evaluation network: train a discrete architecture from scratch (DARTS ``model.py``).

Example:
    >>> from kdarts.eval import EvalNetwork, compile_eval_network
    >>> model = EvalNetwork("DARTS_V2", num_classes=10)          # C=36, 20 cells
    >>> callbacks = compile_eval_network(model, epochs=600, steps_per_epoch=521)
    >>> model.fit(train_ds, epochs=600, callbacks=callbacks)
"""

from kdarts.eval.cell import DropPath, EvalCell
from kdarts.eval.network import AuxiliaryHead, AuxiliaryHeadImageNet, EvalNetwork, ImageNetStem
from kdarts.eval.training import (
    CoupledWeightDecaySGD,
    DropPathSchedule,
    EpochCosineDecay,
    compile_eval_network,
)

__all__ = [
    "AuxiliaryHead",
    "AuxiliaryHeadImageNet",
    "CoupledWeightDecaySGD",
    "DropPath",
    "DropPathSchedule",
    "EpochCosineDecay",
    "EvalCell",
    "EvalNetwork",
    "ImageNetStem",
    "compile_eval_network",
]
