"""tools/pareto.py: pruning afterwards and random draws under a budget on hand-made cost
tables, and the quick preset end to end (searches, trainings, report, reuse)."""

import json
import re
import os
import sys

import numpy as np
import pytest

from kdarts.image.costs import CostTable
from kdarts.image.genotype import Genotype

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tools"))
import pareto  # noqa: E402

OPS = ("max_pool_3x3", "skip_connect", "sep_conv_3x3")
# steps 2: 5 edges per cell; a sep_conv costs 10, a skip 1 (3 on the reduce cell's inputs,
# a FactorizedReduce there), a pool 0; every genotype pays 100
COSTS = {"normal": np.tile([0.0, 1.0, 10.0], (5, 1)),
         "reduce": np.array([[0, 3, 10], [0, 3, 10], [0, 1, 10], [0, 3, 10], [0, 3, 10.0]])}
TABLE = CostTable("params", COSTS, 100.0, OPS)


def genotype(normal, reduce) -> Genotype:
    return Genotype(normal, [2, 3], reduce, [2, 3])


def test_pruning_replaces_by_saving_per_lost_activation():
    d = genotype([("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
                  ("skip_connect", 2)],
                 [("skip_connect", 0), ("max_pool_3x3", 1), ("max_pool_3x3", 0),
                  ("max_pool_3x3", 2)])
    assert TABLE.of(d) == 100 + 31 + 3
    act = {t: np.full((5, 3), 0.1) for t in COSTS}
    act["normal"][0, 2] = 0.9  # node 2's sep_conv from 0 is the most wanted
    act["normal"][1, 2] = 0.5
    act["normal"][2, 2] = 0.3  # node 3's from 0: least lost per parameter saved
    act["normal"][4, 1] = 0.2  # the skips lose a little too
    act["reduce"][0, 1] = 0.5
    pruned, steps = pareto.prune_to_budget(d, act, TABLE, limit=124)
    assert TABLE.of(pruned) <= 124
    assert len(steps) == 1 and steps[0].startswith("normal node 3: sep_conv_3x3(0) → "
                                                   "max_pool_3x3(0)")
    assert pruned.normal[2] == ("max_pool_3x3", 0) and pruned.normal[0] == d.normal[0]
    # a replacement that loses no activation goes first: the reduce skip (saves 3)
    act["reduce"][0] = [0.5, 0.2, 0.1]
    pruned, steps = pareto.prune_to_budget(d, act, TABLE, limit=133)
    assert steps[0].startswith("reduce node 2: skip_connect(0) → max_pool_3x3(0)")
    assert TABLE.of(pruned) == 131
    # the edges stay: below the cheapest ops on D's edges, nothing fits
    assert pareto.prune_to_budget(d, act, TABLE, limit=99)[0] is None


def test_random_draws_within_budget_are_seeded():
    a, draws = pareto.draw_within(TABLE, 110.0, OPS, steps=2, seed=3)
    assert TABLE.of(a) <= 110 and draws >= 1
    assert pareto.draw_within(TABLE, 110.0, OPS, steps=2, seed=3) == (a, draws)
    assert pareto.draw_within(TABLE, 99.0, OPS, steps=2, seed=3, max_draws=50) == (None, 50)


def test_the_report_keeps_the_expected_cost_section(tmp_path):
    doc = tmp_path / "budget.md"
    assert pareto.kept_section(str(doc)) == ""
    doc.write_text("# Old report\n\n" + pareto.KEPT_SECTION + " (λ)\n\n| a |\n")
    assert pareto.kept_section(str(doc)) == pareto.KEPT_SECTION + " (λ)\n\n| a |\n"


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path, monkeypatch):
    out, doc = str(tmp_path / "runs"), str(tmp_path / "docs" / "budget.md")
    argv = ["--quick", "--out", out, "--doc", doc]
    assert pareto.main(argv) == 0
    text = open(doc, encoding="utf-8").read()
    assert os.path.exists(str(tmp_path / "docs" / "budget.png"))
    for row in ("| params | 80 % |", "| madds | 80 % |", "| 80 % | budgeted |",
                "| 80 % | random |", "| 80 % | pruned |"):
        assert row in text
    # every budgeted genotype, built, is within its budget (or the budget is refused)
    with open(os.path.join(out, "reference", "search", "run.json"), encoding="utf-8") as f:
        run = json.load(f)
    geometry = pareto.Geometry(run["num_classes"], tuple(run["image_shape"]), 4, 3)
    reference = geometry.count(Genotype.load(os.path.join(out, "reference", "search",
                                                          "genotype.json")))
    found = 0
    for kind in pareto.KINDS:
        limit = int(0.8 * reference[kind])
        folder = pareto.search_folder(out, kind, 0.8, 0)
        if os.path.exists(os.path.join(folder, "genotype.json")):
            found += 1
            assert geometry.count(Genotype.load(os.path.join(folder, "genotype.json")))[kind] \
                <= limit
        else:
            assert f"| {kind} | 80 % | {limit:,} | 0 | refused: " in text
    assert found >= 1
    # a rerun reuses every finished run: nothing is searched or trained again
    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was redone")

    monkeypatch.setattr(pareto, "search_run", refuse)
    monkeypatch.setattr(pareto, "train_run", refuse)
    section = pareto.KEPT_SECTION + "\n\ntools/budget_dual.py's table\n"
    with open(doc, "a", encoding="utf-8") as f:
        f.write("\n" + section)
    assert pareto.main(argv) == 0
    text = open(doc, encoding="utf-8").read()
    assert text.endswith("\n\n" + section) and text.count(pareto.KEPT_SECTION) == 1
    with open(os.path.join(out, "invocations.json"), encoding="utf-8") as f:
        assert len(json.load(f)) == 2
    assert re.search(r"\| 80 % \| [0-9,]+ \| budgeted \| 1 \|", open(doc, encoding="utf-8").read())
