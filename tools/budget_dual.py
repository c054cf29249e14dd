"""Does the budget's expected-cost term help? (docs/method.md §8, ``--budget-dual-lr``)

Runs ``kdarts search``'s default search on the digits under parameter budgets, for each
seed without the term and with it at each dual step size η, every run in its own folder
under ``--out`` (a finished run is reused), and prints one markdown row per run:

- **D fits**: whether D(α), the unconstrained discretisation of the final α, is already
  within the budget (α itself moved to feasible architectures, the projection had
  nothing to do);
- **act over D_B's / D's genes**: the sums of the final act(α) over the genes each keeps,
  and the share the projection loses (0 when D fits);
- **E/B**: the final α's expected cost (:func:`kdarts.image.budget.expected_cost`) over the
  budget; **λ**: the dual at the end (– without the term);
- **found**: the genotype's evaluation-network parameters (genotype.json's count);
- **pruned**: crb's pruned ops at the end; **time**: the search's wall time.

    python tools/budget_dual.py                              # 60 % and 80 % of P, seeds 0-2
    python tools/budget_dual.py --limits 128521 --seeds 0 --rates 1
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import sys
import time

import numpy as np

from kdarts.atomic import atomic_write_json
from kdarts.image.budget import Budget, expected_cost, genotype_cost
from kdarts.image.genotype import CRB_PRIMITIVES, discretize
from kdarts.runs import search_run
from kdarts.runtime import set_cpu_threads

#: The unconstrained default search's genotype (seed 0) costs P = 214,202 parameters in
#: kdarts train's evaluation network (docs/budget.md); the budgets are 60 % and 80 % of it.
DEFAULT_LIMITS = (128_521, 171_361)
DEFAULT_RATES = (0.01, 0.1, 1.0)
CELLS = ("normal", "reduce")


def run_name(limit: float, seed: int, rate: float | None) -> str:
    return f"p{int(limit)}_s{seed}_" + ("off" if rate is None else f"eta{rate:g}")


def search(out: str, limit: float, seed: int, rate: float | None) -> str:
    """The search's folder, run unless it holds a finished search; its wall time is kept
    in ``timing.json`` by the run that did it."""
    folder = os.path.join(out, run_name(limit, seed, rate))
    if os.path.exists(os.path.join(folder, "genotype.json")):
        return folder
    start = time.perf_counter()
    search_run(folder, resume="auto", report=None, progress=False, seed=seed,
               max_params=limit, budget_dual_lr=rate)
    atomic_write_json(os.path.join(folder, "timing.json"),
                      {"seconds": round(time.perf_counter() - start, 1)})
    return folder


@functools.lru_cache(maxsize=None)
def params_table(num_classes: int, image_shape: tuple, channels: int, layers: int):
    """The parameter table of an evaluation network (built once per geometry)."""
    from kdarts.image.costs import cost_tables

    return cost_tables(num_classes=num_classes, image_shape=image_shape, channels=channels,
                       layers=layers)["params"]


def measure(folder: str, limit: float) -> dict:
    """What the module docstring lists, read from a finished search's files."""
    with open(os.path.join(folder, "genotype.json")) as f:
        cost = json.load(f)["cost"]
    with open(os.path.join(folder, "search_record.json")) as f:
        record = json.load(f)
    with open(os.path.join(folder, "history.csv")) as f:
        last = list(csv.DictReader(f))[-1]
    with open(os.path.join(folder, "timing.json")) as f:
        seconds = json.load(f)["seconds"]
    net = cost["network"]
    table = params_table(net["num_classes"], tuple(net["image_shape"]), net["channels"],
                         net["layers"])
    primitives = tuple(record["primitives"])
    assert primitives == CRB_PRIMITIVES
    final = record["epochs"][-1]
    acts = {t: np.asarray(final[f"alpha_{t}"]) for t in CELLS}  # act(α), as recorded
    d = {t: discretize(acts[t], primitives, record["steps"])[1] for t in CELLS}
    d_cost = genotype_cost(d, table.per_op, table.fixed)
    projected = Budget(table, limit).project(acts)
    d_mass = sum(float((d[t] * acts[t]).sum()) for t in CELLS)
    return {"d_params": d_cost, "d_fits": d_cost <= limit,
            "mass_d": d_mass, "mass_db": projected.score,
            "e_over_b": expected_cost(acts, table.per_op, table.fixed, primitives,
                                      record["steps"]) / limit,
            "dual": float(last["budget_dual"]) if "budget_dual" in last else None,
            "found_params": int(cost["params"]), "pruned": int(float(last["pruned_ops"])),
            "seconds": seconds}


def table_rows(rows: list[dict]) -> str:
    lines = ["| budget | seed | term (η) | D fits (D's params) | act over D_B's / D's genes "
             "(lost) | E/B | λ | found params | pruned ops | time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lam = "–" if r["dual"] is None else f"{r['dual']:.3g}"
        lines.append(
            f"| {int(r['limit']):,} | {r['seed']} | "
            f"{'off' if r['rate'] is None else format(r['rate'], 'g')} | "
            f"{'yes' if r['d_fits'] else 'no'} ({r['d_params']:,.0f}) | "
            f"{r['mass_db']:.2f} / {r['mass_d']:.2f} "
            f"({100 * (1 - r['mass_db'] / r['mass_d']):.1f} %) | "
            f"{r['e_over_b']:.3f} | {lam} | "
            f"{r['found_params']:,} | {r['pruned']} | {r['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """Per budget and term setting: how often D fits, the activation the projection
    loses, E/B, the found parameters and the time, over the seeds."""
    lines = ["| budget | term (η) | runs | D fits | act lost, mean | E/B, mean | found params, "
             "mean (min–max) | time, mean |", "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["limit"], -1.0 if r["rate"] is None else r["rate"]) for r in rows})
    for limit, rate in keys:
        group = [r for r in rows if r["limit"] == limit
                 and (r["rate"] if r["rate"] is not None else -1.0) == rate]
        found = [r["found_params"] for r in group]
        lost = np.mean([1 - r["mass_db"] / r["mass_d"] for r in group])
        lines.append(
            f"| {int(limit):,} | {'off' if rate < 0 else format(rate, 'g')} | {len(group)} | "
            f"{sum(r['d_fits'] for r in group)} | {100 * lost:.1f} % | "
            f"{np.mean([r['e_over_b'] for r in group]):.3f} | {np.mean(found):,.0f} "
            f"({min(found):,}–{max(found):,}) | "
            f"{np.mean([r['seconds'] for r in group]) / 60:.1f} min |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join("runs", "budget_dual"))
    parser.add_argument("--limits", type=float, nargs="+", default=list(DEFAULT_LIMITS),
                        help="parameter budgets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=list(DEFAULT_RATES),
                        help="the dual's step sizes η (each beside a search without the term)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    set_cpu_threads(1)  # as the kdarts command
    runs = [(limit, seed, rate) for rate in [None, *args.rates] for limit in args.limits
            for seed in args.seeds]
    if not args.report_only:
        for limit, seed, rate in runs:
            print(f"done {search(args.out, limit, seed, rate)}", file=sys.stderr, flush=True)
    rows = [{"limit": limit, "seed": seed, "rate": rate,
             **measure(os.path.join(args.out, run_name(limit, seed, rate)), limit)}
            for limit in args.limits for seed in args.seeds for rate in [None, *args.rates]
            if os.path.exists(os.path.join(args.out, run_name(limit, seed, rate),
                                           "timing.json"))]
    atomic_write_json(os.path.join(args.out, "summary.json"), rows)
    print(summary(rows) + "\n\n" + table_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
