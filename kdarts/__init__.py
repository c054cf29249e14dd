"""kdarts: differentiable architecture search (DARTS, DARTS-PRIME) for Keras 3.

Example:
    >>> import kdarts
    >>> model = kdarts.SearchNetwork(num_classes=10, activation="crb")
    >>> model.compile(search_data=search_ds)                    # doctest: +SKIP
    >>> model.fit(weight_ds, epochs=50, steps_per_epoch=390)    # doctest: +SKIP
    >>> net = kdarts.EvalNetwork(model.genotype(), num_classes=10)
    >>> kdarts.export_model(net, "saved_models/net.onnx", format="onnx")  # doctest: +SKIP

The names that need TensorFlow (the networks, schedules, regularisers) are
imported on first use, so ``import kdarts`` and the ``kdarts`` command's
``--help`` stay fast.
"""

from kdarts.lazy_names import lazy_names as _lazy_names
import os as _os

# Before TensorFlow loads: quiet its C++ INFO/WARNING logs (kdarts.runtime silences the rest),
# unless the user set the level.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Light modules (numpy only), imported now. `kdarts.export` is the module; the function is
# `export_model`.
from kdarts.export import ExportError, load_model  # noqa: E402
from kdarts.genotype import GenotypeError  # noqa: E402
from kdarts.image.export import export_model  # noqa: E402
from kdarts.image.genotype import (  # noqa: E402
    CRB_PRIMITIVES,
    DARTS_V1,
    DARTS_V2,
    PRIMITIVES,
    Genotype,
    discretize,
)
from kdarts.runtime import quiet_tensorflow_import, set_cpu_threads  # noqa: E402

# The lines TensorFlow's native libraries print while they load, whatever the level: off
# stderr when TensorFlow is first imported, by a kdarts module or after `import kdarts`.
quiet_tensorflow_import()

# `keras.models.load_model` finds kdarts's classes: their modules are imported right after
# Keras is (not now: they need TensorFlow).
from kdarts.keras_registry import register_on_keras_import  # noqa: E402

register_on_keras_import()

__version__ = "0.1.0"

# name → module holding it; imported (with TensorFlow) the first time the name is used
_LAZY = {
    "EvalNetwork": "kdarts.image",
    "compile_eval_network": "kdarts.image",
    "ADMM": "kdarts.search",
    "DynamicSchedule": "kdarts.search",
    "FixedSchedule": "kdarts.search",
    "FusedSGD": "kdarts.optimizers",
    "MixedEdge": "kdarts.image",
    "NoRegularizer": "kdarts.search",
    "Proximity": "kdarts.search",
    "SearchNetwork": "kdarts.image",
    "dynamic_split_fraction": "kdarts.search",
    "Budget": "kdarts.image.budget",  # TensorFlow-free
    "cost_tables": "kdarts.image.costs",
    "latency_table": "kdarts.image.latency",
    "SearchDefaults": "kdarts.runs.recipe",  # TensorFlow-free: options, then Keras parts
    "search_defaults": "kdarts.runs.search",
}


__getattr__, __dir__ = _lazy_names("kdarts", globals(), _LAZY)


__all__ = [
    "ADMM", "Budget", "CRB_PRIMITIVES", "DARTS_V1", "DARTS_V2", "DynamicSchedule", "EvalNetwork",
    "ExportError", "FixedSchedule", "FusedSGD", "Genotype", "GenotypeError", "MixedEdge",
    "NoRegularizer", "PRIMITIVES", "Proximity", "SearchDefaults", "SearchNetwork",
    "compile_eval_network", "cost_tables", "discretize", "dynamic_split_fraction", "export_model",
    "latency_table", "load_model", "search_defaults", "set_cpu_threads",
]
