"""D_B inside the compiled step: the budgeted projection the regularisers pull α towards
(docs/method.md §8).

:class:`BudgetProjection` maps the activated weights of every cell type to one-hot
matrices of a genotype within the budget, in graph ops with static shapes (so the step
keeps no host round trip, compiles with XLA and runs under ``tf.distribute``):

- when D(w) fits the budget it is D(w) itself (:func:`~kdarts.search.regularizers.
  discrete_onehot`), so D_B = D exactly where the budget does not bind;
- otherwise a multiple-choice knapsack over the nodes of every cell type, solved by a
  dynamic programme on a grid: each option's cost above its node's cheapest one is rounded
  *up* to whole grid units of the slack (the budget less the cheapest genotype's cost)
  divided by ``resolution``. Rounding up keeps every projection within the budget; the
  price is that a choice using the last ``steps × cells`` units of slack can be missed.
  Integer costs whose slack is at most ``resolution`` units are solved exactly.

The final genotype comes from the exact host programme, :meth:`kdarts.image.budget.Budget.project`.

Example:
    >>> project = BudgetProjection(budget, cells=("normal", "reduce"))  # doctest: +SKIP
    >>> onehots = project([act_normal, act_reduce])                     # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import tensorflow as tf

from kdarts.budget import BudgetError
from kdarts.image.budget import Budget
from kdarts.image.genotype import edge_index, num_edges
from kdarts.search.regularizers import discrete_onehot

#: Grid units of the slack the in-step programme prices costs in.
DEFAULT_RESOLUTION = 1000


def _node_options(node: int, candidates: Sequence[int]) -> np.ndarray:
    """Every (input a, input b, op a, op b) of a node, a < b, in D's tie order."""
    return np.array([(a, b, oa, ob) for a, b in itertools.combinations(range(node + 2), 2)
                     for oa in candidates for ob in candidates], dtype=np.int64)


class BudgetProjection:
    """D_B of a search's activated weights, as graph ops (the module docstring has the rule).

    Args:
        budget: the budget and its cost table; its primitives and steps must be the
            search's.
        cells: the cell types, in the order the weights come (the table's keys).
        resolution: grid units of the slack (the in-step programme's precision).
    """

    def __init__(self, budget: Budget, cells: Sequence[str] = ("normal", "reduce"),
                 resolution: int = DEFAULT_RESOLUTION):
        self.budget = budget
        self.cells = tuple(cells)
        missing = set(self.cells) ^ set(budget.table.per_op)
        if missing:
            raise BudgetError(f"the cost table covers cell types {sorted(budget.table.per_op)}, "
                              f"the search {sorted(self.cells)}")
        self.primitives = budget.primitives
        self.steps = budget.steps
        candidates = [j for j, p in enumerate(self.primitives) if p != "none"]
        costs = {t: np.asarray(budget.table.per_op[t], np.float64) for t in self.cells}
        self._costs = [tf.constant(costs[t]) for t in self.cells]
        self._fixed = float(budget.table.fixed)

        per_group, increments, least = [], [], 0.0
        for t in self.cells:
            for node in range(self.steps):
                options = _node_options(node, candidates)
                start = edge_index(node, 0)
                cost = (costs[t][start + options[:, 0], options[:, 2]]
                        + costs[t][start + options[:, 1], options[:, 3]])
                least += float(cost.min())
                per_group.append((t, start, options))
                increments.append(cost - cost.min())
        slack = budget.limit - (self._fixed + least)
        integral = all(np.all(np.equal(np.round(c), c)) for c in costs.values())
        if integral and slack < resolution:
            grid, unit = int(np.floor(slack + 1e-9)), 1.0  # exact: whole units
        else:
            grid, unit = int(resolution), slack / resolution
        self.grid = grid
        # a choice's units: its cost above the node's cheapest, rounded up (never over B)
        self._groups = []
        num_columns = len(self.primitives)
        budget_units = np.arange(grid + 1)
        for (t, start, options), inc in zip(per_group, increments):
            with np.errstate(divide="ignore", invalid="ignore"):
                units = np.where(inc <= 0, 0, np.ceil(inc / unit) if unit > 0 else grid + 1)
            fits = units <= grid
            options, units = options[fits], units[fits].astype(np.int64)
            flat_a = (start + options[:, 0]) * num_columns + options[:, 2]
            flat_b = (start + options[:, 1]) * num_columns + options[:, 3]
            # V_prev[b − units] for every budget b and option, where b ≥ units
            index = budget_units[:, None] - units[None, :]
            self._groups.append(dict(
                cell=self.cells.index(t), flat_a=tf.constant(flat_a, tf.int32),
                flat_b=tf.constant(flat_b, tf.int32), units=tf.constant(units, tf.int32),
                index=tf.constant(np.maximum(index, 0), tf.int32),
                valid=tf.constant(index >= 0)))
        self._shape = (num_edges(self.steps), num_columns)
        # E(w): the non-`none` columns priced, and which node each edge enters
        priced = np.zeros(num_columns)
        priced[candidates] = 1.0
        node_of = np.repeat(np.arange(self.steps), [node + 2 for node in range(self.steps)])
        self._candidate = tf.constant(priced, tf.float32)
        self._priced = [tf.constant(costs[t] * priced, tf.float32) for t in self.cells]
        self._node_edges = tf.constant(node_of[None, :] == np.arange(self.steps)[:, None],
                                       tf.float32)  # (steps, edges)

    def discrete(self, weights: Sequence) -> list[tf.Tensor]:
        """D(w) per cell type (the projection when it fits)."""
        return [discrete_onehot(w, self.primitives, self.steps) for w in weights]

    def cost(self, onehots: Sequence) -> tf.Tensor:
        """The float64 cost of one-hot matrices, fixed part included."""
        return self._fixed + tf.add_n([tf.reduce_sum(tf.cast(h, tf.float64) * c)
                                       for h, c in zip(onehots, self._costs)])

    def expected_cost(self, weights: Sequence, keep: int = 2) -> tf.Tensor:
        """E(w), differentiable in ``w`` (float32): c₀ plus, per node of every cell type,
        the ``w``-weighted mean cost of its incoming non-``none`` (edge, op) pairs times
        the ``keep`` inputs it keeps; a valid genotype's one-hot matrices give its cost
        (:func:`kdarts.image.budget.expected_cost` is the host's)."""
        total = tf.constant(self._fixed, tf.float32)
        for w, c in zip(weights, self._priced):
            w = tf.convert_to_tensor(w, tf.float32) * self._candidate
            mass = tf.linalg.matvec(self._node_edges, tf.reduce_sum(w, axis=1))
            spent = tf.linalg.matvec(self._node_edges, tf.reduce_sum(w * c, axis=1))
            total += keep * tf.reduce_sum(tf.math.divide_no_nan(spent, mass))
        return total

    def knapsack(self, weights: Sequence) -> list[tf.Tensor]:
        """The grid programme's choice (within the budget), as one-hot matrices."""
        flat = [tf.reshape(tf.cast(w, tf.float32), [-1]) for w in weights]
        value = tf.zeros([self.grid + 1], tf.float32)  # best score using ≤ b units
        choices = []
        for g in self._groups:
            score = tf.gather(flat[g["cell"]], g["flat_a"]) + tf.gather(flat[g["cell"]],
                                                                       g["flat_b"])
            total = tf.where(g["valid"], tf.gather(value, g["index"]) + score[None, :],
                             -np.inf)
            value = tf.reduce_max(total, axis=1)
            n = total.shape[1]
            # the first option reaching the best (D's tie order)
            first = tf.reduce_min(tf.where(tf.equal(total, value[:, None]),
                                           tf.range(n), n), axis=1)
            choices.append(first)
        left = tf.constant(self.grid, tf.int32)
        kept = [[] for _ in self.cells]
        for g, choice in zip(reversed(self._groups), reversed(choices)):
            option = choice[left]
            left = left - g["units"][option]
            kept[g["cell"]] += [g["flat_a"][option], g["flat_b"][option]]
        size = self._shape[0] * self._shape[1]
        return [tf.reshape(tf.reduce_sum(tf.one_hot(tf.stack(rows), size), axis=0),
                           self._shape) for rows in kept]

    def __call__(self, weights: Sequence) -> list[tf.Tensor]:
        """D_B(w): D(w) if it fits the budget, else the grid programme's genotype."""
        weights = [tf.convert_to_tensor(w, tf.float32) for w in weights]
        plain = self.discrete(weights)
        fits = self.cost(plain) <= self.budget.limit
        chosen = tf.cond(fits, lambda: plain, lambda: self.knapsack(weights))
        return [tf.stop_gradient(h) for h in chosen]
