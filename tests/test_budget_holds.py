"""tools/budget_holds.py at its quick size: a budgeted search, its network built
and counted within the budget, and a rerun reusing the finished searches."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tools"))
import budget_holds  # noqa: E402


@pytest.mark.slow
def test_quick_budgets_hold_and_a_rerun_reuses_the_searches(tmp_path, capsys, monkeypatch):
    table = tmp_path / "holds.md"
    # one kind: both take the same path through the tool (the search tests cover madds)
    assert budget_holds.main(["--quick", "--kinds", "params", "--out",
                              str(tmp_path / "runs"), "-o", str(table)]) == 0
    text = table.read_text()
    assert "params: 1 of 1 within budget." in text and text.count("| yes |") == 1

    def no_search(*args, **kwargs):
        raise AssertionError("a finished search was run again")

    monkeypatch.setattr("kdarts.runs.search_run", no_search)
    assert budget_holds.main(["--quick", "--kinds", "params", "--out",
                              str(tmp_path / "runs")]) == 0
