"""What the tools that run the authors' PyTorch code share (run in a Python with torch).

* :func:`serve_steps`: the step-timing protocol ``tools/bench_search.py`` speaks with
  ``bench_cnn_reference.py`` and ``bench_rnn_reference.py``: a ``ready`` line after two
  warm-up steps, then one line of milliseconds for every ``step`` line read on stdin, so
  the caller interleaves their steps with its own.
* :func:`stub_torchvision`: their modules import torchvision's CIFAR datasets at module
  level; the search networks need none of it.
* :func:`reference_parser` and :func:`parse_reference_args`: the command line both take
  (their ``src/`` folder, the sizes, ``--reg``), their folder then importable.
"""

from __future__ import annotations

import argparse
import builtins
import sys
import time
import types
from typing import Sequence


def reference_parser(doc: str, reg_help: str, **sizes: int) -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first line, taking the authors' ``src`` folder, one
    ``--<name>`` int option per keyword of ``sizes`` (its default), then ``--reg``
    (default ``prox``, ``reg_help`` listing the choices); a script adds its own after."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("src", help="the authors' src/ folder")
    for name, default in sizes.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--reg", default="prox", help=reg_help)
    return parser


def parse_reference_args(parser: argparse.ArgumentParser,
                         argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser``'s arguments from ``argv``, with ``src`` put first on ``sys.path``: their
    modules are imported by name from there."""
    args = parser.parse_args(argv)
    sys.path.insert(0, args.src)
    return args


def stub_torchvision() -> None:
    """Empty ``torchvision``, ``.transforms`` and ``.datasets`` (CIFAR10/100 as classes,
    which their ``utils`` subclasses)."""
    tv, tr, ds = (types.ModuleType(n) for n in
                  ("torchvision", "torchvision.transforms", "torchvision.datasets"))
    ds.CIFAR10 = ds.CIFAR100 = type("Dataset", (), {})
    tv.transforms, tv.datasets = tr, ds
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tr,
                        "torchvision.datasets": ds})


def serve_steps(step, ready_note=None) -> None:
    """Two warm-up calls of ``step``, then ``ready`` (plus ``ready_note()`` if given) and
    one timing line per ``step`` request on stdin. Their code prints a lot: ``print`` is
    silenced for the whole exchange."""
    say, builtins.print = builtins.print, (lambda *a, **k: None)
    for _ in range(2):
        step()
    say("ready" if ready_note is None else f"ready {ready_note()}", flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t = time.perf_counter()
        step()
        say(f"{1000 * (time.perf_counter() - t):.1f}", flush=True)
