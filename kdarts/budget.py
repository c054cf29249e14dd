"""Budgets as the command line and the reports state them: amounts, units, refusals.

A budget bounds one additive cost of the found network (parameters, multiply-adds or
predicted latency); the image space holds it with D_B (:mod:`kdarts.image.budget`,
docs/method.md §8), the recurrent space refuses it (:data:`RECURRENT_BUDGET_REFUSAL`). This
module is what both spaces, the command line and the reports share: :class:`BudgetError`,
amounts read (:func:`parse_amount`) and written (:func:`format_amount`,
:func:`describe_cost`). No TensorFlow.

Example:
    >>> parse_amount("120k"), format_amount(120_000, "params")
    (120000.0, '120.0k parameters')
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

#: Why the recurrent space takes no budget (docs/method.md §8).
RECURRENT_BUDGET_REFUSAL = (
    "a budget applies to the image space only: every node of the recurrent cell has its "
    "own W, so its parameters and multiply-adds are the same whatever the genotype")

#: What a budget can bound, and the unit its amounts are counted in.
BUDGET_UNITS: dict[str, str] = {"params": "parameters", "madds": "multiply-adds",
                                "latency_ms": "ms"}

__all__ = ["BUDGET_UNITS", "RECURRENT_BUDGET_REFUSAL", "BudgetError", "describe_cost",
           "format_amount", "parse_amount"]


class BudgetError(ValueError):
    """A budget no valid genotype meets, or a cost table that does not fit the weights."""


_SUFFIXES = {"k": 1e3, "m": 1e6, "g": 1e9}


def parse_amount(text: str | float | int, what: str = "budget") -> float:
    """A positive amount, with an optional k/M/G suffix: ``"120k"`` → 120000.0.

    Raises:
        BudgetError: not a positive number (the message names ``what`` and the text).

    Example:
        >>> parse_amount("15M"), parse_amount("0.8"), parse_amount(2500)
        (15000000.0, 0.8, 2500.0)
    """
    raw = str(text).strip()
    scale = _SUFFIXES.get(raw[-1:].lower(), 1.0) if raw else 1.0
    number = raw[:-1] if scale != 1.0 else raw
    try:
        value = float(number) * scale
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise BudgetError(f"{what}: expected a positive number such as 120k, 15M or 0.8, "
                          f"got {raw!r}")
    return value


def format_amount(value: float, kind: str) -> str:
    """An amount for a one-line report, in the unit of ``kind``.

    Example:
        >>> format_amount(120_000, "params"), format_amount(15.2e6, "madds")
        ('120.0k parameters', '15.20M multiply-adds')
        >>> format_amount(0.5, "latency_ms")
        '0.500 ms'
    """
    if kind == "latency_ms":
        return f"{value:.3f} ms"
    unit = BUDGET_UNITS.get(kind, kind)
    if value >= 1e6:
        return f"{value / 1e6:.2f}M {unit}"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k {unit}"
    return f"{value:g} {unit}"


def describe_cost(cost: Mapping | None) -> str | None:
    """One line of a genotype's cost record (``Genotype.cost``, genotype.json's ``cost``):
    ``"evaluation network C=16, 8 layers: 103.4k parameters, 1.59M multiply-adds (budget
    params ≤ 120.0k parameters)"``; None without one."""
    if not cost:
        return None
    net = cost.get("network", {})
    parts = [format_amount(cost[k], k) + (" predicted" if k == "latency_ms" else "")
             for k in ("params", "madds", "latency_ms") if k in cost]
    line = (f"evaluation network C={net.get('channels')}, {net.get('layers')} layers: "
            + ", ".join(parts))
    budget = cost.get("budget")
    if budget:
        line += f" (budget {budget['kind']} ≤ {format_amount(budget['limit'], budget['kind'])})"
    return line
