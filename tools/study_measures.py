"""What the study tools measure on genotypes and search records, in both spaces: gene sets
and their agreement across seeds, random valid genotypes (and the agreement of random
groups, the baseline a search's agreement is read against), crb's pruned share and a
genotype in one line.

A gene is what a genotype keeps: ``(cell, node, input, op)`` in the image space (nodes
numbered 2, 3, ...; inputs 0 and 1 are the previous cells), ``("recurrent", node, input,
op)`` in the recurrent space (nodes 1..8; input 0 is the cell's input state).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

from kdarts.image.genotype import CRB_PRIMITIVES, Genotype
from kdarts.recurrent.genotype import CRB_RECURRENT_PRIMITIVES, STEPS, RecurrentGenotype

#: Random genotype groups drawn for the agreement baseline (fixed rng: reports are stable).
RANDOM_GROUPS, RANDOM_SEED = 2000, 0


def gene_set(genotype: Genotype | RecurrentGenotype) -> frozenset[tuple[str, int, int, str]]:
    """The genotype's genes (see the module's docstring)."""
    if isinstance(genotype, RecurrentGenotype):
        return frozenset(("recurrent", k + 1, int(src), op)
                         for k, (op, src) in enumerate(genotype.recurrent))
    return frozenset((cell, k // 2 + 2, int(src), op) for cell in ("normal", "reduce")
                     for k, (op, src) in enumerate(getattr(genotype, cell)))


#: Short op names for the reports' genotype columns.
SHORT = {"sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "dil_conv_3x3": "dil3",
         "dil_conv_5x5": "dil5", "max_pool_3x3": "max", "avg_pool_3x3": "avg",
         "skip_connect": "skip", "none": "none", "identity": "id", "sigmoid": "sigm"}


def genotype_text(genotype: Genotype | RecurrentGenotype) -> str:
    """The genotype in one line, node by node: ``N: sep3(0)+skip(1) ... / R: ...`` (image)
    or ``sigm(0) relu(1) ...`` (recurrent: each node's op and its input state)."""
    if isinstance(genotype, RecurrentGenotype):
        return " ".join(f"{SHORT.get(op, op)}({src})" for op, src in genotype.recurrent)

    def cell(genes) -> str:
        return " ".join("+".join(f"{SHORT.get(op, op)}({src})" for op, src in genes[i:i + 2])
                        for i in range(0, len(genes), 2))
    return f"N: {cell(genotype.normal)} / R: {cell(genotype.reduce)}"


def jaccard(a: frozenset, b: frozenset) -> float:
    """|a ∩ b| / |a ∪ b| (1 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def agreement(genotypes: list) -> float | None:
    """Mean pairwise Jaccard similarity of the genotypes' gene sets; None for fewer than 2."""
    sets = [gene_set(g) for g in genotypes]
    pairs = [jaccard(a, b) for a, b in itertools.combinations(sets, 2)]
    return float(np.mean(pairs)) if pairs else None


def random_genotype(rng: np.random.Generator, ops: tuple[str, ...] = CRB_PRIMITIVES,
                    steps: int = 4) -> Genotype:
    """A uniformly random valid image genotype: per node 2 distinct earlier inputs, an op
    each (uniform over ``ops``)."""
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


def random_recurrent_genotype(rng: np.random.Generator,
                              ops: tuple[str, ...] = CRB_RECURRENT_PRIMITIVES,
                              steps: int = STEPS) -> RecurrentGenotype:
    """A uniformly random valid recurrent genotype: node ``k`` (1-based) takes one of the
    states ``0..k-1`` and an op (uniform over ``ops``); the output averages every node."""
    u = rng.random(steps)
    picks = rng.integers(len(ops), size=steps)
    return RecurrentGenotype(recurrent=[(ops[picks[k]], int(u[k] * (k + 1)))
                                        for k in range(steps)])


def random_of(space: str, rng: np.random.Generator, ops: tuple[str, ...] | None = None):
    """A random valid genotype of ``space`` ("image" or "recurrent"), over ``ops`` (default:
    the space's candidate ops without ``none``)."""
    if space == "recurrent":
        return random_recurrent_genotype(rng, *([ops] if ops else []))
    return random_genotype(rng, *([ops] if ops else []))


@lru_cache(maxsize=None)
def random_agreement(n: int, space: str = "image", ops: tuple[str, ...] | None = None,
                     groups: int = RANDOM_GROUPS,
                     seed: int = RANDOM_SEED) -> tuple[float, float]:
    """``(mean, 95th percentile)`` of :func:`agreement` over groups of ``n`` random genotypes.

    The percentile is what a variant's agreement over ``n`` seeds must exceed to be
    unlikely (5 %) for searches that pick genes at random.
    """
    rng = np.random.default_rng(seed)
    values = [agreement([random_of(space, rng, ops) for _ in range(n)]) for _ in range(groups)]
    return float(np.mean(values)), float(np.percentile(values, 95))


def pruned_ops(masks: list) -> tuple[int, float]:
    """``(pruned count, share of all ops)`` from crb's 0/1 masks (softmax: all ones)."""
    total = sum(np.asarray(m).size for m in masks)
    count = int(round(sum(float((1 - np.asarray(m, float)).sum()) for m in masks)))
    return count, count / total if total else 0.0
