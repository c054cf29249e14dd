"""Does the search beat random? Searched variants against random genotypes, trained alike.

A preset fixes one space's task: the search options every variant shares, one training
recipe and the seeds. Each searched variant runs once per seed:

- ``darts``: DARTS: softmax, an α step on every weight step, no regulariser;
- ``prime``: DARTS-PRIME: crb, the dynamic schedule, proximity (kdarts's default);
- ``admm``: crb, the dynamic schedule, ADMM.

Every found genotype is trained from scratch by the preset's recipe (with its search's
seed) and measured on the test split, and so are as many random valid genotypes as a
variant has seeds (``random``: genotype k drawn by ``default_rng([0, k])``, uniform over
the space's candidate ops, trained with the k-th seed) and the published cells DARTS_V1
and DARTS_V2 (fixed points, trained with every seed). Each run has its own folder::

    <out>/<preset>/search/<variant>/seed<N>
    <out>/<preset>/train/<group>/seed<N>      (group: a variant, random, darts_v1, darts_v2)

A finished run is reused (a folder holding other options is refused), an interrupted one
continues from its checkpoint, a failed one is reported and left out of the tables, which
read finished runs only. The report (``--doc``, default docs/study.md, PNGs next to it) is
rebuilt from every preset with finished runs under ``--out``.

    python tools/study.py --preset image        # runs/study, docs/study.md
    python tools/study.py --preset recurrent
    python tools/study.py --preset image --quick --out /tmp/s --doc /tmp/s/study.md
    python tools/study.py --report-only
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import sys
import time

import numpy as np

from kdarts.atomic import atomic_write_text
from kdarts.runs import RunError, RunInterrupted
from kdarts.runtime import set_cpu_threads

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from study_measures import (  # noqa: E402
    agreement, genotype_text, pruned_ops, random_agreement, random_of)
from study_runs import (  # noqa: E402
    command_line, invocations_text, is_complete, read_json, report_arguments, run_and_report)

#: The searched variants: search options on top of the preset's.
VARIANTS: dict[str, dict] = {
    "darts": dict(activation="softmax", schedule="fixed", every=1, reg="none"),
    "prime": dict(activation="crb", schedule="dynamic", reg="proximity"),
    "admm": dict(activation="crb", schedule="dynamic", reg="admm"),
}
LABELS = {"darts": "DARTS (softmax, α every step, no regulariser)",
          "prime": "DARTS-PRIME (crb, dynamic, proximity)",
          "admm": "crb, dynamic, ADMM", "random": "random valid genotypes",
          "darts_v1": "DARTS_V1 (published)", "darts_v2": "DARTS_V2 (published)"}
RANDOM = "random"
#: The published cells, trained with every seed of the preset.
FIXED = {"darts_v1": "DARTS_V1", "darts_v2": "DARTS_V2"}
GROUPS = (*VARIANTS, RANDOM, *FIXED)
#: The random genotypes' rng: genotype k is drawn by ``default_rng([RANDOM_SEED, k])``.
RANDOM_SEED = 0
#: Significance level of the verdicts.
ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class Space:
    """What differs between the spaces: the run functions and the test metric."""

    name: str
    metric: str
    label: str
    higher_is_better: bool
    percent: bool

    def search(self, folder: str, **kwargs):
        from kdarts.runs import recurrent_search_run, search_run

        return (recurrent_search_run if self.name == "recurrent" else search_run)(
            folder, **kwargs)

    def train(self, genotype, folder: str, **kwargs):
        from kdarts.runs import recurrent_train_run, train_run

        return (recurrent_train_run if self.name == "recurrent" else train_run)(
            genotype, folder, **kwargs)

    def genotype(self, spec):
        """A genotype of this space from a preset name, a dict (genotype.json's content)
        or a search folder."""
        if self.name == "recurrent":
            from kdarts.recurrent.genotype import PRESETS, RecurrentGenotype as cls
        else:
            from kdarts.image.genotype import PRESETS, Genotype as cls
        if isinstance(spec, dict):
            return cls.from_dict(spec)
        if isinstance(spec, str) and spec in PRESETS:
            return PRESETS[spec]
        return cls.load(os.path.join(spec, "genotype.json"))

    def shown(self, value: float) -> str:
        return f"{100 * value:.2f} %" if self.percent else f"{value:.1f}"

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b


SPACES = {"image": Space("image", "test_accuracy", "test accuracy (%)", True, True),
          "recurrent": Space("recurrent", "test_perplexity", "test perplexity", False, False)}


@dataclasses.dataclass(frozen=True)
class Preset:
    """One space's task: the search options all variants share, the training recipe and
    the seeds."""

    space: str
    search: dict
    train: dict
    seeds: tuple[int, ...]
    note: str


PRESETS = {
    # the product's default digits search (all 1,437 training digits); the found networks
    # trained on 200 of them, where architectures differ (docs/separation.md, digits-200)
    "image": Preset("image", search=dict(dataset="kdarts_digits"),
                    train=dict(dataset="kdarts_digits", channels=8, layers=5, epochs=30,
                               max_examples=200),
                    seeds=tuple(range(10)),
                    note="the default digits search; each genotype trained on 200 training "
                         "digits (C=8, 5 cells, 30 epochs), tested on the 360 test digits"),
    # the default search on the embedded corpus; each cell trained 15 epochs
    "recurrent": Preset("recurrent", search=dict(dataset="kdarts_text"),
                        train=dict(dataset="kdarts_text", epochs=15), seeds=tuple(range(10)),
                        note="the default search on the embedded corpus; each cell trained "
                             "15 epochs (64 units), tested on its test split"),
    # the tests' presets: one seed, tiny networks, one epoch
    "image-quick": Preset("image", search=dict(dataset="kdarts_digits", epochs=1, channels=4,
                                               layers=3, steps=2, batch_size=8,
                                               max_examples=128),
                          train=dict(dataset="kdarts_digits", channels=4, layers=3, epochs=1,
                                     batch_size=32, max_examples=64),
                          seeds=(0,), note="the tests' preset"),
    "recurrent-quick": Preset("recurrent", search=dict(dataset="kdarts_text", epochs=1,
                                                       units=8, bptt=5, max_tokens=4000),
                              train=dict(dataset="kdarts_text", epochs=1, units=8, bptt=5,
                                         max_tokens=4000),
                              seeds=(0,), note="the tests' preset"),
}


def search_folder(out: str, preset: str, variant: str, seed: int) -> str:
    return os.path.join(out, preset, "search", variant, f"seed{seed}")


def train_folder(out: str, preset: str, group: str, seed: int) -> str:
    return os.path.join(out, preset, "train", group, f"seed{seed}")


def random_genotypes(space: str, count: int) -> list:
    """Random genotype k for k < count (the same k in every preset of the space)."""
    return [random_of(space, np.random.default_rng([RANDOM_SEED, k])) for k in range(count)]


def check_args(folder: str, options: dict) -> None:
    """Refuse a finished run whose run.json holds other values of ``options``."""
    args = (read_json(os.path.join(folder, "run.json")) or {}).get("args", {})
    for key, value in options.items():
        if key in args and args[key] != value:
            raise RunError(f"{folder} holds a run with {key}={args[key]!r}, this preset's is "
                           f"{value!r}; give another --out or remove the folder")


# ------------------------------------------------------------------------------- runs


class Runner:
    """Runs a preset's searches and trainings in order, seed by seed (so a stopped study
    has complete seeds), skipping finished ones and collecting the failures."""

    def __init__(self, out: str, name: str, command: str, verbose: bool = False):
        self.out, self.name, self.preset = out, name, PRESETS[name]
        self.space = SPACES[self.preset.space]
        self.command, self.verbose = command, verbose
        self.failures: list[str] = []

    def _attempt(self, label: str, run) -> None:
        t0 = time.perf_counter()
        try:
            result = run()
        except RunInterrupted:
            raise
        except Exception as err:  # noqa: BLE001 - one failed run must not stop the rest
            line = f"{self.name} {label}: {type(err).__name__}: {err}".split("\n")[0]
            print(f"failed {line}", file=sys.stderr, flush=True)
            self.failures.append(line)
            return
        metrics = getattr(result, "metrics", None) or {}
        value = metrics.get(self.space.metric)
        done = (self.space.shown(value) if value is not None else
                "done" if getattr(result, "complete", True) else "not finished")
        print(f"{self.name} {label}: {done} in {time.perf_counter() - t0:.0f} s", flush=True)

    def _common(self) -> dict:
        return dict(resume="auto", report=print if self.verbose else None,
                    progress=self.verbose, resume_hint=f"`{self.command}` again")

    def search(self, variant: str, seed: int) -> str:
        folder = search_folder(self.out, self.name, variant, seed)
        options = {**self.preset.search, **VARIANTS[variant], "seed": seed}
        if is_complete(folder):
            check_args(folder, options)
        else:
            self._attempt(f"search {variant} seed {seed}",
                          lambda: self.space.search(folder, **self._common(), **options))
        return folder

    def train(self, group: str, genotype, seed: int) -> None:
        folder = train_folder(self.out, self.name, group, seed)
        options = {**self.preset.train, "seed": seed}
        if os.path.exists(os.path.join(folder, "metrics.json")):
            check_args(folder, options)
            return
        self._attempt(f"train {group} seed {seed}",
                      lambda: self.space.train(genotype, folder, **self._common(), **options))

    def run(self) -> list[str]:
        randoms = random_genotypes(self.preset.space, len(self.preset.seeds))
        for k, seed in enumerate(self.preset.seeds):
            for variant in VARIANTS:
                folder = self.search(variant, seed)
                if is_complete(folder):
                    self.train(variant, self.space.genotype(folder), seed)
            self.train(RANDOM, randoms[k], seed)
            for group, preset_name in FIXED.items():
                self.train(group, self.space.genotype(preset_name), seed)
        return self.failures


# ------------------------------------------------------------------------------ stats


def mean_ci(values: list[float]) -> tuple[float, float | None]:
    """The mean and the half-width of its 95 % t-interval (None for fewer than 2)."""
    from scipy import stats

    values = np.asarray(values, float)
    if len(values) < 2:
        return float(values.mean()), None
    sem = float(values.std(ddof=1)) / np.sqrt(len(values))
    return float(values.mean()), float(stats.t.ppf(0.975, len(values) - 1) * sem)


def compare(values: list[float], others: list[float], higher_is_better: bool) -> dict | None:
    """``values`` against ``others``: the difference of the means with its 95 % Welch
    interval (``diff``, ``ci``), the two-sided Mann–Whitney U p-value (``p``) and the share
    of pairs in which the first is better (``better``, ties count half). None unless both
    have 2 values or more."""
    from scipy import stats

    a, b = np.asarray(values, float), np.asarray(others, float)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    if se > 0:
        df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        half = float(stats.t.ppf(0.975, df) * se)
    else:
        half = 0.0
    u = stats.mannwhitneyu(a, b, alternative="two-sided")
    wins = sum((x > y) if higher_is_better else (x < y) for x in a for y in b)
    ties = sum(x == y for x in a for y in b)
    return {"diff": float(a.mean() - b.mean()), "ci": half, "p": float(u.pvalue),
            "better": (wins + ties / 2) / (len(a) * len(b))}


# ------------------------------------------------------------------------------ table


@dataclasses.dataclass
class Search:
    """One finished search: its genotype and what its record says."""

    seed: int
    folder: str
    genotype: object
    pruned_share: float
    alpha_steps: int


@dataclasses.dataclass
class Trained:
    """One finished training."""

    seed: int
    genotype: object
    value: float
    parameters: int


@dataclasses.dataclass
class Table:
    """A preset's finished runs, per group."""

    name: str
    preset: Preset
    searches: dict[str, list[Search]]
    trained: dict[str, list[Trained]]
    missing: list[str]
    invocations: list[dict]

    @property
    def space(self) -> Space:
        return SPACES[self.preset.space]

    def values(self, group: str) -> list[float]:
        return [t.value for t in self.trained.get(group, [])]


def read_search(folder: str, seed: int, space: Space) -> Search:
    record = read_json(os.path.join(folder, "search_record.json"))
    last = max(record["epochs"], key=lambda e: int(e["epoch"]))
    cells = record.get("cells") or ["normal", "reduce"]
    _, share = pruned_ops([last.get(f"mask_{c}", [[1.0]]) for c in cells])
    steps = (last.get("logs") or {}).get("alpha_steps")
    if steps is None:
        steps = sum(b.get("took_alpha_step") or 0 for b in record.get("batches", []))
    return Search(seed, folder, space.genotype(folder), share, int(round(steps)))


def collect(out: str, name: str) -> Table:
    """Everything finished of preset ``name`` under ``out``."""
    preset = PRESETS[name]
    space = SPACES[preset.space]
    searches: dict[str, list[Search]] = {}
    trained: dict[str, list[Trained]] = {}
    missing = []
    for variant in VARIANTS:
        for seed in preset.seeds:
            folder = search_folder(out, name, variant, seed)
            if is_complete(folder):
                searches.setdefault(variant, []).append(read_search(folder, seed, space))
            else:
                missing.append(f"search {variant} seed {seed}")
    for group in GROUPS:
        for seed in preset.seeds:
            folder = train_folder(out, name, group, seed)
            metrics = read_json(os.path.join(folder, "metrics.json"))
            if metrics is None:
                missing.append(f"training {group} seed {seed}")
                continue
            genotype = read_json(os.path.join(folder, "run.json"))["args"].get("genotype")
            trained.setdefault(group, []).append(Trained(
                seed, metrics.get("genotype", genotype), float(metrics[space.metric]),
                int(metrics["parameters"])))
    invocations = read_json(os.path.join(out, name, "invocations.json")) or []
    return Table(name, preset, searches, trained, missing, invocations)


# ----------------------------------------------------------------------------- report


def _num(space: Space, x: float | None, signed: bool = False) -> str:
    if x is None:
        return "–"
    scale, unit = (100, " pt") if space.percent else (1, "")
    text = f"{scale * x:+.2f}" if signed else f"{scale * x:.2f}"
    return text + (unit if signed else "")


def _interval(space: Space, mean: float, half: float | None) -> str:
    return _num(space, mean) + ("" if half is None else f" ± {_num(space, half)}")


def group_rows(table: Table) -> list[str]:
    """The per-group table: the metric with its interval, size, search measures and the
    comparison with random."""
    space = table.space
    random = table.values(RANDOM)
    unit = "%" if space.percent else "perplexity"
    lines = [f"| group | trained | {space.label.replace(' (%)', '')}: mean ± 95 % CI | sd | "
             f"parameters | pruned | agreement (random: mean / 95th pct) | α steps | "
             f"− random ({unit}), 95 % CI | MW p | P(better than random) |",
             "|" + "---|" * 11]
    for group in GROUPS:
        values = table.values(group)
        searches = table.searches.get(group, [])
        if not values and not searches:
            continue
        mean, half = mean_ci(values) if values else (None, None)
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
        params = [t.parameters for t in table.trained.get(group, [])]
        if searches:
            agree = agreement([s.genotype for s in searches])
            base = random_agreement(len(searches), space.name) if len(searches) > 1 else None
            search_cols = (f"{100 * np.mean([s.pruned_share for s in searches]):.0f} % | "
                           + ("–" if agree is None else
                              f"{agree:.2f} ({base[0]:.2f} / {base[1]:.2f})")
                           + f" | {np.mean([s.alpha_steps for s in searches]):.0f}")
        else:
            search_cols = "– | – | –"
        cmp = compare(values, random, space.higher_is_better) if group != RANDOM else None
        cmp_cols = ("– | – | –" if cmp is None else
                    f"{_num(space, cmp['diff'], True)} ± {_num(space, cmp['ci'])} | "
                    f"{cmp['p']:.3f} | {cmp['better']:.2f}")
        lines.append(
            f"| {LABELS[group]} | {len(values)} | "
            + ("–" if mean is None else _interval(space, mean, half))
            + f" | {_num(space, sd)} | "
            + (f"{np.mean(params) / 1e3:.1f}k" if params else "–")
            + f" | {search_cols} | {cmp_cols} |")
    return lines


def claims(table: Table) -> list[str]:
    """One verdict per claim of the paper, each with the numbers behind it."""
    space = table.space
    out = []
    darts = table.trained.get("darts", [])
    crb = [g for g in ("prime", "admm") if table.trained.get(g)]
    sizes = {g: [t.parameters for t in table.trained.get(g, [])] for g in VARIANTS}
    if darts and crb:
        if len({p for g in VARIANTS for p in sizes[g]}) == 1:
            out.append(f"- **crb gives smaller architectures**: cannot show here: every "
                       f"{space.name} genotype has the same size "
                       f"({sizes['darts'][0]:,} parameters; a recurrent node's weights do not "
                       "depend on its op). Pruned share: " + ", ".join(
                           f"{g} {100 * np.mean([s.pruned_share for s in table.searches[g]]):.0f} %"
                           for g in VARIANTS if table.searches.get(g)) + ".")
        else:
            parts, smaller = [], []
            for g in crb:
                test = compare(sizes[g], sizes["darts"], higher_is_better=False)
                is_smaller = np.mean(sizes[g]) < np.mean(sizes["darts"])
                significant = test is not None and test["p"] < ALPHA
                smaller.append(is_smaller and significant)
                parts.append(f"{g} {np.mean(sizes[g]) / 1e3:.1f}k "
                             f"({min(sizes[g]) / 1e3:.1f}–{max(sizes[g]) / 1e3:.1f}k"
                             + (f", MW p {test['p']:.3f}" if test else "") + ")")
            smaller_mean = [np.mean(sizes[g]) < np.mean(sizes["darts"]) for g in crb]
            verdict = ("held" if all(smaller) else
                       "partly (" + ", ".join(g for g, k in zip(crb, smaller) if k)
                       + f" smaller beyond the seed spread, at p < {ALPHA})" if any(smaller)
                       else "not shown (smaller on average, within the seed spread)"
                       if any(smaller_mean) else "not seen")
            out.append(f"- **crb gives smaller architectures** (trained network's "
                       f"parameters): {verdict}. DARTS {np.mean(sizes['darts']) / 1e3:.1f}k "
                       f"({min(sizes['darts']) / 1e3:.1f}–{max(sizes['darts']) / 1e3:.1f}k) "
                       f"against " + ", ".join(parts) + ".")
    searched = {g: table.searches.get(g, []) for g in VARIANTS}
    if len(searched["darts"]) > 1 and any(len(searched[g]) > 1 for g in ("prime", "admm")):
        agree = {g: agreement([s.genotype for s in searched[g]]) for g in VARIANTS
                 if len(searched[g]) > 1}
        base = random_agreement(len(searched["darts"]), space.name)
        regs = [g for g in ("prime", "admm") if g in agree]
        better = [g for g in regs if agree[g] > agree["darts"] and agree[g] > base[1]]
        verdict = "held" if len(better) == len(regs) else "partly" if better else "not seen"
        spread = {g: np.std(table.values(g), ddof=1) for g in VARIANTS
                  if len(table.values(g)) > 1}
        out.append(
            f"- **The regularisers make results more reliable across seeds**: {verdict}. "
            f"Agreement of the genotypes across seeds (mean pairwise Jaccard of the genes): "
            f"DARTS (no regulariser) {agree['darts']:.2f}, " + ", ".join(
                f"{g} {agree[g]:.2f}" for g in regs)
            + f"; random genotypes {base[0]:.2f} (95th percentile {base[1]:.2f}). "
            + ("Seed-to-seed sd of the trained " + space.label.split(" (")[0] + ": "
               + ", ".join(f"{g} {_num(space, s)}{' pt' if space.percent else ''}"
                           for g, s in spread.items()) + "."
               if spread else ""))
    if len(table.values("darts")) > 1 and len(table.values("prime")) > 1:
        test = compare(table.values("prime"), table.values("darts"), space.higher_is_better)
        improved = space.better(test["diff"], 0.0)
        verdict = ("held" if improved and test["p"] < ALPHA else
                   "not shown (better on average, within the seed spread)" if improved else
                   "not seen (worse on average)" if test["diff"] != 0 else "not seen")
        out.append(f"- **DARTS-PRIME improves {space.label.split(' (')[0]} over DARTS**: "
                   f"{verdict}. DARTS-PRIME − DARTS = {_num(space, test['diff'], True)} "
                   f"± {_num(space, test['ci'])} (95 % CI), Mann–Whitney p {test['p']:.3f}.")
    if out:
        out.append("- The variants are the issue's three, so DARTS differs from DARTS-PRIME "
                   "in activation, schedule and regulariser at once: a difference between "
                   "them is the method's, not one part's.")
    return out


def beats_random(table: Table) -> tuple[str, list[str]]:
    """The answer for this preset (one word) and a sentence per searched variant."""
    space = table.space
    lines, wins, losses = [], 0, 0
    for group in (*VARIANTS, *FIXED):
        test = compare(table.values(group), table.values(RANDOM), space.higher_is_better)
        if test is None:
            continue
        better = space.better(test["diff"], 0.0)
        significant = test["p"] < ALPHA
        if group in VARIANTS:
            wins += better and significant
            losses += (not better) and significant
        state = ("better than random" if better and significant else
                 "worse than random" if significant else "not distinguishable from random")
        lines.append(f"- {LABELS[group]}: {state}: {_num(space, test['diff'], True)} "
                     f"± {_num(space, test['ci'])} (95 % CI of the difference of means), "
                     f"Mann–Whitney p {test['p']:.3f}, better than a random genotype in "
                     f"{100 * test['better']:.0f} % of pairs.")
    answer = ("not tested (fewer than 2 genotypes in a group)" if not lines else
              "yes" if wins and not losses else "no" if not wins else "mixed")
    return answer, lines


def noise_line(table: Table) -> list[str]:
    """How far genotypes differ beyond training noise: the published cells' spread over
    seeds (one genotype each) against the random genotypes' spread, and DARTS_V1 against
    DARTS_V2."""
    space = table.space
    unit = " pt" if space.percent else ""
    spread = {g: np.std(table.values(g), ddof=1) for g in (*FIXED, RANDOM)
              if len(table.values(g)) > 1}
    test = compare(table.values("darts_v1"), table.values("darts_v2"), space.higher_is_better)
    if not spread:
        return []
    text = ("Seed against genotype: the sd over seeds of one genotype (training noise alone) "
            + ", ".join(f"{g} {_num(space, s)}{unit}" for g, s in spread.items()
                        if g != RANDOM)
            + (f"; over the random genotypes (genotype and training) "
               f"{_num(space, spread[RANDOM])}{unit}" if RANDOM in spread else "") + ".")
    if test is not None:
        text += (f" DARTS_V1 − DARTS_V2 = {_num(space, test['diff'], True)} ± "
                 f"{_num(space, test['ci'])}, Mann–Whitney p {test['p']:.3f}.")
    return [text, ""]


def section(table: Table, pngs: tuple[str, str]) -> list[str]:
    space, preset = table.space, table.preset
    answer, lines = beats_random(table)
    search = ", ".join(f"{k} {v}" for k, v in preset.search.items())
    train = ", ".join(f"{k} {v}" for k, v in preset.train.items())
    out = [f"## {table.name}", "",
           f"Task: {preset.note}. Search options shared by the variants: {search}; the rest "
           f"`kdarts search`'s defaults. Training recipe: {train}; the rest `kdarts train`'s "
           f"defaults. Seeds {', '.join(map(str, preset.seeds))}."
           + (f" Not finished: {', '.join(table.missing)}." if table.missing else ""),
           "", f"Runs: {invocations_text(table.invocations)}.", "",
           f"**Does the search beat random here? {answer[0].upper() + answer[1:]}.**", "",
           *lines, "", *noise_line(table),
           *group_rows(table), "", "### The paper's claims", "", *claims(table), "",
           f"![{space.label} per group]({pngs[0]})", "",
           f"![act(α) over the search]({pngs[1]})", "",
           "### Per genotype", "", f"| group | seed | {space.label} | parameters | genotype |",
           "|---|---|---|---|---|"]
    for group in GROUPS:
        for t in table.trained.get(group, []):
            genotype = t.genotype
            text = genotype_text(space.genotype(genotype)) if genotype else "–"
            out.append(f"| {group} | {t.seed} | {_num(space, t.value)} | {t.parameters:,} | "
                       f"{text} |")
    return out + [""]


def machine_text() -> str:
    """The CPU (model, cores, AVX-512 or not) and the OS, for the report's header."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read()
        model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                      if line.startswith("model name")), model)
        flags = ", AVX-512" if "avx512f" in info else ", AVX2 without AVX-512" \
            if "avx2" in info else ""
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs{flags}, {platform.system()} {platform.release()}"


def report_text(tables: list[Table], command: str, pngs: dict) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        "# Does the search beat random?", "",
        f"Written by `{command}` on {now:%Y-%m-%d %H:%M} UTC; machine: {machine_text()}, "
        f"Python {platform.python_version()}. Every number below is "
        "regenerated by `python tools/study.py --preset NAME` (runs reused) or "
        "`python tools/study.py --report-only`.", "",
        "Each searched variant searches once per seed; every found genotype is trained from "
        "scratch with one recipe (its search's seed) and tested on the test split, as are "
        "as many random valid genotypes (uniform over the candidate ops and inputs) and the "
        "published DARTS_V1 and DARTS_V2 cells (each trained with every seed). 95 % "
        "intervals are t-intervals of the mean over genotypes; a variant is compared with "
        "random by the difference of the means (Welch's 95 % interval) and a two-sided "
        "Mann–Whitney U test, at the 0.05 level. Whether genotypes differ at all on the "
        "image task (they do on 200 training digits, beyond the seeds' spread): "
        "[separation.md](separation.md).", "",
        "| preset | the search beats random | best searched variant | its mean − random "
        "(95 % CI) | Mann–Whitney p |", "|---|---|---|---|---|"]
    for t in tables:
        answer, _ = beats_random(t)
        scored = [(g, np.mean(t.values(g))) for g in VARIANTS if t.values(g)]
        if scored and t.values(RANDOM):
            best = (max if t.space.higher_is_better else min)(scored, key=lambda x: x[1])[0]
            test = compare(t.values(best), t.values(RANDOM), t.space.higher_is_better)
            if test is None:
                lines.append(f"| {t.name} | {answer} | {LABELS[best]} | – | – |")
                continue
            lines.append(f"| {t.name} | {answer} | {LABELS[best]} | "
                         f"{_num(t.space, test['diff'], True)} ± {_num(t.space, test['ci'])} "
                         f"({t.space.label.split(' (')[0]}; "
                         f"{'higher' if t.space.higher_is_better else 'lower'} is better) | "
                         f"{test['p']:.3f} |")
    lines.append("")
    for t in tables:
        lines += section(t, pngs[t.name])
    lines += ["## Measures", "",
              "- pruned: share of the candidate ops crb masked by the last epoch (softmax "
              "masks none).",
              "- agreement: mean Jaccard similarity |A∩B|/|A∪B| over all pairs of a "
              "variant's genotypes, a gene being (cell, node, input, op); random: the same "
              "over 2,000 groups of as many random valid genotypes (fixed rng).",
              "- α steps: α updates over the search (mean over seeds).",
              "- P(better than random): the share of (genotype, random genotype) pairs in "
              "which the genotype scores better (ties count half).",
              "- parameters: the trained network's.", ""]
    return "\n".join(lines)


def plot_groups(table: Table, path: str) -> str:
    """The metric per group: each genotype a point, the mean a bar with its 95 % interval;
    random's range as a band across the plot."""
    from matplotlib.figure import Figure

    from kdarts.plots import _save

    space = table.space
    scale = 100 if space.percent else 1
    groups = [g for g in GROUPS if table.values(g)]
    fig = Figure(figsize=(max(5.0, 1.1 * len(groups) + 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    random = np.array(table.values(RANDOM)) * scale
    if len(random):
        ax.axhspan(random.min(), random.max(), color="#fdd0a2", alpha=0.5, zorder=0,
                   label="random: range")
        ax.axhline(random.mean(), color="#e6550d", lw=1, ls="--", label="random: mean")
    for i, group in enumerate(groups):
        values = np.array(table.values(group)) * scale
        color = "#e6550d" if group == RANDOM else "#08519c" if group in VARIANTS else "0.35"
        offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
        ax.scatter(i + np.asarray(offsets), values, color=color, zorder=3, s=22)
        mean, half = mean_ci(list(values))
        ax.hlines(mean, i - 0.3, i + 0.3, color=color, lw=2)
        if half is not None:
            ax.errorbar(i + 0.34, mean, yerr=half, color=color, capsize=3, lw=1)
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")
    ax.set_ylabel(space.label)
    ax.set_title(f"{table.name}: each genotype a point, the mean a bar with its 95 % interval",
                 fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    if len(random):
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_trajectories(table: Table, path: str) -> str:
    """act(α) over the epochs of each variant's first seed, one column per variant, one
    row per cell, on one 0..1 axis; kept genes coloured by op, the rest grey."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from kdarts.plots import ACT_RANGE, _color, _save

    runs = {g: s[0] for g, s in table.searches.items() if s}
    records = {g: read_json(os.path.join(r.folder, "search_record.json"))
               for g, r in runs.items()}
    first = next(iter(records.values()), {})
    cells = first.get("cells") or (["normal", "reduce"] if records else [])
    fig = Figure(figsize=(4.8 * max(1, len(runs)), 3.4 * max(1, len(cells))),
                 layout="constrained")
    axes = fig.subplots(max(1, len(cells)), max(1, len(runs)), squeeze=False, sharey=True)
    for col, (group, run) in enumerate(runs.items()):
        record = records[group]
        epochs = sorted(record["epochs"], key=lambda e: int(e["epoch"]))
        x = [int(e["epoch"]) for e in epochs]
        inputs, keep = int(record.get("inputs", 2)), int(record.get("keep", 2))
        primitives = list(record["primitives"])
        for row, cell in enumerate(cells):
            ax, act = axes[row][col], np.array([e[f"alpha_{cell}"] for e in epochs])
            genes = (run.genotype.recurrent if cell == "recurrent"
                     else getattr(run.genotype, cell))
            kept = {(k // keep, int(src)): op for k, (op, src) in enumerate(genes)}
            rows = [(node, src) for node in range(len(genes) // keep)
                    for src in range(node + inputs)]
            for e, key in enumerate(rows):
                for j, op in enumerate(primitives):
                    hit = kept.get(key) == op
                    ax.plot(x, act[:, e, j], color=_color(op, primitives) if hit else "0.75",
                            lw=1.8 if hit else 0.6, zorder=3 if hit else 1)
            ax.set_ylim(*ACT_RANGE)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{group} seed {run.seed}: {cell}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(True, alpha=0.3)
            ax.legend(handles=[Line2D([], [], color=_color(op, primitives), lw=1.8, label=op)
                               for op in sorted({op for op, _ in genes})],
                      loc="upper left", fontsize=8)
    axes[0][0].set_ylabel("act(α) (kept genes coloured)")
    return _save(fig, path)


def write_report(out: str, doc: str, command: str) -> str:
    """The doc and two PNGs per preset with finished runs, from the runs under ``out``."""
    tables = [collect(out, name) for name in PRESETS if os.path.isdir(os.path.join(out, name))]
    tables = [t for t in tables if t.trained or t.searches]
    if not tables:
        raise RunError(f"no finished run under {out}")
    base, stem = os.path.splitext(doc)[0], os.path.splitext(os.path.basename(doc))[0]
    os.makedirs(os.path.dirname(os.path.abspath(doc)), exist_ok=True)
    pngs = {}
    for t in tables:
        plot_groups(t, f"{base}-{t.name}.png")
        if t.searches:
            plot_trajectories(t, f"{base}-{t.name}-alpha.png")
        pngs[t.name] = (f"{stem}-{t.name}.png", f"{stem}-{t.name}-alpha.png")
    atomic_write_text(doc, report_text(tables, command, pngs))
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", action="append", choices=("image", "recurrent"),
                        help="the space's study to run (repeatable)")
    parser.add_argument("--quick", action="store_true",
                        help="the preset's tiny version (one seed, one epoch): for tests")
    report_arguments(parser, "study", "the runs: <out>/<preset>/{search,train}/...",
                     "study.md", "the runs' messages and bars")
    args = parser.parse_args(argv)
    names = [f"{p}-quick" if args.quick else p for p in args.preset or []]
    if not names and not args.report_only:
        parser.error("give --preset image or --preset recurrent (or --report-only)")
    command = command_line("study.py", argv)
    set_cpu_threads(1)  # as the kdarts command: the networks' kernels are small
    return run_and_report(
        names if not args.report_only else [], args.out, command,
        lambda name: Runner(args.out, name, command, args.verbose).run(),
        lambda: write_report(args.out, args.doc, command))


if __name__ == "__main__":
    sys.exit(main())
