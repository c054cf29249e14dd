"""tools/study.py: its measures on hand-made inputs, and its skip/resume/report logic on
fake run folders (search_run replaced: no search network is built)."""

import json
import os
import sys

import numpy as np
import pytest

from kdarts.image.genotype import CRB_PRIMITIVES, DARTS_V2, PRIMITIVES, Genotype, discretize
from kdarts.runs import SearchResult, resolve_options

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tools"))
import study  # noqa: E402

OPS = CRB_PRIMITIVES  # the genotype ops of both activations ("none" is never kept)
CRB, SOFTMAX = study.Variant("crb", "dynamic", "proximity"), study.Variant("softmax", "dynamic",
                                                                            "proximity")


def uniform(op: str, source: int = 0) -> Genotype:
    return Genotype(normal=[(op, source), (op, 1 - source)] + [(op, 0), (op, 1)] * 3,
                    reduce=[(op, 0), (op, 1)] * 4)


def test_jaccard_and_agreement():
    a, b = uniform("sep_conv_3x3"), uniform("max_pool_3x3")
    assert study.jaccard(study.gene_set(a), study.gene_set(a)) == 1.0
    assert study.agreement([a, a, a]) == 1.0
    assert study.agreement([a, b]) == 0.0  # same inputs, other ops: no gene in common
    assert study.agreement([a]) is None
    # one gene of 16 differs: 15 shared of 17 distinct
    c = Genotype(normal=[("skip_connect", 0)] + list(a.normal[1:]), reduce=a.reduce)
    assert study.agreement([a, c]) == pytest.approx(15 / 17)
    assert study.agreement([a, a, b]) == pytest.approx(1 / 3)  # pairs: 1, 0, 0
    # the genes are (cell, node, input, op): the two cells' genes are distinct
    assert len(study.gene_set(DARTS_V2)) == 16


def test_random_genotypes_are_valid_and_seeded():
    draw = [study.random_genotype(np.random.default_rng(3), OPS, steps=4) for _ in range(2)]
    assert draw[0] == draw[1]  # same seed, same genotype
    rng = np.random.default_rng(5)
    genotypes = [study.random_genotype(rng, OPS) for _ in range(300)]
    assert len({g for g in genotypes}) > 290
    inputs = set()
    for g in genotypes:
        for genes in (g.normal, g.reduce):
            for node in range(4):
                (op1, a), (op2, b) = genes[2 * node:2 * node + 2]
                assert a != b and 0 <= a < node + 2 and 0 <= b < node + 2
                assert {op1, op2} <= set(OPS)
                inputs.add((node, a))
    assert inputs == {(n, i) for n in range(4) for i in range(n + 2)}  # every input drawn
    mean, p95 = study.random_agreement(3, OPS)
    assert 0.02 < mean < 0.1 and mean < p95 < 0.2
    assert study.random_agreement.__wrapped__(3, OPS) == (mean, p95)  # seeded, not cached luck


def test_gene_margins_hand_made():
    primitives = ["none", "max_pool_3x3", "sep_conv_3x3"]
    act = np.array([
        [0.9, 0.2, 0.7],  # node 2 ← 0: sep (0.7) kept; none never competes
        [0.0, 0.5, 0.1],  # node 2 ← 1: pool (0.5) kept
        [0.0, 0.6, 0.3],  # node 3 ← 0: pool (0.6) kept second
        [0.0, 0.1, 0.8],  # node 3 ← 1: sep (0.8) kept first
        [0.0, 0.4, 0.2],  # node 3 ← 2: dropped, its best (0.4) is a rival of both genes
    ])
    assert discretize(act, primitives, steps=2)[0] == [
        ("sep_conv_3x3", 0), ("max_pool_3x3", 1), ("sep_conv_3x3", 1), ("max_pool_3x3", 0)]
    assert study.gene_margins(act, primitives, steps=2) == pytest.approx([
        0.7 - 0.2, 0.5 - 0.1, 0.8 - 0.4, 0.6 - 0.4])


def test_pruned_ops():
    masks = [np.ones((14, 7)), np.ones((14, 7))]
    assert study.pruned_ops(masks) == (0, 0.0)
    masks[1][:7, 0] = 0
    assert study.pruned_ops(masks) == (7, pytest.approx(7 / 196))


def test_eval_size_parameter_free_ops_are_smaller():
    free, convs = uniform("max_pool_3x3"), uniform("sep_conv_5x5")
    small = study.eval_size(free, 10, (8, 8, 3), channels=4, layers=3)
    assert 0 < small < study.eval_size(convs, 10, (8, 8, 3), channels=4, layers=3)


# ----------------------------------------------------------------- fake run folders


def write_run(folder, variant: study.Variant, seed: int, epochs: int = 2, complete=True):
    """A search folder as search_run leaves it: run.json, search_record.json (initial and
    final act(α)), history.csv and, once complete, genotype.json."""
    rng = np.random.default_rng(seed + 10 * (variant.activation == "crb"))
    primitives = list(CRB_PRIMITIVES if variant.activation == "crb" else PRIMITIVES)
    shape = (14, len(primitives))
    options = {**variant.options(), "seed": seed, "epochs": epochs}
    record = {"version": 1, "primitives": primitives, "activation": variant.activation,
              "steps": 4, "steps_per_epoch": 3, "epochs": [], "batches": []}
    for epoch, spread in ((0, 1e-4), (epochs, 0.5)):
        act, mask = {}, {}
        for cell in ("normal", "reduce"):
            mask[cell] = (rng.random(shape) > 0.3 * (variant.activation == "crb") * (epoch > 0))
            act[cell] = (1 / shape[1] + spread * rng.random(shape)) * mask[cell]
        genes = {c: discretize(act[c], primitives)[0] for c in act}
        record["epochs"].append({
            "epoch": epoch, "step": 3 * epoch, "genotype": Genotype(genes["normal"], (2, 3, 4, 5),
                                                                    genes["reduce"]).to_dict(),
            **{f"alpha_{c}": act[c].tolist() for c in act},
            **{f"mask_{c}": mask[c].astype(float).tolist() for c in mask},
            **({"logs": {"accuracy": 0.5 + 0.1 * seed, "alpha_steps": 4.0}} if epoch else {})})
    os.makedirs(folder, exist_ok=True)
    run = {"command": "search", "args": resolve_options("search", options),
           "num_classes": 10, "image_shape": [8, 8, 3]}
    for name, data in (("run.json", run), ("search_record.json", record)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(data, f)
    with open(os.path.join(folder, "history.csv"), "w") as f:
        f.write("epoch,accuracy\n0,0.4\n")
    if complete:
        Genotype.from_dict(record["epochs"][-1]["genotype"]).save(
            os.path.join(folder, "genotype.json"))
    return folder


@pytest.fixture
def fake_search(monkeypatch):
    """search_run replaced by one that finishes the folder at once; its calls are kept.
    Sizes come from a stand-in (no TensorFlow): 1000 + 100 per conv gene."""
    calls = []

    def search_run(out, **kwargs):
        calls.append((out, kwargs))
        variant = study.Variant(kwargs["activation"], kwargs["schedule"], kwargs["reg"])
        write_run(out, variant, kwargs["seed"], kwargs["epochs"])
        return SearchResult(out=out, epochs_done=kwargs["epochs"], complete=True)

    monkeypatch.setattr(study, "search_run", search_run)
    monkeypatch.setattr(study, "eval_size", lambda g, *a, **k: 1000 + 100 * sum(
        op not in study.CHEAP_OPS for op, _ in g.normal + g.reduce))
    return calls


def test_skip_resume_and_report(tmp_path, fake_search, capsys):
    out, doc = tmp_path / "study", tmp_path / "docs" / "study.md"
    write_run(out / "crb-dynamic-proximity" / "seed0", CRB, 0)
    write_run(out / "softmax-dynamic-proximity" / "seed1", SOFTMAX, 1, complete=False)
    doc.parent.mkdir()
    doc.write_text("old report")
    argv = ["--out", str(out), "--seeds", "0,1", "--activation", "crb,softmax", "--reg",
            "proximity", "--schedule", "dynamic", "--epochs", "2", "--doc", str(doc)]
    assert study.main(argv) == 0
    printed = capsys.readouterr().out
    assert "crb-dynamic-proximity seed 0: skip (complete)" in printed
    assert "softmax-dynamic-proximity seed 1: done in" in printed
    # the complete run is skipped; the interrupted one (no genotype.json) goes to search_run
    # with resume="auto", which continues it from its checkpoint
    folders = [os.path.relpath(c[0], out) for c in fake_search]
    assert folders == [os.path.join("crb-dynamic-proximity", "seed1"),
                       os.path.join("softmax-dynamic-proximity", "seed0"),
                       os.path.join("softmax-dynamic-proximity", "seed1")]
    assert all(c[1]["resume"] == "auto" and c[1]["epochs"] == 2 for c in fake_search)
    assert fake_search[1][1]["activation"] == "softmax" and fake_search[1][1]["seed"] == 0

    text = doc.read_text()
    for part in ("# Search study", "## The paper's claims at this scale",
                 "**crb reduces the final architecture's size** (dynamic/proximity):",
                 "**Performance stays comparable**: not tested here",
                 "## What this shows", "## Per variant", "## Per run",
                 "| crb-dynamic-proximity | 2 |", "| softmax-dynamic-proximity | 2 |",
                 "| crb-dynamic-proximity | 0 |", "| softmax-dynamic-proximity | 1 |",
                 "random genotypes", "epochs 2", "![size per variant](study_size.png)"):
        assert part in text, part
    assert "genes are a pool or skip" in text  # the size verdict's numbers
    assert sorted(os.listdir(doc.parent)) == ["study.md", "study_alpha.png", "study_size.png"]

    # --report-only searches nothing and rebuilds the same tables
    fake_search.clear()
    doc.write_text("stale")
    assert study.main(argv + ["--report-only"]) == 0
    assert fake_search == [] and "## Per run" in doc.read_text()


def test_finished_folder_with_other_options_is_refused(tmp_path, fake_search, capsys):
    out = tmp_path / "study"
    write_run(out / "crb-dynamic-proximity" / "seed0", CRB, 0, epochs=3)
    argv = ["--out", str(out), "--seeds", "0", "--activation", "crb", "--reg", "proximity",
            "--schedule", "dynamic", "--epochs", "2", "--doc", str(tmp_path / "s.md")]
    assert study.main(argv) == 1
    assert "epochs: 3 → 2" in capsys.readouterr().err
    assert fake_search == [] and not (tmp_path / "s.md").exists()


def test_grid_and_preset():
    parse = study.argparse.Namespace
    full = study.grid(parse(seeds=None, activation=None, reg=None, schedule=None, preset=None))
    assert len(full) == 3 * 2 * 3 * 2
    claims = study.grid(parse(seeds=None, activation="softmax", reg=None, schedule=None,
                              preset="claims"))
    assert {v.name for v, _ in claims} == {"crb-dynamic-proximity", "softmax-dynamic-proximity",
                                          "crb-dynamic-none", "crb-dynamic-admm"}
    assert {s for _, s in claims} == {0, 1, 2}
    assert study.Variant("crb", "fixed", "none").options()["every"] == 1
    assert "every" not in study.Variant("crb", "dynamic", "none").options()
