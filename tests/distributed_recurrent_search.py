"""A tiny recurrent search on two logical CPU devices, run by tests/test_recurrent.py in
its own process (logical devices must be configured before TensorFlow starts).

    python tests/distributed_recurrent_search.py OUT.json

Runs the same seeded search under ``OneDeviceStrategy`` and under ``MirroredStrategy``
on two logical devices (the same global batch of 4 streams: each replica carries two
streams' hidden states, draws its rows of the global dropout masks and normalises with
the global batch's moments), and writes what the test compares: α after every step,
the schedule's decisions, each replica's copy of the state, the genotypes.

The candidate activations leave out ReLU: where its input lies within a rounding
difference of 0 (each replica sums half the batch), the two runs would send a gradient
different ways (see tests/distributed_search.py); the strategy's arithmetic is what is
compared.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from replica_trajectory import Trajectory  # noqa: E402  (this folder is sys.path[0])

from kdarts.recurrent.data import BPTTStream  # noqa: E402
from kdarts.recurrent.search_model import RecurrentSearchModel  # noqa: E402
from kdarts.search import DynamicSchedule  # noqa: E402

PRIMITIVES = ("tanh", "sigmoid", "identity")


def corpus() -> np.ndarray:
    rng = np.random.default_rng(0)
    ids = [0]
    for _ in range(4 * 40):
        ids.append((ids[-1] * 7 + 3) % 20 if rng.random() < 0.8 else int(rng.integers(20)))
    return np.array(ids)


def search(strategy) -> dict:
    ids = corpus()
    train, valid = ids[:4 * 24], ids[4 * 24:]
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = RecurrentSearchModel(vocab_size=20, units=8, activation="crb",
                                     primitives=PRIMITIVES, seed=5)
        model.build((4, 5))
        # threshold near the FI values: some steps take an α step, some do not
        model.compile(optimizer=keras.optimizers.SGD(1.0),
                      arch_optimizer=keras.optimizers.Adam(0.05),
                      schedule=DynamicSchedule(every=2, initial_threshold=1e4),
                      search_data=BPTTStream(valid, 4, 5))
    trajectory = Trajectory(lambda m: m.weight_variables + [m.alpha, m.fi_ewma, m.mask,
                                                           m.hidden, m.search_hidden])
    logs = model.fit(BPTTStream(train, 4, 5, p_full=0.5, seed=3), epochs=2, verbose=0,
                     callbacks=[trajectory]).history
    return dict(replicas=strategy.num_replicas_in_sync, alpha=trajectory.alpha,
                took=trajectory.took, replica_spread=trajectory.replica_spread,
                loss=logs["loss"], genotype=model.genotype().to_dict(),
                trace_count=model.trace_count,
                hidden=model.hidden.numpy().tolist(),
                moving_mean=model.cell.moving_mean.numpy().tolist())


def main(out: str) -> None:
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    result = {"one": search(tf.distribute.OneDeviceStrategy(devices[0])),
              "mirrored": search(tf.distribute.MirroredStrategy(devices))}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
