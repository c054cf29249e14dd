"""The search cell (docs/method.md §1): two preprocessed inputs, ``steps`` nodes, 14 mixed edges.

Example:
    >>> import numpy as np, tensorflow as tf
    >>> cell = SearchCell(8, reduction=False, reduction_prev=False)
    >>> s = np.random.rand(2, 8, 8, 24).astype("float32")
    >>> cell(s, s, tf.fill((14, 7), 0.5), training=True).shape
    TensorShape([2, 8, 8, 32])
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from kdarts.image.edge import FanOut, MixedEdge
from kdarts.image.genotype import CRB_PRIMITIVES, edge_index
from kdarts.image.operations import FactorizedReduce, ReLUConvBN, batch_norm, check_primitives


def fanout_rows(source: int, steps: int) -> list[int]:
    """α rows of the edges leaving state ``source``, in destination-node order."""
    return [edge_index(node, source) for node in range(max(0, source - 1), steps)]


@keras.saving.register_keras_serializable(package="kdarts")
class SearchCell(keras.layers.Layer):
    """A DARTS search cell.

    ``call(s0, s1, weights, active=None)``: ``weights`` is the activated α of this
    cell type, ``(14, num_ops)``; ``active`` the crb mask as booleans (``None``
    for softmax).

    Args:
        channels: C of this cell (each node has C channels; output multiplier·C).
        reduction: edges leaving the two input nodes have stride 2.
        reduction_prev: the previous cell reduced, so ``s0`` is FactorizedReduce'd.
        primitives: candidate ops (columns of α).
        steps, multiplier: intermediate nodes, and how many of the last are concatenated.
        node_bn: BN without scale/offset after each node's sum (the crb setting).
        fused: compute all edges leaving a node together
            (:class:`~kdarts.image.edge.FanOut`); ``False`` uses one
            :class:`~kdarts.image.edge.MixedEdge` per edge, as the DARTS reference code does.
    """

    def __init__(self, channels: int, reduction: bool, reduction_prev: bool,
                 primitives: Sequence[str] = CRB_PRIMITIVES, steps: int = 4,
                 multiplier: int = 4, node_bn: bool = False, fused: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.reduction = bool(reduction)
        self.reduction_prev = bool(reduction_prev)
        self.primitives = check_primitives(primitives)
        self.steps = int(steps)
        self.multiplier = int(multiplier)
        self.node_bn = bool(node_bn)
        self.fused = bool(fused)
        c = self.channels
        self.preprocess0 = (FactorizedReduce(c, affine=False, name="preprocess0")
                            if self.reduction_prev
                            else ReLUConvBN(c, 1, 1, affine=False, name="preprocess0"))
        self.preprocess1 = ReLUConvBN(c, 1, 1, affine=False, name="preprocess1")
        stride = lambda source: 2 if self.reduction and source < 2 else 1  # noqa: E731
        if self.fused:
            self.fanouts = [
                FanOut(c, stride(s), self.primitives, len(fanout_rows(s, self.steps)),
                       name=f"fanout{s}")
                for s in range(self.steps + 1)
            ]
        else:
            self.edges = [
                MixedEdge(c, stride(s), self.primitives, name=f"edge{node}_{s}")
                for node in range(self.steps) for s in range(node + 2)
            ]
        self.node_bns = ([batch_norm(False, name=f"node_bn{i}") for i in range(self.steps)]
                         if self.node_bn else [])

    def build(self, s0_shape, s1_shape=None, *args, **kwargs):
        s1_shape = s1_shape or s0_shape
        self.preprocess0.build(s0_shape)
        self.preprocess1.build(s1_shape)
        self.built = True

    def _node(self, i, total, training):
        return self.node_bns[i](total, training=training) if self.node_bn else total

    def call(self, s0, s1, weights, active=None, training=None):
        states = [self.preprocess0(s0, training=training),
                  self.preprocess1(s1, training=training)]
        if self.fused:
            incoming: list[list] = [[] for _ in range(self.steps)]
            for source in range(self.steps + 1):
                if source >= 2:  # node source-2 has all its inputs now
                    node = source - 2
                    states.append(self._node(node, tf.add_n(incoming[node]), training))
                rows = fanout_rows(source, self.steps)
                act_rows = None if active is None else tf.gather(active, rows)
                out = self.fanouts[source](states[source], tf.gather(weights, rows),
                                           act_rows, training=training)
                # unstack, not out[q]: each slice's gradient would be a full-size zero tensor
                edges = tf.unstack(out, num=len(rows))
                for q, node in enumerate(range(max(0, source - 1), self.steps)):
                    incoming[node].append(edges[q])
            states.append(self._node(self.steps - 1, tf.add_n(incoming[-1]), training))
        else:
            for node in range(self.steps):
                terms = []
                for source in range(node + 2):
                    e = edge_index(node, source)
                    terms.append(self.edges[e](states[source], weights[e],
                                               None if active is None else active[e],
                                               training=training))
                states.append(self._node(node, tf.add_n(terms), training))
        return tf.concat(states[-self.multiplier:], axis=-1)

    def compute_output_shape(self, s0_shape, s1_shape=None, *args, **kwargs):
        s1_shape = s1_shape or s0_shape
        d = 2 if self.reduction else 1
        h = None if s1_shape[1] is None else -(-s1_shape[1] // d)
        w = None if s1_shape[2] is None else -(-s1_shape[2] // d)
        return (s1_shape[0], h, w, self.multiplier * self.channels)

    def get_config(self) -> dict:
        return {**super().get_config(), "channels": self.channels,
                "reduction": self.reduction, "reduction_prev": self.reduction_prev,
                "primitives": list(self.primitives), "steps": self.steps,
                "multiplier": self.multiplier, "node_bn": self.node_bn, "fused": self.fused}


__all__ = ["SearchCell", "fanout_rows"]
