"""The same seeds give the same searches and training as the stored record.

``tests/data/stored_runs/<kind>.json`` were written by ``tools/record_runs.py``, one per
kind of CPU and kernels (``kdarts.runtime.machine_kind``): the first before the runs and the
search step were restructured (issue 25), on an AMD EPYC with TensorFlow's own kernels;
each later one by code that passed on a recorded kind. A restructure must not move a
single decision: the genotypes and the α-step decisions and pruned counts of every step
match exactly; losses, FI, thresholds, act(α) and the trained weights to float32 rounding.
On a kind with no record the test is skipped, saying so: another CPU's kernels round
differently, and 16 steps grow that into other decisions (FI 1 % apart with the same
genotype on an AVX-512 EPYC with oneDNN off, another genotype with it on). The recurrent
search (``kdarts search --dataset kdarts_text``) joined the record later: a kind recorded
before has no entry for it, and its comparison is skipped, saying so, until
``python tools/record_runs.py --add`` on that kind adds it."""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tools"))
import record_runs  # noqa: E402

EXACT = ("step", "took_alpha_step", "pruned_ops", "alpha_steps")


def stored_record(kind: str) -> dict:
    """This machine's kind's record; the test is skipped, saying so, if there is none."""
    path = record_runs.record_path(kind)
    if not os.path.exists(path):
        recorded = sorted(name[:-5] for name in os.listdir(record_runs.RECORDS))
        pytest.skip(f"no stored record for this machine's kind {kind!r} (recorded: "
                    f"{', '.join(recorded)}); add one with python tools/record_runs.py "
                    "from code that passes on a recorded kind")
    with open(path) as f:
        stored = json.load(f)
    assert stored["machine"] == kind
    return stored


def kinds_with(key: str) -> list[str]:
    """The kinds whose stored record holds ``key``."""
    kinds = []
    for name in sorted(os.listdir(record_runs.RECORDS)):
        with open(os.path.join(record_runs.RECORDS, name)) as f:
            if key in json.load(f):
                kinds.append(name[:-5])
    return kinds


def assert_close(new, old, rtol: float, atol: float, err_msg: str) -> None:
    """``new`` equals ``old`` to the tolerances; a value recorded as None (not finite)
    only by None."""
    if new is None or old is None:
        assert new is old, err_msg
    else:
        np.testing.assert_allclose(new, old, rtol=rtol, atol=atol, err_msg=err_msg)


def assert_same_search(name: str, new: dict, old: dict) -> None:
    """The genotype and every step's decisions equal, the numbers to float32 rounding."""
    assert new["genotype"] == old["genotype"], name
    assert len(new["batches"]) == len(old["batches"]), name
    for b_new, b_old in zip(new["batches"], old["batches"]):
        assert b_new.keys() == b_old.keys()
        for key in b_old:
            if key in EXACT:
                assert b_new[key] == b_old[key], (name, b_old["step"], key)
            else:
                assert_close(b_new[key], b_old[key], rtol=2e-5, atol=1e-6,
                             err_msg=f"{name} step {b_old['step']} {key}")
    for e_new, e_old in zip(new["epochs"], old["epochs"], strict=True):
        for key in e_old:
            assert_close(e_new[key], e_old[key], rtol=1e-5, atol=1e-6,
                         err_msg=f"{name} {key}")


@pytest.mark.slow
def test_runs_equal_the_stored_record(tmp_path):
    stored = stored_record(record_runs.machine_kind())
    now = record_runs.run_image(str(tmp_path))
    assert now["searches"].keys() == stored["searches"].keys()
    for name, old in stored["searches"].items():
        assert_same_search(name, now["searches"][name], old)
    np.testing.assert_allclose(now["train"]["test_accuracy"], stored["train"]["test_accuracy"])
    assert len(now["train"]["weights"]) == len(stored["train"]["weights"])
    for i, (w_new, w_old) in enumerate(zip(now["train"]["weights"],
                                           stored["train"]["weights"])):
        assert w_new["shape"] == w_old["shape"], i
        for key in ("sum", "abs_sum", "first"):
            np.testing.assert_allclose(w_new[key], w_old[key], rtol=1e-4, atol=1e-5,
                                       err_msg=f"trained weight {i} {key}")


@pytest.mark.slow
def test_recurrent_search_equals_the_stored_record(tmp_path):
    """``kdarts search --dataset kdarts_text``'s steps, act(α), masks, validation losses
    and genotype, held to the record as the image searches are. A kind recorded before
    this run was added has no entry for it: skipped, saying so, until ``python
    tools/record_runs.py --add`` on that kind adds it (the image entries kept)."""
    kind = record_runs.machine_kind()
    stored = stored_record(kind)
    if "recurrent_searches" not in stored:
        pytest.skip(f"no stored record of the recurrent search for this machine's kind "
                    f"{kind!r} yet (its record predates that run; recorded on: "
                    f"{', '.join(kinds_with('recurrent_searches'))}); add it with python "
                    "tools/record_runs.py --add from code that passes on a recorded kind")
    now = record_runs.run_recurrent(str(tmp_path))["recurrent_searches"]
    assert now.keys() == stored["recurrent_searches"].keys()
    for name, old in stored["recurrent_searches"].items():
        assert_same_search(f"recurrent {name}", now[name], old)
