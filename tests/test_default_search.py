"""The digits defaults make the method act, checked on one real default search run
through the study tool, which this also smoke-tests: a real run and the report written
from its folder (the tool's logic over several variants is tested with stand-ins in
test_study.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kdarts.image.genotype import Genotype
from kdarts.runs import SEARCH_DEFAULTS

STUDY = os.path.join(os.path.dirname(__file__), os.pardir, "tools", "study.py")


def study(*args, cwd):
    done = subprocess.run([sys.executable, STUDY, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def genes(genotype: dict) -> list:
    return [tuple(g) for cell in ("normal", "reduce") for g in genotype[cell]]


@pytest.mark.slow
def test_default_digits_search_prunes_and_decides(tmp_path):
    out, doc = tmp_path / "study", tmp_path / "docs" / "study.md"
    # 1. `kdarts search`'s digits defaults (crb, dynamic, proximity, seed 0), nothing else
    printed = study("--out", out, "--doc", doc, "--seeds", "0", "--activation", "crb",
                    "--schedule", "dynamic", "--reg", "proximity", cwd=tmp_path)
    assert "crb-dynamic-proximity seed 0: done in" in printed
    folder = out / "crb-dynamic-proximity" / "seed0"
    run = json.loads((folder / "run.json").read_text())
    assert run["args"] == {**SEARCH_DEFAULTS, "seed": 0}
    record = json.loads((folder / "search_record.json").read_text())
    first, last = record["epochs"][0], record["epochs"][-1]
    masks = np.array(last["mask_normal"] + last["mask_reduce"])
    assert masks.size == 2 * 14 * 7
    assert 1 - masks.mean() >= 0.25, f"only {1 - masks.mean():.1%} of the crb ops pruned"
    final = genes(Genotype.load(folder / "genotype.json").to_dict())
    changed = sum(a != b for a, b in zip(genes(first["genotype"]), final))
    assert changed >= len(final) / 2, f"{changed} of {len(final)} genes changed"
    # α visibly moved: some act(α) by at least 0.3 from its initial value
    moved = np.abs(np.array(last["alpha_normal"]) - np.array(first["alpha_normal"])).max()
    assert moved >= 0.3, moved

    # 2. the report alone, from the finished folder (several variants: test_study.py)
    study("--out", out, "--doc", doc, "--seeds", "0", "--activation", "crb",
          "--schedule", "dynamic", "--reg", "proximity", "--report-only", cwd=tmp_path)
    text = doc.read_text()
    for part in ("| crb-dynamic-proximity | 0 |", "## What this shows",
                 "![size per variant](study_size.png)"):
        assert part in text, part
    pruned = round(100 * (1 - masks.mean()))
    assert f"({pruned}%)" in text  # the crb row reports the share asserted above
    assert (doc.parent / "study_alpha.png").stat().st_size > 0
