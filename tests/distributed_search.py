"""A tiny search and a tiny training on two logical CPU devices, run by
tests/test_scale_out.py in its own process (logical devices must be configured before
TensorFlow starts).

    python tests/distributed_search.py OUT.json

Runs the same seeded search (under a budget that binds; again with the budget's
expected-cost term and its dual λ), and the same training of an evaluation network, under
``OneDeviceStrategy`` and under ``MirroredStrategy`` on two logical devices with
synchronised BN (the same global batch), and writes what the test compares: α after
every step, the schedule's decisions, each replica's copy of α and the genotypes; the
training's weights and loss after every step.

The networks have no kink for a rounding difference to flip. Each replica sums half the
batch, so BN statistics and gradients differ from one device's in the last bit; where a
ReLU's input lies within that bit of 0, or two values of a max pool's window within it of
each other, the two runs send a gradient different ways, and α parts by 1e-5 to 4e-4 at
once (Adam makes a different step of the changed gradient). Which rounding meets such a
tie is chance: on an AMD EPYC (AVX2) Eigen's kernels met one (α 1.0e-4 apart at step 8,
3.9e-4 at step 20) and oneDNN's did not (1.8e-7); on an Intel CPU oneDNN's did (4e-4).
So ReLU is softplus here and the pool an average pool: the strategy's arithmetic is what
is compared, and it keeps α within 3e-7 of one device's, with either kernels.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

tf.nn.relu = tf.nn.softplus  # what kdarts's and Keras's ReLUs call: smooth (docstring)

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from replica_trajectory import Trajectory  # noqa: E402  (this folder is sys.path[0])

from kdarts.image import EvalNetwork, compile_eval_network  # noqa: E402
from kdarts.image import SearchNetwork  # noqa: E402
from kdarts.image.budget import Budget  # noqa: E402
from kdarts.image.costs import CostTable  # noqa: E402
from kdarts.image.genotype import DARTS_V2, Genotype, discretize, num_edges  # noqa: E402
from kdarts.search import DynamicSchedule  # noqa: E402
from test_search_fit import datasets  # noqa: E402  (this folder is the script's sys.path[0])

# A pool and the identity (FactorizedReduce in reduction cells): every kind of BN the
# network has (stem, pool, FactorizedReduce, crb node BN) at a fraction of the tracing a
# separable conv costs; MirroredStrategy traces the network per replica and per use. The
# average pool: a max pool's gradient can flip (docstring).
PRIMS = ("avg_pool_3x3", "skip_connect")
# DARTS_V2 with its max pools averaged, for the same reason
GENOTYPE = Genotype(normal=DARTS_V2.normal, reduce=[
    ("avg_pool_3x3" if op == "max_pool_3x3" else op, i) for op, i in DARTS_V2.reduce])
TINY = dict(channels=4, layers=3, steps=2, multiplier=2, primitives=PRIMS)
STEPS = 20


def own_traces(model) -> list[int] | None:
    """``[ops with a stack trace of their own, ops]`` in the traced multi-replica train
    function's graph (None on one device, where Keras's train function hides its
    ``tf.function``): kdarts traces its step under lean tracing, on every thread
    (MirroredStrategy traces each replica's share in a thread of its own), so no op
    should have its own trace."""
    if model.distribute_strategy.num_replicas_in_sync == 1:
        return None
    fn = model.train_function
    while not hasattr(fn, "_list_all_concrete_functions"):
        fn = fn.__wrapped__  # the tf.function inside kdarts's wrappers
    ops = [op for c in fn._list_all_concrete_functions() for op in c.graph.get_operations()]
    return [sum(op.traceback[-1].name != "_op_stack_trace_not_recorded" for op in ops),
            len(ops)]


#: A budget that binds (an average pool costs 1, the identity 0; two pools in all):
#: proximity's target is D_B, computed on every replica
BUDGET = Budget(CostTable("params", {t: np.tile([1.0, 0.0], (num_edges(2), 1))
                                     for t in ("normal", "reduce")}, 0.0, PRIMS), 2.0)


class _Duals(keras.callbacks.Callback):
    """The budget's dual λ after every step."""

    def __init__(self):
        super().__init__()
        self.duals = []

    def on_train_batch_end(self, batch, logs=None):
        self.duals.append(float(self.model.budget_dual.numpy()))


def search(strategy, budget_dual_lr=None) -> dict:
    """The search; ``budget_dual_lr``: with the budget's expected-cost term and its dual
    λ (updated on every replica), whose trajectory is then recorded too."""
    weight_ds, search_ds = datasets()
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = SearchNetwork(4, activation="crb", sync_batch_norm=True, **TINY)
        model.build((8, 8, 8, 3))
        # threshold near the FI values: some steps take an α step, some do not
        model.compile(schedule=DynamicSchedule(every=2, initial_threshold=30.0),
                      regularizer="proximity",
                      arch_optimizer=keras.optimizers.Adam(3e-3, beta_1=0.5),
                      search_data=search_ds, budget=BUDGET, budget_dual_lr=budget_dual_lr)
    dual = [model.budget_dual] if budget_dual_lr else []
    trajectory = Trajectory(lambda m: m.arch_variables + m.weight_variables
                            + [m.fi_ewma, m.mask_normal] + dual)
    duals = _Duals() if budget_dual_lr else None
    model.fit(weight_ds, epochs=2, steps_per_epoch=STEPS // 2, verbose=0,
              callbacks=[trajectory] + ([duals] if duals else []))
    return dict(duals=duals.duals if duals else None,
                replicas=strategy.num_replicas_in_sync, alpha=trajectory.alpha,
                took=trajectory.took, replica_spread=trajectory.replica_spread,
                genotype=model.genotype().to_dict(), trace_count=model.trace_count,
                genotype_cost=BUDGET.cost(model.genotype()),
                free_cost=BUDGET.cost(Genotype.from_dict(free_genotype(model))),
                own_traces=own_traces(model))


def free_genotype(model) -> dict:
    """The genotype D (no budget) gives the final weights."""
    genes = [discretize(w.numpy(), model.primitives, model.steps)[0]
             for w in model.activated_weights()]
    return {"normal": genes[0], "normal_concat": [2, 3], "reduce": genes[1],
            "reduce_concat": [2, 3]}


class _Weights(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights, self.loss = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([v.numpy().ravel().tolist() for v in self.model.trainable_variables])
        self.loss.append(float(logs["loss"]))


def train(strategy) -> dict:
    """DARTS_V2 with average pools (auxiliary head on, no drop-path) for 4 steps of a
    global batch of 8, with a clip norm small enough to clip every step: clipping after
    the all-reduce matters."""
    weight_ds, _ = datasets()
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = EvalNetwork(GENOTYPE, 4, channels=4, layers=3, drop_path_prob=0.0, seed=0,
                            sync_batch_norm=True)
        model.build((None, 8, 8, 3))
        # the first of 10 epochs: its learning rate is not yet the cosine's final 0
        compile_eval_network(model, epochs=10, steps_per_epoch=4, clip_norm=0.05)
    record = _Weights()
    model.fit(weight_ds, epochs=1, steps_per_epoch=4, verbose=0, callbacks=[record])
    return dict(weights=record.weights, loss=record.loss, own_traces=own_traces(model))


def main(out: str) -> None:
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    one, mirrored = (tf.distribute.OneDeviceStrategy(devices[0]),
                     tf.distribute.MirroredStrategy(devices))
    result = {"one": search(one), "mirrored": search(mirrored),
              "dual_one": search(one, 0.5), "dual_mirrored": search(mirrored, 0.5),
              "train_one": train(one), "train_mirrored": train(mirrored)}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
