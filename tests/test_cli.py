"""The ``kdarts`` command line, end to end on tiny settings, and its error handling.

Tracing a search step dominates the cost, so the searches are few: one complete
search (in process) feeding show → train → export, and one search interrupted
after its first epoch and resumed, each part in a fresh process, compared with
the complete one. Every bad-input case must fail with a one-line error before any
dataset is loaded or network built, and leave existing files untouched.
"""

import csv
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from kdarts.cli import main
from kdarts.genotype import Genotype

# 8 weight steps per epoch (64 of the 96 examples; the search split gets 1/(1+k) = 1/3)
TINY_SEARCH = [
    "--channels", "4", "--layers", "3", "--steps", "2",
    "--primitives", "max_pool_3x3,skip_connect,sep_conv_3x3",
    "--batch-size", "8", "--max-examples", "96", "--epochs", "2",
    "--schedule", "fixed", "--every", "2", "--seed", "1",
]
TINY_TRAIN = ["--channels", "4", "--layers", "3", "--epochs", "1", "--batch-size", "32",
              "--max-examples", "64", "--seed", "0"]
SEARCH_OUTPUTS = {"run.json", "genotype.json", "history.csv", "search_record.json",
                  "checkpoint.weights.h5", "checkpoint.json", "alpha.png", "schedule.png",
                  "genotype.png"}
PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    """Run the CLI in process; unexpected exceptions propagate (click's exits do not)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run_process(*args, cwd):
    """Run the CLI in a fresh Python process (TensorFlow state is per process)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "kdarts.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=900)


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def snapshot(folder):
    """Every file under ``folder`` with its content hash and modification time."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, folder)] = (digest, os.stat(path).st_mtime_ns)
    return out


@pytest.fixture
def no_tf_work(monkeypatch):
    """Make loading a dataset or building a network fail loudly: errors must come first."""
    import kdarts.data
    import kdarts.eval
    import kdarts.search

    def forbidden(*args, **kwargs):
        raise AssertionError("the CLI did TensorFlow work before rejecting its input")

    for module, name in ((kdarts.data, "search_datasets"), (kdarts.data, "train_datasets"),
                         (kdarts.search, "SearchNetwork"), (kdarts.eval, "EvalNetwork")):
        monkeypatch.setattr(module, name, forbidden)


# ------------------------------------------------------------------------------ help


@pytest.mark.parametrize("command, defaults", [
    ("search", ["default: kdarts_digits", "default: crb", "default: dynamic",
                "default: proximity", "default: 0.1", "default: 10", "default: 8",
                "default: runs/search"]),
    ("train", ["default: runs/search/genotype.json", "default: 20", "default: 16",
               "default: auxiliary", "default: runs/train"]),
    ("show", []),
    ("export", ["default: onnx", "default: verify", "saved_models/"]),
    ("quickstart", ["default: runs/quickstart", "default: saved_models/quickstart.onnx"]),
])
def test_help_shows_defaults(command, defaults):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.output
    text = " ".join(result.output.split())  # undo click's line wrapping
    for default in defaults:
        assert default in text, f"{command} --help lacks {default}:\n{result.output}"


def test_group_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("search", "train", "show", "export", "quickstart"):
        assert command in result.output


# ---------------------------------------------------------------------------- errors


def test_unknown_dataset(tmp_path, no_tf_work):
    out = tmp_path / "run"
    result = invoke("search", "--dataset", "imagenet_a", "--out", out)
    assert_one_line_error(result, "Unknown dataset 'imagenet_a'", "kdarts_digits", "cifar10")
    assert not out.exists()
    result = invoke("train", "--genotype", "DARTS_V2", "--dataset", "nope", "--out", out)
    assert_one_line_error(result, "Unknown dataset 'nope'")
    assert not out.exists()


def test_bad_primitives(tmp_path, no_tf_work):
    result = invoke("search", "--primitives", "sep_conv_3x3,conv_9x9", "--out", tmp_path / "r")
    assert_one_line_error(result, "conv_9x9")
    result = invoke("search", "--primitives", "none,skip_connect", "--out", tmp_path / "r")
    assert_one_line_error(result, "'none'")
    assert not (tmp_path / "r").exists()


def fake_run(folder, **changes):
    """A folder holding another search run's run.json and outputs."""
    folder.mkdir()
    args = {"dataset": "kdarts_digits", "epochs": 8, "activation": "crb",
            "schedule": "dynamic", "every": 10, "reg": "proximity", "rho": 0.1,
            "admm_every": 10, "split": "dynamic", "batch_size": 32, "channels": 8,
            "layers": 5, "steps": 4, "primitives": None, "max_examples": None, "seed": 0,
            "unrolled": False, **changes}
    (folder / "run.json").write_text(json.dumps({"command": "search", "args": args}))
    (folder / "genotype.json").write_text(json.dumps(Genotype.from_dict(
        {"normal": [["skip_connect", 0]] * 8, "reduce": [["max_pool_3x3", 1]] * 8}).to_dict()))
    (folder / "history.csv").write_text("epoch,loss\n0,1.0\n")
    return folder


def test_different_run_is_refused(tmp_path, no_tf_work):
    folder = fake_run(tmp_path / "run", seed=7, epochs=3)
    before = snapshot(folder)
    result = invoke("search", "--out", folder)
    assert_one_line_error(result, "different search run", "seed: 7 → 0", "epochs: 3 → 8")
    assert snapshot(folder) == before
    # --resume with other arguments is the same refusal (and still changes nothing)
    (folder / "checkpoint.json").write_text('{"epoch": 1}')
    (folder / "checkpoint.weights.h5").write_bytes(b"weights")
    before = snapshot(folder)
    result = invoke("search", "--out", folder, "--resume", "--seed", "7")
    assert_one_line_error(result, "different search run", "epochs: 3 → 8",
                          "pass the same arguments")
    assert snapshot(folder) == before


def test_same_run_needs_resume(tmp_path, no_tf_work):
    folder = fake_run(tmp_path / "run")
    (folder / "checkpoint.json").write_text('{"epoch": 3}')
    (folder / "checkpoint.weights.h5").write_bytes(b"weights")
    before = snapshot(folder)
    result = invoke("search", "--out", folder)
    assert_one_line_error(result, "already holds this search", "epoch 3 of 8", "--resume")
    assert snapshot(folder) == before


def test_resume_without_checkpoint(tmp_path, no_tf_work):
    result = invoke("search", "--out", tmp_path / "missing", "--resume")
    assert_one_line_error(result, "--resume: no checkpoint")
    assert not (tmp_path / "missing").exists()
    folder = fake_run(tmp_path / "run")  # same arguments as the defaults, no checkpoint
    before = snapshot(folder)
    result = invoke("search", "--out", folder, "--resume")
    assert_one_line_error(result, "--resume: no checkpoint")
    assert snapshot(folder) == before


def test_outputs_without_run_json_are_refused(tmp_path, no_tf_work):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "genotype.json").write_text("{}")
    before = snapshot(folder)
    result = invoke("search", "--out", folder)
    assert_one_line_error(result, "genotype.json", "no run.json")
    assert snapshot(folder) == before
    file_out = tmp_path / "file"
    file_out.write_text("x")
    assert_one_line_error(invoke("search", "--out", file_out), "is a file")


def test_train_invalid_genotype(tmp_path, no_tf_work):
    bad = tmp_path / "genotype.json"
    bad.write_text(json.dumps({"normal": [["conv_7x7", 0]] * 8,
                               "reduce": [["max_pool_3x3", 0]] * 8}))
    out = tmp_path / "train"
    result = invoke("train", "--genotype", bad, "--out", out)
    assert_one_line_error(result, str(bad), "unknown op 'conv_7x7'")
    bad.write_text('{"normal": [["skip_connect", 0]')
    assert_one_line_error(invoke("train", "--genotype", bad, "--out", out), "malformed JSON")
    assert_one_line_error(invoke("train", "--genotype", "DARTS_V9", "--out", out), "DARTS_V9")
    assert_one_line_error(invoke("show", bad), "malformed JSON")
    assert not out.exists()


def test_train_refuses_existing_outputs(tmp_path, no_tf_work):
    out = tmp_path / "train"
    out.mkdir()
    (out / "metrics.json").write_text('{"test_accuracy": 0.99}')
    before = snapshot(out)
    result = invoke("train", "--genotype", "DARTS_V2", "--out", out)
    assert_one_line_error(result, "metrics.json", "--overwrite")
    assert snapshot(out) == before


def test_export_errors(tmp_path):
    assert_one_line_error(invoke("export", tmp_path / "none.keras"), "no such file")
    garbage = tmp_path / "model.keras"
    garbage.write_bytes(b"not a zip archive")
    out = tmp_path / "out.onnx"
    out.write_bytes(b"previous export")
    result = invoke("export", garbage, "--out", out)
    assert_one_line_error(result, "not a valid Keras archive")
    assert out.read_bytes() == b"previous export"
    result = invoke("export", garbage, "--format", "tflite")
    assert result.exit_code != 0 and "tflite" in result.output


# ----------------------------------------------------------------- end to end (slow)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One complete tiny search, in process: (folder, CLI result)."""
    folder = tmp_path_factory.mktemp("search") / "a"
    result = invoke("search", *TINY_SEARCH, "--out", folder)
    assert result.exit_code == 0, result.output
    return folder, result


@pytest.mark.slow
def test_search_writes_every_output(searched):
    folder, result = searched
    assert SEARCH_OUTPUTS <= set(os.listdir(folder))
    assert not [f for f in os.listdir(folder) if f.startswith(".tmp")]
    run = json.loads((folder / "run.json").read_text())
    assert run["args"]["epochs"] == 2 and run["args"]["channels"] == 4
    assert run["steps_per_epoch"] == 8
    genotype = Genotype.load(folder / "genotype.json")
    assert genotype.steps == 2
    assert json.loads((folder / "checkpoint.json").read_text()) == {
        "epoch": 2, "search_step": 16, "alpha_steps": 8}
    with open(folder / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    record = json.loads((folder / "search_record.json").read_text())
    assert [e["epoch"] for e in record["epochs"]] == [0, 1, 2]
    assert [b["step"] for b in record["batches"]] == list(range(1, 17))
    assert sum(b["took_alpha_step"] for b in record["batches"]) == 8
    assert record["epochs"][-1]["genotype"] == genotype.to_dict()
    assert np.array(record["epochs"][-1]["alpha_normal"]).shape == (5, 3)
    # α moved: 8 α steps of Adam(3e-4) since the initial 1/3
    assert not np.allclose(record["epochs"][0]["alpha_normal"],
                           record["epochs"][-1]["alpha_normal"], atol=1e-4)
    for png in ("alpha.png", "schedule.png", "genotype.png"):
        assert (folder / png).read_bytes()[:8] == PNG
    last = result.output.strip().splitlines()[-1]
    assert "search done" in last and "genotype.json" in last and str(folder.name) in last


@pytest.mark.slow
def test_show_train_export(searched, tmp_path):
    folder, _ = searched
    result = invoke("show", folder / "genotype.json", "--png", tmp_path / "cells.png")
    assert result.exit_code == 0
    assert "normal cell:" in result.output and "reduction cell:" in result.output
    assert (tmp_path / "cells.png").read_bytes()[:8] == PNG
    assert invoke("show", folder).output.startswith(result.output.splitlines()[0])

    train_dir = tmp_path / "train"
    result = invoke("train", "--genotype", folder / "genotype.json", *TINY_TRAIN,
                    "--out", train_dir)
    assert result.exit_code == 0, result.output
    metrics = json.loads((train_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["num_test"] == 360
    assert metrics["genotype"] == Genotype.load(folder / "genotype.json").to_dict()
    assert f"test accuracy {100 * metrics['test_accuracy']:.2f}%" in result.output
    assert "model.keras" in result.output.strip().splitlines()[-1]
    assert (train_dir / "model.keras").exists()

    onnx_path = tmp_path / "saved" / "tiny.onnx"
    result = invoke("export", train_dir / "model.keras", "--format", "onnx", "--out", onnx_path)
    assert result.exit_code == 0, result.output
    assert "max |Δlogits|" in result.output and "tiny.onnx" in result.output
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"images": np.zeros((2, 8, 8, 3), np.float32)})[0]
    assert logits.shape == (2, 10)


@pytest.mark.slow
def test_resume_in_a_new_process_matches_uninterrupted(searched, tmp_path):
    folder_a, _ = searched
    folder_b = tmp_path / "b"
    first = run_process("search", *TINY_SEARCH, "--out", folder_b, "--stop-after-epoch", "1",
                        cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "stopped after epoch 1 of 2" in first.stdout
    assert json.loads((folder_b / "checkpoint.json").read_text())["epoch"] == 1
    assert not (folder_b / "genotype.json").exists()

    # the same run without --resume, or --resume with other arguments: refused, untouched
    before = snapshot(folder_b)
    assert_one_line_error(invoke("search", *TINY_SEARCH, "--out", folder_b),
                          "already holds this search", "--resume")
    assert_one_line_error(invoke("search", *TINY_SEARCH, "--out", folder_b, "--resume",
                                 "--rho", "0.2"), "different search run", "rho: 0.1 → 0.2")
    assert snapshot(folder_b) == before

    second = run_process("search", *TINY_SEARCH, "--out", folder_b, "--resume", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming" in second.stdout and "after epoch 1 of 2" in second.stdout

    assert Genotype.load(folder_b / "genotype.json") == Genotype.load(folder_a / "genotype.json")
    rec_a = json.loads((folder_a / "search_record.json").read_text())
    rec_b = json.loads((folder_b / "search_record.json").read_text())
    assert [e["epoch"] for e in rec_b["epochs"]] == [0, 1, 2]
    for ea, eb in zip(rec_a["epochs"], rec_b["epochs"]):
        for key in ("alpha_normal", "alpha_reduce"):
            np.testing.assert_allclose(eb[key], ea[key], rtol=0, atol=1e-6)
        assert eb["genotype"] == ea["genotype"]
    assert [b["step"] for b in rec_b["batches"]] == list(range(1, 17))
    for key in ("step_fi", "fi_ewma", "took_alpha_step"):
        np.testing.assert_allclose([b[key] for b in rec_b["batches"]],
                                   [b[key] for b in rec_a["batches"]], rtol=1e-4)
    with open(folder_b / "history.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "1"]
    assert json.loads((folder_b / "checkpoint.json").read_text()) == json.loads(
        (folder_a / "checkpoint.json").read_text())
