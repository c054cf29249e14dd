"""What runs print: paths, durations, the export summary, the package version."""

from __future__ import annotations

import os
from importlib import metadata
from typing import Callable

from kdarts.budget import format_amount

#: Receives a run's one-line messages (``print``, ``click.echo``, or :func:`quiet`).
Report = Callable[[str], None]


def quiet(_: str) -> None:
    """A :data:`~kdarts.runs.report.Report` that drops every line."""


def kdarts_version() -> str:
    """The installed kdarts version ("unknown" when run from a source tree)."""
    try:
        return metadata.version("kdarts")
    except metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


def rel(path: str) -> str:
    """``path`` relative to the working directory when it is inside it (shorter output)."""
    path = os.path.abspath(path)
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def fmt_time(seconds: float) -> str:
    """``42 s`` under two minutes, else ``3.5 min``."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def data_label(info) -> str:
    """A dataset as the output names it: a TFDS name, or its path (relative if inside)."""
    return rel(info.name) if os.path.isabs(info.name) else info.name


def describe_export(result) -> str:
    """One line: where the artifact went, its size, what it takes, its verification
    (``result`` is an :class:`~kdarts.runs.ExportRunResult`)."""
    path = result.path
    total = (sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
                 for f in files) if os.path.isdir(path) else os.path.getsize(path))
    size = f"{total / 1e6:.2f} MB" if total >= 1e5 else f"{total / 1e3:.1f} kB"
    check = ("not verified (--no-verify)" if result.max_abs_diff is None
             else f"verified against the Keras model: max |Δlogits| = {result.max_abs_diff:.2e}")
    if result.agreement is not None and result.max_abs_diff is not None:
        check += (f", top-1 agreement {result.agreement:.1%}"
                  + (f" on {result.verified_on}" if result.verified_on else ""))
    if result.quantize != "none":
        check = f"{result.quantize} quantised; {check}"
    contract = result.input_contract or {}
    takes = ("raw images 0-255 " + "/".join(contract["dtype"].split(" or "))
             if contract.get("normalized_inside")
             else "images preprocessed as in training")
    shape = "x".join("N" if d is None else str(d) for d in contract.get("shape", []))
    costs = ""
    if result.parameters is not None:
        costs = (f"; {format_amount(result.parameters, 'params')}, "
                 f"{format_amount(result.madds, 'madds')}")
        if result.latency_ms is not None:
            runtime = "LiteRT" if result.format == "tflite" else "ONNX Runtime"
            costs += (f", {result.latency_ms:.3f} ms per image in {runtime} (batch 1, "
                      "one thread)")
    return (f"exported {result.format} → {rel(path)} ({size}) in {fmt_time(result.seconds)}; "
            f"input {shape} {takes}; {check}{costs}")


def replicas_note(batch_size: int, replicas: int, strategy: str, sync_batch_norm: bool) -> str:
    """``, batch 64 over 2 replicas (mirrored, synchronised BN)`` for several replicas."""
    if replicas <= 1:
        return ""
    return (f", batch {batch_size} over {replicas} replicas ({strategy}"
            + (", synchronised BN)" if sync_batch_norm else ")"))


def search_summary(opts: dict, info, steps_per_epoch: int, replicas: str,
                   budget: str = "") -> str:
    """The line a search reports before its first epoch (``replicas``:
    :func:`replicas_note`; ``budget``: the budget's clause, or empty)."""
    return (f"search: {data_label(info)} {info.image_shape[0]}x{info.image_shape[1]}, "
            f"{opts['activation']} / {opts['schedule']} k={opts['every']}"
            + (f" from threshold {opts['threshold']:g}" if opts["schedule"] == "dynamic"
               else "") + f" / α lr {opts['arch_lr']:g} / "
            f"{opts['reg']} ρ={opts['rho']} / {opts['split']} split, "
            f"C={opts['channels']}, {opts['layers']} layers, {steps_per_epoch} "
            "steps per epoch"
            + (", mixed precision (float16)" if opts["mixed_precision"] else "")
            + replicas + budget
            + "; the first epoch starts with tracing the step (half a minute or more)")


def train_summary(opts: dict, info, parameters: int, steps_per_epoch: int,
                  replicas: str, madds: int | None = None) -> str:
    """The line a training reports before its first epoch (``madds``: multiply-adds of
    one image's inference, auxiliary head excluded)."""
    num_train = min(info.num_train, opts["max_examples"] or info.num_train)
    stem = ", ImageNet stem" if opts["imagenet_stem"] else ""
    return (f"train: {data_label(info)}, {num_train} training images, "
            f"C={opts['channels']}, {opts['layers']} layers{stem}, "
            f"{parameters / 1e3:.1f}k parameters"
            + (f", {format_amount(madds, 'madds')}" if madds is not None else "")
            + f", {opts['epochs']} epochs of "
            f"{steps_per_epoch} steps"
            + (", mixed precision (float16)" if opts["mixed_precision"] else "")
            + replicas)
