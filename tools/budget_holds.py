"""Do budgets hold? Default digits searches under parameter and multiply-add budgets, each
found genotype's evaluation network built and counted.

    python tools/budget_holds.py                       # 40/60/80 %, seeds 0-2, both kinds
    python tools/budget_holds.py --quick               # one tiny search per kind

The budgets are fractions of the unconstrained default search's (seed 0) evaluation
network (``kdarts train``'s C and layers), its parameters (auxiliary head excluded) and
multiply-adds. Each search runs in its own folder under ``--out``; a finished one is
reused. Prints a markdown table and writes it with ``-o FILE`` (atomically).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

QUICK = dict(channels=4, layers=3, steps=2, epochs=1, max_examples=200, batch_size=16,
             eval_channels=4, eval_layers=3)


def run_search(out: str, options: dict):
    """The genotype of the search in ``out`` (run now unless already complete)."""
    from kdarts.genotype import Genotype
    from kdarts.runs import search_run

    path = os.path.join(out, "genotype.json")
    if not os.path.exists(path):
        search_run(out, report=None, progress=False, resume="auto", **options)
    return Genotype.load(path)


def measured(genotype, info, channels: int, layers: int) -> tuple[int, int]:
    """Parameters and multiply-adds of the genotype's built evaluation network."""
    from kdarts.eval import EvalNetwork
    from kdarts.eval.costs import network_madds

    network = EvalNetwork(genotype, info.num_classes, channels=channels, layers=layers,
                          auxiliary=False)
    network.build((None, *info.image_shape))
    return network.parameter_count(), network_madds(network)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join("runs", "budget_holds"))
    parser.add_argument("--fractions", default="0.4,0.6,0.8")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--kinds", default="params,madds")
    parser.add_argument("--quick", action="store_true", help="tiny searches (a check)")
    parser.add_argument("-o", dest="output", help="also write the table here")
    args = parser.parse_args(argv)
    from kdarts.atomic import atomic_write_text
    from kdarts.data import load_dataset
    from kdarts.runs.defaults import eval_network_size

    base = dict(QUICK) if args.quick else {}
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds = [int(s) for s in ([0] if args.quick else args.seeds.split(","))]
    if args.quick:
        fractions = fractions[-1:]
    info = load_dataset("kdarts_digits")[4]
    channels, layers = eval_network_size({"dataset": "kdarts_digits", **base})
    t0 = time.perf_counter()
    free = run_search(os.path.join(args.out, "free"), dict(base, seed=0))
    reference = dict(zip(("params", "madds"), measured(free, info, channels, layers)))
    rows = [f"| kind | fraction | budget | seed | found | measured | within |",
            "|---|---|---|---|---|---|---|"]
    held = {}
    for kind in args.kinds.split(","):
        for fraction in fractions:
            limit = round(fraction * reference[kind])
            for seed in seeds:
                out = os.path.join(args.out, f"{kind}-{fraction:g}-{seed}")
                genotype = run_search(out, dict(base, seed=seed, **{f"max_{kind}": limit}))
                value = dict(zip(("params", "madds"), measured(genotype, info, channels,
                                                                layers)))[kind]
                ok = value <= limit
                held.setdefault(kind, []).append(ok)
                rows.append(f"| {kind} | {fraction:.0%} | {limit:,} | {seed} | "
                            f"{genotype.cost[kind]:,} | {value:,} | {'yes' if ok else 'NO'} |")
    summary = [f"Unconstrained default search (seed 0): {reference['params']:,} parameters, "
               f"{reference['madds']:,} multiply-adds (evaluation network C={channels}, "
               f"{layers} layers)."] + [f"{kind}: {sum(v)} of {len(v)} within budget."
                                        for kind, v in held.items()]
    text = "\n".join(summary + [""] + rows) + (
        f"\n\n`python tools/budget_holds.py{' --quick' if args.quick else ''}`, "
        f"{time.perf_counter() - t0:.0f} s.\n")
    print(text)
    if args.output:
        atomic_write_text(args.output, text)
    return int(not all(all(v) for v in held.values()))


if __name__ == "__main__":
    sys.exit(main())
