"""Figures of a search: α trajectories, the schedule's FI/threshold, cell diagrams.

Matplotlib only (the Agg renderer through :class:`matplotlib.figure.Figure`,
no pyplot, so nothing global changes and no display is needed). Every function
writes its PNG atomically (temp file + rename) and returns the path written.

* :func:`plot_alpha`: the activated α of every edge over the epochs, one
  subplot per edge, one line per op, for each cell type (normal and reduction,
  or the recurrent cell).
* :func:`plot_schedule`: the per-step FI (log scale), its EWMA and the dynamic
  threshold, with the α steps marked and the pruned-op count (crb).
* :func:`plot_genotype`: the normal and reduction cells of a genotype as DAGs, or a
  recurrent genotype's cell.

The record is the JSON written by :class:`kdarts.search.callbacks.SearchRecorder`
(a dict or its path).

Example:
    >>> from kdarts.plots import plot_alpha, plot_schedule, plot_genotype
    >>> plot_alpha("runs/search/search_record.json", "alpha.png")
    'alpha.png'
    >>> plot_genotype("DARTS_V2", "darts_v2.png")
    'darts_v2.png'
"""

from __future__ import annotations

import json
import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from kdarts.atomic import atomic_file
from kdarts.image.genotype import PRIMITIVES, Genotype, resolve_genotype

#: A fixed colour per primitive, shared by every figure.
OP_COLORS = {
    "none": "#7f7f7f",
    "max_pool_3x3": "#1f77b4",
    "avg_pool_3x3": "#17becf",
    "skip_connect": "#2ca02c",
    "sep_conv_3x3": "#d62728",
    "sep_conv_5x5": "#ff7f0e",
    "dil_conv_3x3": "#9467bd",
    "dil_conv_5x5": "#8c564b",
}
_EXTRA_COLORS = ["#e377c2", "#bcbd22", "#393b79", "#637939"]
DPI = 110
#: The y range of act(α) for both activations (crb clips to it, softmax sums to 1).
ACT_RANGE = (0.0, 1.0)


def _color(op: str, primitives=PRIMITIVES) -> str:
    if op in OP_COLORS:
        return OP_COLORS[op]
    extras = [p for p in primitives if p not in OP_COLORS]
    return _EXTRA_COLORS[extras.index(op) % len(_EXTRA_COLORS)] if op in extras else "black"


def _save(fig: Figure, path: str | os.PathLike) -> str:
    """Render ``fig`` to PNG at ``path`` atomically; returns ``path`` as given (str)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_file(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _record(record) -> dict:
    if isinstance(record, dict):
        return record
    with open(os.fspath(record), encoding="utf-8") as f:
        return json.load(f)


def _node_name(index: int) -> str:
    """A cell's node as genotype.json and ``kdarts show`` number it: the inputs 0 (the
    output of the cell before the previous one, c_{k-2}) and 1 (c_{k-1}), then the
    intermediate nodes 2, 3, ..."""
    return str(index)


_INPUT_NOTE = {0: "c$_{k-2}$", 1: "c$_{k-1}$"}


# ----------------------------------------------------------------------------- alpha


def plot_alpha(record, path: str | os.PathLike, shared_axis: bool = False) -> str:
    """Activated α of every edge over the epochs.

    One subplot per edge, laid out as a triangle (row: the intermediate node the
    edge enters; column: its input node), one line per op, for the normal cell
    (top) and the reduction cell (bottom). Pruned ops (crb) drop to 0 and are
    drawn dotted from then on. The edges the final genotype keeps have a frame
    and a title in their chosen op's colour. A grey dotted line in every subplot
    marks the initial act(α) (the mean of the first recorded epoch), so how far α
    moved can be read against where it started.

    Args:
        record: a search record (dict) or the path of its JSON.
        path: the PNG to write.
        shared_axis: draw every subplot on the absolute 0..1 axis of act(α) (crb
            and softmax weights both lie in it) instead of zooming to the data;
            zoomed, a move of 0.01 can fill the subplot.

    Returns:
        ``path``.
    """
    return _save(alpha_figure(record, shared_axis=shared_axis), path)


def alpha_figure(record, shared_axis: bool = False) -> Figure:
    """The figure :func:`plot_alpha` saves (for notebooks: ``display(alpha_figure(r))``)."""
    record = _record(record)
    epochs = sorted(record["epochs"], key=lambda e: int(e["epoch"]))
    if not epochs:
        raise ValueError("plot_alpha: the record has no epoch entries")
    primitives = list(record["primitives"])
    steps = int(record.get("steps") or 4)
    # an older record names no cells: the image search's two
    cells = list(record.get("cells") or ("normal", "reduce"))
    inputs, keep = int(record.get("inputs") or 2), int(record.get("keep") or 2)
    x = np.array([int(e["epoch"]) for e in epochs], dtype=float)
    ncols = steps + inputs - 1
    data = {cell: _alpha_and_mask(epochs, cell) for cell in cells}
    ylim = ACT_RANGE if shared_axis else _zoomed_ylim(data)
    # where α started: the mean over the first entry's ops (1/ops up to ~1e-4 noise for both
    # activations), one line for all subplots rather than one per op
    first = np.concatenate([d[0][0].ravel() for d in data.values()])
    first = first[np.isfinite(first)]
    initial = float(first.mean()) if first.size else None

    fig = Figure(figsize=(2.9 * ncols, 2.0 * len(cells) * steps + 2.2), layout="constrained")
    subfigs = fig.subfigures(len(cells), 1, hspace=0.04, squeeze=False)[:, 0]
    titles = {"normal": "Normal cell", "reduce": "Reduction cell",
              "recurrent": "Recurrent cell"}
    for subfig, cell in zip(subfigs, cells):
        alpha, mask = data[cell]
        scale = "absolute axis 0..1" if shared_axis else "y axis zoomed to the data"
        subfig.suptitle(f"{titles[cell]}: activated α per edge "
                        f"({record.get('activation', '')}; {scale})", fontsize=13,
                        fontweight="bold")
        axes = subfig.subplots(steps, ncols, sharex=True, sharey=True, squeeze=False)
        genes = (epochs[-1].get("genotype") or {}).get(cell) or []
        kept = {(k // keep, int(src)): op for k, (op, src) in enumerate(genes)}
        edge = 0
        for node in range(steps):
            for col in range(ncols):
                ax = axes[node][col]
                if col >= node + inputs:
                    ax.set_axis_off()
                    continue
                _draw_alpha_edge(ax, x, alpha[:, edge], mask[:, edge], primitives)
                _frame_alpha_edge(ax, node, col, kept.get((node, col)), primitives, steps,
                                  inputs)
                if initial is not None:
                    ax.axhline(initial, color="0.45", lw=1.0, ls=":", zorder=0, gid="initial")
                ax.set_ylim(*ylim)
                edge += 1
    handles = [Line2D([], [], color=_color(op, primitives), lw=2.5, label=op)
               for op in primitives]
    if initial is not None:
        handles.append(Line2D([], [], color="0.45", lw=1.0, ls=":",
                              label=f"initial act(α) ≈ {initial:.3g}"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 9),
               fontsize=10, frameon=False)
    return fig


def _alpha_and_mask(epochs: list[dict], cell: str) -> tuple[np.ndarray, np.ndarray]:
    """A cell's activated α over the epochs (T, E, ops) and its masks (ones if the record
    has none)."""
    alpha = np.array([e[f"alpha_{cell}"] for e in epochs], dtype=float)
    masks = [e.get(f"mask_{cell}") for e in epochs]
    mask = (np.array(masks, dtype=float) if all(m is not None for m in masks)
            else np.ones_like(alpha))
    return alpha, mask


def _zoomed_ylim(data: dict) -> tuple[float, float]:
    """One y range for every subplot (edges stay comparable), zoomed to the data: early in
    a search α has moved by a few 1e-3 only, invisible on a 0..1 axis."""
    values = np.concatenate([d[0].ravel() for d in data.values()])
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = max(0.06 * (high - low), 1e-3)
    return max(low - pad, 0.0 if low >= 0 else low - pad), high + pad


def _draw_alpha_edge(ax, x: np.ndarray, alpha: np.ndarray, mask: np.ndarray,
                     primitives: list[str]) -> None:
    """One edge's act(α) per op over the epochs: solid while alive, dotted once pruned
    (the pruning step included)."""
    for j, op in enumerate(primitives):
        y = alpha[:, j]
        alive = mask[:, j] > 0
        color = _color(op, primitives)
        if alive.all():
            ax.plot(x, y, color=color, lw=1.6, marker="." if len(x) < 30 else None)
        else:
            last = int(np.argmin(alive))
            ax.plot(x[:last + 1], y[:last + 1], color=color, lw=1.6)
            ax.plot(x[last:], y[last:], color=color, lw=1.0, ls=":")


def _frame_alpha_edge(ax, node: int, col: int, kept_op: str | None, primitives: list[str],
                      steps: int, inputs: int = 2) -> None:
    """An edge's title (with the op the genotype keeps there, framed in its colour), grid,
    ticks and labels. Nodes are numbered as genotype.json numbers them: a cell's
    ``inputs`` first, then its intermediate nodes."""
    title = f"{_node_name(col)} → {_node_name(node + inputs)}"
    if kept_op is not None:
        ax.set_title(f"{title}: {kept_op}", fontsize=9, fontweight="bold",
                     color=_color(kept_op, primitives))
        for spine in ax.spines.values():
            spine.set_linewidth(2.0)
            spine.set_color(_color(kept_op, primitives))
    else:
        ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=8, labelbottom=True)
    if col == 0:
        ax.set_ylabel("act(α)", fontsize=9)
    if node == steps - 1 or col == node + inputs - 1:
        ax.set_xlabel("epoch", fontsize=9)


# -------------------------------------------------------------------------- schedule


def plot_schedule(record, path: str | os.PathLike) -> str:
    """The per-step schedule information of a search.

    FI (the squared weight-gradient norm, log scale) per step, its EWMA and the
    dynamic schedule's threshold; every α step is marked by a tick at the
    bottom; the number of pruned ops (crb) on a right-hand axis; epoch
    boundaries as faint vertical lines.

    Args:
        record: a search record (dict) or the path of its JSON.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    record = _record(record)
    batches = sorted(record.get("batches") or [], key=lambda b: int(b["step"]))
    if not batches:
        raise ValueError("plot_schedule: the record has no per-step entries")

    def col(key):
        return np.array([np.nan if b.get(key) is None else float(b[key]) for b in batches])

    steps = col("step")
    fi, ewma, threshold = col("step_fi"), col("fi_ewma"), col("threshold")
    took = col("took_alpha_step")
    pruned = col("pruned_ops")

    fig = Figure(figsize=(11, 5.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(steps, fi, color="#9ecae1", lw=0.9, label="FI (step)")
    ax.plot(steps, ewma, color="#08519c", lw=1.8, label="FI EWMA")
    ax.plot(steps, threshold, color="#d62728", lw=1.5, ls="--", label="threshold")
    positive = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in (fi, ewma, threshold)])
    if positive.size:
        ax.set_yscale("log")
        ax.set_ylim(positive.min() / 2.0, positive.max() * 1.5)
    spe = int(record.get("steps_per_epoch") or 0)
    if spe > 0 and len(steps) > 0:
        for boundary in range(spe, int(np.nanmax(steps)) + 1, spe):
            ax.axvline(boundary, color="0.85", lw=0.8, zorder=0)
    alpha_steps = steps[np.nan_to_num(took) > 0.5]
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    ax.vlines(alpha_steps, 0.0, 0.05, transform=trans, color="#2ca02c", lw=1.2,
              label=f"α step ({len(alpha_steps)})")
    ax.set_xlabel("search step (weight minibatch)")
    ax.set_ylabel("squared gradient norm Σ‖∇w‖²")
    ax.grid(True, which="major", alpha=0.3)
    ax.set_xlim(float(np.nanmin(steps)) - 0.5, float(np.nanmax(steps)) + 0.5)
    handles, labels = ax.get_legend_handles_labels()
    show_pruned = record.get("activation") == "crb" or np.nanmax(np.nan_to_num(pruned)) > 0
    if show_pruned and np.isfinite(pruned).any():
        ax2 = ax.twinx()
        ax2.step(steps, pruned, where="post", color="#ff7f0e", lw=1.6, label="pruned ops")
        ax2.set_ylabel(f"pruned ops ({' + '.join(record.get('cells') or ('normal', 'reduce'))})",
                       color="#ff7f0e")
        ax2.tick_params(axis="y", colors="#ff7f0e")
        top = max(1.0, float(np.nanmax(pruned)))
        ax2.set_ylim(0, top * 1.15 + 0.5)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=9.5,
               frameon=False)
    if spe > 0:
        top = ax.secondary_xaxis("top", functions=(lambda s: s / spe, lambda e: e * spe))
        top.set_xlabel("epoch", fontsize=9)
        top.tick_params(labelsize=8)
    ax.set_title(f"Schedule: FI, EWMA and threshold ({len(alpha_steps)} α steps in "
                 f"{len(steps)} steps)", fontsize=12)
    return _save(fig, path)


# -------------------------------------------------------------------------- genotype


_ARC_UNIT = 0.3  # arc height per node of span (data units; nodes are 1 apart)
_NODE_R = 0.13


def _arc(ax, x1: float, x2: float, height: float, color, lw: float, ls="-", arrow=True,
         zorder=2):
    """Half-ellipse from (x1, 0) to (x2, 0) with apex ``height`` (negative: below),
    trimmed where it enters the two node markers, with an arrowhead at x2."""
    theta = np.linspace(np.pi, 0.0, 200)
    cx, rx = (x1 + x2) / 2.0, (x2 - x1) / 2.0
    xs, ys = cx + rx * np.cos(theta), height * np.sin(theta)
    keep = (np.hypot(xs - x1, ys) > _NODE_R + 0.02) & (np.hypot(xs - x2, ys) > _NODE_R + 0.04)
    xs, ys = xs[keep], ys[keep]
    ax.plot(xs[:-1], ys[:-1], color=color, lw=lw, ls=ls, zorder=zorder, solid_capstyle="round")
    if arrow:
        ax.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-6], ys[-6]), zorder=zorder,
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=lw,
                                    mutation_scale=14, shrinkA=0, shrinkB=0))


def _cell_ylim(steps: int) -> tuple[float, float]:
    """Vertical extent of a cell's arc diagram: the highest op arc spans steps + 1 nodes
    (c_{k-2} to the last node), the lowest concat arc steps nodes."""
    return -0.15 * steps - 0.45, _ARC_UNIT * (steps + 1) + 0.22


def _draw_cell(ax, genes, concat, title: str) -> None:
    """An arc diagram of one cell: nodes on a line, op edges above, concat edges below."""
    steps = len(genes) // 2
    out = steps + 2
    for index in range(steps + 2):
        is_input = index < 2
        label = f"{index}: {_INPUT_NOTE[index]}" if is_input else _node_name(index)
        ax.text(index, 0.0, label, ha="center", va="center", fontsize=12,
                zorder=6, bbox=dict(boxstyle="round,pad=0.4" if is_input else "circle,pad=0.3",
                                    fc="#c6dbef" if is_input else "#fdd0a2", ec="0.2", lw=1.2))
    ax.text(out, 0.0, "c$_{k}$", ha="center", va="center", fontsize=12, zorder=6,
            bbox=dict(boxstyle="round,pad=0.4", fc="#c7e9c0", ec="0.2", lw=1.2))
    top = 0.0
    for k, (op, src) in enumerate(genes):
        dst = k // 2 + 2
        span = max(1, dst - src)
        height = _ARC_UNIT * span
        top = max(top, height)
        color = _color(op)
        _arc(ax, src, dst, height, color, lw=2.0, zorder=3 + 0.01 * (10 - span))
        ax.text((src + dst) / 2.0, height, op, ha="center", va="center", fontsize=9,
                color=color, zorder=5, fontweight="bold",
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=color, lw=0.8))
    bottom = 0.0
    for node in concat:
        span = out - node
        height = -0.15 * span
        bottom = min(bottom, height)
        _arc(ax, node, out, height, "0.55", lw=1.0, ls="--", zorder=1)
    names = ", ".join(_node_name(n) for n in concat)
    ax.text(out, bottom - 0.08, f"c$_{{k}}$ = concat({names})", ha="center", va="top",
            fontsize=9, color="0.35")
    ax.set_title(title, fontsize=13, fontweight="bold")
    ax.set_xlim(-0.5, out + 0.5)
    ax.set_ylim(*_cell_ylim(steps))
    ax.set_aspect("equal")
    ax.set_axis_off()


def plot_genotype(genotype, path: str | os.PathLike) -> str:
    """Draw the normal and the reduction cell of a genotype as DAGs (a recurrent
    genotype: its one cell, :func:`recurrent_genotype_figure`).

    Nodes are numbered as in genotype.json and ``kdarts show``: the inputs 0
    (c_{k-2}) and 1 (c_{k-1}), the intermediate nodes 2, 3, …, and the output
    c_{k} (concatenation, dashed edges); each kept edge is an arrow labelled and
    coloured by its op.

    Args:
        genotype: a :class:`~kdarts.image.genotype.Genotype`, its dict, a preset name or
            a genotype JSON path.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    return _save(genotype_figure(genotype), path)


def genotype_figure(genotype) -> Figure:
    """The figure :func:`plot_genotype` saves: its space's drawing
    (:func:`cells_figure`, :func:`recurrent_genotype_figure`)."""
    from kdarts.spaces import IMAGE, resolve, space_for

    # a genotype of neither space goes to the image drawing, whose loader names the problem
    space = space_for(genotype=genotype, default=IMAGE)
    return resolve(space.genotype_figure)(genotype)


def cells_figure(genotype) -> Figure:
    """The figure :func:`plot_genotype` saves for an image genotype: the normal cell above
    the reduction cell."""
    if isinstance(genotype, dict):
        genotype = Genotype.from_dict(genotype)
    genotype = resolve_genotype(genotype)
    steps = genotype.steps
    inch_per_unit = 1.75  # node spacing: room for an op label between two nodes
    low, high = _cell_ylim(steps)
    width = inch_per_unit * (steps + 3) + 0.3
    height = 2 * (inch_per_unit * (high - low) + 0.45)
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(2, 1)
    _draw_cell(axes[0], genotype.normal, genotype.normal_concat, "Normal cell")
    _draw_cell(axes[1], genotype.reduce, genotype.reduce_concat, "Reduction cell")
    return fig


# ------------------------------------------------------------------- recurrent cell

#: A fixed colour per recurrent activation.
RECURRENT_OP_COLORS = {"tanh": "#d62728", "relu": "#1f77b4", "sigmoid": "#9467bd",
                       "identity": "#2ca02c", "none": "#7f7f7f"}


def _draw_recurrent_cell(ax, genotype) -> None:
    """An arc diagram of a recurrent cell: x_t and h_{t-1} mixed into state 0, the nodes
    on a line with their (op, predecessor) arcs above, the averaged states below."""
    steps = genotype.steps
    out = steps + 1
    ax.text(-1.1, 0.0, "x$_t$, h$_{t-1}$", ha="center", va="center", fontsize=11, zorder=6,
            bbox=dict(boxstyle="round,pad=0.4", fc="#c6dbef", ec="0.2", lw=1.2))
    ax.annotate("", xy=(-_NODE_R - 0.05, 0.0), xytext=(-0.55, 0.0), zorder=2,
                arrowprops=dict(arrowstyle="-|>", color="0.3", lw=1.5, mutation_scale=14))
    ax.text(-0.33, 0.1, "W$_0$", ha="center", va="bottom", fontsize=9, color="0.3")
    for index in range(steps + 1):
        ax.text(index, 0.0, str(index), ha="center", va="center", fontsize=12, zorder=6,
                bbox=dict(boxstyle="circle,pad=0.3", fc="#fdd0a2", ec="0.2", lw=1.2))
    ax.text(out, 0.0, "h$_t$", ha="center", va="center", fontsize=12, zorder=6,
            bbox=dict(boxstyle="round,pad=0.4", fc="#c7e9c0", ec="0.2", lw=1.2))
    for k, (op, src) in enumerate(genotype.recurrent):
        dst = k + 1
        span = dst - src
        height = _ARC_UNIT * span
        color = RECURRENT_OP_COLORS.get(op, "black")
        _arc(ax, src, dst, height, color, lw=2.0, zorder=3 + 0.01 * (10 - span))
        ax.text((src + dst) / 2.0, height, op, ha="center", va="center", fontsize=9,
                color=color, zorder=5, fontweight="bold",
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=color, lw=0.8))
    bottom = 0.0
    for node in genotype.concat:
        height = -0.15 * (out - node)
        bottom = min(bottom, height)
        _arc(ax, node, out, height, "0.55", lw=1.0, ls="--", zorder=1)
    ax.text(out, bottom - 0.08, f"h$_t$ = mean{list(genotype.concat)}", ha="center",
            va="top", fontsize=9, color="0.35")
    ax.set_title("Recurrent cell", fontsize=13, fontweight="bold")
    ax.set_xlim(-1.9, out + 0.5)
    top = max(dst + 1 - src for dst, (_, src) in enumerate(genotype.recurrent))
    ax.set_ylim(-0.15 * (steps + 1) - 0.45, _ARC_UNIT * top + 0.22)
    ax.set_aspect("equal")
    ax.set_axis_off()


def recurrent_genotype_figure(genotype) -> Figure:
    """The figure :func:`plot_genotype` saves for a recurrent genotype: x_t and h_{t-1}
    mixed into state 0 (W0's highway), each node's (op, predecessor) as an arrow labelled
    and coloured by its activation, the averaged states dashed into h_t."""
    from kdarts.recurrent.genotype import RecurrentGenotype, resolve_recurrent_genotype

    if isinstance(genotype, dict):
        genotype = RecurrentGenotype.from_dict(genotype)
    genotype = resolve_recurrent_genotype(genotype)
    inch_per_unit = 1.45
    width = inch_per_unit * (genotype.steps + 3.4) + 0.3
    top = max(dst + 1 - src for dst, (_, src) in enumerate(genotype.recurrent))
    height = inch_per_unit * (_ARC_UNIT * top + 0.15 * (genotype.steps + 1) + 0.67) + 0.6
    fig = Figure(figsize=(width, height), layout="constrained")
    _draw_recurrent_cell(fig.subplots(), genotype)
    return fig


__all__ = ["plot_alpha", "plot_schedule", "plot_genotype", "alpha_figure", "cells_figure",
           "genotype_figure", "recurrent_genotype_figure", "OP_COLORS", "RECURRENT_OP_COLORS"]
