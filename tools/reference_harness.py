"""What the tools that run the authors' PyTorch code share (run in a Python with torch).

* :func:`serve_steps`: the step-timing protocol ``tools/bench_search.py`` speaks with
  ``bench_cnn_reference.py`` and ``bench_rnn_reference.py``: a ``ready`` line after two
  warm-up steps, then one line of milliseconds for every ``step`` line read on stdin, so
  the caller interleaves their steps with its own.
* :func:`stub_torchvision`: their modules import torchvision's CIFAR datasets at module
  level; the search networks need none of it.
"""

from __future__ import annotations

import builtins
import sys
import time
import types


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
