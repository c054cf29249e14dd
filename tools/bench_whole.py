"""Time a whole search, process start to genotype, against the authors' loop in the same run.

What a user waits for is the whole search: warm-up, every step with the real schedule and
pruning, the epochs' evaluations and writes. Each repeat runs, in fresh processes and
alternating, ``kdarts search`` (to ``genotype.json``) and the authors'
``train_scheduled_hard_statebn.py`` (to ``genotype.txt``, through
``tools/reference_search_loop.py``) on the same images with the same settings. Prints
each run, the medians and the ratio (theirs / ours).

* ``--config small`` (default): the default ``kdarts search`` (the embedded digits,
  8 epochs, C=8, 5 cells, batch 32, crb, dynamic schedule k=10 with the dynamic split,
  proximity ρ=0.1, α lr 0.05, threshold 50) and theirs with the same options on the
  digits' training split.
* ``--config small16``: the same on the digits scaled to 16×16 (each pixel repeated
  2×2; ``--dataset`` an npz for ours), where the steps weigh more against the fixed
  costs of a process.
* ``--config paper``: the paper's network (C=16, 8 cells, batch 64, α lr 3e-4,
  threshold 1.0) on random 32×32 images sized so that one epoch is ``--steps`` weight
  steps: a fixed number of steps, not a 50-epoch search.

    python tools/bench_whole.py --reference-src SRC --reference-python PY [--repeats 3]
    python tools/bench_whole.py --config paper --steps 20 --reference-src SRC \
        --reference-python PY --repeats 1

SRC is the authors' ``src/`` (k8lion/DARTS-PRIME); PY a Python with torch and numpy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
#: The default search's settings in the authors' option names (kdarts.runs.SEARCH_DEFAULTS).
SMALL_THEIRS = ["--crb", "--dyno_schedule", "--dyno_split", "--schedfreq", "10",
                "--reg", "prox", "--rho", "0.1", "--epochs", "8", "--batch_size", "32",
                "--init_channels", "8", "--layers", "5", "--arch_learning_rate", "0.05",
                "--init_alpha_threshold", "50", "--seed", "0"]
PAPER_OURS = ["--channels", "16", "--layers", "8", "--batch-size", "64", "--epochs", "1",
              "--arch-lr", "3e-4", "--threshold", "1.0"]
PAPER_THEIRS = ["--crb", "--dyno_schedule", "--dyno_split", "--schedfreq", "10",
                "--reg", "prox", "--rho", "0.1", "--epochs", "1", "--batch_size", "64",
                "--init_channels", "16", "--layers", "8", "--arch_learning_rate", "3e-4",
                "--init_alpha_threshold", "1.0", "--seed", "0"]


def digits_train_npz(path: str, scale: int = 1) -> int:
    """The digits' training split (what ``kdarts search`` divides into its two splits),
    each pixel repeated ``scale``×``scale`` (``scale=2``: 16×16 images), and their test
    split (which ``--dataset`` with an npz reads as such)."""
    from kdarts.data.digits import digits_arrays, digits_split

    images, labels = digits_arrays()
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    train, test = digits_split(labels)
    np.savez(path, x=images[train], y=labels[train], x_test=images[test], y_test=labels[test])
    return len(train)


def random_npz(path: str, steps: int, batch: int = 64, every: int = 10) -> int:
    """Random 32×32 images whose weight split is ``steps`` batches (plus a small test split)."""
    n = math.ceil(steps * batch * (1 + every) / every)
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
             y=np.arange(n) % 10, x_test=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(20) % 10)
    return n


def run_ours(folder: str, extra: list[str]) -> float:
    """Seconds from process start to exit of ``kdarts search``; checks genotype.json."""
    cmd = [sys.executable, "-m", "kdarts.cli", "search", "--out", folder, *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=6 * 3600)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or not os.path.isfile(os.path.join(folder, "genotype.json")):
        raise SystemExit(f"kdarts search failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def run_theirs(python: str, src: str, data: str, folder: str, extra: list[str]) -> float:
    """Seconds from process start to exit of the authors' loop; checks genotype.txt."""
    cmd = [python, os.path.join(HERE, "reference_search_loop.py"), src, data, folder, *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=12 * 3600)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or not os.path.isfile(os.path.join(folder, "exp", "run",
                                                               "genotype.txt")):
        raise SystemExit(f"the authors' loop failed ({done.returncode}):\n"
                         f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return seconds


def summary(folder: str) -> dict:
    """Weight steps, α steps and pruned ops of our search (its record's last batch)."""
    with open(os.path.join(folder, "search_record.json")) as f:
        last = json.load(f)["batches"][-1]
    return {"steps": int(last["step"]), "alpha_steps": int(last["alpha_steps"]),
            "pruned_ops": int(last["pruned_ops"])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=("small", "small16", "paper"), default="small")
    parser.add_argument("--steps", type=int, default=20, help="paper: weight steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-src", required=True)
    parser.add_argument("--reference-python", required=True)
    parser.add_argument("--ours", default="", help="more options for kdarts search, e.g. "
                        "'--skip-pruned-ops never' (one string)")
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args(argv)
    ours_s, theirs_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.npz")
        if args.config == "small":
            digits_train_npz(data)
            ours_extra, theirs_extra = [], SMALL_THEIRS
        elif args.config == "small16":  # the same search on the digits at 16×16
            digits_train_npz(data, scale=2)
            ours_extra, theirs_extra = ["--dataset", data], SMALL_THEIRS
        else:
            random_npz(data, args.steps)
            ours_extra, theirs_extra = ["--dataset", data, *PAPER_OURS], PAPER_THEIRS
        ours_extra = ours_extra + args.ours.split()
        for r in range(args.repeats):
            ours_dir, theirs_dir = os.path.join(tmp, f"ours{r}"), os.path.join(tmp, f"theirs{r}")
            ours_s.append(run_ours(ours_dir, ours_extra))
            theirs_s.append(run_theirs(args.reference_python, args.reference_src, data,
                                       theirs_dir, theirs_extra))
            if not args.json:
                print(f"repeat {r + 1}: ours {ours_s[-1]:.1f} s, theirs {theirs_s[-1]:.1f} s "
                      f"{summary(ours_dir)}", flush=True)
    result = {"config": args.config, "ours_options": ours_extra, "ours_s": ours_s,
              "theirs_s": theirs_s,
              "ours_median_s": statistics.median(ours_s),
              "theirs_median_s": statistics.median(theirs_s)}
    result["ratio"] = result["theirs_median_s"] / result["ours_median_s"]
    if args.json:
        print(json.dumps(result))
    else:
        print(f"whole search ({args.config}): ours {result['ours_median_s']:.1f} s, "
              f"theirs {result['theirs_median_s']:.1f} s (medians of {args.repeats}): "
              f"{result['ratio']:.2f}x")


if __name__ == "__main__":
    main()
