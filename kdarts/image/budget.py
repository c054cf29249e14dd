"""The budget-constrained projection D_B (docs/method.md §8): the valid genotype with the
largest total activation whose additive cost stays within a budget.

A cost table gives c(t, e, o) for each cell type t, edge e and op o, plus a fixed part
c₀; a genotype costs c₀ plus the sum over its kept (t, e, o). D_B picks, for every
intermediate node of every cell type, two distinct inputs and one non-``none`` op each,
maximising the sum of the activated weights of what it keeps, subject to the total cost.
The nodes are coupled only through the budget, so D_B is a multiple-choice knapsack:
solved exactly by a dynamic programme over the nodes that keeps, after each node, only the
partial choices no other partial choice beats on both cost and rank. This is the exact host
programme, which gives the final genotype; the search's step runs D_B in graph ops
(:mod:`kdarts.image.projection`). Amounts and :class:`~kdarts.budget.BudgetError`, which the
recurrent space and the command line share: :mod:`kdarts.budget`.

Example:
    >>> import numpy as np
    >>> from kdarts.image.budget import discretize_within_budget
    >>> w = {"normal": np.random.rand(14, 7), "reduce": np.random.rand(14, 7)}
    >>> c = {"normal": np.random.rand(14, 7), "reduce": np.random.rand(14, 7)}
    >>> found = discretize_within_budget(w, c, budget=4.0)
    >>> found.cost <= 4.0
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from kdarts.budget import BudgetError, format_amount
from kdarts.image.genotype import CRB_PRIMITIVES, discretize, edge_index, num_edges

#: The cell types a convolutional genotype holds, in the order D_B visits their nodes.
CELL_TYPES: tuple[str, ...] = ("normal", "reduce")

__all__ = ["CELL_TYPES", "Budget", "BudgetedGenotype", "cheapest_cost", "expected_cost",
           "discretize_within_budget", "genotype_cost"]


@dataclass(frozen=True)
class BudgetedGenotype:
    """What :func:`discretize_within_budget` returns.

    Attributes:
        genes: cell type → two ``(op_name, input_index)`` pairs per node, in the order
            :func:`kdarts.image.genotype.discretize` would list them.
        onehots: cell type → the 0/1 matrix (edges × primitives) of what is kept.
        cost: c₀ plus the costs of the kept ops.
        score: the sum of the activated weights of the kept ops.
    """

    genes: dict[str, list[tuple[str, int]]]
    onehots: dict[str, np.ndarray]
    cost: float
    score: float


def _check(weights: Mapping[str, np.ndarray], costs: Mapping[str, np.ndarray],
           primitives: Sequence[str], steps: int) -> list[str]:
    cells = [t for t in CELL_TYPES if t in weights] + sorted(set(weights) - set(CELL_TYPES))
    if set(costs) != set(weights):
        raise BudgetError(f"the cost table covers cell types {sorted(costs)}, the weights "
                          f"{sorted(weights)}")
    expected = (num_edges(steps), len(primitives))
    for t in cells:
        for what, array in (("weights", weights[t]), ("costs", costs[t])):
            if np.shape(array) != expected:
                raise BudgetError(f"{what}[{t!r}] has shape {np.shape(array)}, expected "
                                  f"{expected} ({steps} steps, {len(primitives)} primitives)")
    if not np.all(np.isfinite(np.concatenate([np.ravel(costs[t]) for t in cells]))):
        raise BudgetError("the cost table holds a NaN or infinite cost")
    return cells


def _candidates(primitives: Sequence[str]) -> list[int]:
    candidates = [j for j, p in enumerate(primitives) if p != "none"]
    if not candidates:
        raise BudgetError("no candidate operation other than 'none'")
    return candidates


def _node_options(w: np.ndarray, c: np.ndarray, node: int, candidates: list[int]):
    """Every choice for one node: (cost, score, a, b, op_a, op_b), a < b, as arrays in the
    tie order D uses (lower inputs first, then lower op indices)."""
    start = edge_index(node, 0)
    inputs = node + 2
    ops = np.asarray(candidates)
    a, b = np.triu_indices(inputs, k=1)
    ia, ib = np.meshgrid(np.arange(len(ops)), np.arange(len(ops)), indexing="ij")
    a = np.repeat(a, ia.size)
    b = np.repeat(b, ia.size)
    op_a = np.tile(ops[ia.ravel()], len(a) // ia.size)
    op_b = np.tile(ops[ib.ravel()], len(a) // ia.size)
    score = w[start + a, op_a] + w[start + b, op_b]
    cost = c[start + a, op_a] + c[start + b, op_b]
    return cost, score, np.stack([a, b, op_a, op_b], axis=1)


def _frontier(cost: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Indices of the entries no cheaper-or-equal entry beats on rank (smaller is
    better), sorted by cost."""
    order = np.lexsort((rank, cost))
    ranks = rank[order]
    best_before = np.concatenate([[np.iinfo(np.int64).max], np.minimum.accumulate(ranks)[:-1]])
    return order[ranks < best_before]


def _rank(score: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """A total order position: higher score first, then the lexicographic order of
    ``keys`` (rows of per-node tie keys), as D breaks ties."""
    order = np.lexsort(tuple(keys[:, i] for i in range(keys.shape[1] - 1, -1, -1)) + (-score,))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def genotype_cost(onehots: Mapping[str, np.ndarray], costs: Mapping[str, np.ndarray],
                  fixed: float = 0.0) -> float:
    """c₀ plus the cost of every op a set of one-hot matrices keeps."""
    return float(fixed + sum(float(np.sum(np.asarray(onehots[t]) * costs[t])) for t in onehots))


def expected_cost(weights: Mapping[str, np.ndarray], costs: Mapping[str, np.ndarray],
                  fixed: float = 0.0, primitives: Sequence[str] = CRB_PRIMITIVES,
                  steps: int = 4, keep: int = 2) -> float:
    """E(w): the cost of the architecture the relaxed weights ``w`` describe
    (docs/method.md §8), c₀ plus, per node of every cell type, the mean cost of its
    incoming non-``none`` (edge, op) pairs weighted by ``w``, times the ``keep`` inputs
    the node keeps. For the one-hot matrices of a valid genotype it is that genotype's
    cost; a node with no weight left adds nothing.

    Example:
        >>> w = {"normal": np.eye(14, 7), "reduce": np.zeros((14, 7))}
        >>> c = {"normal": np.ones((14, 7)), "reduce": np.ones((14, 7))}
        >>> expected_cost(w, c, fixed=1.0)   # 2 for each of the 3 nodes with weight
        7.0
    """
    candidates = _candidates(primitives)
    total = float(fixed)
    for t in weights:
        w = np.asarray(weights[t], np.float64)[:, candidates]
        c = np.asarray(costs[t], np.float64)[:, candidates]
        for node in range(steps):
            rows = slice(edge_index(node, 0), edge_index(node, 0) + node + 2)
            mass = float(w[rows].sum())
            if mass > 0:
                total += keep * float((w[rows] * c[rows]).sum()) / mass
    return total


def cheapest_cost(costs: Mapping[str, np.ndarray], primitives: Sequence[str] = CRB_PRIMITIVES,
                  steps: int = 4, fixed: float = 0.0) -> float:
    """The cost of the cheapest valid genotype under a cost table."""
    candidates = _candidates(primitives)
    total = fixed
    for t in costs:
        c = np.asarray(costs[t], dtype=np.float64)
        for node in range(steps):
            option_cost, _, _ = _node_options(np.zeros_like(c), c, node, candidates)
            total += float(option_cost.min())
    return float(total)


def _as_result(weights, costs, fixed, cells, primitives, steps, choices) -> BudgetedGenotype:
    genes: dict[str, list[tuple[str, int]]] = {}
    onehots: dict[str, np.ndarray] = {}
    score = 0.0
    for t in cells:
        onehot = np.zeros((num_edges(steps), len(primitives)), dtype=np.float32)
        node_genes: list[tuple[str, int]] = []
        w = np.asarray(weights[t], dtype=np.float64)
        candidates = _candidates(primitives)
        for node in range(steps):
            a, b, op_a, op_b = (int(v) for v in choices[(t, node)])
            start = edge_index(node, 0)
            strength = w[start:start + node + 2][:, candidates].max(axis=1)
            # D lists a node's two edges by their strength, the lower input first on ties
            for source, op in sorted(((a, op_a), (b, op_b)), key=lambda s: -strength[s[0]]):
                node_genes.append((primitives[op], source))
                onehot[start + source, op] = 1.0
                score += w[start + source, op]
        genes[t], onehots[t] = node_genes, onehot
    return BudgetedGenotype(genes, onehots, genotype_cost(onehots, costs, fixed), float(score))


def discretize_within_budget(
    weights: Mapping[str, np.ndarray],
    costs: Mapping[str, np.ndarray],
    budget: float,
    fixed: float = 0.0,
    primitives: Sequence[str] = CRB_PRIMITIVES,
    steps: int = 4,
) -> BudgetedGenotype:
    """D_B: the valid genotype of largest total activated weight whose cost is ≤ ``budget``.

    Ties break as :func:`kdarts.image.genotype.discretize` does (lower input index, then lower op
    index), so with a budget at or above the cost of D(α) the result is D(α).

    Args:
        weights: cell type → activated weights, (num_edges, len(primitives)).
        costs: cell type → c(t, e, o), the same shape.
        budget: the largest allowed cost, fixed part included.
        fixed: c₀, the part every genotype pays.
        primitives: names of the columns.
        steps: intermediate nodes per cell.

    Raises:
        BudgetError: the budget is below the cheapest valid genotype (the message names
            that cost), or the tables do not fit each other.
    """
    cells = _check(weights, costs, primitives, steps)
    candidates = _candidates(primitives)
    w64 = {t: np.asarray(weights[t], dtype=np.float64) for t in cells}
    c64 = {t: np.asarray(costs[t], dtype=np.float64) for t in cells}
    # D itself when it fits: the common case, and D's own ties by construction
    plain = {t: discretize(w64[t], primitives, steps)[1] for t in cells}
    if genotype_cost(plain, c64, fixed) <= budget:
        choices = {}
        for t in cells:
            for node in range(steps):
                start = edge_index(node, 0)
                rows = np.nonzero(plain[t][start:start + node + 2])
                (a, op_a), (b, op_b) = sorted(zip(rows[0].tolist(), rows[1].tolist()))
                choices[(t, node)] = (a, b, op_a, op_b)
        return _as_result(w64, c64, fixed, cells, primitives, steps, choices)

    groups = [(t, node) for t in cells for node in range(steps)]
    options = [_node_options(w64[t], c64[t], node, candidates) for t, node in groups]
    least = np.array([float(cost.min()) for cost, _, _ in options])
    cheapest = fixed + float(least.sum())
    if cheapest > budget:
        raise BudgetError(f"budget {budget:g} is below the cheapest valid genotype, which "
                          f"costs {cheapest:g}")
    # states: total cost, score, and per node the index of its option (the tie keys)
    state_cost = np.array([float(fixed)])
    state_score = np.zeros(1)
    state_keys = np.zeros((1, 0), dtype=np.int64)
    for g, (cost, score, _) in enumerate(options):
        room = budget - float(least[g + 1:].sum())
        own = _frontier(cost, _rank(score, np.arange(len(cost))[:, None]))
        total_cost = (state_cost[:, None] + cost[own][None, :]).ravel()
        total_score = (state_score[:, None] + score[own][None, :]).ravel()
        keys = np.concatenate([np.repeat(state_keys, len(own), axis=0),
                               np.tile(own, len(state_cost))[:, None]], axis=1)
        fits = total_cost <= room
        total_cost, total_score, keys = total_cost[fits], total_score[fits], keys[fits]
        keep = _frontier(total_cost, _rank(total_score, keys))
        state_cost, state_score, state_keys = total_cost[keep], total_score[keep], keys[keep]
    best = int(np.argmin(_rank(state_score, state_keys)))
    choices = {group: tuple(options[g][2][state_keys[best, g]])
               for g, group in enumerate(groups)}
    return _as_result(w64, c64, fixed, cells, primitives, steps, choices)


def _steps_of(num_rows: int) -> int:
    steps, rows = 0, 0
    while rows < num_rows:
        rows += steps + 2
        steps += 1
    if rows != num_rows:
        raise BudgetError(f"a cost table with {num_rows} edge rows fits no cell "
                          "(a cell of s nodes has 2s + s(s-1)/2 edges)")
    return steps


@dataclass(frozen=True)
class Budget:
    """An upper bound on one additive cost of the found network, held by D_B.

    Args:
        table: the cost table (``kdarts.image.costs.CostTable``: ``kind``, ``per_op``
            cell type → (edges, primitives), ``fixed`` and ``primitives``), of the
            evaluation network the genotype will be trained as.
        limit: the largest allowed cost, the fixed part included, in the table's unit.

    Raises:
        BudgetError: at once, if no valid genotype meets the limit (the message names
            the cheapest genotype's cost).

    Example:
        >>> from kdarts.image.costs import cost_tables          # doctest: +SKIP
        >>> tables = cost_tables(10, (8, 8, 3), channels=16, layers=8)  # doctest: +SKIP
        >>> budget = Budget(tables["params"], 120_000)         # doctest: +SKIP
        >>> model.compile(budget=budget)                       # doctest: +SKIP
    """

    table: object
    limit: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "limit", float(self.limit))
        cheapest = self.cheapest
        if cheapest > self.limit:
            raise BudgetError(
                f"{self.kind} budget {format_amount(self.limit, self.kind)} is below the "
                f"cheapest valid genotype, which costs {format_amount(cheapest, self.kind)}")

    @property
    def kind(self) -> str:
        """``"params"``, ``"madds"`` or ``"latency_ms"``."""
        return str(self.table.kind)

    @property
    def primitives(self) -> tuple[str, ...]:
        """The candidate ops the table prices (its columns)."""
        return tuple(self.table.primitives)

    @property
    def steps(self) -> int:
        """Intermediate nodes per cell of the table."""
        return _steps_of(len(next(iter(self.table.per_op.values()))))

    @property
    def cheapest(self) -> float:
        """The cost of the cheapest valid genotype."""
        return cheapest_cost(self.table.per_op, self.primitives, self.steps,
                             float(self.table.fixed))

    def project(self, weights: Mapping[str, np.ndarray]) -> BudgetedGenotype:
        """D_B of activated weights (cell type → (edges, primitives)), exact."""
        return discretize_within_budget(weights, self.table.per_op, self.limit,
                                        float(self.table.fixed), self.primitives, self.steps)

    def cost(self, genotype) -> float:
        """What ``genotype`` costs under the table."""
        return float(self.table.of(genotype))

    def describe(self) -> str:
        """``"params ≤ 120.0k parameters"``."""
        return f"{self.kind} ≤ {format_amount(self.limit, self.kind)}"

    def to_dict(self) -> dict:
        """The budget as genotype.json records it."""
        return {"kind": self.kind, "limit": self.limit}
