"""Which pruned ops a traced search step leaves out (crb, ``skip_pruned_ops="levels"``).

crb prunes an op on an edge for good. The step cannot change shape at every prune
without a retrace, so it is traced for a *traced mask*: every op alive then runs on
the edges that kept it (an edge pruned since runs with zero kernels), and the traced
mask moves on only when the share of pruned ops first reaches a further level of
:data:`PRUNE_LEVELS`: at most three retraces in a search, each of a smaller graph.
Pure numpy rules, tested directly; :class:`~kdarts.search.alternating.AlternatingSearch`
keeps the traced mask in its state (``kept_normal``/``kept_reduce`` of the image
network, ``kept`` of the recurrent model) and calls them.

Example:
    >>> import numpy as np
    >>> alive = np.ones((14, 7), bool); alive[:4] = False       # 4 of 14 edges' ops
    >>> traced = next_traced_mask(alive, np.ones_like(alive))   # 29 % pruned: level 1
    >>> bool((traced == alive).all())
    True
"""

from __future__ import annotations

import numpy as np

#: The step is traced again for the edges that keep each op when the share of pruned
#: ops first reaches each of these.
PRUNE_LEVELS = (0.25, 0.5, 0.75)
#: ``skip_pruned_ops="auto"`` leaves pruned ops out by levels when an image's input map
#: (H·W) times ``channels`` is at least this; below it, small kernels' overhead rules the
#: step and the gathers cost more than the FLOPs they save (docs/design.md, "Pruned ops").
LEVELS_MIN_MAP = 16 * 16 * 8
#: ... and when the search is long enough to earn its retraces back: input map × batch ×
#: weight steps of the whole search at least this. The trade: each retrace costs about a
#: first step's warm-up, while the time each step saves grows with the map and the batch;
#: at this value a 16×16, C=8, batch-32 search needs 1,526 weight steps. Measured by
#: ``kdarts search --skip-pruned-ops levels|never`` on a whole search, and per step by
#: ``tools/bench_search.py --pruned 0.5 --skip-pruned-ops levels|never``
#: (docs/design.md, "Pruned ops"; figures in docs/benchmarks.md).
LEVELS_MIN_WORK = 10**8


def auto_mode(height: int | None, width: int | None, channels: int,
              batch_size: int | None = None, total_steps: int | None = None) -> str:
    """``skip_pruned_ops="auto"``'s choice: ``"levels"`` for an input map of at least
    :data:`LEVELS_MIN_MAP` whose search is long enough (:data:`LEVELS_MIN_WORK`, when
    ``batch_size`` and ``total_steps`` are known), else ``"never"`` (also for an unknown
    image size: one trace). Depends on the search's settings only, so a resumed search
    makes the same choice."""
    if height is None or width is None or height * width * channels < LEVELS_MIN_MAP:
        return "never"
    if batch_size and total_steps:
        work = height * width * channels * batch_size * total_steps
        return "levels" if work >= LEVELS_MIN_WORK else "never"
    return "levels"


def recurrent_auto_mode(units: int, batch_size: int | None, length: int | None,
                        total_steps: int | None) -> str:
    """``skip_pruned_ops="auto"``'s choice for the recurrent cell: ``"levels"`` when the
    search's work, units × batch × segment length × weight steps, is at least
    :data:`LEVELS_MIN_WORK` (the image rule's threshold, the cell's units × segment length
    in place of the map × channels), else ``"never"`` (also when any is unknown): each
    retrace costs a first step's warm-up, which a short search does not earn back."""
    if not (batch_size and length and total_steps):
        return "never"
    work = int(units) * int(batch_size) * int(length) * int(total_steps)
    return "levels" if work >= LEVELS_MIN_WORK else "never"


def recurrent_kept_edges(mask: np.ndarray, steps: int) -> tuple[tuple[int, ...], ...] | None:
    """Per node ``k`` of the recurrent cell, the predecessors ``j`` whose edge (α row
    ``k(k+1)/2 + j``) keeps an op in ``mask`` (bool, α-shaped); None when every edge
    keeps one. A node whose every edge is pruned keeps its first: the node's sum is
    zero either way, and its matmul keeps a shape."""
    mask = np.asarray(mask, dtype=bool)
    nodes = []
    for k in range(int(steps)):
        first = k * (k + 1) // 2
        kept = tuple(j for j in range(k + 1) if mask[first + j].any())
        nodes.append(kept or (0,))
    if all(len(kept) == k + 1 for k, kept in enumerate(nodes)):
        return None
    return tuple(nodes)


def prune_level(mask: np.ndarray) -> int:
    """How many of :data:`PRUNE_LEVELS` the share of pruned entries (False) of ``mask``
    has reached."""
    pruned = 1.0 - np.asarray(mask, dtype=bool).mean()
    return sum(pruned >= level for level in PRUNE_LEVELS)


def next_traced_mask(alive: np.ndarray, traced: np.ndarray) -> np.ndarray:
    """The traced mask after this moment's prune mask ``alive`` (both bool, same shape).

    It stays as it is while the pruned share stays within its level, and becomes
    ``alive`` when that share reaches a further level; all ones until the first
    level. An entry alive but not traced (masks assigned from outside, a state from
    another search) also resets it, so the step never leaves out an op still alive.
    """
    alive = np.asarray(alive, dtype=bool)
    traced = np.asarray(traced, dtype=bool)
    if alive.shape != traced.shape:
        raise ValueError(f"next_traced_mask: alive has shape {alive.shape}, the traced "
                         f"mask {traced.shape}")
    if prune_level(alive) > prune_level(traced) or np.any(alive & ~traced):
        return alive.copy() if prune_level(alive) else np.ones_like(alive)
    return traced


def kept_edges(mask: np.ndarray, rows: list[int]) -> tuple[tuple[int, ...], ...]:
    """Per op (column of ``mask``, an α-shaped bool array), the positions within a
    fan-out whose edges are the α rows ``rows`` where the op is kept."""
    mask = np.asarray(mask, dtype=bool)
    return tuple(tuple(q for q, r in enumerate(rows) if mask[r, col])
                 for col in range(mask.shape[1]))


__all__ = ["LEVELS_MIN_MAP", "LEVELS_MIN_WORK", "PRUNE_LEVELS", "auto_mode", "kept_edges",
           "next_traced_mask", "prune_level", "recurrent_auto_mode", "recurrent_kept_edges"]
