"""tools/study.py and tools/study_measures.py: the measures and statistics on hand-made
inputs, and the runs' skip/resume/failure logic and the report on fake run folders (the
search and training replaced: no network is built). The real runs: test_study_quick.py."""

import json
import os
import sys

import numpy as np
import pytest
from scipy import stats

from kdarts.image.genotype import CRB_PRIMITIVES, DARTS_V2, Genotype
from kdarts.recurrent.genotype import CRB_RECURRENT_PRIMITIVES, RecurrentGenotype
from kdarts.runs import SearchResult, TrainResult

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tools"))
import study  # noqa: E402
import study_measures as measures  # noqa: E402


def uniform(op: str, source: int = 0) -> Genotype:
    return Genotype(normal=[(op, source), (op, 1 - source)] + [(op, 0), (op, 1)] * 3,
                    reduce=[(op, 0), (op, 1)] * 4)


def test_jaccard_and_agreement():
    a, b = uniform("sep_conv_3x3"), uniform("max_pool_3x3")
    assert measures.jaccard(measures.gene_set(a), measures.gene_set(a)) == 1.0
    assert measures.agreement([a, a, a]) == 1.0
    assert measures.agreement([a, b]) == 0.0  # same inputs, other ops: no gene in common
    assert measures.agreement([a]) is None
    # one gene of 16 differs: 15 shared of 17 distinct
    c = Genotype(normal=[("skip_connect", 0)] + list(a.normal[1:]), reduce=a.reduce)
    assert measures.agreement([a, c]) == pytest.approx(15 / 17)
    assert measures.agreement([a, a, b]) == pytest.approx(1 / 3)  # pairs: 1, 0, 0
    # the genes are (cell, node, input, op): the two cells' genes are distinct
    assert len(measures.gene_set(DARTS_V2)) == 16
    r = RecurrentGenotype(recurrent=[("tanh", k) for k in range(8)])
    s = RecurrentGenotype(recurrent=[("relu", 0)] + [("tanh", k) for k in range(1, 8)])
    assert measures.agreement([r, s]) == pytest.approx(7 / 9)
    assert measures.genotype_text(s).startswith("relu(0) tanh(1)")


def test_random_genotypes_are_valid_uniform_and_seeded():
    draw = [measures.random_genotype(np.random.default_rng(3)) for _ in range(2)]
    assert draw[0] == draw[1]  # same seed, same genotype
    rng = np.random.default_rng(5)
    genotypes = [measures.random_genotype(rng) for _ in range(300)]
    assert len(set(genotypes)) > 290
    inputs = set()
    for g in genotypes:
        for genes in (g.normal, g.reduce):
            for node in range(4):
                (op1, a), (op2, b) = genes[2 * node:2 * node + 2]
                assert a != b and 0 <= a < node + 2 and 0 <= b < node + 2
                assert {op1, op2} <= set(CRB_PRIMITIVES)
                inputs.add((node, a))
    assert inputs == {(n, i) for n in range(4) for i in range(n + 2)}  # every input drawn
    # recurrent: node k (1-based) from states 0..k-1, each drawn about equally often
    rng = np.random.default_rng(1)
    cells = [measures.random_of("recurrent", rng) for _ in range(4000)]
    assert all(isinstance(c, RecurrentGenotype) for c in cells)  # constructed = validated
    last = np.bincount([c.recurrent[7][1] for c in cells], minlength=8)
    assert last.min() > 0.8 * 4000 / 8 and last.max() < 1.2 * 4000 / 8
    ops = {op for c in cells for op, _ in c.recurrent}
    assert ops == set(CRB_RECURRENT_PRIMITIVES)
    mean, p95 = measures.random_agreement(3)
    assert 0.02 < mean < 0.1 and mean < p95 < 0.2
    assert measures.random_agreement.__wrapped__(3) == (mean, p95)  # seeded, not cached luck
    # two random cells share node k's gene with chance 1/(4k): about 0.68 of 8 genes, a
    # Jaccard of about 0.68 / (16 - 0.68)
    r_mean, _ = measures.random_agreement(3, "recurrent")
    assert r_mean == pytest.approx(0.68 / 15.32, abs=0.006)


def test_pruned_ops():
    masks = [np.ones((14, 7)), np.ones((14, 7))]
    assert measures.pruned_ops(masks) == (0, 0.0)
    masks[1][:7, 0] = 0
    assert measures.pruned_ops(masks) == (7, pytest.approx(7 / 196))


def test_mean_ci_and_compare_hand_made():
    mean, half = study.mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(stats.t.ppf(0.975, 2) * 1 / np.sqrt(3))
    assert study.mean_ci([4.0]) == (4.0, None)
    a, b = [0.9, 0.95, 0.92], [0.8, 0.85, 0.82, 0.84]
    hi = study.compare(a, b, higher_is_better=True)
    assert hi["diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert hi["better"] == 1.0  # every a beats every b
    assert hi["p"] == pytest.approx(stats.mannwhitneyu(a, b).pvalue)
    assert hi["ci"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False)
                                     .confidence_interval().high - hi["diff"])
    lo = study.compare(a, b, higher_is_better=False)  # perplexity: lower is better
    assert lo["better"] == 0.0 and lo["p"] == hi["p"]
    assert study.compare([1.0, 1.0], [1.0, 1.0], True)["better"] == 0.5  # ties count half
    assert study.compare([1.0], b, True) is None


# ----------------------------------------------------------------- fake run folders

#: The fake metric: searched genotypes score by variant, random and fixed points worse.
SCORE = {"softmax": 0.80, "crb": 0.90}


def fake_runs(monkeypatch, fail: set | None = None):
    """Space.search and Space.train replaced by writers of finished folders; the calls
    are kept. A training whose folder name is in ``fail`` raises."""
    calls = []

    def search(self, folder, **kw):
        calls.append(("search", folder))
        rng = np.random.default_rng(kw["seed"] + 10 * (kw["activation"] == "crb"))
        genotype = measures.random_of(self.name, rng)
        cells = ["recurrent"] if self.name == "recurrent" else ["normal", "reduce"]
        rows = 36 if self.name == "recurrent" else 14
        mask = np.ones((rows, 4 if self.name == "recurrent" else 7))
        if kw["activation"] == "crb":
            mask[: rows // 2] = 0
        record = {"cells": cells, "inputs": 1 if self.name == "recurrent" else 2,
                  "keep": 1 if self.name == "recurrent" else 2,
                  "primitives": list(CRB_RECURRENT_PRIMITIVES if self.name == "recurrent"
                                     else CRB_PRIMITIVES),
                  "epochs": [{"epoch": e, **{f"alpha_{c}": (0.5 * mask).tolist() for c in cells},
                              **{f"mask_{c}": mask.tolist() for c in cells},
                              "logs": {"alpha_steps": 5.0 * e}} for e in (0, 1)]}
        os.makedirs(folder, exist_ok=True)
        for name, data in (("run.json", {"args": kw_args(kw)}), ("search_record.json", record)):
            with open(os.path.join(folder, name), "w") as f:
                json.dump(data, f)
        genotype.save(os.path.join(folder, "genotype.json"))
        return SearchResult(out=folder, epochs_done=1, complete=True)

    def train(self, genotype, folder, **kw):
        calls.append(("train", folder))
        group = folder.split(os.sep)[-2]
        if group in (fail or ()):
            raise ValueError(f"{group} broke")
        activation = study.VARIANTS.get(group, {}).get("activation")
        value = SCORE.get(activation, 0.5) + 0.01 * kw["seed"]
        if self.name == "recurrent":
            value = 300 * (1 - value)  # a perplexity: lower is better
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "run.json"), "w") as f:
            json.dump({"args": {**kw_args(kw), "genotype": genotype.to_dict()}}, f)
        size = 1000 + 100 * (activation == "softmax" and self.name == "image")
        with open(os.path.join(folder, "metrics.json"), "w") as f:
            json.dump({self.metric: value, "parameters": size,
                       "genotype": genotype.to_dict()}, f)
        return TrainResult(out=folder, epochs_done=1, complete=True,
                                 metrics={self.metric: value})

    monkeypatch.setattr(study.Space, "search", search)
    monkeypatch.setattr(study.Space, "train", train)
    return calls


def kw_args(kw: dict) -> dict:
    return {k: v for k, v in kw.items()
            if k not in ("resume", "report", "progress", "resume_hint")}


@pytest.fixture
def five_seeds(monkeypatch):
    """The quick presets with 5 seeds: a two-sided Mann–Whitney test of 3 against 3 can
    never reach p < 0.05 (its least p is 0.1), of 5 against 5 it can (0.008)."""
    for name in ("image-quick", "recurrent-quick"):
        monkeypatch.setitem(study.PRESETS, name,
                            study.dataclasses.replace(study.PRESETS[name], seeds=tuple(range(5))))


@pytest.mark.parametrize("space", ["image", "recurrent"])
def test_runs_skip_resume_fail_and_report(tmp_path, monkeypatch, capsys, five_seeds, space):
    out, doc = tmp_path / "runs", tmp_path / "docs" / "study.md"
    argv = ["--preset", space, "--quick", "--out", str(out), "--doc", str(doc)]
    calls = fake_runs(monkeypatch, fail={"darts_v1"})
    assert study.main(argv) == 1  # darts_v1's trainings failed; the rest ran
    err = capsys.readouterr().err
    assert err.count(f"failed {space}-quick train darts_v1") == 5 and "darts_v1 broke" in err
    assert sum(kind == "search" for kind, _ in calls) == 15  # 3 variants × 5 seeds
    assert sum(kind == "train" for kind, _ in calls) == 15 + 5 + 5 + 5
    folder = out / f"{space}-quick" / "search" / "darts" / "seed1"
    assert json.loads((folder / "run.json").read_text())["args"]["every"] == 1

    # again: only the failed trainings are retried, and now succeed
    calls = fake_runs(monkeypatch)
    assert study.main(argv) == 0
    assert [kind for kind, _ in calls] == ["train"] * 5
    assert all("darts_v1" in f for _, f in calls)
    text = doc.read_text()
    quick = f"{space}-quick"
    assert f"## {quick}" in text and "Not finished" not in text
    assert "**Does the search beat random here? Yes.**" in text
    assert "| crb, dynamic, ADMM | 5 |" in text
    assert "DARTS-PRIME improves" in text and ": held." in text
    assert "Seed against genotype: the sd over seeds of one genotype" in text
    for png in (f"study-{quick}.png", f"study-{quick}-alpha.png"):
        assert f"]({png})" in text and (doc.parent / png).stat().st_size > 0
    if space == "image":  # crb's genotypes are smaller in the fake sizes
        assert "**crb gives smaller architectures** (trained network's parameters): held" \
            in text
        assert "| 92.00 ± " in text  # prime's mean accuracy: 0.90 + 0.01 × seed, seeds 0-4
    else:
        assert "cannot show here: every recurrent genotype has the same size" in text
    assert "pruned" in text and "| 50 % |" in text  # crb's masks: half the rows pruned

    # a run folder of other options is refused, naming the field
    study.PRESETS[quick] = study.dataclasses.replace(
        study.PRESETS[quick], train={**study.PRESETS[quick].train, "epochs": 2})
    assert study.main(argv) == 1
    assert "epochs=1, this preset's is 2" in capsys.readouterr().err


def test_a_stopped_study_reports_what_finished(tmp_path, monkeypatch, five_seeds):
    out, doc = tmp_path / "runs", tmp_path / "study.md"
    fake_runs(monkeypatch)
    runner = study.Runner(str(out), "image-quick", "cmd")
    runner.preset = study.dataclasses.replace(runner.preset, seeds=(0, 1))  # 2-4 missing
    assert runner.run() == []
    study.write_report(str(out), str(doc), "cmd")
    text = doc.read_text()
    assert "Not finished: search darts seed 2" in text and "training random seed 2" in text
    assert "| random valid genotypes | 2 |" in text
