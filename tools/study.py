"""A resumable grid study of the search method: seeds × activation × regulariser × schedule.

Every run searches in its own folder ``<out>/<activation>-<schedule>-<reg>/seed<N>``
(``kdarts.runs.search_run`` with ``resume="auto"``): a complete run (genotype.json and
search_record.json) is skipped, an interrupted one continues from its last epoch. Then
the report (``--doc``, default docs/study.md, and two PNGs next to it) is rebuilt from
the finished folders: per run and per variant, the measures defined in its last section.

    python tools/study.py --out runs/study --preset claims
    python tools/study.py --out runs/study --seeds 0,1 --activation crb --reg none,admm \\
        --schedule dynamic --epochs 4
    python tools/study.py --out runs/study --preset claims --report-only

``--preset claims`` is the least needed to check the paper's claims: crb vs softmax
(size) with dynamic/proximity, and crb/dynamic with none, proximity and admm
(agreement across seeds per regulariser), seeds 0, 1, 2. ``fixed`` is an α step on
every weight step (k=1, DARTS); ``dynamic`` the default dynamic schedule.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import os
import platform
import sys
import time
from functools import lru_cache

import numpy as np

from kdarts import options
from kdarts.atomic import atomic_write_text
from kdarts.image.genotype import Genotype, discretize, edge_index
from kdarts.runs import RunError, RunInterrupted, check_search_folder, search_run
from kdarts.runtime import set_cpu_threads

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from study_runs import command_line, error_status, report_arguments  # noqa: E402

# The study's grid order (reports list variants in it); the names are the registry's.
ACTIVATIONS, SCHEDULES = ("crb", "softmax"), ("fixed", "dynamic")
REGS = ("none", "proximity", "admm")
assert set(ACTIVATIONS) == set(options.ACTIVATIONS) and set(SCHEDULES) == set(options.SCHEDULES)
assert set(REGS) <= set(options.REGULARIZERS)
#: Evaluation-network size at which every genotype is measured (auxiliary head excluded).
SIZE_CHANNELS, SIZE_LAYERS = 16, 8
#: Ops without weights; a reduction cell's skip from an input is a FactorizedReduce (1×1
#: convs), so "pool/skip genes" count choices that are cheap, not always free.
CHEAP_OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect")
#: Random genotype groups drawn for the agreement baseline (fixed rng: reports are stable).
RANDOM_GROUPS, RANDOM_SEED = 2000, 0
#: Search options passed through to every run (None: the dataset's default).
PASS_THROUGH = ("dataset", "epochs", "channels", "layers", "batch_size", "max_examples",
                "arch_lr", "threshold")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One point of the grid, without the seed."""

    activation: str
    schedule: str
    reg: str

    @property
    def name(self) -> str:
        return f"{self.activation}-{self.schedule}-{self.reg}"

    def options(self) -> dict:
        """search_run's options for this variant (fixed: an α step every weight step)."""
        return {"activation": self.activation, "schedule": self.schedule, "reg": self.reg,
                **({"every": 1} if self.schedule == "fixed" else {})}


CLAIMS = (Variant("crb", "dynamic", "proximity"), Variant("softmax", "dynamic", "proximity"),
          Variant("crb", "dynamic", "none"), Variant("crb", "dynamic", "admm"))


@dataclasses.dataclass
class RunStats:
    """The measures of one finished run (see the report's last section)."""

    variant: Variant
    seed: int
    folder: str
    genotype: Genotype
    primitives: tuple[str, ...]
    parameters: int | None
    cheap_genes: int
    pruned: int
    pruned_share: float
    separation: float
    accuracy: float | None
    alpha_steps: int
    genes_changed: int
    args: dict


# ------------------------------------------------------------------------ measures


def gene_set(genotype: Genotype) -> frozenset[tuple[str, int, int, str]]:
    """The genotype's genes as ``(cell, node, input, op)``; nodes numbered 2, 3, ..."""
    return frozenset((cell, k // 2 + 2, int(src), op) for cell in ("normal", "reduce")
                     for k, (op, src) in enumerate(getattr(genotype, cell)))


#: Short op names for the report's genotype column.
SHORT = {"sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "dil_conv_3x3": "dil3",
         "dil_conv_5x5": "dil5", "max_pool_3x3": "max", "avg_pool_3x3": "avg",
         "skip_connect": "skip", "none": "none"}


def genotype_text(genotype: Genotype) -> str:
    """The genotype in one line, node by node: ``N: sep3(0)+skip(1) ... / R: ...``."""
    def cell(genes) -> str:
        return " ".join("+".join(f"{SHORT.get(op, op)}({src})" for op, src in genes[i:i + 2])
                        for i in range(0, len(genes), 2))
    return f"N: {cell(genotype.normal)} / R: {cell(genotype.reduce)}"


def jaccard(a: frozenset, b: frozenset) -> float:
    """|a ∩ b| / |a ∪ b| (1 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def agreement(genotypes: list[Genotype]) -> float | None:
    """Mean pairwise Jaccard similarity of the genotypes' gene sets; None for fewer than 2."""
    sets = [gene_set(g) for g in genotypes]
    pairs = [jaccard(a, b) for a, b in itertools.combinations(sets, 2)]
    return float(np.mean(pairs)) if pairs else None


def random_genotype(rng: np.random.Generator, ops: tuple[str, ...], steps: int = 4) -> Genotype:
    """A uniformly random valid genotype: per node 2 distinct earlier inputs, an op each."""
    u = rng.random((2, steps, 2))  # one draw per genotype: the baseline samples thousands
    picks = rng.integers(len(ops), size=(2, steps, 2))
    cells = []
    for c in range(2):
        genes = []
        for node in range(steps):
            first = int(u[c, node, 0] * (node + 2))
            # a uniform other input: shift by 1..node+1 around the node + 2 earlier nodes
            second = (first + 1 + int(u[c, node, 1] * (node + 1))) % (node + 2)
            genes += [(ops[picks[c, node, 0]], first), (ops[picks[c, node, 1]], second)]
        cells.append(genes)
    concat = tuple(range(2, steps + 2))
    return Genotype(normal=cells[0], normal_concat=concat, reduce=cells[1], reduce_concat=concat)


@lru_cache(maxsize=None)
def random_agreement(n: int, ops: tuple[str, ...], steps: int = 4,
                     groups: int = RANDOM_GROUPS, seed: int = RANDOM_SEED) -> tuple[float, float]:
    """``(mean, 95th percentile)`` of :func:`agreement` over groups of ``n`` random genotypes.

    The percentile is what a variant's agreement over ``n`` seeds must exceed to be
    unlikely (5 %) for searches that pick genes at random.
    """
    rng = np.random.default_rng(seed)
    values = [agreement([random_genotype(rng, ops, steps) for _ in range(n)])
              for _ in range(groups)]
    return float(np.mean(values)), float(np.percentile(values, 95))


def gene_margins(act: np.ndarray, primitives: list[str], steps: int = 4) -> list[float]:
    """Per kept gene of ``discretize(act)``: its weight minus the best rejected one of its node.

    Rejected: the other ops of the same edge, and every op of the node's edges not kept
    (``none`` never competes, as in the discretisation). Bigger means more decided.
    """
    act = np.asarray(act, dtype=float)
    cand = np.array([p != "none" for p in primitives])
    genes, _ = discretize(act, primitives, steps)
    margins = []
    for node in range(steps):
        start = edge_index(node, 0)
        kept = {src for _, src in genes[2 * node:2 * node + 2]}
        for op, src in genes[2 * node:2 * node + 2]:
            j = primitives.index(op)
            rivals = [act[start + src, k] for k in np.flatnonzero(cand) if k != j]
            rivals += [act[start + e, k] for e in range(node + 2) if e not in kept
                       for k in np.flatnonzero(cand)]
            margins.append(float(act[start + src, j] - max(rivals)))
    return margins


def pruned_ops(masks: list[np.ndarray]) -> tuple[int, float]:
    """``(pruned count, share of all ops)`` from crb's 0/1 masks (softmax: all ones)."""
    total = sum(np.asarray(m).size for m in masks)
    count = int(round(sum(float((1 - np.asarray(m, float)).sum()) for m in masks)))
    return count, count / total if total else 0.0


@lru_cache(maxsize=None)
def eval_size(genotype: Genotype, num_classes: int, image_shape: tuple[int, ...],
              channels: int = SIZE_CHANNELS, layers: int = SIZE_LAYERS) -> int:
    """Trainable parameters of the genotype's EvalNetwork, auxiliary head excluded."""
    from kdarts.image import EvalNetwork

    model = EvalNetwork(genotype, num_classes, channels=channels, layers=layers, auxiliary=False)
    model.build((None,) + tuple(image_shape))  # creates the weights; nothing is traced
    return int(model.parameter_count())


def _last_accuracy(folder: str, last: dict) -> float | None:
    """The last epoch's search accuracy: from the record's logs, else history.csv."""
    value = (last.get("logs") or {}).get("accuracy")
    if value is None and os.path.exists(os.path.join(folder, "history.csv")):
        import csv

        with open(os.path.join(folder, "history.csv"), encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        value = rows[-1].get("accuracy") if rows else None
    return None if value in (None, "") else float(value)


def measure_run(folder: str, variant: Variant, seed: int) -> RunStats:
    """Every per-run measure of the finished search in ``folder``."""
    def read(name: str) -> dict:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            return json.load(f)

    run, record = read("run.json"), read("search_record.json")
    genotype = Genotype.load(os.path.join(folder, "genotype.json"))
    epochs = sorted(record["epochs"], key=lambda e: int(e["epoch"]))
    first, last = epochs[0], epochs[-1]
    primitives, steps = list(record["primitives"]), int(record.get("steps") or 4)
    # the record holds act(α) already (SearchRecorder): clip·mask for crb, softmax per edge
    margins = [m for cell in ("normal", "reduce")
               for m in gene_margins(last[f"alpha_{cell}"], primitives, steps)]
    count, share = pruned_ops([last.get(f"mask_{c}", [[1.0]]) for c in ("normal", "reduce")])
    steps_taken = (last.get("logs") or {}).get("alpha_steps")
    if steps_taken is None:
        steps_taken = sum(b.get("took_alpha_step") or 0 for b in record.get("batches", []))
    initial = Genotype.from_dict(first["genotype"])
    shape = run.get("image_shape")
    size = (eval_size(genotype, int(run["num_classes"]), tuple(shape))
            if shape and run.get("num_classes") else None)  # older run.json: unknown
    return RunStats(
        variant=variant, seed=seed, folder=folder, genotype=genotype,
        primitives=tuple(primitives), parameters=size,
        cheap_genes=sum(op in CHEAP_OPS for op, _ in genotype.normal + genotype.reduce),
        pruned=count, pruned_share=share, separation=float(np.mean(margins)),
        accuracy=_last_accuracy(folder, last), alpha_steps=int(round(steps_taken)),
        genes_changed=len(gene_set(genotype) - gene_set(initial)), args=run["args"])


@dataclasses.dataclass
class VariantStats:
    """A variant's measures over its seeds."""

    variant: Variant
    runs: list[RunStats]
    agreement: float | None
    random_mean: float | None
    random_p95: float | None
    sizes: list[int]

    def mean(self, field: str) -> float | None:
        values = [getattr(r, field) for r in self.runs if getattr(r, field) is not None]
        return float(np.mean(values)) if values else None


def summarize(runs: list[RunStats]) -> list[VariantStats]:
    """Per variant (in the order of ``runs``): agreement vs random, sizes, means."""
    out = []
    for variant in dict.fromkeys(r.variant for r in runs):
        mine = [r for r in runs if r.variant == variant]
        ops = tuple(p for p in mine[0].primitives if p != "none")
        base = (random_agreement(len(mine), ops, mine[0].genotype.steps)
                if len(mine) > 1 else (None, None))
        out.append(VariantStats(variant, mine, agreement([r.genotype for r in mine]), *base,
                                sizes=[r.parameters for r in mine if r.parameters is not None]))
    return out


# -------------------------------------------------------------------------- report


def _k(n: float | None) -> str:
    return "–" if n is None else f"{n / 1e3:.1f}k"


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "–" if x is None else format(x, fmt)


def findings(stats: list[VariantStats]) -> list[str]:
    """The 'What this shows' sentences beyond the claims' verdicts, from the tables."""
    lines = []
    agreeing = [v for v in stats if v.agreement is not None]
    if agreeing:
        above = [v.variant.name for v in agreeing if v.agreement > v.random_p95]
        lines.append("Agreement above the random 95th percentile: "
                     f"{', '.join(above)}." if above else
                     "No variant agrees across seeds more than random genotypes do in 5% of "
                     "draws of the same size.")
    crb = [v for v in stats if v.variant.activation == "crb"]
    if crb:
        shares = ", ".join(f"{v.variant.name} {100 * v.mean('pruned_share'):.0f}%" for v in crb)
        lines.append(f"crb pruned this share of the candidate ops by the last epoch (mean over "
                     f"seeds): {shares}; softmax prunes none by design.")
    both = len({v.variant.activation for v in stats}) > 1
    lines.append("Separation (kept gene's weight minus the best rejected one): " + ", ".join(
        f"{v.variant.name} {v.mean('separation'):.3f}" for v in stats) + (
        "; crb's weights are each in [0, 1] while softmax's share 1 per edge, so the two "
        "activations' separations are not on one scale." if both else "."))
    lines.append("Search accuracy is the supernet's training accuracy in the last epoch, not "
                 "the accuracy of the found network.")
    return lines


def claims(stats: list[VariantStats]) -> list[str]:
    """One plain verdict per claim of the paper the grid can speak to (held / not seen /
    not tested here), each with the numbers behind it."""
    by = {v.variant: v for v in stats}
    steps = [v.mean("alpha_steps") for v in stats if v.mean("alpha_steps") is not None]
    out = [f"{sum(len(v.runs) for v in stats)} searches of about {np.mean(steps):.0f} α steps "
           "each; the paper's CIFAR-10 searches take about 3,500. A claim not seen here is a "
           "result at this scale, not a verdict on the paper's.", ""] if steps else []
    pairs = [(v, by[dataclasses.replace(v.variant, activation="softmax")]) for v in stats
             if v.variant.activation == "crb" and v.sizes
             and by.get(dataclasses.replace(v.variant, activation="softmax")) is not None]
    for c, s in pairs:
        verdict = ("held" if max(c.sizes) < min(s.sizes) else
                   "not seen" if np.mean(c.sizes) >= np.mean(s.sizes) else
                   "not shown (smaller on average, but the seeds overlap)")
        out.append(f"- **crb reduces the final architecture's size** ({c.variant.schedule}/"
                   f"{c.variant.reg}): {verdict}. crb {_k(np.mean(c.sizes))} "
                   f"({_k(min(c.sizes))}–{_k(max(c.sizes))}) vs softmax "
                   f"{_k(np.mean(s.sizes))} ({_k(min(s.sizes))}–{_k(max(s.sizes))}) "
                   f"parameters; {c.mean('cheap_genes'):.1f} vs {s.mean('cheap_genes'):.1f} of "
                   "16 genes are a pool or skip.")
    plain = [v for v in stats if v.variant.reg == "none" and v.agreement is not None]
    for base in plain:
        regs = [by.get(dataclasses.replace(base.variant, reg=r)) for r in ("proximity", "admm")]
        regs = [r for r in regs if r is not None and r.agreement is not None]
        if not regs:
            continue
        better = [r for r in regs if r.agreement > base.agreement and r.agreement > r.random_p95]
        verdict = "held" if len(better) == len(regs) else (
            "partly" if better else "not seen")
        out.append(
            f"- **The regularisers make search results more reliable across seeds** "
            f"({base.variant.activation}/{base.variant.schedule}): {verdict}. Agreement "
            f"(mean pairwise Jaccard of the genes) none {base.agreement:.2f}, " + ", ".join(
                f"{r.variant.reg} {r.agreement:.2f}" for r in regs)
            + f"; random genotypes {base.random_mean:.2f} (95th percentile "
            f"{base.random_p95:.2f}).")
    accs = [v for v in stats if v.mean("accuracy") is not None]
    if accs:
        lo, hi = min(v.mean("accuracy") for v in accs), max(v.mean("accuracy") for v in accs)
        out.append(f"- **Performance stays comparable**: not tested here. The supernets' search "
                   f"accuracies are within {100 * (hi - lo):.1f} points of each other "
                   f"({100 * lo:.1f}–{100 * hi:.1f} %), but the found networks were not "
                   "trained, and accuracy on these digits saturates (a random genotype and "
                   "DARTS_V2 both reach over 99 %).")
    return out


def _header_options(runs: list[RunStats]) -> str:
    """The search options all runs share (a differing one lists its values)."""
    keys = ("dataset", "epochs", "channels", "layers", "steps", "batch_size", "max_examples",
            "image_size", "arch_lr", "threshold", "rho", "admm_every", "split")
    parts = []
    for key in keys:
        values = sorted({json.dumps(r.args.get(key)) for r in runs})
        parts.append(f"{key} {'/'.join(values)}" + (" (differs)" if len(values) > 1 else ""))
    return ", ".join(parts)


def report_text(stats: list[VariantStats], doc: str, command: str, missing: list[str]) -> str:
    """The Markdown report (the PNGs are ``<doc stem>_size.png`` and ``_alpha.png``)."""
    runs = [r for v in stats for r in v.runs]
    stem = os.path.splitext(os.path.basename(doc))[0]
    seeds = ", ".join(str(s) for s in sorted({r.seed for r in runs}))
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        "# Search study", "",
        f"Written by `{command}` on {now:%Y-%m-%d %H:%M} UTC; machine: "
        f"{platform.platform()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}.", "",
        f"{len(runs)} finished runs, seeds {seeds}"
        + (f"; not finished: {', '.join(missing)}" if missing else "") + ". Search options: "
        f"{_header_options(runs)}. Variants are activation-schedule-regulariser; fixed = an α "
        "step on every weight step (k=1), dynamic = the dynamic schedule (k=10).", "",
        f"Size: trainable parameters of the genotype's evaluation network at C={SIZE_CHANNELS}, "
        f"{SIZE_LAYERS} cells, the dataset's classes and image shape, auxiliary head excluded.",
        "", "## The paper's claims at this scale", "", *claims(stats),
        "", "## What this shows", "", " ".join(findings(stats)), "", "## Per variant", "",
        "| variant | seeds | agreement | random (mean / 95th pct) | parameters | min–max | std "
        "| pool/skip genes | pruned | separation | search acc. | α steps |",
        "|" + "---|" * 12]
    for v in stats:
        std = float(np.std(v.sizes, ddof=1)) if len(v.sizes) > 1 else None
        lines.append(
            f"| {v.variant.name} | {len(v.runs)} | {_f(v.agreement, '.2f')} | "
            f"{_f(v.random_mean, '.2f')} / {_f(v.random_p95, '.2f')} | "
            f"{_k(np.mean(v.sizes) if v.sizes else None)} | "
            f"{_k(min(v.sizes, default=None))}–{_k(max(v.sizes, default=None))} | {_k(std)} | "
            f"{v.mean('cheap_genes'):.1f} | {100 * v.mean('pruned_share'):.0f}% | "
            f"{v.mean('separation'):.3f} | {_f(v.mean('accuracy'))} | "
            f"{v.mean('alpha_steps'):.0f} |")
    lines += ["", "## Per run", "", "| variant | seed | parameters | pool/skip genes | pruned "
              "| separation | search acc. | α steps | genes changed | genotype |",
              "|" + "---|" * 10]
    for r in runs:
        lines.append(f"| {r.variant.name} | {r.seed} | {_k(r.parameters)} | {r.cheap_genes} | "
                     f"{r.pruned} ({100 * r.pruned_share:.0f}%) | {r.separation:.3f} | "
                     f"{_f(r.accuracy)} | {r.alpha_steps} | {r.genes_changed}/16 | "
                     f"{genotype_text(r.genotype)} |")
    lines += ["", f"![size per variant]({stem}_size.png)", "",
              f"![act(α) trajectories]({stem}_alpha.png)", "", "## Measures", "",
              "- agreement: mean Jaccard similarity |A∩B|/|A∪B| over all pairs of a variant's "
              "genotypes, genes being (cell, node, input, op); random: the same over "
              f"{RANDOM_GROUPS} groups of as many uniformly random valid genotypes (fixed rng).",
              "- pool/skip genes: kept genes whose op is a pool or skip_connect (of 16).",
              "- parameters: mean, min–max and sample standard deviation (n−1) over seeds.",
              "- pruned: ops masked by crb at the last epoch (count, share of all ops).",
              "- separation: for each kept gene, its act(α) minus the largest act(α) it beat on "
              "its node (other ops of its edge, any op of the node's dropped edges); mean.",
              "- α steps: α updates over the search; genes changed: final genes not in the "
              "discretisation of the initial α (of 16).",
              "- genotype: per cell (N normal, R reduction) the nodes 2-5 in order, each the sum "
              "of two ops with their input node in brackets (inputs 0, 1 are the previous "
              "cells); " + ", ".join(f"{v} = {k}" for k, v in SHORT.items()) + ".", ""]
    return "\n".join(lines)


def plot_sizes(stats: list[VariantStats], path: str) -> str:
    """Size per variant, the seeds as points and the mean as a bar."""
    from matplotlib.figure import Figure

    from kdarts.plots import _save

    fig = Figure(figsize=(max(6.0, 1.6 * len(stats) + 2.5), 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, v in enumerate(stats):
        if v.sizes:
            ax.bar(i, np.mean(v.sizes) / 1e3, color="#c6dbef", width=0.6)
            ax.scatter([i] * len(v.sizes), np.array(v.sizes) / 1e3, color="#08519c", zorder=3)
    ax.set_xticks(range(len(stats)), [v.variant.name for v in stats], rotation=20, ha="right")
    ax.set_ylabel("parameters (thousands)")
    ax.set_xlim(-0.7, len(stats) - 0.3)
    ax.set_ylim(bottom=0)  # bars from 0: differences are shown at their true proportion
    ax.set_title(f"Evaluation-network size (C={SIZE_CHANNELS}, {SIZE_LAYERS} cells, no auxiliary"
                 " head)\npoints: seeds, bars: mean", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def plot_trajectories(stats: list[VariantStats], path: str) -> str:
    """act(α) over the epochs for one run per activation, on one absolute 0..1 axis.

    Kept genes are coloured by op, every other (edge, op) is grey; the dotted line is
    the initial act(α).
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from kdarts.plots import ACT_RANGE, _color, _save

    chosen = {}
    order = list(CLAIMS)  # prefer the claims' main variant (crb/softmax, dynamic, proximity)
    for v in sorted(stats, key=lambda v: order.index(v.variant) if v.variant in order else 9):
        chosen.setdefault(v.variant.activation, v.runs[0])
    fig = Figure(figsize=(5.5 * len(chosen), 7), layout="constrained")
    axes = fig.subplots(2, len(chosen), squeeze=False, sharey=True)
    for col, run in enumerate(chosen.values()):
        with open(os.path.join(run.folder, "search_record.json"), encoding="utf-8") as f:
            epochs = sorted(json.load(f)["epochs"], key=lambda e: int(e["epoch"]))
        x = [int(e["epoch"]) for e in epochs]
        for row, cell in enumerate(("normal", "reduce")):
            ax, act = axes[row][col], np.array([e[f"alpha_{cell}"] for e in epochs])
            kept = {(k // 2, src): op for k, (op, src) in enumerate(getattr(run.genotype, cell))}
            rows = [(node, src) for node in range(run.genotype.steps) for src in range(node + 2)]
            for e, (node, src) in enumerate(rows):
                for j, op in enumerate(run.primitives):
                    hit = kept.get((node, src)) == op
                    ax.plot(x, act[:, e, j], color=_color(op) if hit else "0.75",
                            lw=1.8 if hit else 0.6, zorder=3 if hit else 1)
            ax.axhline(act[0].mean(), color="0.2", ls=":", lw=1.2)
            ax.set_ylim(*ACT_RANGE)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{run.variant.name} seed {run.seed}: {cell} cell", fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(True, alpha=0.3)
        ops = sorted({op for op, _ in run.genotype.normal + run.genotype.reduce})
        axes[0][col].legend(handles=[Line2D([], [], color="0.2", ls=":", label="initial act(α)")]
                            + [Line2D([], [], color=_color(op), lw=1.8, label=op) for op in ops],
                            loc="upper left", fontsize=8)
    axes[0][0].set_ylabel("act(α) (kept genes coloured)")
    return _save(fig, path)


def write_report(stats: list[VariantStats], doc: str, command: str,
                 missing: list[str] | None = None) -> str:
    """Write the PNGs, then the Markdown atomically (temp file + os.replace)."""
    base = os.path.splitext(doc)[0]
    os.makedirs(os.path.dirname(os.path.abspath(doc)), exist_ok=True)
    plot_sizes(stats, base + "_size.png")
    plot_trajectories(stats, base + "_alpha.png")
    atomic_write_text(doc, report_text(stats, doc, command, missing or []))
    return doc


# ------------------------------------------------------------------------------ runs


def run_folder(out: str, variant: Variant, seed: int) -> str:
    return os.path.join(out, variant.name, f"seed{seed}")


def is_complete(folder: str) -> bool:
    """A finished search writes genotype.json last (search_record.json every epoch)."""
    return all(os.path.exists(os.path.join(folder, n))
               for n in ("genotype.json", "search_record.json"))


def grid(args: argparse.Namespace) -> list[tuple[Variant, int]]:
    """The (variant, seed) pairs the flags (or ``--preset``) select, in a stable order."""
    def pick(text: str | None, allowed: tuple, what: str) -> list:
        chosen = [t.strip() for t in (text or ",".join(allowed)).split(",") if t.strip()]
        bad = [t for t in chosen if t not in allowed]
        if bad:
            raise SystemExit(f"Error: {what} {', '.join(bad)}: one of {', '.join(allowed)}")
        return chosen

    try:
        seeds = [int(s) for s in (args.seeds or "0,1,2").split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"Error: --seeds {args.seeds!r}: comma-separated integers") from None
    if args.preset == "claims":
        variants = list(CLAIMS)
    else:
        variants = [Variant(a, s, r) for a in pick(args.activation, ACTIVATIONS, "--activation")
                    for s in pick(args.schedule, SCHEDULES, "--schedule")
                    for r in pick(args.reg, REGS, "--reg")]
    return [(v, s) for v in variants for s in seeds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    report_arguments(parser, "study",
                     "the study folder: <out>/<activation>-<schedule>-<reg>/seed<N>",
                     "study.md", "search_run's messages and bars")
    parser.add_argument("--seeds", help="comma-separated (default 0,1,2)")
    parser.add_argument("--activation", help="crb,softmax (default both)")
    parser.add_argument("--reg", help="none,proximity,admm (default all)")
    parser.add_argument("--schedule", help="fixed,dynamic (default both)")
    parser.add_argument("--preset", choices=("claims",),
                        help="the paper's claims' variants (replaces the three flags above)")
    for name in PASS_THROUGH:
        kind = str if name == "dataset" else float if name in ("arch_lr", "threshold") else int
        parser.add_argument("--" + name.replace("_", "-"), type=kind,
                            help="passed to every search (default: the dataset's)")
    args = parser.parse_args(argv)
    command = command_line("study.py", argv)
    passed = {k: getattr(args, k) for k in PASS_THROUGH if getattr(args, k) is not None}
    pairs = grid(args)
    set_cpu_threads(1)  # as the kdarts command: the search's kernels are small
    try:
        for variant, seed in pairs if not args.report_only else ():
            folder = run_folder(args.out, variant, seed)
            options = {**passed, **variant.options(), "seed": seed}
            if is_complete(folder):
                check_search_folder(folder, **options)  # other options: RunError
                print(f"{variant.name} seed {seed}: skip (complete)", flush=True)
                continue
            t0 = time.perf_counter()
            result = search_run(folder, resume="auto", report=print if args.verbose else None,
                                progress=args.verbose, resume_hint=f"`{command}` again",
                                **options)
            state = "done" if result.complete else f"stopped at epoch {result.epochs_done}"
            print(f"{variant.name} seed {seed}: {state} in "
                  f"{(time.perf_counter() - t0) / 60:.1f} min", flush=True)
        finished = [(v, s) for v, s in pairs if is_complete(run_folder(args.out, v, s))]
        if not finished:
            raise RunError(f"no finished run of the selected grid under {args.out}")
        runs = [measure_run(run_folder(args.out, v, s), v, s) for v, s in finished]
    except (RunError, RunInterrupted) as err:
        return error_status(err)
    unfinished = [(v, s) for v, s in pairs if (v, s) not in finished]
    missing = [f"{v.name} (seeds {', '.join(str(s) for w, s in unfinished if w == v)})"
               for v in dict.fromkeys(v for v, _ in unfinished)]
    print(f"report → {write_report(summarize(runs), args.doc, command, missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
