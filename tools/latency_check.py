"""Check the latency table's predictions against whole networks measured in the runtime.

Builds (or reads from the cache) the latency table (:func:`kdarts.image.latency.latency_table`)
of the evaluation network ``kdarts train`` builds by default for a dataset (its channels and
layers from ``kdarts.runs.defaults.TRAIN_DEFAULTS``, its image shape and classes from the
dataset), then samples ``--genotypes`` random valid genotypes (seeded), measures each whole
network exported to the runtime (:func:`kdarts.image.latency.measure_latency`) and prints,
per genotype, the predicted and the measured milliseconds and the relative error, then the
median and the worst absolute relative error. Issue 38 accepts a median of at most 10 % over
at least 10 genotypes in LiteRT.

    python tools/latency_check.py --runtime litert [--genotypes 10] [--seed 0] [-o FILE]

``-o FILE`` also writes the figures as a markdown table (atomically).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np

from kdarts.atomic import atomic_write_text
from kdarts.image.genotype import CRB_PRIMITIVES, Genotype


def genes_text(genotype: Genotype) -> str:
    """A genotype in one short line: each cell's ops by input, normal | reduce."""
    def cell(genes):
        return " ".join(f"{op}<{source}" for op, source in genes)
    return f"{cell(genotype.normal)} | {cell(genotype.reduce)}"


def check(runtime: str, dataset: str, channels: int, layers: int, genotypes: int, seed: int,
          repeats: int, warmup: int, cache_dir: str | None) -> dict:
    """The table's prediction and the measurement for each random genotype."""
    from kdarts.data import load_dataset
    from kdarts.image.latency import latency_table, measure_latency
    from study_measures import random_genotype

    *_, info = load_dataset(dataset)
    shape, classes = tuple(info.image_shape), info.num_classes
    started = time.perf_counter()
    table = latency_table(runtime, classes, shape, channels, layers, cache_dir=cache_dir,
                          repeats=repeats, warmup=warmup, progress=True)
    table_seconds = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(genotypes):
        genotype = random_genotype(rng, CRB_PRIMITIVES)
        predicted = table.of(genotype)
        measured = measure_latency(genotype, runtime, num_classes=classes, image_shape=shape,
                                   channels=channels, layers=layers, repeats=repeats,
                                   warmup=warmup)
        rows.append({"genotype": genotype, "predicted": predicted, "measured": measured,
                     "error": (predicted - measured) / measured})
        print(f"{i:3d}  predicted {predicted:.4f} ms  measured {measured:.4f} ms  "
              f"error {100 * rows[-1]['error']:+.1f} %", flush=True)
    errors = np.abs([r["error"] for r in rows])
    worst = int(np.argmax(errors))
    return {"runtime": runtime, "dataset": dataset, "image_shape": shape, "classes": classes,
            "channels": channels, "layers": layers, "seed": seed, "repeats": repeats,
            "table": table, "table_seconds": table_seconds, "rows": rows,
            "median": float(np.median(errors)), "worst": float(errors[worst]),
            "worst_index": worst}


def markdown(result: dict, command: str) -> str:
    """The figures as a markdown section."""
    r = result
    lines = [
        f"# Latency table check: {r['runtime']}, {r['dataset']}",
        "",
        f"{datetime.date.today().isoformat()}, {platform.machine()} "
        f"({os.cpu_count()} CPU cores), `{command}`.",
        f"Network: C={r['channels']}, {r['layers']} cells, images {r['image_shape']}, "
        f"{r['classes']} classes; batch 1, one thread; medians of {r['repeats']} invocations. "
        f"Fixed part {r['table'].fixed:.4f} ms.",
        "",
        "| # | predicted (ms) | measured (ms) | error | genotype (normal \\| reduce) |",
        "|---|---|---|---|---|",
    ]
    for i, row in enumerate(r["rows"]):
        genes = genes_text(row["genotype"]).replace("|", "\\|")
        lines.append(f"| {i} | {row['predicted']:.4f} | {row['measured']:.4f} | "
                     f"{100 * row['error']:+.1f} % | {genes} |")
    lines += ["", f"Median |error| {100 * r['median']:.1f} %; worst {100 * r['worst']:.1f} % "
              f"(genotype {r['worst_index']}).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from kdarts.runs.defaults import TRAIN_DEFAULTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="litert", help="litert or onnx")
    parser.add_argument("--dataset", default=TRAIN_DEFAULTS["dataset"])
    parser.add_argument("--channels", type=int, default=TRAIN_DEFAULTS["channels"])
    parser.add_argument("--layers", type=int, default=TRAIN_DEFAULTS["layers"])
    parser.add_argument("--genotypes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed invocations per graph (default: the module's)")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--cache-dir", default=None,
                        help="latency table cache (default: kdarts's, see "
                             "kdarts.image.latency.default_cache_dir)")
    parser.add_argument("-o", "--output", default=None, help="write a markdown table here")
    args = parser.parse_args(argv)
    from kdarts.image.latency import DEFAULT_REPEATS, DEFAULT_WARMUP

    result = check(args.runtime, args.dataset, args.channels, args.layers, args.genotypes,
                   args.seed, args.repeats or DEFAULT_REPEATS, args.warmup or DEFAULT_WARMUP,
                   args.cache_dir)
    print(f"table: fixed {result['table'].fixed:.4f} ms ({result['table_seconds']:.0f} s to "
          f"build or read); median |error| {100 * result['median']:.1f} %, worst "
          f"{100 * result['worst']:.1f} % (genotype {result['worst_index']}) over "
          f"{len(result['rows'])} genotypes")
    if args.output:
        command = "python tools/latency_check.py " + " ".join(argv if argv is not None
                                                              else sys.argv[1:])
        atomic_write_text(args.output, markdown(result, command.strip()))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
