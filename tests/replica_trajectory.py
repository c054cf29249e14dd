"""A search's trajectory under a strategy, for the multi-replica test scripts: α and the
α-step decision after every step, and how far the replicas' copies of the model's state
ever drifted apart."""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np


class Trajectory(keras.callbacks.Callback):
    """``alpha`` (every α variable, per step), ``took`` (the step's decision) and
    ``replica_spread``: the largest difference between two replicas' copies of the
    variables ``state(model)`` lists."""

    def __init__(self, state: Callable[[keras.Model], list]):
        super().__init__()
        self.state = state
        self.alpha, self.took, self.replica_spread = [], [], 0.0

    def on_train_batch_end(self, batch, logs=None):
        m = self.model
        self.alpha.append([a.numpy().tolist() for a in m.arch_variables])
        self.took.append(float(logs["took_alpha_step"]))
        for v in self.state(m):
            copies = getattr(v.value, "values", ())
            for c in copies[1:]:
                self.replica_spread = max(self.replica_spread,
                                          float(np.abs(c.numpy() - copies[0].numpy()).max()))
