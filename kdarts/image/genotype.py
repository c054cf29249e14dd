"""The image genotype: the discrete cells a search produces (docs/method.md §3).

A genotype lists, for each cell type, two ``(op_name, input_index)`` pairs per
intermediate node. One numbering serves every output of kdarts (genotype.json,
``kdarts show``, the plots, error messages): nodes 0 and 1 are the cell's inputs
(the outputs of the cell before the previous one and of the previous one), and
the intermediate nodes are 2, 3, ...; pairs ``2k`` and ``2k+1`` feed node ``k+2``.

Example:
    >>> from kdarts import Genotype, DARTS_V2, discretize
    >>> DARTS_V2.normal[0]
    ('sep_conv_3x3', 0)
    >>> DARTS_V2.save("genotype.json")
    >>> Genotype.load("genotype.json") == DARTS_V2
    True
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from kdarts.genotype import GenotypeError, GenotypeFile, resolve_preset_or_file

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The DARTS candidate operations, in the reference order (docs/method.md §1)."""

CRB_PRIMITIVES: tuple[str, ...] = tuple(p for p in PRIMITIVES if p != "none")
"""The candidate operations for the ``crb`` activation: DARTS's without ``none``."""


def num_edges(steps: int = 4) -> int:
    """Number of mixed edges in a cell with ``steps`` intermediate nodes (14 for 4)."""
    return sum(2 + i for i in range(steps))


def edge_index(node: int, source: int) -> int:
    """Row of α for the edge from ``source`` into intermediate node ``node``."""
    return sum(2 + i for i in range(node)) + source


def discretize(
    weights: np.ndarray, primitives: Sequence[str], steps: int = 4
) -> tuple[list[tuple[str, int]], np.ndarray]:
    """Discretise activated architecture weights (docs/method.md §3).

    For each intermediate node, incoming edges are ranked by their largest
    weight over non-``none`` ops (stable, descending: ties keep the lower input
    index); the top two are kept in rank order, each with its best non-``none``
    op (first index on ties).

    Args:
        weights: array (num_edges, len(primitives)) of activated weights.
        primitives: names of the columns.
        steps: number of intermediate nodes.

    Returns:
        ``(genes, onehot)``: two ``(op_name, input_index)`` pairs per node in
        rank order, and the 0/1 matrix with a 1 at each kept edge's op.

    Example:
        >>> w = np.zeros((14, 7)); w[0, 3] = 1.0
        >>> genes, onehot = discretize(w, CRB_PRIMITIVES)
        >>> genes[0]
        ('sep_conv_3x3', 0)
    """
    weights = np.asarray(weights, dtype=np.float64)
    primitives = list(primitives)
    expected = (num_edges(steps), len(primitives))
    if weights.shape != expected:
        raise ValueError(
            f"discretize: weights have shape {weights.shape}, expected {expected} "
            f"({steps} steps, {len(primitives)} primitives)"
        )
    candidates = [j for j, p in enumerate(primitives) if p != "none"]
    if not candidates:
        raise ValueError("discretize: no candidate operation other than 'none'")
    onehot = np.zeros(expected, dtype=np.float32)
    genes: list[tuple[str, int]] = []
    for node in range(steps):
        start = edge_index(node, 0)
        rows = weights[start : start + node + 2][:, candidates]
        strength = rows.max(axis=1)
        # argsort of the negation with a stable sort keeps lower indices first on ties
        order = np.argsort(-strength, kind="stable")[:2]
        for source in order:
            best = candidates[int(np.argmax(rows[source]))]
            genes.append((primitives[best], int(source)))
            onehot[start + source, best] = 1.0
    return genes, onehot


@dataclass(frozen=True)
class Genotype(GenotypeFile):
    """A discrete DARTS architecture: the op and input of each kept edge per cell type."""

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...] = (2, 3, 4, 5)
    reduce: tuple[tuple[str, int], ...] = field(default=())
    reduce_concat: tuple[int, ...] = (2, 3, 4, 5)
    #: what the search measured of it (evaluation network, parameters, multiply-adds,
    #: the budget it was held to), or None; not part of the architecture: two genotypes
    #: with the same cells are equal whatever their cost records say
    cost: dict | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "normal", tuple((str(o), int(i)) for o, i in self.normal))
        object.__setattr__(self, "reduce", tuple((str(o), int(i)) for o, i in self.reduce))
        object.__setattr__(self, "normal_concat", tuple(int(i) for i in self.normal_concat))
        object.__setattr__(self, "reduce_concat", tuple(int(i) for i in self.reduce_concat))
        self.validate()

    @property
    def steps(self) -> int:
        """Number of intermediate nodes per cell."""
        return len(self.normal) // 2

    def validate(self, source: str = "genotype") -> None:
        """Raise :class:`~kdarts.genotype.GenotypeError` naming the first problem found."""
        for cell in ("normal", "reduce"):
            genes = getattr(self, cell)
            if len(genes) == 0 or len(genes) % 2:
                raise GenotypeError(
                    f"{source}: '{cell}' has {len(genes)} (op, input) pairs; "
                    "expected two per intermediate node (an even number > 0)"
                )
            if len(genes) != len(self.normal):
                raise GenotypeError(
                    f"{source}: 'reduce' has {len(self.reduce)} pairs but 'normal' has "
                    f"{len(self.normal)}; both cells need the same number of nodes"
                )
            for k, (op, inp) in enumerate(genes):
                node = k // 2
                if op not in PRIMITIVES or op == "none":
                    valid = ", ".join(p for p in PRIMITIVES if p != "none")
                    raise GenotypeError(
                        f"{source}: {cell}[{k}] has unknown op '{op}'; valid ops: {valid}"
                    )
                if not 0 <= inp < node + 2:
                    raise GenotypeError(
                        f"{source}: {cell}[{k}] = ('{op}', {inp}): input index {inp} is "
                        f"out of range for node {node + 2} (expected 0..{node + 1})"
                    )
            concat = getattr(self, f"{cell}_concat")
            bad = [c for c in concat if not 0 <= c < self.steps + 2]
            if not concat or bad:
                raise GenotypeError(
                    f"{source}: '{cell}_concat' = {list(concat)} must list node indices "
                    f"in 0..{self.steps + 1}"
                )

    def to_dict(self) -> dict:
        """Plain JSON-ready dictionary."""
        data = {
            "normal": [list(g) for g in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(g) for g in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }
        if self.cost is not None:
            data["cost"] = self.cost
        return data

    def with_cost(self, cost: dict | None) -> "Genotype":
        """The same cells with ``cost`` recorded (see :attr:`cost`)."""
        return Genotype(self.normal, self.normal_concat, self.reduce, self.reduce_concat,
                        cost=cost)

    @classmethod
    def from_dict(cls, data: object, source: str = "genotype") -> "Genotype":
        """Build and validate a genotype from a dictionary (as written by :meth:`to_dict`)."""
        if not isinstance(data, dict):
            raise GenotypeError(f"{source}: expected a JSON object, got {type(data).__name__}")
        missing = [k for k in ("normal", "reduce") if k not in data]
        if missing:
            raise GenotypeError(f"{source}: missing field(s) {', '.join(missing)}")
        unknown = set(data) - {"normal", "normal_concat", "reduce", "reduce_concat", "cost"}
        if unknown:
            raise GenotypeError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}")
        genes = {}
        for cell in ("normal", "reduce"):
            value = data[cell]
            if not isinstance(value, list):
                raise GenotypeError(f"{source}: '{cell}' must be a list of [op, input] pairs")
            pairs = []
            for k, pair in enumerate(value):
                if (
                    not isinstance(pair, (list, tuple))
                    or len(pair) != 2
                    or not isinstance(pair[0], str)
                    or isinstance(pair[1], bool)
                    or not isinstance(pair[1], int)
                ):
                    raise GenotypeError(
                        f"{source}: {cell}[{k}] = {pair!r} is not an [op_name, input_index] pair"
                    )
                pairs.append((pair[0], pair[1]))
            genes[cell] = pairs
        try:
            return cls(
                normal=genes["normal"],
                normal_concat=data.get("normal_concat", (2, 3, 4, 5)),
                reduce=genes["reduce"],
                reduce_concat=data.get("reduce_concat", (2, 3, 4, 5)),
                cost=_cost_record(data.get("cost"), source),
            )
        except GenotypeError as err:
            raise GenotypeError(str(err).replace("genotype:", f"{source}:", 1)) from None
        except (TypeError, ValueError) as err:
            raise GenotypeError(f"{source}: {err}") from None

    @classmethod
    def _file_hint(cls) -> str:
        return f"give a genotype.json, a search folder holding one, or a preset " \
               f"({', '.join(PRESETS)})"

    def __str__(self) -> str:
        def fmt(genes, concat):
            lines = []
            for node in range(len(genes) // 2):
                a, b = genes[2 * node], genes[2 * node + 1]
                lines.append(f"  node {node + 2} = {a[0]}({a[1]}) + {b[0]}({b[1]})")
            lines.append(f"  output = concat{list(concat)}")
            return "\n".join(lines)

        return (
            "normal cell:\n" + fmt(self.normal, self.normal_concat)
            + "\nreduction cell:\n" + fmt(self.reduce, self.reduce_concat)
        )


def _cost_record(cost: object, source: str) -> dict | None:
    """genotype.json's ``cost`` field, checked: an object of numbers and small objects."""
    if cost is None:
        return None
    if not isinstance(cost, dict):
        raise GenotypeError(f"{source}: 'cost' must be a JSON object, got "
                            f"{type(cost).__name__}")
    for key in ("params", "madds", "latency_ms"):
        value = cost.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise GenotypeError(f"{source}: cost.{key} must be a number, got {value!r}")
    budget = cost.get("budget")
    if budget is not None and not (isinstance(budget, dict) and {"kind", "limit"} <= set(budget)):
        raise GenotypeError(f"{source}: cost.budget must be an object with 'kind' and "
                            f"'limit', got {budget!r}")
    return cost


DARTS_V1 = Genotype(
    normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
)
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
)
PRESETS: dict[str, Genotype] = {"DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2, "DARTS": DARTS_V2}


def resolve_genotype(spec: str | os.PathLike | Genotype) -> Genotype:
    """A genotype from a preset name (``DARTS_V1``, ``DARTS_V2``), a JSON path, or itself."""
    return resolve_preset_or_file(spec, Genotype, PRESETS)
