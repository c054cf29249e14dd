"""The digits defaults make the method act, checked on one real default search (`kdarts
search`'s options, seed 0; one thread per kernel, as the command and conftest set): crb
prunes, the genes move from the initial α's, α moves."""

import json

import numpy as np
import pytest

from kdarts.image.genotype import Genotype
from kdarts.runs import SEARCH_DEFAULTS, search_run


def genes(genotype: dict) -> list:
    return [tuple(g) for cell in ("normal", "reduce") for g in genotype[cell]]


@pytest.mark.slow
def test_default_digits_search_prunes_and_decides(tmp_path):
    folder = tmp_path / "search"
    result = search_run(str(folder), report=None, progress=False)
    assert result.complete
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
