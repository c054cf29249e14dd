"""Resuming runs through the one skeleton: a folder an older kdarts wrote (run.json
without a version) upgrades and resumes, and a language model's training, which runs
the skeleton with its own loop, resumes exactly where an uninterrupted one ends."""

import csv
import json

import numpy as np
import pytest

from kdarts.runs import recurrent_train_run, search_run

TINY_SEARCH = dict(channels=4, layers=3, steps=2, primitives="max_pool_3x3,skip_connect",
                   batch_size=8, max_examples=64, epochs=2, every=2, threshold=1e9, seed=1,
                   skip_pruned_ops="never")
TINY_LM = dict(dataset="kdarts_text", units=8, bptt=10, vocab_size=50, max_tokens=1500,
               batch_size=8, epochs=2, lr=5.0, seed=0)


@pytest.mark.slow
def test_a_search_folder_of_an_older_kdarts_upgrades_and_resumes(tmp_path):
    out = tmp_path / "s"
    first = search_run(str(out), stop_after_epoch=1, report=None, progress=False,
                       **TINY_SEARCH)
    assert not first.complete and first.epochs_done == 1
    today = json.loads((out / "run.json").read_text())
    assert today["version"] == 2
    # as kdarts wrote it before run.json had a version, --mixed-precision and
    # --image-size, and when --skip-pruned-ops was a boolean
    args = {k: v for k, v in today["args"].items() if k not in ("image_size",
                                                                "mixed_precision")}
    older = {k: v for k, v in today.items() if k != "version"}
    (out / "run.json").write_text(json.dumps({**older, "args": {
        **args, "skip_pruned_ops": False}}))
    lines = []
    done = search_run(str(out), resume=True, report=lines.append, progress=False,
                      **TINY_SEARCH)
    assert done.complete and done.epochs_done == 2 and done.genotype is not None
    assert any("resuming" in line and "after epoch 1 of 2" in line for line in lines), lines
    assert json.loads((out / "run.json").read_text()) == {**older, "args": today["args"],
                                                          "version": 2}


def _weights(path):
    from kdarts.recurrent.export import load_language_model

    return [np.asarray(w) for w in load_language_model(str(path)).weights]


@pytest.mark.slow
def test_language_model_training_resumes_as_if_uninterrupted(tmp_path):
    whole = recurrent_train_run("DARTS_V2", str(tmp_path / "a"), report=None,
                                progress=False, **TINY_LM)
    lines = []
    first = recurrent_train_run("DARTS_V2", str(tmp_path / "b"), stop_after_epoch=1,
                                report=lines.append, progress=False, **TINY_LM)
    assert not first.complete and first.epochs_done == 1
    assert any("stopped after epoch 1 of 2" in line for line in lines), lines
    state = json.loads((tmp_path / "b" / "checkpoint" / "last" / "state.json").read_text())
    assert state["epoch"] == 1
    assert json.loads((tmp_path / "b" / "run.json").read_text())["version"] == 2
    resumed = recurrent_train_run("DARTS_V2", str(tmp_path / "b"), resume=True,
                                  report=lines.append, progress=False, **TINY_LM)
    assert resumed.complete and resumed.epochs_done == 2
    assert any("resuming" in line and "after epoch 1 of 2" in line for line in lines), lines
    for key in ("valid_perplexity", "test_perplexity", "train_loss"):
        assert resumed.metrics[key] == whole.metrics[key], key
    histories = []
    for run in ("a", "b"):
        with open(tmp_path / run / "history.csv", newline="") as f:
            histories.append(list(csv.DictReader(f)))
    assert histories[0] == histories[1] and [r["epoch"] for r in histories[0]] == ["0", "1"]
    for a, b in zip(_weights(tmp_path / "a" / "model.keras"),
                    _weights(tmp_path / "b" / "model.keras"), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_recurrent_training_stops_after_patience_epochs_without_a_better_loss(tmp_path,
                                                                               monkeypatch):
    """The run passes ``patience`` to the trainer's early stop (the reference's): a
    validation loss that never improves after the first epoch ends a 6-epoch training
    after epoch 1 + patience, complete, with its metrics."""
    import kdarts.recurrent.training as training
    from kdarts.runs import recurrent_train_run

    monkeypatch.setattr(training, "evaluate_loss", lambda *args, **kwargs: 5.0)
    lines = []
    result = recurrent_train_run("DARTS_V2", str(tmp_path / "t"), report=lines.append,
                                 progress=False, **{**TINY_LM, "epochs": 6, "patience": 2})
    assert result.complete and result.epochs_done == 3, lines
    assert any("converged after epoch 3" in line for line in lines), lines
    assert (tmp_path / "t" / "metrics.json").exists()
