"""What the study tools (study.py, pareto.py, separation.py) share: their report options,
the command line a report names, their run log and how an invocation ends on an error.

Each tool runs its grid of runs in folders under ``--out`` (a finished run is reused) and
rebuilds a Markdown report (``--doc``) from the finished ones.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time

from kdarts.atomic import atomic_write_json
from kdarts.runs import RunError, RunInterrupted


def report_arguments(parser: argparse.ArgumentParser, out: str, out_help: str, doc: str,
                     verbose_help: str) -> None:
    """``--out`` (runs/<out>), ``--doc`` (docs/<doc>), ``--report-only`` and ``--verbose``."""
    parser.add_argument("--out", default=os.path.join("runs", out), help=out_help)
    parser.add_argument("--doc", default=os.path.join("docs", doc),
                        help="the Markdown report; its PNGs go next to it")
    parser.add_argument("--report-only", action="store_true",
                        help="only rebuild the report from the finished runs")
    parser.add_argument("--verbose", action="store_true", help=verbose_help)


def command_line(tool: str, argv: list[str] | None) -> str:
    """The invocation as a report names it: ``python tools/<tool> ARGS``."""
    return shlex.join(["python", f"tools/{tool}"] + (sys.argv[1:] if argv is None else argv))


def error_status(err: RunError | RunInterrupted) -> int:
    """Say ``err`` in one line on stderr; the exit status (130 for an interruption)."""
    print(f"Error: {err}", file=sys.stderr)
    return 130 if isinstance(err, RunInterrupted) else 1


def is_complete(folder: str) -> bool:
    """A finished search writes genotype.json last (search_record.json every epoch)."""
    return all(os.path.exists(os.path.join(folder, n))
               for n in ("genotype.json", "search_record.json"))


def run_and_report(names: list[str], out: str, command: str, run, report) -> int:
    """A study tool's invocation: ``run(name)`` (the failures' lines) for each preset name
    with its wall time logged in ``out/<name>``, then ``report()`` (the doc's path); the
    exit status: 0, 1 when a run failed or on a RunError, 130 on an interruption."""
    failures = []
    try:
        for name in names:
            t0 = time.perf_counter()
            try:
                failures += run(name)
            finally:  # an interrupted invocation's time counts too
                log_invocation(os.path.join(out, name), command, time.perf_counter() - t0)
        print(f"report → {report()}")
    except (RunError, RunInterrupted) as err:
        return error_status(err)
    if failures:
        print(f"{len(failures)} run(s) failed; run the same command again to retry them",
              file=sys.stderr)
        return 1
    return 0


def read_json(path: str) -> dict | list | None:
    """The JSON file's content, or None if there is no such file."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def log_invocation(folder: str, command: str, seconds: float) -> None:
    """Append this invocation (command, start, wall time, the machine's 5-minute load
    average at its end: other jobs slow a run down) to ``folder/invocations.json``."""
    path = os.path.join(folder, "invocations.json")
    runs = read_json(path) or []
    end = datetime.datetime.now(datetime.timezone.utc)
    runs.append({"command": command, "seconds": round(seconds, 1),
                 "started": f"{end - datetime.timedelta(seconds=seconds):%Y-%m-%d %H:%M} UTC",
                 "load": round(os.getloadavg()[1], 2) if hasattr(os, "getloadavg") else None})
    os.makedirs(folder, exist_ok=True)
    atomic_write_json(path, runs)


def invocations_text(invocations: list[dict]) -> str:
    """Per command: from when, its wall time in all (per invocation when there were
    several: a finished run is reused, not redone) and the load averages logged."""
    parts = []
    for command in dict.fromkeys(r["command"] for r in invocations):
        mine = [r for r in invocations if r["command"] == command]
        loads = [r["load"] for r in mine if r.get("load") is not None]
        parts.append(f"`{command}` (started {mine[0]['started']}, "
                     f"{sum(r['seconds'] for r in mine) / 60:.1f} min wall time"
                     + (f" in {len(mine)} invocations: "
                        + ", ".join(f"{r['seconds'] / 60:.1f}" for r in mine) + " min"
                        if len(mine) > 1 else "")
                     + ("; 5-minute load average at the end: "
                        + ", ".join(f"{x:.1f}" for x in loads) if loads else "") + ")")
    return "; ".join(parts) or "no logged invocation"
