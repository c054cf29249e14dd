"""Exact cost tables of the evaluation network: parameters and multiply-adds per (cell
type, edge, op), plus the part every genotype pays (docs/method.md §8). Latency, measured
rather than counted, shares the tables' form and geometry: :mod:`kdarts.image.latency`.

Every cell of a type repeats the genotype, so the cost of keeping op ``o`` on edge ``e``
of cell type ``t`` is that op's cost summed over the network's positions of type ``t``,
each at its channels, input size and stride (2 on a reduction cell's edges from its
inputs). Both counts come from built layers, never from per-op formulas: parameters are
the built op's trainable weights; multiply-adds are read off the traced inference graph,
the multiply-accumulates of its convolution and matrix-multiply kernels (batch norm,
pooling, activations and additions are not counted, as in the NAS literature).
The fixed part is a built network's count less its genotype's table cost; the auxiliary
head is left out, as in :meth:`EvalNetwork.parameter_count`.

Example:
    >>> from kdarts.image.genotype import DARTS_V2
    >>> tables = cost_tables(num_classes=10, image_shape=(8, 8, 3), channels=16, layers=8)
    >>> tables["params"].of(DARTS_V2)   # what EvalNetwork(...).parameter_count() gives
    246106.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from kdarts.image.genotype import CRB_PRIMITIVES, Genotype, edge_index, num_edges
from kdarts.image.operations import make_op
from kdarts.parameters import count_parameters

#: The costs a table can hold, and the unit each is counted in.
COST_UNITS: dict[str, str] = {"params": "parameters", "madds": "multiply-adds",
                               "latency_ms": "milliseconds"}


@dataclass(frozen=True)
class CostTable:
    """c(t, e, o) for each cell type and the fixed part c₀ of one cost.

    Attributes:
        kind: a key of :data:`COST_UNITS` (``"params"``, ``"madds"``, ``"latency_ms"``).
        per_op: cell type (``"normal"``, ``"reduce"``) → (edges, primitives) costs.
        fixed: c₀, what every genotype pays.
        primitives: the names of the columns.
    """

    kind: str
    per_op: dict[str, np.ndarray]
    fixed: float
    primitives: tuple[str, ...] = field(default=CRB_PRIMITIVES)

    def onehots(self, genotype: Genotype) -> dict[str, np.ndarray]:
        """The genotype's kept (edge, op) as 0/1 matrices, one per cell type."""
        steps = genotype.steps
        out = {}
        for t, genes in (("normal", genotype.normal), ("reduce", genotype.reduce)):
            onehot = np.zeros((num_edges(steps), len(self.primitives)))
            for k, (op, source) in enumerate(genes):
                onehot[edge_index(k // 2, source), self.primitives.index(op)] += 1.0
            out[t] = onehot
        return out

    def of(self, genotype: Genotype) -> float:
        """The cost of ``genotype``: c₀ plus the cost of every op it keeps."""
        onehots = self.onehots(genotype)
        return float(self.fixed + sum(float(np.sum(onehots[t] * self.per_op[t]))
                                      for t in onehots))


def _kernel_madds(graph: tf.Graph) -> int:
    """Multiply-accumulates of the convolution and matmul kernels of a traced graph."""
    total = 0
    for op in graph.get_operations():
        if op.type == "Conv2D":
            kh, kw, cin_per_group, _ = op.inputs[1].shape.as_list()
            total += int(np.prod(op.outputs[0].shape.as_list())) * kh * kw * cin_per_group
        elif op.type == "DepthwiseConv2dNative":
            kh, kw, _, _ = op.inputs[1].shape.as_list()
            total += int(np.prod(op.outputs[0].shape.as_list())) * kh * kw
        elif op.type in ("MatMul", "BatchMatMulV2"):
            inner = op.inputs[0].shape.as_list()[-1]
            if op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x"):
                inner = op.inputs[0].shape.as_list()[-2]
            total += int(np.prod(op.outputs[0].shape.as_list())) * inner
    return total


def layer_madds(layer, input_shape: Sequence[int]) -> int:
    """Multiply-adds of one inference call of a built ``layer`` on one input of
    ``input_shape`` (batch dimension included)."""
    spec = tf.TensorSpec(tuple(input_shape), tf.float32)
    graph = tf.function(lambda x: layer(x, training=False)).get_concrete_function(spec).graph
    return _kernel_madds(graph)


def _cell_positions(network) -> list[tuple[str, int, tuple[int, ...]]]:
    """(cell type, channels, shape of the cell's preprocessed inputs) per cell."""
    positions = []
    shape = tuple(network.get_build_config()["input_shape"])
    s0 = s1 = network.stem_conv.compute_output_shape(shape)
    for cell in network.cells:
        states = cell.preprocess1.compute_output_shape(s1)
        positions.append(("reduce" if cell.reduction else "normal", cell.channels,
                          (1,) + tuple(states[1:])))
        s0, s1 = s1, cell.compute_output_shape([s0, s1])
    return positions


def network_madds(network) -> int:
    """Multiply-adds of a built evaluation network's inference on one image."""
    shape = (1,) + tuple(network.get_build_config()["input_shape"])[1:]
    return layer_madds(network, shape)


def _holds_weights(name: str) -> bool:
    """Whether the op ``name`` has weights in a normal cell (stride 1)."""
    op = make_op(name, 4, strides=1, affine=True, search=False)
    op.build((1, 4, 4, 4))
    return count_parameters(op) > 0


def probe_network(num_classes: int, image_shape: Sequence[int], channels: int, layers: int,
                  primitives: Sequence[str] = CRB_PRIMITIVES, steps: int = 4,
                  stem_multiplier: int = 3):
    """A genotype keeping one primitive on every node's inputs 0 and 1, and its built
    evaluation network (no auxiliary head): any genotype serves to read the network's
    geometry, and its whole cost less its table cost is the fixed part.

    The primitive is the first that holds weights (else the first but ``none``): every
    node of the probe reads the same two inputs, and a runtime computes identical
    weightless ops on one input once (common-subexpression elimination), so a probe of
    pools would run two of its eight and a measured latency's fixed part would be off by
    the other six. Ops with weights are distinct, whatever their inputs.

    Returns:
        ``(genotype, network)``.
    """
    from kdarts.image.model import EvalNetwork

    keepable = [p for p in primitives if p != "none"]
    chosen = next((p for p in keepable if _holds_weights(p)), keepable[0])
    genes = [(chosen, i) for node in range(steps) for i in (0, 1)]
    probe = Genotype(genes, list(range(2, 2 + steps)), genes, list(range(2, 2 + steps)))
    network = EvalNetwork(probe, num_classes, channels=channels, layers=layers,
                          auxiliary=False, stem_multiplier=stem_multiplier)
    network.build((None, *image_shape))
    return probe, network


def op_positions(network, primitives: Sequence[str] = CRB_PRIMITIVES,
                 steps: int = 4) -> Iterator[tuple[str, int, int, tuple]]:
    """Every place a genotype may keep an op in a built evaluation network.

    Yields ``(cell type, edge row, primitive column, key)`` for each cell, edge and
    non-``none`` primitive, with ``key = (op name, channels, stride, input shape)``: what
    the op costs depends on nothing else, so a table measures each distinct key once and
    adds it to every (cell type, edge, op) it occurs at.
    """
    for t, c, shape in _cell_positions(network):
        for node in range(steps):
            for source in range(node + 2):
                stride = 2 if t == "reduce" and source < 2 else 1
                # a reduction cell's nodes are at half its inputs' size ("same" padding)
                at = shape if t == "normal" or source < 2 else (
                    shape[0], -(-shape[1] // 2), -(-shape[2] // 2), shape[3])
                for j, name in enumerate(primitives):
                    if name != "none":
                        yield t, edge_index(node, source), j, (name, c, stride, at)


def cost_tables(num_classes: int, image_shape: Sequence[int], channels: int, layers: int,
                primitives: Sequence[str] = CRB_PRIMITIVES, steps: int = 4,
                stem_multiplier: int = 3) -> dict[str, CostTable]:
    """Parameter and multiply-add tables of the evaluation network ``kdarts train`` builds.

    Args:
        num_classes, image_shape, channels, layers, stem_multiplier: the evaluation
            network's (image_shape is H, W, channels without the batch).
        primitives: the ops a search may keep (``none`` costs nothing).
        steps: intermediate nodes per cell.

    Returns:
        ``{"params": CostTable, "madds": CostTable}`` (latency:
        :func:`kdarts.image.latency.latency_table`).
    """
    primitives = tuple(primitives)
    probe, network = probe_network(num_classes, image_shape, channels, layers, primitives,
                                   steps, stem_multiplier)
    kinds = ("params", "madds")
    per_op = {k: {t: np.zeros((num_edges(steps), len(primitives))) for t in ("normal", "reduce")}
              for k in kinds}
    memo: dict[tuple, tuple[int, int]] = {}
    for t, row, j, key in op_positions(network, primitives, steps):
        if key not in memo:
            name, c, stride, at = key
            op = make_op(name, c, strides=stride, affine=True, search=False)
            op.build(at)
            memo[key] = (count_parameters(op), layer_madds(op, at))
        per_op["params"][t][row, j] += memo[key][0]
        per_op["madds"][t][row, j] += memo[key][1]
    totals = {"params": network.parameter_count(), "madds": network_madds(network)}
    tables = {}
    for kind in kinds:
        table = CostTable(kind, per_op[kind], 0.0, primitives)
        tables[kind] = CostTable(kind, per_op[kind], totals[kind] - table.of(probe), primitives)
    return tables
