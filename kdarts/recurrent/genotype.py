"""Recurrent genotypes: the discrete cell a language-model search produces.

DARTS's recurrent cell has one input node (state 0, the highway mix of the input
and the previous hidden state) and ``steps`` intermediate nodes (states 1, 2, ...).
A genotype gives each intermediate node one ``(op_name, predecessor)`` pair: node
``k + 1`` applies the highway op ``s + c·(f(h) − s)`` with activation ``f`` to the
state ``predecessor`` (0 … k). The cell's output is the mean of the states listed
in ``concat``. This module imports no TensorFlow, like :mod:`kdarts.genotype`.

Example:
    >>> from kdarts.recurrent.genotype import DARTS_V2, RecurrentGenotype
    >>> DARTS_V2.recurrent[0]
    ('sigmoid', 0)
    >>> DARTS_V2.save("cell.json")
    >>> RecurrentGenotype.load("cell.json") == DARTS_V2
    True
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from kdarts.genotype import GenotypeError, GenotypeFile, resolve_preset_or_file

RECURRENT_PRIMITIVES: tuple[str, ...] = ("none", "tanh", "relu", "sigmoid", "identity")
"""DARTS's recurrent candidate activations, in the reference order (``none`` first)."""

CRB_RECURRENT_PRIMITIVES: tuple[str, ...] = tuple(p for p in RECURRENT_PRIMITIVES
                                                  if p != "none")
"""The candidates for the ``crb`` activation: DARTS's without ``none``."""

STEPS = 8
"""Intermediate nodes of DARTS's recurrent cell."""


def num_recurrent_edges(steps: int = STEPS) -> int:
    """Rows of α: node ``k`` (0-based) has ``k + 1`` incoming edges; 36 for 8 nodes."""
    return steps * (steps + 1) // 2


def recurrent_edge_index(node: int, source: int) -> int:
    """Row of α for the edge from state ``source`` into intermediate node ``node`` (0-based)."""
    return node * (node + 1) // 2 + source


def discretize_recurrent(weights: np.ndarray, primitives: Sequence[str],
                         steps: int = STEPS) -> tuple[list[tuple[str, int]], np.ndarray]:
    """One ``(op, predecessor)`` per node from activated weights (numpy).

    For each node the incoming edge with the largest non-``none`` weight wins (ties: the
    lower state index), with its best non-``none`` op (ties: the first), as the authors'
    recurrent search parses α.

    Returns:
        ``(genes, onehot)``: ``steps`` pairs and the 0/1 matrix with a 1 at each kept
        edge's op.

    Example:
        >>> w = np.zeros((36, 4)); w[2, 1] = 0.9      # node 1, edge from state 1, relu
        >>> discretize_recurrent(w, CRB_RECURRENT_PRIMITIVES)[0][:2]
        [('tanh', 0), ('relu', 1)]
    """
    weights = np.asarray(weights, dtype=np.float64)
    primitives = list(primitives)
    expected = (num_recurrent_edges(steps), len(primitives))
    if weights.shape != expected:
        raise ValueError(f"discretize_recurrent: weights have shape {weights.shape}, expected "
                         f"{expected} ({steps} nodes, {len(primitives)} primitives)")
    candidates = [j for j, p in enumerate(primitives) if p != "none"]
    if not candidates:
        raise ValueError("discretize_recurrent: no candidate operation other than 'none'")
    onehot = np.zeros(expected, dtype=np.float32)
    genes = []
    for node in range(steps):
        start = recurrent_edge_index(node, 0)
        rows = weights[start:start + node + 1][:, candidates]
        source = int(np.argmax(rows.max(axis=1)))  # argmax: the first maximum wins ties
        best = candidates[int(np.argmax(rows[source]))]
        genes.append((primitives[best], source))
        onehot[start + source, best] = 1.0
    return genes, onehot


@dataclass(frozen=True)
class RecurrentGenotype(GenotypeFile):
    """A discrete recurrent cell: one ``(op, predecessor)`` per node and the averaged states."""

    recurrent: tuple[tuple[str, int], ...]
    concat: tuple[int, ...] = tuple(range(1, STEPS + 1))

    def __post_init__(self) -> None:
        try:
            genes = tuple((str(o), int(i)) for o, i in self.recurrent)
            concat = tuple(int(i) for i in self.concat)
        except (TypeError, ValueError) as err:
            raise GenotypeError(f"recurrent genotype: {err}") from None
        object.__setattr__(self, "recurrent", genes)
        object.__setattr__(self, "concat", concat)
        self.validate()

    @property
    def steps(self) -> int:
        """Number of intermediate nodes."""
        return len(self.recurrent)

    def validate(self, source: str = "recurrent genotype") -> None:
        """Raise :class:`~kdarts.GenotypeError` naming the first problem found."""
        if not self.recurrent:
            raise GenotypeError(f"{source}: 'recurrent' is empty; expected one (op, "
                                "predecessor) pair per intermediate node")
        valid = [p for p in RECURRENT_PRIMITIVES if p != "none"]
        for k, (op, pred) in enumerate(self.recurrent):
            if op not in valid:
                raise GenotypeError(f"{source}: recurrent[{k}] has unknown op '{op}'; "
                                    f"valid ops: {', '.join(valid)}")
            if not 0 <= pred <= k:
                raise GenotypeError(
                    f"{source}: recurrent[{k}] = ('{op}', {pred}): predecessor {pred} is out "
                    f"of range for node {k + 1} (expected 0..{k})")
        bad = [c for c in self.concat if not 0 <= c <= self.steps]
        if not self.concat or bad:
            raise GenotypeError(f"{source}: 'concat' = {list(self.concat)} must list state "
                                f"indices in 0..{self.steps}")

    def to_dict(self) -> dict:
        """Plain JSON-ready dictionary."""
        return {"recurrent": [list(g) for g in self.recurrent], "concat": list(self.concat)}

    @classmethod
    def from_dict(cls, data: object, source: str = "recurrent genotype") -> "RecurrentGenotype":
        """Build and validate a genotype from a dictionary (as written by :meth:`to_dict`)."""
        if not isinstance(data, dict):
            raise GenotypeError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if "recurrent" not in data:
            raise GenotypeError(f"{source}: missing field recurrent")
        unknown = set(data) - {"recurrent", "concat"}
        if unknown:
            raise GenotypeError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}")
        value = data["recurrent"]
        if not isinstance(value, list):
            raise GenotypeError(f"{source}: 'recurrent' must be a list of [op, predecessor] "
                                "pairs")
        for k, pair in enumerate(value):
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not isinstance(pair[0], str) or isinstance(pair[1], bool)
                    or not isinstance(pair[1], int)):
                raise GenotypeError(f"{source}: recurrent[{k}] = {pair!r} is not an "
                                    "[op_name, predecessor] pair")
        concat = data.get("concat", list(range(1, len(value) + 1)))
        if not isinstance(concat, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) for c in concat):
            raise GenotypeError(f"{source}: 'concat' must be a list of state indices")
        try:
            return cls(recurrent=value, concat=concat)
        except GenotypeError as err:
            raise GenotypeError(str(err).replace("recurrent genotype:", f"{source}:", 1)) \
                from None

    @classmethod
    def _file_hint(cls) -> str:
        return f"give a recurrent genotype.json or a preset ({', '.join(PRESETS)})"

    def __str__(self) -> str:
        lines = [f"  state {k + 1} = {op}(state {pred})"
                 for k, (op, pred) in enumerate(self.recurrent)]
        lines.append(f"  output = mean{list(self.concat)}")
        return "recurrent cell:\n" + "\n".join(lines)


# DARTS's published recurrent cells (Liu et al. 2019), first and second order
DARTS_V1 = RecurrentGenotype(
    recurrent=[("relu", 0), ("relu", 1), ("tanh", 2), ("relu", 3), ("relu", 4),
               ("identity", 1), ("relu", 5), ("relu", 1)])
DARTS_V2 = RecurrentGenotype(
    recurrent=[("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1), ("tanh", 2),
               ("sigmoid", 5), ("tanh", 3), ("relu", 5)])
PRESETS: dict[str, RecurrentGenotype] = {"DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2,
                                         "DARTS": DARTS_V2}


def resolve_recurrent_genotype(spec: str | os.PathLike | RecurrentGenotype) -> RecurrentGenotype:
    """A genotype from a preset name (``DARTS_V1``, ``DARTS_V2``), a JSON path, or itself."""
    return resolve_preset_or_file(spec, RecurrentGenotype, PRESETS)
