"""kdarts: differentiable architecture search (DARTS, DARTS-PRIME) for Keras 3.

Example:
    >>> import kdarts
    >>> model = kdarts.SearchNetwork(num_classes=10, activation="crb")
    >>> model.compile(search_data=search_ds)                    # doctest: +SKIP
    >>> model.fit(weight_ds, epochs=50, steps_per_epoch=390)    # doctest: +SKIP
    >>> net = kdarts.EvalNetwork(model.genotype(), num_classes=10)
    >>> kdarts.export(net, "saved_models/net.onnx", format="onnx")  # doctest: +SKIP
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: quiet C++ logs

from kdarts.eval import EvalNetwork  # noqa: E402, compile_eval_network
from kdarts.export import ExportError, export, load_model
from kdarts.genotype import (
    CRB_PRIMITIVES,
    DARTS_V1,
    DARTS_V2,
    PRIMITIVES,
    Genotype,
    GenotypeError,
    discretize,
)
from kdarts.runtime import set_cpu_threads
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

__version__ = "0.1.0"

__all__ = [
    "ADMM", "CRB_PRIMITIVES", "DARTS_V1", "DARTS_V2", "DynamicSchedule", "EvalNetwork",
    "ExportError", "FixedSchedule", "Genotype", "GenotypeError", "MixedEdge", "NoRegularizer",
    "PRIMITIVES", "Proximity", "SearchNetwork", "compile_eval_network", "discretize",
    "dynamic_split_fraction", "export", "load_model", "set_cpu_threads",
]
