"""What a run raises and returns."""

from __future__ import annotations

import dataclasses
import os

from kdarts.image.genotype import Genotype


class RunError(ValueError):
    """A run cannot start (bad input or output folder: nothing was touched) or go on (a
    full disk: the message says what was kept); one line."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says what was kept and how to continue."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclasses.dataclass
class SearchResult:
    """What :func:`~kdarts.runs.search_run` did. ``genotype`` is None until the search
    completed."""

    out: str
    epochs_done: int
    complete: bool
    genotype: Genotype | None = None
    alpha_steps: int = 0
    pruned_ops: int = 0
    seconds: float = 0.0

    @property
    def genotype_path(self) -> str:
        return os.path.join(self.out, "genotype.json")


@dataclasses.dataclass
class TrainResult:
    """What :func:`~kdarts.runs.train_run` did; ``metrics`` is ``metrics.json`` (None
    until complete)."""

    out: str
    epochs_done: int
    complete: bool
    metrics: dict | None = None
    seconds: float = 0.0

    @property
    def model_path(self) -> str:
        return os.path.join(self.out, "model.keras")

    @property
    def test_accuracy(self) -> float | None:
        return None if self.metrics is None else self.metrics["test_accuracy"]


@dataclasses.dataclass
class ExportRunResult:
    """What :func:`~kdarts.runs.export_run` wrote (see :class:`kdarts.export.ExportResult`)."""

    path: str
    format: str
    max_abs_diff: float | None
    input_contract: dict | None
    seconds: float
    quantize: str = "none"
    agreement: float | None = None
    verified_on: str | None = None
    #: the network's parameters and multiply-adds (an image network; auxiliary head
    #: excluded), and the artifact's measured latency in its runtime (batch 1, one
    #: thread; float ONNX and LiteRT exports of an image network), or None
    parameters: int | None = None
    madds: int | None = None
    latency_ms: float | None = None
