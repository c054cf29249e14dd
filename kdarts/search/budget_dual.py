"""The budget's optional expected-cost term on the α loss and its dual variable λ
(docs/method.md §8, ``compile(budget=..., budget_dual_lr=η)``).

With a budget B, the α loss gains ``λ·(E(act(α)) − B)/B``, E the expected cost of the
relaxed architecture (:meth:`kdarts.image.projection.BudgetProjection.expected_cost`).
λ ≥ 0 is search state, moved after every α step by projected dual ascent,
``λ ← max(0, λ + η·(E(act(α)) − B)/B)``: while the relaxed architecture costs more than
B, λ grows and the term pulls α towards cheaper ops; once it fits, λ shrinks back to 0.
The excess is relative to B, so one η serves budgets of any unit and size. Graph ops only:
the step keeps no host round trip, compiles with XLA and runs on every replica.

Example:
    >>> import tensorflow as tf
    >>> float(dual_ascent(tf.constant(0.5), tf.constant(-0.2), lr=5.0))  # never below 0
    0.0
"""

from __future__ import annotations

import tensorflow as tf


def relative_excess(expected, limit: float) -> tf.Tensor:
    """``(E − B)/B``: how far the expected cost is above the budget, relative to it
    (negative below it)."""
    return (tf.convert_to_tensor(expected, tf.float32) - limit) / limit


def cost_term(dual, excess) -> tf.Tensor:
    """The α loss's term ``λ·(E − B)/B`` (λ a constant of the α step)."""
    return tf.stop_gradient(tf.convert_to_tensor(dual, tf.float32)) * excess


def dual_ascent(dual, excess, lr: float) -> tf.Tensor:
    """One projected dual-ascent step: ``max(0, λ + η·(E − B)/B)``."""
    return tf.maximum(0.0, tf.convert_to_tensor(dual, tf.float32) + lr * excess)


def check_dual_lr(budget_dual_lr, budget) -> float | None:
    """``compile``'s ``budget_dual_lr``: None (the term off) or a positive float; the term
    needs a budget.

    Raises:
        ValueError: a non-positive rate, or a rate without a budget.
    """
    if budget_dual_lr is None:
        return None
    lr = float(budget_dual_lr)
    if not lr > 0.0:
        raise ValueError(f"compile(budget_dual_lr={budget_dual_lr!r}): the dual variable's "
                         "step size must be positive (None turns the term off)")
    if budget is None:
        raise ValueError("compile(budget_dual_lr=...) adds the budget's expected-cost term: "
                         "pass budget= as well")
    return lr


__all__ = ["check_dual_lr", "cost_term", "dual_ascent", "relative_excess"]
