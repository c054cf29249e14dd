"""``quickstart_run``: search → train → export ONNX on the built-in digits."""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Callable

from kdarts.atomic import atomic_write_json
from kdarts.export import suffix_error
from kdarts.runs.defaults import SEARCH_DEFAULTS
from kdarts.runs.export import EXPORT_DIR, export_run
from kdarts.runs.folder import RUN_FILES, RunFolder, check_writable
from kdarts.runs.resume import search_state
from kdarts.runs.report import Report, describe_export, fmt_time, quiet, rel
from kdarts.runs.results import RunError
from kdarts.runs.search import search_run
from kdarts.runs.train import train_run
from kdarts.runs.watchdog import InterruptNote


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _own_export(out: str, path: str) -> bool:
    """Whether ``path`` is, unchanged, the export the quickstart in ``out`` wrote last."""
    try:
        with open(os.path.join(out, "export.json"), encoding="utf-8") as f:
            record = json.load(f)
        return (isinstance(record, dict) and record.get("path") == os.path.realpath(path)
                and record.get("sha256") == _file_sha256(path))
    except (OSError, ValueError):  # no record, or one that cannot be read: not ours
        return False


def quickstart_run(out: str = os.path.join("runs", "quickstart"),
                   export_to: str = os.path.join(EXPORT_DIR, "quickstart.onnx"),
                   report: Report | None = print, progress: bool = True,
                   overwrite: bool = False,
                   before_tensorflow: Callable[[], None] | None = None,
                   note: InterruptNote | None = None) -> dict:
    """Search → train → export ONNX on the built-in digits with the default settings.

    A rerun continues: a complete search or training in ``out`` is reused and an
    interrupted one resumes; the export is redone. ``out/export.json`` records the
    export (path and SHA-256), so a rerun replaces the quickstart's own export, while
    any other existing file at ``export_to`` (another quickstart's, or one changed
    since) is refused before anything starts unless ``overwrite``. ``out`` is locked
    while the quickstart runs. ``before_tensorflow`` is called once everything is
    checked, before TensorFlow is imported, and ``note`` is kept current (as for
    :func:`~kdarts.runs.search_run`).
    """
    report = report or quiet
    folder = RunFolder(out, "quickstart")
    out = folder.out
    with folder.lock():
        foreign = [e for e in folder.entries() if e not in RUN_FILES["quickstart"]]
        if foreign:
            raise RunError(f"--out {rel(out)} holds files that are not a kdarts quickstart "
                           f"({', '.join(foreign[:5])}); choose another --out (an empty or "
                           "new folder)")
        problem = suffix_error(export_to, "onnx")
        if problem:
            raise RunError(f"--export-to: {problem}")
        check_writable(export_to, "--export-to", folder=False)
        export_to = os.path.abspath(export_to)
        replace = os.path.lexists(export_to)
        if replace and not overwrite and not _own_export(out, export_to):
            raise RunError(f"--export-to {rel(export_to)} already exists (not this "
                           "quickstart's export); pass --overwrite to replace it, or choose "
                           "another --export-to")
        # both phases' folders are checked before anything starts (and prints)
        search_state(RunFolder(os.path.join(out, "search"), "search"), dict(SEARCH_DEFAULTS),
                     "auto")
        RunFolder(os.path.join(out, "train"), "train").read_run()
        if before_tensorflow is not None:
            before_tensorflow()
        hint = "`kdarts quickstart` again (same --out)"
        t0 = time.perf_counter()
        report("== 1/3 search ==")
        s = search_run(os.path.join(out, "search"), resume="auto", report=report,
                       progress=progress, resume_hint=hint, note=note)
        report("== 2/3 train ==")
        t = train_run(s.genotype_path, os.path.join(out, "train"), resume="auto",
                      report=report, progress=progress, resume_hint=hint, note=note)
        report("== 3/3 export ==")
        e = export_run(t.model_path, "onnx", export_to, verify=True, overwrite=replace)
        atomic_write_json(folder.path("export.json"), {
            "path": os.path.realpath(e.path), "sha256": _file_sha256(e.path)})
        report(describe_export(e))
        total = time.perf_counter() - t0
        report(f"quickstart done in {fmt_time(total)} (search {fmt_time(s.seconds)}, "
               f"train {fmt_time(t.seconds)}, export {fmt_time(e.seconds)}): test accuracy "
               f"{100 * t.test_accuracy:.2f}%; genotype {rel(s.genotype_path)}, model "
               f"{rel(t.model_path)}, ONNX {rel(e.path)}")
        return {"search": s, "train": t, "export": e, "seconds": total}
