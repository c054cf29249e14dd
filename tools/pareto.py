"""Search under a budget, checked: do budgets hold, and what accuracy does a budget buy?

Steps (every run in its own folder under ``--out``; a finished run is reused, an
interrupted one continues, and the report only reads finished runs):

1. **Reference.** One unconstrained search (the preset's options, seed 0) → its genotype's
   evaluation network (``kdarts train``'s channels and layers) costs P parameters and M
   multiply-adds, counted on the built network.
2. **Budgets hold.** For parameter and multiply-add budgets at each fraction of P (M) and
   each seed, the same search with that budget; every found genotype's evaluation network
   is built and counted. A budget below the cheapest genotype is not run: the report
   gives the refusal line instead.
3. **Accuracy at the same budget** (parameter budgets): one training recipe for the
   budgeted searches' genotypes, as many random genotypes drawn uniformly and rejected
   until within the budget, and the reference genotype pruned afterwards
   (:func:`prune_to_budget`); test accuracy and batch-1 LiteRT latency of each.

Then ``--doc`` (default docs/budget.md) and a PNG next to it are rebuilt from the runs.

    python tools/pareto.py                       # the study (runs/pareto, docs/budget.md)
    python tools/pareto.py --train-epochs 5      # a shorter training recipe for all
    python tools/pareto.py --quick --out /tmp/p --doc /tmp/p/budget.md   # tiny, end to end
    python tools/pareto.py --report-only
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

from kdarts.atomic import atomic_write_json, atomic_write_text
from kdarts.budget import BudgetError, format_amount
from kdarts.image.budget import Budget
from kdarts.image.genotype import Genotype, edge_index
from kdarts.runs import RunError, RunInterrupted, TRAIN_DEFAULTS, check_search_folder, \
    search_run, train_run
from kdarts.runtime import set_cpu_threads

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from study_measures import genotype_text, random_genotype  # noqa: E402
from study_runs import (  # noqa: E402
    command_line, error_status, invocations_text, is_complete, log_invocation, read_json,
    report_arguments)

#: The budgets' kinds, each with its search option.
KINDS = {"params": "max_params", "madds": "max_madds"}
#: How the accuracy comparison obtains a genotype within a budget.
METHODS = ("budgeted", "random", "pruned")
#: Random genotypes are drawn until one fits, at most this many times per genotype.
MAX_DRAWS = 200_000
LATENCY_RUNTIME = "litert"


@dataclasses.dataclass(frozen=True)
class Preset:
    """Everything a study's runs depend on, but the training epochs."""

    search: dict
    train: dict
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    latency_repeats: int = 3000
    latency_warmup: int = 100

    @property
    def eval_size(self) -> tuple[int, int]:
        """(channels, layers) of the evaluation network: the training's."""
        return (int(self.train.get("channels", TRAIN_DEFAULTS["channels"])),
                int(self.train.get("layers", TRAIN_DEFAULTS["layers"])))


PRESETS = {
    # kdarts search's and kdarts train's defaults on the digits
    "default": Preset(search={}, train={}, fractions=(0.4, 0.6, 0.8), seeds=(0, 1, 2)),
    # a tiny end-to-end check: runs in well under a minute
    "quick": Preset(
        search=dict(channels=4, layers=3, steps=2, batch_size=8, max_examples=96, epochs=1,
                    every=2, primitives="max_pool_3x3,skip_connect,sep_conv_3x3"),
        train=dict(channels=4, layers=3, epochs=1, batch_size=32, max_examples=320),
        fractions=(0.8,), seeds=(0,), latency_repeats=50, latency_warmup=5),
}


# --------------------------------------------------------------------------- measures


@dataclasses.dataclass(frozen=True)
class Geometry:
    """The evaluation network every genotype is priced, trained and timed as."""

    num_classes: int
    image_shape: tuple[int, ...]
    channels: int
    layers: int

    def network(self, genotype: Genotype):
        """The genotype's built evaluation network, without the auxiliary head."""
        from kdarts.image import EvalNetwork

        model = EvalNetwork(genotype, self.num_classes, channels=self.channels,
                            layers=self.layers, auxiliary=False)
        model.build((None, *self.image_shape))
        return model

    def count(self, genotype: Genotype) -> dict:
        """``{"params", "madds"}`` of the built network (not the cost tables)."""
        from kdarts.image.costs import network_madds

        model = self.network(genotype)
        return {"params": int(model.parameter_count()), "madds": int(network_madds(model))}


def cached_count(folder: str, genotype: Genotype, geometry: Geometry) -> dict:
    """:meth:`Geometry.count`, kept in ``folder/measured.json`` for the next report."""
    path = os.path.join(folder, "measured.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("genotype") == genotype.to_dict():
            return data["count"]
    count = geometry.count(genotype)
    os.makedirs(folder, exist_ok=True)
    atomic_write_json(path, {"genotype": genotype.to_dict(), "count": count})
    return count


def draw_within(table, limit: float, ops: tuple[str, ...], steps: int, seed: int,
                max_draws: int = MAX_DRAWS) -> tuple[Genotype | None, int]:
    """A uniformly random valid genotype whose cost is at most ``limit`` (rejection
    sampling, rng seeded with ``seed``), and how many draws it took (None: none fit)."""
    rng = np.random.default_rng(seed)
    for draw in range(1, max_draws + 1):
        genotype = random_genotype(rng, ops, steps)
        if table.of(genotype) <= limit:
            return genotype, draw
    return None, max_draws


def prune_to_budget(genotype: Genotype, act: dict[str, np.ndarray], table,
                    limit: float) -> tuple[Genotype | None, list[str]]:
    """The genotype with ops replaced until its cost is at most ``limit``.

    Greedy: while over the limit, among the kept genes whose op is not its edge's cheapest,
    replace the one whose replacement by that edge's cheapest op saves the most cost per
    unit of activation lost (act of the kept op minus act of the cheapest on the same
    edge; a replacement losing no activation goes first, by its saving). Edges and inputs
    stay as they are. Ties: the first gene in genotype order (normal, then reduce).

    Returns:
        The pruned genotype (None if even the cheapest ops on its edges exceed ``limit``)
        and one line per replacement.
    """
    prims = list(table.primitives)
    cells = {"normal": list(genotype.normal), "reduce": list(genotype.reduce)}
    log: list[str] = []

    def current() -> Genotype:
        return Genotype(cells["normal"], genotype.normal_concat, cells["reduce"],
                        genotype.reduce_concat)

    while table.of(current()) > limit:
        best = None
        for t in ("normal", "reduce"):
            for k, (op, src) in enumerate(cells[t]):
                row = edge_index(k // 2, src)
                costs = table.per_op[t][row]
                cheap = min(range(len(prims)), key=lambda j: (costs[j], j))
                saving = float(costs[prims.index(op)] - costs[cheap])
                if saving <= 0:
                    continue
                lost = float(act[t][row, prims.index(op)] - act[t][row, cheap])
                score = (1, saving) if lost <= 0 else (0, saving / lost)
                if best is None or score > best[0]:
                    best = (score, t, k, prims[cheap], lost, saving)
        if best is None:
            return None, log
        _, t, k, cheap, lost, saving = best
        op, src = cells[t][k]
        cells[t][k] = (cheap, src)
        log.append(f"{t} node {k // 2 + 2}: {op}({src}) → {cheap}({src}), saves "
                   f"{saving:.0f}, loses act {lost:.3f}")
    return current(), log


# ------------------------------------------------------------------------------- runs


def pct(fraction: float) -> str:
    return f"{round(100 * fraction)}"


def search_folder(out: str, kind: str | None, fraction: float | None, seed: int) -> str:
    if kind is None:
        return os.path.join(out, "reference", "search")
    return os.path.join(out, f"{kind}-{pct(fraction)}", f"seed{seed}", "search")


def entry_folder(out: str, method: str, fraction: float, seed: int | None) -> str:
    """A trained genotype's folder: genotype.json, measured.json, train/, latency.json."""
    name = f"{method}-params-{pct(fraction)}" + ("" if seed is None else f"-seed{seed}")
    return os.path.join(out, "train", name)


class Study:
    """The runs of one preset under ``out``; each method returns when its run is done."""

    def __init__(self, out: str, preset: Preset, train_epochs: int | None, command: str,
                 verbose: bool = False):
        self.out, self.preset, self.command, self.verbose = out, preset, command, verbose
        self.train_options = {**preset.train, "seed": 0,
                              **({"epochs": train_epochs} if train_epochs else {})}
        self.geometry: Geometry | None = None
        self.tables: dict | None = None
        self.reference: dict | None = None

    def log(self, text: str) -> None:
        print(text, flush=True)

    def search(self, folder: str, **budget) -> bool:
        """Run (or reuse) one search; True once it is finished."""
        channels, layers = self.preset.eval_size
        options = {**self.preset.search, "seed": budget.pop("seed"), **budget,
                   **({"eval_channels": channels, "eval_layers": layers} if budget else {})}
        if is_complete(folder):
            check_search_folder(folder, **options)
            return True
        t0 = time.perf_counter()
        result = search_run(folder, resume="auto", report=self.log if self.verbose else None,
                            progress=self.verbose, resume_hint=f"`{self.command}` again",
                            **options)
        self.log(f"search {os.path.relpath(folder, self.out)}: "
                 f"{'done' if result.complete else 'stopped'} in "
                 f"{(time.perf_counter() - t0) / 60:.1f} min")
        return bool(result.complete)

    def load_reference(self) -> None:
        """Search the reference and price the evaluation network from it."""
        from kdarts.image.costs import cost_tables

        folder = search_folder(self.out, None, None, 0)
        if not self.search(folder, seed=0):
            raise RunError("the reference search did not finish")
        with open(os.path.join(folder, "run.json"), encoding="utf-8") as f:
            run = json.load(f)
        with open(os.path.join(folder, "search_record.json"), encoding="utf-8") as f:
            record = json.load(f)
        last = max(record["epochs"], key=lambda e: int(e["epoch"]))
        genotype = Genotype.load(os.path.join(folder, "genotype.json"))
        self.geometry = Geometry(int(run["num_classes"]), tuple(run["image_shape"]),
                                 *self.preset.eval_size)
        primitives = tuple(p for p in record["primitives"] if p != "none")
        keep = [record["primitives"].index(p) for p in primitives]
        self.tables = cost_tables(self.geometry.num_classes, self.geometry.image_shape,
                                  self.geometry.channels, self.geometry.layers, primitives,
                                  genotype.steps)
        count = cached_count(os.path.dirname(folder), genotype, self.geometry)
        self.reference = {
            "genotype": genotype, "count": count, "primitives": primitives,
            "act": {t: np.asarray(last[f"alpha_{t}"], float)[:, keep]
                    for t in ("normal", "reduce")}}

    def limit(self, kind: str, fraction: float) -> int:
        return int(fraction * self.reference["count"][kind])

    def refusal(self, kind: str, fraction: float) -> str | None:
        """The one-line refusal of a budget below the cheapest genotype (None: it is fine)."""
        try:
            Budget(self.tables[kind], float(self.limit(kind, fraction)))
        except BudgetError as err:
            return str(err)
        return None

    def budgeted_genotype(self, kind: str, fraction: float, seed: int) -> Genotype | None:
        """The budgeted search's genotype (searched now if need be); None if refused."""
        if self.refusal(kind, fraction):
            return None
        folder = search_folder(self.out, kind, fraction, seed)
        if not self.search(folder, seed=seed, **{KINDS[kind]: self.limit(kind, fraction)}):
            return None
        genotype = Genotype.load(os.path.join(folder, "genotype.json"))
        cached_count(os.path.dirname(folder), genotype, self.geometry)
        return genotype

    def entry_genotype(self, method: str, fraction: float, seed: int | None) -> Genotype | None:
        """The genotype ``method`` yields at this budget, saved in its entry folder."""
        folder = entry_folder(self.out, method, fraction, seed)
        path = os.path.join(folder, "genotype.json")
        if os.path.exists(path):
            return Genotype.load(path)
        table, limit = self.tables["params"], self.limit("params", fraction)
        note: dict = {}
        if self.refusal("params", fraction):  # below the cheapest genotype: none fits
            genotype, note = None, {"refused": self.refusal("params", fraction)}
        elif method == "budgeted":
            genotype = self.budgeted_genotype("params", fraction, seed)
        elif method == "random":
            genotype, draws = draw_within(table, limit, self.reference["primitives"],
                                          self.reference["genotype"].steps,
                                          seed=1000 * round(100 * fraction) + seed)
            note = {"draws": draws}
        else:
            genotype, steps = prune_to_budget(self.reference["genotype"],
                                              self.reference["act"], table, limit)
            note = {"replacements": steps}
        os.makedirs(folder, exist_ok=True)
        atomic_write_json(os.path.join(folder, "note.json"), note)
        if genotype is not None:
            genotype.save(path)
        return genotype

    def train(self, method: str, fraction: float, seed: int | None) -> None:
        """Train and time one entry (each step reused once done)."""
        genotype = self.entry_genotype(method, fraction, seed)
        if genotype is None:
            return
        folder = entry_folder(self.out, method, fraction, seed)
        cached_count(folder, genotype, self.geometry)
        run = os.path.join(folder, "train")
        if not os.path.exists(os.path.join(run, "metrics.json")):
            t0 = time.perf_counter()
            train_run(genotype, run, resume="auto", report=self.log if self.verbose else None,
                      progress=self.verbose, resume_hint=f"`{self.command}` again",
                      **self.train_options)
            self.log(f"train {os.path.relpath(folder, self.out)}: "
                     f"{(time.perf_counter() - t0) / 60:.1f} min")
        latency = os.path.join(folder, "latency.json")
        if not os.path.exists(latency):
            atomic_write_json(latency, measure(genotype, self.geometry, self.preset))

    def run(self) -> None:
        self.load_reference()
        for kind in KINDS:
            for fraction in self.preset.fractions:
                for seed in self.preset.seeds:
                    self.budgeted_genotype(kind, fraction, seed)
        for fraction in self.preset.fractions:
            for method in METHODS:
                for seed in (self.preset.seeds if method != "pruned" else (None,)):
                    self.train(method, fraction, seed)


def measure(genotype: Genotype, geometry: Geometry, preset: Preset) -> dict:
    """Batch-1 latency of the genotype's evaluation network in LiteRT (or why not)."""
    from kdarts.image.latency import measure_latency

    try:
        ms = measure_latency(genotype, LATENCY_RUNTIME, num_classes=geometry.num_classes,
                             image_shape=geometry.image_shape, channels=geometry.channels,
                             layers=geometry.layers, repeats=preset.latency_repeats,
                             warmup=preset.latency_warmup)
    except ImportError as err:
        return {"runtime": LATENCY_RUNTIME, "ms": None, "error": str(err).split("\n")[0]}
    return {"runtime": LATENCY_RUNTIME, "ms": float(ms), "repeats": preset.latency_repeats}


# ------------------------------------------------------------------------------ report


@dataclasses.dataclass
class Entry:
    """One trained genotype (fields None until its run is finished)."""

    method: str
    fraction: float
    seed: int | None
    genotype: Genotype | None
    params: int | None
    madds: int | None
    accuracy: float | None
    latency_ms: float | None
    note: dict
    num_test: int | None = None


def collect(study: Study) -> tuple[list[dict], list[Entry]]:
    """The finished runs: the budget rows (kind, fraction, seed) and the trained entries."""
    rows, entries = [], []
    for kind in KINDS:
        for fraction in study.preset.fractions:
            refusal = study.refusal(kind, fraction)
            for seed in study.preset.seeds:
                folder = search_folder(study.out, kind, fraction, seed)
                measured = read_json(os.path.join(os.path.dirname(folder), "measured.json"))
                genotype = (Genotype.load(os.path.join(folder, "genotype.json"))
                            if is_complete(folder) and measured else None)
                rows.append({"kind": kind, "fraction": fraction, "seed": seed,
                             "limit": study.limit(kind, fraction), "refusal": refusal,
                             "genotype": genotype,
                             "count": measured["count"] if genotype else None,
                             "recorded": genotype.cost if genotype else None})
    for fraction in study.preset.fractions:
        for method in METHODS:
            for seed in (study.preset.seeds if method != "pruned" else (None,)):
                folder = entry_folder(study.out, method, fraction, seed)
                metrics = read_json(os.path.join(folder, "train", "metrics.json"))
                latency = read_json(os.path.join(folder, "latency.json")) or {}
                measured = read_json(os.path.join(folder, "measured.json"))
                path = os.path.join(folder, "genotype.json")
                entries.append(Entry(
                    method, fraction, seed,
                    Genotype.load(path) if os.path.exists(path) else None,
                    measured["count"]["params"] if measured else None,
                    measured["count"]["madds"] if measured else None,
                    float(metrics["test_accuracy"]) if metrics else None,
                    latency.get("ms"), read_json(os.path.join(folder, "note.json")) or {},
                    metrics.get("num_test") if metrics else None))
    return rows, entries


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _f(x, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def holds_summary(rows: list[dict]) -> dict[str, tuple[int, int, int, int]]:
    """Per kind: (found and within budget, found, refused, asked)."""
    out = {}
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        found = [r for r in mine if r["count"] is not None]
        within = [r for r in found if r["count"][kind] <= r["limit"]]
        out[kind] = (len(within), len(found), sum(bool(r["refusal"]) for r in mine), len(mine))
    return out


def findings(entries: list[Entry], fractions) -> list[str]:
    """Sentences comparing the methods' accuracies, from the numbers."""
    lines = []
    done = [e for e in entries if e.accuracy is not None]
    if not done:
        return ["No training has finished yet."]
    lo, hi = min(e.accuracy for e in done), max(e.accuracy for e in done)
    separated: list[bool] = []
    lines.append(f"All {len(done)} trained networks score between {100 * lo:.2f} % and "
                 f"{100 * hi:.2f} % test accuracy.")
    sizes = {e.num_test for e in done if e.num_test}
    if len(sizes) == 1:
        n = sizes.pop()
        lines.append(f"The test set holds {n} images: one image is {100 / n:.2f} points.")
    for fraction in fractions:
        here = [e for e in done if e.fraction == fraction]
        means = {m: _mean(e.accuracy for e in here if e.method == m) for m in METHODS}
        known = {m: v for m, v in means.items() if v is not None}
        if len(known) < 2:
            continue
        best = max(known, key=known.get)
        seeds = [float(np.ptp([e.accuracy for e in here if e.method == m]))
                 for m in ("budgeted", "random") if sum(e.method == m for e in here) > 1]
        line = (f"At {pct(fraction)} % of P the best mean is {best}'s "
                f"({100 * known[best]:.2f} %); the method means span "
                f"{100 * (max(known.values()) - min(known.values())):.2f} points")
        span = max(known.values()) - min(known.values())
        if seeds:
            verdict = "not more" if span <= max(seeds) else "more"
            separated.append(span > max(seeds))
            line += (f", the seeds of one method up to {100 * max(seeds):.2f} points: the "
                     f"methods differ {verdict} than seeds do")
        lines.append(line + ".")
    if separated and not any(separated):
        lines.append("This study does not separate the methods: on these 8×8 digits nearly "
                     "any network of this size scores about as well (docs/study.md).")
    return [line for line in lines if line]


def report_text(study: Study, rows: list[dict], entries: list[Entry], doc: str) -> str:
    ref, geo, preset = study.reference, study.geometry, study.preset
    now = datetime.datetime.now(datetime.timezone.utc)
    holds = holds_summary(rows)
    stem = os.path.splitext(os.path.basename(doc))[0]
    search = (f"`kdarts search` with {json.dumps(preset.search)}" if preset.search
              else "`kdarts search`'s defaults")
    lines = [
        "# Search under a budget: do budgets hold, and what accuracy do they buy?", "",
        f"Written by `{study.command}` on {now:%Y-%m-%d %H:%M} UTC; machine: "
        f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}. Every number below comes from the runs under "
        f"`{study.out}`; nothing is edited by hand. The runs were made by "
        + invocations_text(read_json(os.path.join(study.out, "invocations.json")) or [])
        + ".", "",
        f"Searches: {search}, seeds {', '.join(map(str, preset.seeds))}. Costs are those of the "
        f"evaluation network `kdarts train` builds: C={geo.channels}, {geo.layers} cells, "
        f"{geo.num_classes} classes, images {'×'.join(map(str, geo.image_shape))}, auxiliary "
        "head excluded, counted on the built network (`parameter_count()`, `network_madds`).",
        "", "## Reference: the unconstrained search", "",
        f"Seed 0: {genotype_text(ref['genotype'])}; P = {ref['count']['params']:,} parameters, "
        f"M = {ref['count']['madds']:,} multiply-adds. The cheapest valid genotype costs "
        f"{format_amount(Budget(study.tables['params'], 1e18).cheapest, 'params')} and "
        f"{format_amount(Budget(study.tables['madds'], 1e18).cheapest, 'madds')}.", "",
        "## Budgets hold", ""]
    lines += [f"- **{kind}**: {w} of {f} found genotypes within budget"
              + (f"; {r} of {n} searches refused, their budget below the cheapest genotype"
                 if r else "") + (f"; {n - f - r} not finished" if n - f - r else "") + "."
              for kind, (w, f, r, n) in holds.items()]
    found = [r for r in rows if r["count"] is not None and r["recorded"]]
    same = sum(int(r["recorded"][r["kind"]]) == r["count"][r["kind"]] for r in found)
    if found:
        lines += [f"- The cost genotype.json records (from the cost tables) equals the built "
                  f"network's count for {same} of {len(found)} found genotypes."]
    lines += ["", "| budget | fraction | limit | seed | found: parameters | multiply-adds | "
              "genotype.json's record | within |", "|" + "---|" * 8]
    for r in rows:
        c = r["count"]
        if r["refusal"]:
            found, within = f"refused: {r['refusal']}", "–"
        else:
            found = f"{c['params']:,}" if c else "not finished"
            within = ("yes" if c[r["kind"]] <= r["limit"] else "**no**") if c else "–"
        madds = f"{c['madds']:,}" if c else "–"
        recorded = f"{r['recorded'][r['kind']]:,}" if r["recorded"] else "–"
        lines.append(f"| {r['kind']} | {pct(r['fraction'])} % | {r['limit']:,} | {r['seed']} | "
                     f"{found} | {madds} | {recorded} | {within} |")
    epochs = study.train_options.get("epochs", TRAIN_DEFAULTS["epochs"])
    lines += [
        "", "## Accuracy at the same parameter budget", "",
        f"One recipe for all: `kdarts train` with {json.dumps(study.train_options)} (else its "
        f"defaults; {epochs} epoch{'s' * (epochs != 1)}). Latency: batch 1, one thread, "
        f"{LATENCY_RUNTIME} "
        f"(`measure_latency`, median of {preset.latency_repeats} invocations).", "",
        "- **budgeted**: the budgeted searches' genotypes (one per seed).",
        "- **random**: per seed, uniformly random valid genotypes (each node: two distinct "
        "earlier inputs, an op each, over the search's candidate ops), drawn until one costs "
        "at most the budget (rejection sampling; rng seeded per budget and seed).",
        "- **pruned**: the unconstrained reference genotype D, then ops replaced until it fits. "
        "Rule: while over budget, among D's kept genes whose op is not its edge's cheapest "
        "(cheapest by the same cost table), replace the one whose replacement by the edge's "
        "cheapest op saves the most parameters per unit of activation lost, activation being "
        "the search's final act(α) (the last epoch of search_record.json); a replacement "
        "losing no activation goes first. Edges and inputs stay; ties go to the first gene "
        "(normal cell first).", "",
        " ".join(findings(entries, preset.fractions)), "",
        "| fraction | budget | method | n | test accuracy, mean (min–max) | parameters, mean | "
        "multiply-adds, mean | latency ms, mean |", "|" + "---|" * 8]
    for fraction in preset.fractions:
        for method in METHODS:
            mine = [e for e in entries if e.method == method and e.fraction == fraction
                    and e.accuracy is not None]
            accs = [e.accuracy for e in mine]
            lines.append(
                f"| {pct(fraction)} % | {study.limit('params', fraction):,} | {method} | "
                f"{len(mine)} | {_f(_mean(accs) and 100 * _mean(accs), '.2f')}"
                + (f" ({100 * min(accs):.2f}–{100 * max(accs):.2f})" if len(accs) > 1 else "")
                + f" | {_f(_mean(e.params for e in mine), ',.0f')} | "
                f"{_f(_mean(e.madds for e in mine), ',.0f')} | "
                f"{_f(_mean(e.latency_ms for e in mine), '.3f')} |")
    lines += ["", f"![test accuracy against parameters]({stem}.png)", "",
              "## Per trained network", "",
              "| fraction | method | seed | test accuracy | parameters | multiply-adds | "
              "latency ms | note | genotype |", "|" + "---|" * 9]
    for e in entries:
        if e.genotype is None:
            refused = study.refusal("params", e.fraction)
            what = (f"refused: {refused}" if refused else
                    f"none within budget in {e.note.get('draws', MAX_DRAWS):,} draws"
                    if e.method == "random" else
                    "does not fit by replacing ops" if "replacements" in e.note else
                    "not run yet")
            lines.append(f"| {pct(e.fraction)} % | {e.method} | {_f(e.seed, 'd')} | – | – | "
                         f"– | – | {what} | – |")
            continue
        note = (f"{e.note['draws']:,} draws" if "draws" in e.note else
                f"{len(e.note['replacements'])} ops replaced" if "replacements" in e.note
                else "")
        lines.append(f"| {pct(e.fraction)} % | {e.method} | {_f(e.seed, 'd')} | "
                     f"{_f(e.accuracy and 100 * e.accuracy, '.2f')} | {_f(e.params, ',d')} | "
                     f"{_f(e.madds, ',d')} | {_f(e.latency_ms, '.3f')} | {note} | "
                     f"{genotype_text(e.genotype)} |")
    pruned = [e for e in entries if e.method == "pruned" and e.genotype is not None
              and e.note.get("replacements")]
    if pruned:
        lines += ["", "## Pruned afterwards: the replacements", ""]
        for e in pruned:
            lines.append(f"- {pct(e.fraction)} %: " + "; ".join(e.note["replacements"]) + ".")
    lines += ["", "Genotype: per cell (N normal, R reduction) the nodes in order, each the sum "
              "of two ops with their input in brackets (0, 1: the previous cells).", ""]
    return "\n".join(lines)


def plot(study: Study, entries: list[Entry], path: str) -> str:
    """Test accuracy against parameters: a marker per method, the budgets as lines."""
    from matplotlib.figure import Figure

    from kdarts.plots import _save

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    markers = {"budgeted": ("o", "#08519c"), "random": ("s", "#fd8d3c"),
               "pruned": ("^", "#31a354")}
    for method, (marker, color) in markers.items():
        mine = [e for e in entries if e.method == method and e.accuracy is not None]
        ax.scatter([e.params / 1e3 for e in mine], [100 * e.accuracy for e in mine],
                   marker=marker, color=color, label=method, zorder=3)
    for fraction in study.preset.fractions:
        x = study.limit("params", fraction) / 1e3
        ax.axvline(x, color="0.5", ls="--", lw=1)
        ax.annotate(f"{pct(fraction)} % of P", (x, 1), xycoords=("data", "axes fraction"),
                    xytext=(-3, -3), textcoords="offset points", ha="right", va="top",
                    fontsize=8, color="0.4")
    cheapest = Budget(study.tables["params"], 1e18).cheapest / 1e3
    ax.axvline(cheapest, color="0.3", ls=":", lw=1.2)
    ax.annotate("cheapest genotype", (cheapest, 0), xycoords=("data", "axes fraction"),
                xytext=(3, 3), textcoords="offset points", ha="left", va="bottom",
                fontsize=8, color="0.3", rotation=90)
    ax.set_xlabel("parameters of the evaluation network (thousands)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy at a parameter budget (dashed: the budgets, dotted: the cheapest "
                 "valid genotype)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    return _save(fig, path)


#: The heading from which ``--doc`` holds another tool's section (tools/budget_dual.py's),
#: kept as it is when the report is rebuilt.
KEPT_SECTION = "## The expected-cost term"


def kept_section(doc: str) -> str:
    """``doc``'s text from :data:`KEPT_SECTION` on ("" without it, or without ``doc``)."""
    if not os.path.exists(doc):
        return ""
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    start = text.find(KEPT_SECTION)
    return "" if start < 0 else text[start:]


def write_report(study: Study, doc: str) -> str:
    rows, entries = collect(study)
    os.makedirs(os.path.dirname(os.path.abspath(doc)), exist_ok=True)
    plot(study, entries, os.path.splitext(doc)[0] + ".png")
    kept = kept_section(doc)
    text = report_text(study, rows, entries, doc)
    atomic_write_text(doc, text.rstrip("\n") + "\n\n" + kept if kept else text)
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    report_arguments(parser, "pareto", "the study's run folders", "budget.md",
                     "the runs' messages and bars")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny preset (C=4, 3 layers, 2 steps, 1 epoch, 1 seed)")
    parser.add_argument("--train-epochs", type=int, help="the recipe's epochs (all trainings)")
    args = parser.parse_args(argv)
    command = command_line("pareto.py", argv)
    study = Study(args.out, PRESETS["quick" if args.quick else "default"], args.train_epochs,
                  command, args.verbose)
    set_cpu_threads(1)  # as the kdarts command
    t0 = time.perf_counter()
    try:
        if args.report_only:
            if not is_complete(search_folder(args.out, None, None, 0)):
                raise RunError(f"no finished reference search under {args.out}")
        try:
            study.load_reference()
            if not args.report_only:
                study.run()
        finally:  # an interrupted invocation's time counts too
            if not args.report_only and os.path.isdir(args.out):
                log_invocation(args.out, command, time.perf_counter() - t0)
    except (RunError, RunInterrupted) as err:
        return error_status(err)
    print(f"report → {write_report(study, args.doc)}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
