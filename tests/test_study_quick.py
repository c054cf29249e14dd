"""tools/study.py end to end on real (tiny) runs of both spaces: every search and training
of the quick presets, the report written from their folders, and a second invocation that
reuses every finished run (the logic over several seeds is tested with stand-ins in
test_study.py)."""

import json
import os
import subprocess
import sys

import pytest

STUDY = os.path.join(os.path.dirname(__file__), os.pardir, "tools", "study.py")


def study(*args, cwd):
    done = subprocess.run([sys.executable, STUDY, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("space", ["image", "recurrent"])
def test_quick_study(tmp_path, space):
    out, doc = tmp_path / "runs", tmp_path / "docs" / "study.md"
    argv = ["--preset", space, "--quick", "--out", out, "--doc", doc]
    printed = study(*argv, cwd=tmp_path)
    for variant in ("darts", "prime", "admm"):
        assert f"{space}-quick search {variant} seed 0: done" in printed
        folder = out / f"{space}-quick" / "search" / variant / "seed0"
        args = json.loads((folder / "run.json").read_text())["args"]
        assert args["activation"] == ("softmax" if variant == "darts" else "crb")
        assert args["reg"] == {"darts": "none", "prime": "proximity", "admm": "admm"}[variant]
    for group in ("darts", "prime", "admm", "random", "darts_v1", "darts_v2"):
        metrics = json.loads((out / f"{space}-quick" / "train" / group / "seed0" /
                              "metrics.json").read_text())
        if space == "image":
            assert 0 <= metrics["test_accuracy"] <= 1
        else:
            assert 1 < metrics["test_perplexity"] < 4000  # a 1-epoch model of ~1k words
    text = doc.read_text()
    quick = f"{space}-quick"
    assert f"## {quick}" in text and "Not finished" not in text
    assert (doc.parent / f"study-{quick}.png").stat().st_size > 0
    assert (doc.parent / f"study-{quick}-alpha.png").stat().st_size > 0
    section = text.split(f"## {quick}")[1].split("\n## ")[0]
    assert section.count("| darts_v2 | 0 |") == 1  # the per-genotype table
    # one seed: no test, said in the summary and the section
    assert f"| {quick} | not tested (fewer than 2 genotypes in a group) |" in text
    assert "Does the search beat random here? Not tested (fewer than 2 genotypes" in text

    # again: every run is finished, none is redone; the report is rebuilt
    printed = study(*argv, cwd=tmp_path)
    assert " search " not in printed and " train " not in printed
    invocations = json.loads((out / f"{space}-quick" / "invocations.json").read_text())
    assert len(invocations) == 2
