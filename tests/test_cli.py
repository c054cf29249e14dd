"""The ``kdarts`` command line, end to end on tiny settings, and its error handling.

Tracing a step dominates the cost, so the runs are few: one complete search (in
process) feeding show → train → export, one search and one training interrupted
after their first epoch and resumed, each part in a fresh process, compared with
the complete ones. Every bad-input case must fail with a one-line error before any
dataset is loaded or network built, and leave existing files untouched.
"""

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from kdarts.cli import main
from kdarts.image.genotype import Genotype

# 8 weight steps per epoch (64 of the 96 examples; the search split gets 1/(1+k) = 1/3)
TINY_SEARCH = [
    "--channels", "4", "--layers", "3", "--steps", "2",
    "--primitives", "max_pool_3x3,skip_connect,sep_conv_3x3",
    "--batch-size", "8", "--max-examples", "96", "--epochs", "2",
    "--schedule", "dynamic", "--every", "2", "--threshold", "1e9", "--seed", "1",
    # priced on the network TINY_TRAIN trains (cheapest genotype: 1,430 parameters)
    "--max-params", "1.6k", "--eval-channels", "4", "--eval-layers", "3",
]
# dynamic from a threshold FI never reaches: no α step at step 1 (no FI EWMA yet), then one
# on every step: the threshold rises by 1.05, then falls by 1.05^-2 a step (resume restores it)
TINY_TRAIN = ["--channels", "4", "--layers", "3", "--epochs", "2", "--batch-size", "32",
              "--max-examples", "320", "--seed", "0"]
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


@pytest.fixture(autouse=True)
def users_folder(tmp_path_factory, monkeypatch):
    """Every test runs in a folder of its own where a user has run ``kdarts quickstart``
    (its export at the default ``saved_models/quickstart.onnx``): a test relying on a
    default output path, or writing beside the user's files, fails here rather than in
    a checkout."""
    cwd = tmp_path_factory.mktemp("cwd")
    (cwd / "saved_models").mkdir()
    (cwd / "saved_models" / "quickstart.onnx").write_bytes(b"a user's quickstart export")
    monkeypatch.chdir(cwd)
    return cwd


def clean_env():
    """The environment of a user who set nothing: kdarts must quiet TensorFlow itself."""
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def run_process(*args, cwd):
    """Run the CLI in a fresh Python process (TensorFlow state is per process)."""
    return subprocess.run([sys.executable, "-m", "kdarts.cli", *map(str, args)], cwd=cwd,
                          env=clean_env(), capture_output=True, text=True, timeout=900)


def loopback_ports(count: int) -> list[int]:
    """Free TCP ports on 127.0.0.1 (held together while chosen, so they differ)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def run_workers(command, *args, outs, cwd, timeout=600, env=()):
    """``kdarts COMMAND ARGS --strategy multiworker`` as a two-worker cluster on loopback,
    worker i writing to ``outs[i]``; both are killed if they outlive ``timeout`` seconds."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in loopback_ports(2)]}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "kdarts.cli", command, *map(str, args), "--out", str(out),
         "--strategy", "multiworker"], cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**clean_env(), **dict(env), "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i, out in enumerate(outs)]
    deadline, results = time.monotonic() + timeout, []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout,
                                                       stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def assert_quiet_stderr(stderr):
    """Only progress bars on stderr: no TensorFlow/absl/oneDNN/grappler log lines."""
    lines = [line.strip() for line in re.split(r"[\r\n]", stderr) if line.strip()]
    noise = [line for line in lines if not re.match(r"^epoch \d+/\d+", line)]
    assert not noise, "\n".join(noise[:10])


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


# ------------------------------------------------------------------------------ help


@pytest.mark.parametrize("command, defaults", [
    ("search", ["default: kdarts_digits", "default: crb", "default: dynamic",
                "default: proximity", "default: 0.1", "default: 10",
                "default: (8; cifar10/cifar100: 50)", "default: (0.05; cifar10/cifar100: 0.0003)",
                "default: (50.0; cifar10/cifar100: 1.0)", "default: runs/search"]),
    ("train", ["--genotype TEXT", "required", "default: (20;", "default: (16;",
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


def test_paper_recipe_is_the_default_for_the_papers_datasets():
    from kdarts.runs import resolve_options

    keys = ("channels", "layers", "batch_size", "epochs", "cutout", "drop_path", "auxiliary")
    for dataset in ("cifar10", "cifar100"):
        train = resolve_options("train", {"dataset": dataset})
        assert {k: train[k] for k in keys} == dict(
            channels=36, layers=20, batch_size=96, epochs=600, cutout=16, drop_path=0.2,
            auxiliary=True)
        search = resolve_options("search", {"dataset": dataset, "seed": None})
        assert {k: search[k] for k in ("channels", "layers", "batch_size", "epochs")} == dict(
            channels=16, layers=8, batch_size=64, epochs=50)
        assert (search["activation"], search["schedule"], search["every"], search["reg"],
                search["rho"], search["split"]) == ("crb", "dynamic", 10, "proximity", 0.1,
                                                    "dynamic")
        # the paper's α step: Adam 3e-4 from a threshold of 1.0 (the digits scale both up)
        assert (search["arch_lr"], search["threshold"]) == (3e-4, 1.0)
    small = resolve_options("search", {"dataset": "mnist"})
    assert (small["arch_lr"], small["threshold"], small["epochs"]) == (0.05, 50.0, 8)
    explicit = resolve_options("train", {"dataset": "cifar10", "epochs": 5, "cutout": 0})
    assert (explicit["epochs"], explicit["cutout"], explicit["channels"]) == (5, 0, 36)
    digits = resolve_options("train", {"channels": None})
    assert (digits["channels"], digits["epochs"], digits["cutout"]) == (16, 20, 0)
    text = " ".join(invoke("train", "--help").output.split())
    assert "[default: (20; cifar10/cifar100: 600)" in text
    with pytest.raises(TypeError, match="unknown option"):
        resolve_options("search", {"chanels": 4})


def test_group_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("search", "train", "show", "export", "quickstart"):
        assert command in result.output
    assert "SPEC" not in result.output
    for command in ("search", "train", "show", "export", "quickstart"):
        assert "SPEC" not in invoke(command, "--help").output  # it does not ship


def test_help_and_version_do_not_load_tensorflow():
    """--help/--version answer without importing TensorFlow (which takes seconds)."""
    script = ("import sys\nfrom click.testing import CliRunner\nfrom kdarts.cli import main\n"
              "for args in (['--help'], ['--version'], ['search', '--help'],"
              " ['train', '--help'], ['export', '--help']):\n"
              "    assert CliRunner().invoke(main, args).exit_code == 0, args\n"
              "heavy = [m for m in ('tensorflow', 'keras', 'tensorflow_datasets')"
              " if m in sys.modules]\nprint('heavy:', heavy)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "heavy: []"


# ---------------------------------------------------------------------------- errors


def test_unknown_dataset(tmp_path, no_tf_work):
    out = tmp_path / "run"
    result = invoke("search", "--dataset", "imagenet_a", "--out", out)
    assert_one_line_error(result, "Unknown dataset 'imagenet_a'", "kdarts_digits", "cifar10")
    assert not out.exists()
    result = invoke("train", "--genotype", "DARTS_V2", "--dataset", "nope", "--out", out)
    assert_one_line_error(result, "Unknown dataset 'nope'")
    assert not out.exists()


def _bad_dataset(tmp_path, case):
    """A dataset that is wrong in one way; returns ``(path, extra args)``."""
    from conftest import own_images, write_png_folder

    x, y = own_images(12)
    if case == "missing":
        return tmp_path / "nowhere" / "photos", []
    if case == "empty":
        (tmp_path / "empty" / "ant").mkdir(parents=True)
        (tmp_path / "empty" / "notes.txt").write_text("no images")
        return tmp_path / "empty", []
    if case == "one class":
        write_png_folder(tmp_path / "one", count=12)
        for name in ("bee", "cat"):
            for f in (tmp_path / "one" / name).iterdir():
                f.unlink()
        return tmp_path / "one", []
    if case == "mixed sizes":
        write_png_folder(tmp_path / "mixed", count=6)
        write_png_folder(tmp_path / "mixed" / "cat", count=3, size=12)
        return tmp_path / "mixed", []
    if case == "small images":
        return write_png_folder(tmp_path / "small", count=6, size=3), []
    if case == "small image size":
        return write_png_folder(tmp_path / "small", count=6), ["--image-size", "2,8"]
    path = tmp_path / "bad.npz"
    if case == "lengths":
        np.savez(path, x=x, y=y[:-1])
    elif case == "float labels":
        np.savez(path, x=x, y=y + 0.5)
    elif case == "small npz":
        np.savez(path, x=x[:, :3, :3], y=y)
    elif case == "no y":
        np.savez(path, x=x, labels=y)
    return path, []


@pytest.mark.parametrize("case, fragments", [
    ("missing", ["no such file or folder"]),
    ("empty", ["no images", "<folder>/<class>/<image>"]),
    ("one class", ["one class only (ant)", "at least two"]),
    ("mixed sizes", ["different sizes", "8x8 in ant/000.png", "12x12 in cat/", "--image-size"]),
    ("small images", ["3x3", "smaller than 4x4"]),
    ("small image size", ["--image-size 2x8", "smaller than 4x4"]),
    ("lengths", ["bad.npz", "x holds 12 images but y 11 labels"]),
    ("float labels", ["float64 labels", "integers"]),
    ("small npz", ["3x3", "smaller than 4x4"]),
    ("no y", ["no 'y' array", "labels, x"]),
])
def test_bad_own_data_is_refused_before_any_work(tmp_path, no_tf_work, case, fragments):
    path, extra = _bad_dataset(tmp_path, case)
    out = tmp_path / "run"
    result = invoke("search", "--dataset", path, *extra, "--out", out)
    assert_one_line_error(result, *fragments)
    assert "Traceback" not in result.output and not out.exists()
    result = invoke("train", "--genotype", "DARTS_V2", "--dataset", path, *extra, "--out", out)
    assert_one_line_error(result, *fragments)
    assert not out.exists()


def test_image_size_is_for_folders(tmp_path, no_tf_work, npz_file):
    assert_one_line_error(invoke("search", "--image-size", "16", "--out", tmp_path / "r"),
                          "resizes the images of a folder", "'kdarts_digits'")
    assert_one_line_error(invoke("search", "--dataset", npz_file, "--image-size", "16",
                                 "--out", tmp_path / "r"), "data.npz have their own size")
    assert_one_line_error(invoke("search", "--dataset", npz_file, "--image-size", "a,b",
                                 "--out", tmp_path / "r"), "expected H,W")
    assert not (tmp_path / "r").exists()


def test_a_resumed_run_refuses_another_dataset(tmp_path, no_tf_work, png_folder, monkeypatch):
    folder = fake_run(tmp_path / "run", dataset=str(png_folder))
    (folder / "checkpoint.json").write_text('{"epoch": 1}')
    (folder / "checkpoint.weights.h5").write_bytes(b"weights")
    before = snapshot(folder)
    result = invoke("search", "--out", folder, "--resume", "--epochs", "8")
    assert_one_line_error(result, "different search run",
                          f"dataset: '{png_folder}' → 'kdarts_digits'")
    # the same folder, named relatively from elsewhere, is the same dataset
    monkeypatch.chdir(png_folder.parent)
    result = invoke("search", "--out", folder, "--dataset", "png", "--resume", "--seed", "3")
    assert_one_line_error(result, "different search run", "seed: 0 → 3")
    assert "dataset" not in result.output
    assert snapshot(folder) == before


def test_imagenet_stem_refuses_small_images_before_any_work(tmp_path, no_tf_work, png_folder,
                                                           npz_file):
    out = tmp_path / "run"
    train = ("train", "--genotype", "DARTS_V2", "--imagenet-stem", "--out", out)
    assert_one_line_error(invoke(*train), "--imagenet-stem needs images of at least 32x32",
                          "the images of kdarts_digits are 8x8")
    assert_one_line_error(invoke(*train, "--dataset", npz_file), "data.npz are 8x8")
    assert_one_line_error(invoke(*train, "--dataset", png_folder), "are 8x8",
                          "--image-size 32 enlarges them")
    assert_one_line_error(invoke(*train, "--dataset", png_folder, "--image-size", "32,16"),
                          "are 32x16")
    assert_one_line_error(invoke(*train, "--channels", "1"), "--channels 2 or more")
    assert not out.exists()


def test_runs_from_before_imagenet_stem_still_resume(tmp_path, no_tf_work):
    """A train run.json without imagenet_stem was a run without it (``_LATER_ARGS``)."""
    from kdarts.runs import TRAIN_DEFAULTS

    folder = tmp_path / "run"
    folder.mkdir()
    args = {k: v for k, v in TRAIN_DEFAULTS.items() if k not in ("image_size", "imagenet_stem")}
    (folder / "run.json").write_text(json.dumps({"command": "train", "args": {
        **args, "genotype": Genotype.from_dict(
            {"normal": [["skip_connect", 0]] * 8, "reduce": [["max_pool_3x3", 1]] * 8}
        ).to_dict()}}))
    (folder / "checkpoint.json").write_text('{"epoch": 1}')
    (folder / "checkpoint.weights.h5").write_bytes(b"weights")
    genotype = tmp_path / "genotype.json"
    genotype.write_text(json.dumps(json.loads((folder / "run.json").read_text())["args"][
        "genotype"]))
    before = snapshot(folder)
    assert_one_line_error(invoke("train", "--genotype", genotype, "--out", folder),
                          "already holds this training", "--resume")
    assert snapshot(folder) == before


def test_budgets_are_refused_in_one_line(tmp_path, no_tf_work):
    """Before any TensorFlow work: two budgets, a bad amount, a budget on a corpus."""
    out = tmp_path / "r"
    assert_one_line_error(invoke("search", "--max-params", "120k", "--max-madds", "2M",
                                 "--out", out), "--max-params and --max-madds",
                          "give one budget")
    assert_one_line_error(invoke("search", "--max-params", "lots", "--out", out),
                          "--max-params", "expected a positive number", "'lots'")
    assert_one_line_error(invoke("search", "--dataset", "kdarts_text", "--max-params", "1M",
                                 "--out", out), "--max-params", "image space only",
                          "same whatever the genotype")
    assert not out.exists()


def test_a_budget_below_the_cheapest_genotype_is_refused_before_the_search(tmp_path):
    out = tmp_path / "r"
    result = invoke("search", *TINY_SEARCH[:-6], "--max-params", "1k", "--eval-channels", "4",
                    "--eval-layers", "3", "--out", out)
    assert_one_line_error(result, "--max-params", "budget 1.0k parameters is below the "
                          "cheapest valid genotype, which costs 1.4k parameters")
    assert not (out / "checkpoint.json").exists() and not (out / "genotype.json").exists()


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
            "schedule": "dynamic", "every": 10, "arch_lr": 0.05, "threshold": 50.0,
            "reg": "proximity", "rho": 0.1,
            "admm_every": 10, "admm_variant": "spec", "split": "dynamic", "batch_size": 32, "channels": 8,
            "layers": 5, "steps": 4, "primitives": None, "max_examples": None, "seed": 0,
            "unrolled": False, "skip_pruned_ops": "auto", **changes}
    (folder / "run.json").write_text(json.dumps({"command": "search", "args": args}))
    (folder / "genotype.json").write_text(json.dumps(Genotype.from_dict(
        {"normal": [["skip_connect", 0]] * 8, "reduce": [["max_pool_3x3", 1]] * 8}).to_dict()))
    (folder / "history.csv").write_text("epoch,loss\n0,1.0\n")
    return folder


def test_different_run_is_refused(tmp_path, no_tf_work):
    folder = fake_run(tmp_path / "run", seed=7, epochs=3)
    run = json.loads((folder / "run.json").read_text())
    del run["args"]["skip_pruned_ops"]  # a run.json from before the option: every op everywhere
    (folder / "run.json").write_text(json.dumps(run))
    before = snapshot(folder)
    result = invoke("search", "--out", folder, "--skip-pruned-ops", "every_step")
    assert_one_line_error(result, "different search run", "seed: 7 → 0", "epochs: 3 → 8",
                          "skip_pruned_ops: 'never' → 'every_step'")
    assert snapshot(folder) == before
    # the option was a flag: on, the per-step gathers
    flagged = fake_run(tmp_path / "flagged", skip_pruned_ops=True)
    result = invoke("search", "--out", flagged)
    assert_one_line_error(result, "different search run",
                          "skip_pruned_ops: 'every_step' → 'auto'")
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
    assert_one_line_error(result, "--resume:", "holds this search but no epoch of it completed",
                          "run without --resume")
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


def test_a_folder_holding_something_else_is_refused(tmp_path, no_tf_work, users_folder):
    """Every command writing a run folder refuses another kind of run or unrelated files."""
    search_dir = fake_run(tmp_path / "search")
    before = snapshot(search_dir)
    result = invoke("train", "--genotype", "DARTS_V2", "--out", search_dir)
    assert_one_line_error(result, "holds a kdarts search run", "not a train run")
    assert snapshot(search_dir) == before
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    (train_dir / "run.json").write_text(json.dumps({"command": "train", "args": {}}))
    assert_one_line_error(invoke("search", "--out", train_dir), "holds a kdarts train run",
                          "not a search run")
    exports = tmp_path / "saved_models"  # e.g. the exports folder, holding its README
    exports.mkdir()
    (exports / "README.md").write_text("exports")
    for command in (["search"], ["train", "--genotype", "DARTS_V2"], ["quickstart"]):
        result = invoke(*command, "--out", exports)
        assert_one_line_error(result, "README.md", "not a kdarts", "choose another --out")
        assert "--resume" not in result.output
    assert os.listdir(exports) == ["README.md"]
    # the quickstart's own search folder holding another search: no --resume to offer
    quick = tmp_path / "quick"
    quick.mkdir()
    fake_run(quick / "search", seed=7)
    result = invoke("quickstart", "--out", quick, "--export-to", tmp_path / "quick.onnx")
    assert_one_line_error(result, "different search run", "seed: 7 → 0", "choose another --out")
    assert "--resume" not in result.output
    # the default --export-to is the user's own export: refused, and left as it was
    user_export = users_folder / "saved_models" / "quickstart.onnx"
    result = invoke("quickstart", "--out", tmp_path / "fresh")
    assert_one_line_error(result, "saved_models/quickstart.onnx already exists", "--overwrite")
    assert user_export.read_bytes() == b"a user's quickstart export"


def test_unwritable_outputs_fail_before_any_work(tmp_path, no_tf_work, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for args in (["search", "--out", a_file / "run"],
                 ["train", "--genotype", "DARTS_V2", "--out", a_file / "run"],
                 ["quickstart", "--out", a_file / "quick"],
                 ["show", "DARTS_V2", "--png", a_file / "cells.png"]):
        assert_one_line_error(invoke(*args), "cannot be created", "is a file")
    assert_one_line_error(invoke("train", "--genotype", "DARTS_V2", "--out", a_file),
                          "is a file, not a folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access  # root ignores permissions: let the check see it as a user would
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
        False if os.fspath(p) == str(locked) and mode & os.W_OK else real_access(p, mode)))
    for args in (["search", "--out", locked / "run"],
                 ["train", "--genotype", "DARTS_V2", "--out", locked / "run"],
                 ["show", "DARTS_V2", "--png", locked / "cells.png"]):
        assert_one_line_error(invoke(*args), "cannot be written", "locked is not writable")
    assert a_file.read_text() == "x" and os.listdir(locked) == []


def test_wrong_suffixes_are_refused(tmp_path):
    genotype = tmp_path / "genotype.json"
    genotype.write_text(json.dumps(Genotype.from_dict(
        {"normal": [["skip_connect", 0]] * 8, "reduce": [["max_pool_3x3", 1]] * 8}).to_dict()))
    before = genotype.read_bytes()
    assert_one_line_error(invoke("show", genotype, "--png", genotype), "*.png")
    assert genotype.read_bytes() == before
    model = tmp_path / "model.keras"  # never opened: the destination is checked first
    assert_one_line_error(invoke("export", model, "--out", tmp_path / "x.json"),
                          "onnx format writes a *.onnx file", "x.json")
    assert_one_line_error(invoke("export", model, "--format", "saved_model", "--out",
                                 tmp_path / "x.onnx"), "saved_model format writes a folder")
    assert_one_line_error(invoke("export", model, "--format", "keras", "--out",
                                 tmp_path / "x.onnx"), "keras format writes a *.keras file")
    assert sorted(os.listdir(tmp_path)) == ["genotype.json"]


def test_ctrl_c_says_what_was_kept(tmp_path, monkeypatch):
    """Ctrl-C in train or quickstart: the reason and what was kept, not click's 'Aborted!'."""
    import kdarts.data

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(kdarts.data, "train_datasets", interrupt)
    monkeypatch.setattr(kdarts.data, "search_datasets", interrupt)
    for args, what in ((["train", "--genotype", "DARTS_V2", "--out", tmp_path / "t"],
                        "training"),
                       (["quickstart", "--out", tmp_path / "q", "--export-to",
                         tmp_path / "q.onnx"], "search")):
        result = invoke(*args)
        assert result.exit_code == 130, result.output
        assert "Aborted" not in result.output
        last = result.output.strip().splitlines()[-1]
        assert last.startswith(f"Error: interrupted; no epoch of the {what} completed"), last
        assert "start over" in last and "--resume" not in last


def test_sigterm_takes_ctrl_cs_path(tmp_path, monkeypatch):
    """SIGTERM in an image or a language-model training: one line saying what was kept,
    exit 143, the folder's lock released (the subprocess search's test is in
    test_cli_recurrent)."""
    import kdarts.data
    import kdarts.runs.language_model

    def terminate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises in this thread first

    monkeypatch.setattr(kdarts.data, "train_datasets", terminate)
    monkeypatch.setattr(kdarts.runs.language_model.LanguageModelFit, "run", terminate)
    previous = signal.getsignal(signal.SIGTERM)
    for args in (["train", "--genotype", "DARTS_V2", "--out", tmp_path / "t"],
                 ["train", "--dataset", "kdarts_text", "--genotype", "DARTS_V2",
                  "--out", tmp_path / "lm"]):
        result = invoke(*args)
        assert result.exit_code == 143, result.output
        last = result.output.strip().splitlines()[-1]
        assert last.startswith("Error: terminated (SIGTERM); no epoch of the training "
                               "completed"), last
        assert not os.path.exists(os.path.join(args[-1], ".lock"))
        assert signal.getsignal(signal.SIGTERM) == previous  # put back after the command


def test_tflite_export_options_are_checked_first(tmp_path, npz_file):
    model = tmp_path / "model.keras"  # never opened: the options are checked first
    for args, fragments in (
            (["--quantize", "int8"], ["--quantize int8", "--data"]),
            (["--quantize", "float16", "--format", "onnx"], ["--format tflite only"]),
            (["--data", npz_file, "--format", "onnx"], ["--data applies to --format tflite"]),
            (["--data", tmp_path / "none.npz"], ["no such file or folder"]),
            (["--out", tmp_path / "m.onnx"], ["tflite format writes a *.tflite file"])):
        result = invoke("export", model, "--format", "tflite", *map(str, args))
        assert_one_line_error(result, *fragments)
    assert sorted(os.listdir(tmp_path)) == []


def test_export_errors(tmp_path):
    assert_one_line_error(invoke("export", tmp_path / "none.keras"), "no such file")
    garbage = tmp_path / "model.keras"
    garbage.write_bytes(b"not a zip archive")
    out = tmp_path / "out.onnx"
    out.write_bytes(b"previous export")
    result = invoke("export", garbage, "--out", out)
    assert_one_line_error(result, "not a valid Keras archive")
    assert out.read_bytes() == b"previous export"
    result = invoke("export", garbage, "--format", "tensorrt")
    assert result.exit_code != 0 and "tflite" in result.output  # the valid formats listed


# ----------------------------------------------------------------- end to end (slow)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One complete tiny search, in process: (folder, CLI result)."""
    folder = tmp_path_factory.mktemp("search") / "a"
    result = invoke("search", *TINY_SEARCH, "--out", folder)
    assert result.exit_code == 0, result.output
    return folder, result


@pytest.fixture(scope="module")
def trained(searched, tmp_path_factory):
    """The searched genotype trained for 2 epochs, in process: (folder, CLI result)."""
    folder = tmp_path_factory.mktemp("train") / "a"
    result = invoke("train", "--genotype", searched[0] / "genotype.json", *TINY_TRAIN,
                    "--out", folder)
    assert result.exit_code == 0, result.output
    return folder, result


@pytest.mark.slow
@pytest.mark.xdist_group("cli_run")  # one worker builds the shared runs
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
        "epoch": 2, "search_step": 16, "alpha_steps": 15}
    with open(folder / "history.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert not [c for c in reader.fieldnames if c.startswith("val_")]  # no validation
    assert all(value not in ("", "NA") for row in rows for value in row.values())
    record = json.loads((folder / "search_record.json").read_text())
    assert [e["epoch"] for e in record["epochs"]] == [0, 1, 2]
    assert [b["step"] for b in record["batches"]] == list(range(1, 17))
    assert [b["took_alpha_step"] for b in record["batches"]] == [0] + [1] * 15
    np.testing.assert_allclose([b["threshold"] for b in record["batches"]],
                               1e9 * 1.05 ** (1 - 2 * np.arange(16)), rtol=1e-5)
    genes = {k: v for k, v in genotype.to_dict().items() if k != "cost"}
    assert record["epochs"][-1]["genotype"] == genes
    # the budget held, and the cost recorded is the built network's
    assert genotype.cost["budget"] == {"kind": "params", "limit": 1600.0}
    assert genotype.cost["network"]["channels"] == 4 and genotype.cost["params"] <= 1600
    assert f"budget params ≤ 1.6k parameters" in result.output
    assert np.array(record["epochs"][-1]["alpha_normal"]).shape == (5, 3)
    assert run["args"]["arch_lr"] == 0.05  # the digits' default
    # α moved: 15 α steps of Adam(0.05) since the initial 1/3
    assert not np.allclose(record["epochs"][0]["alpha_normal"],
                           record["epochs"][-1]["alpha_normal"], atol=1e-4)
    for png in ("alpha.png", "schedule.png", "genotype.png"):
        assert (folder / png).read_bytes()[:8] == PNG
    last = result.output.strip().splitlines()[-1]
    assert "search done" in last and "genotype.json" in last and str(folder.name) in last


@pytest.mark.slow
@pytest.mark.xdist_group("cli_run")  # one worker builds the shared runs
def test_show_and_train(searched, trained, tmp_path):
    folder, _ = searched
    result = invoke("show", folder / "genotype.json", "--png", tmp_path / "cells.png")
    assert result.exit_code == 0
    assert "normal cell:" in result.output and "reduction cell:" in result.output
    assert "evaluation network C=4, 3 layers" in result.output  # the cost genotype.json holds
    assert (tmp_path / "cells.png").read_bytes()[:8] == PNG
    assert invoke("show", folder).output.startswith(result.output.splitlines()[0])

    train_dir, result = trained
    metrics = json.loads((train_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["num_test"] == 360
    cost = Genotype.load(folder / "genotype.json").cost
    assert (metrics["parameters"], metrics["madds"]) == (cost["params"], cost["madds"])
    assert metrics["genotype"] == Genotype.load(folder / "genotype.json").to_dict()
    assert metrics["input"]["pixel_range"] == [0.0, 255.0]
    assert metrics["input"]["shape"] == [None, 8, 8, 3]
    assert len(metrics["input"]["mean"]) == 3 and metrics["input"]["normalized_inside"]
    assert f"test accuracy {100 * metrics['test_accuracy']:.2f}%" in result.output
    assert "model.keras" in result.output.strip().splitlines()[-1]
    assert {"run.json", "model.keras", "metrics.json", "history.csv", "checkpoint.json",
            "checkpoint.weights.h5"} == set(os.listdir(train_dir))
    with open(train_dir / "history.csv") as f:
        reader = csv.DictReader(f)
        assert [r["epoch"] for r in reader] == ["0", "1"]
    assert not [c for c in reader.fieldnames if c.startswith("val_")]
    # the complete training is not redone without --overwrite
    before = snapshot(train_dir)
    assert_one_line_error(invoke("train", "--genotype", folder / "genotype.json", *TINY_TRAIN,
                                 "--out", train_dir), "already holds this training, complete",
                          "--overwrite")
    assert snapshot(train_dir) == before


def _predictions(logits):
    return np.argmax(np.asarray(logits), axis=-1)


@pytest.mark.slow
@pytest.mark.xdist_group("cli_run")  # one worker builds the shared runs
def test_exports_take_raw_images_and_match_the_reported_accuracy(trained, tmp_path):
    """Every format, fed the test images as stored (uint8 0..255 or the same as float32),
    scores exactly the accuracy `kdarts train` reported."""
    import onnxruntime as ort
    import tensorflow as tf

    from kdarts.data import load_dataset
    from kdarts.export import load_model

    train_dir, _ = trained
    reported = json.loads((train_dir / "metrics.json").read_text())["test_accuracy"]
    _, _, images, labels, _ = load_dataset()
    assert images.dtype == np.uint8 and images.max() == 255
    floats = images.astype(np.float32)

    model = load_model(train_dir / "model.keras")
    keras_logits = np.asarray(model(floats, training=False))
    want = _predictions(keras_logits)
    assert np.mean(want == labels) == pytest.approx(reported, abs=1e-6)
    assert len(set(want)) > 1  # the predictions depend on the image
    np.testing.assert_array_equal(_predictions(model(images, training=False)), want)

    paths = {}
    for fmt, name, extra in (("onnx", "net.onnx", []), ("onnx", "net_u8.onnx",
                                                        ["--input-dtype", "uint8"]),
                             ("saved_model", "net_sm", [])):
        result = invoke("export", train_dir / "model.keras", "--format", fmt, "--out",
                        tmp_path / name, *extra)
        assert result.exit_code == 0, result.output
        assert "raw images 0-255" in result.output and "max |Δlogits|" in result.output
        # the measured costs: the trained network's, and a float ONNX file's latency
        metrics = json.loads((train_dir / "metrics.json").read_text())
        assert f"{metrics['parameters'] / 1e3:.1f}k parameters" in result.output
        timed = re.search(r"([0-9.]+) ms per image in ONNX Runtime", result.output)
        assert (timed is not None) == (name == "net.onnx"), result.output
        assert timed is None or float(timed.group(1)) > 0
        paths[name] = tmp_path / name
    for name, x in (("net.onnx", floats), ("net_u8.onnx", images)):
        session = ort.InferenceSession(str(paths[name]), providers=["CPUExecutionProvider"])
        logits = session.run(["logits"], {"images": x})[0]
        np.testing.assert_allclose(logits, keras_logits, atol=1e-4, err_msg=name)
        np.testing.assert_array_equal(_predictions(logits), want, err_msg=name)
    loaded = tf.saved_model.load(str(paths["net_sm"]))
    for signature, x in (("serving_default", floats), ("serving_uint8", images)):
        logits = loaded.signatures[signature](images=tf.constant(x))["logits"]
        np.testing.assert_array_equal(_predictions(logits), want, err_msg=signature)


@pytest.mark.slow
@pytest.mark.xdist_group("cli_run")  # one worker builds the shared runs
def test_multiworker_resume_in_new_processes_matches_uninterrupted(searched, tmp_path):
    """A search interrupted after epoch 1 in one process, resumed by two worker processes
    on loopback (MultiWorkerMirroredStrategy, one CPU each, the global batch split between
    them, synchronised BN): the same α and genotype as the uninterrupted one-process
    search. Only the chief (worker 0) writes; worker 1 resumes from its own copy of the
    checkpoint and leaves that folder untouched."""
    folder_a, _ = searched
    folder_b, copy = tmp_path / "b", tmp_path / "worker1"
    first = run_process("search", *TINY_SEARCH, "--out", folder_b, "--stop-after-epoch", "1",
                        "--tensorboard", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert_quiet_stderr(first.stderr)
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

    shutil.copytree(folder_b, copy)
    copied = snapshot(copy)
    second = run_workers("search", *TINY_SEARCH, "--resume", "--tensorboard",
                         outs=[folder_b, copy], cwd=tmp_path)
    for done in second:
        assert done.returncode == 0, done.stderr[-3000:]
    # the chief's stderr is quiet; a non-chief whose chief has already exited may get a
    # heartbeat error from TensorFlow's coordination service, which kdarts cannot silence
    assert_quiet_stderr(second[0].stderr)
    assert "resuming" in second[0].stdout and "after epoch 1 of 2" in second[0].stdout
    assert "over 2 replicas (multiworker, synchronised BN)" in second[0].stdout
    assert "the chief writes" in second[1].stdout
    assert str(Genotype.load(folder_a / "genotype.json")) in second[1].stdout
    assert snapshot(copy) == copied  # the non-chief wrote nothing

    assert Genotype.load(folder_b / "genotype.json") == Genotype.load(folder_a / "genotype.json")
    rec_a = json.loads((folder_a / "search_record.json").read_text())
    rec_b = json.loads((folder_b / "search_record.json").read_text())
    assert [e["epoch"] for e in rec_b["epochs"]] == [0, 1, 2]
    for ea, eb in zip(rec_a["epochs"], rec_b["epochs"]):
        for key in ("alpha_normal", "alpha_reduce"):
            # 1e-5: two workers sum gradients and BN statistics in another order
            np.testing.assert_allclose(eb[key], ea[key], rtol=0, atol=1e-5)
        assert eb["genotype"] == ea["genotype"]
    assert [b["step"] for b in rec_b["batches"]] == list(range(1, 17))
    for key in ("step_fi", "fi_ewma", "threshold", "took_alpha_step"):
        np.testing.assert_allclose([b[key] for b in rec_b["batches"]],
                                   [b[key] for b in rec_a["batches"]], rtol=1e-4)
    with open(folder_b / "history.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "1"]
    assert json.loads((folder_b / "checkpoint.json").read_text()) == json.loads(
        (folder_a / "checkpoint.json").read_text())
    # TensorBoard continued across the resume: every step and epoch once, at its own index
    board = event_scalars(folder_b / "tensorboard")
    assert sorted(board["step/step_fi"]) == list(range(1, 17))
    np.testing.assert_allclose([board["step/step_fi"][b["step"]] for b in rec_b["batches"]],
                               [b["step_fi"] for b in rec_b["batches"]], rtol=1e-6)
    assert sorted(board["epoch/loss"]) == [1, 2] and sorted(board["alpha/normal"]) == [0, 1, 2]


@pytest.mark.slow
def test_multiworker_training_equals_one_process(tmp_path):
    """``kdarts train --strategy multiworker``: two workers on loopback, each with half the
    global batch, train the network one process trains (gradients summed, then clipped;
    synchronised BN; no drop-path, whose masks each replica draws itself). Only the
    chief writes the run; the other worker reports its test accuracy. Both are run on
    Eigen's kernels: oneDNN's round half a batch differently from a whole one."""
    from kdarts.export import load_model

    args = ["--genotype", "DARTS_V2", *TINY_TRAIN, "--drop-path", "0"]
    eigen = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    one = subprocess.run([sys.executable, "-m", "kdarts.cli", "train", *args, "--out",
                          str(tmp_path / "one")], cwd=tmp_path, env={**clean_env(), **eigen},
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    chief, other = tmp_path / "chief", tmp_path / "other"
    workers = run_workers("train", *args, outs=[chief, other], cwd=tmp_path, env=eigen)
    for done in workers:
        assert done.returncode == 0, done.stderr[-3000:]
    assert_quiet_stderr(workers[0].stderr)
    assert "over 2 replicas (multiworker, synchronised BN)" in workers[0].stdout
    assert "worker done: test accuracy" in workers[1].stdout
    assert not other.exists()  # the non-chief wrote nothing
    assert {p.name for p in chief.iterdir()} == {p.name for p in (tmp_path / "one").iterdir()}
    model_one, model_two = (load_model(f / "model.keras") for f in (tmp_path / "one", chief))
    for w1, w2 in zip(model_one.weights, model_two.weights):
        np.testing.assert_allclose(np.asarray(w2), np.asarray(w1), rtol=0, atol=1e-5,
                                   err_msg=w1.path)
    metrics = [json.loads((f / "metrics.json").read_text()) for f in (tmp_path / "one", chief)]
    assert metrics[1]["train_loss"] == pytest.approx(metrics[0]["train_loss"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.xdist_group("cli_run")  # one worker builds the shared runs
def test_train_resume_in_a_new_process_matches_uninterrupted(searched, trained, tmp_path):
    from kdarts.export import load_model

    genotype = searched[0] / "genotype.json"
    folder_a, _ = trained
    folder_b = tmp_path / "b"
    first = run_process("train", "--genotype", genotype, *TINY_TRAIN, "--out", folder_b,
                        "--stop-after-epoch", "1", "--tensorboard", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert_quiet_stderr(first.stderr)
    assert "stopped after epoch 1 of 2" in first.stdout
    assert json.loads((folder_b / "checkpoint.json").read_text())["epoch"] == 1
    assert not (folder_b / "model.keras").exists()
    before = snapshot(folder_b)
    assert_one_line_error(invoke("train", "--genotype", genotype, *TINY_TRAIN, "--out",
                                 folder_b), "already holds this training", "--resume")
    assert snapshot(folder_b) == before

    second = run_process("train", "--genotype", genotype, *TINY_TRAIN, "--out", folder_b,
                         "--resume", "--tensorboard", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming" in second.stdout and "after epoch 1 of 2" in second.stdout
    model_a, model_b = load_model(folder_a / "model.keras"), load_model(folder_b / "model.keras")
    for wa, wb in zip(model_a.weights, model_b.weights):
        np.testing.assert_allclose(np.asarray(wb), np.asarray(wa), rtol=0, atol=1e-6,
                                   err_msg=wa.path)
    metrics_a = json.loads((folder_a / "metrics.json").read_text())
    metrics_b = json.loads((folder_b / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "train_loss"):
        assert metrics_b[key] == pytest.approx(metrics_a[key], abs=1e-6), key
    with open(folder_b / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert [r["epoch"] for r in history] == ["0", "1"]
    losses = event_scalars(folder_b / "tensorboard")["epoch_loss"]  # one per epoch, resumed
    assert losses == pytest.approx({0: float(history[0]["loss"]), 1: float(history[1]["loss"])})


@pytest.mark.slow
@pytest.mark.xdist_group("cli_run")  # one worker builds the shared runs
def test_ctrl_c_during_the_plots(searched, tmp_path, monkeypatch):
    import shutil

    import kdarts.plots

    folder = tmp_path / "copy"
    shutil.copytree(searched[0], folder)
    (folder / "alpha.png").unlink()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(kdarts.plots, "plot_alpha", interrupt)
    result = invoke("search", *TINY_SEARCH, "--out", folder, "--resume")
    assert result.exit_code == 130 and "Aborted" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: interrupted; the search completed"), last
    assert "--resume writes its genotype and plots again" in last


def _lines(stream, sink):
    for line in stream:
        sink.append(line)


# TINY_SEARCH with all eight ops and five cells: a first trace that lasts
SLOW_TRACE_SEARCH = ["--channels", "4", "--layers", "5", "--steps", "2", "--batch-size", "8",
                     "--max-examples", "96", "--epochs", "2", "--seed", "1"]


@pytest.mark.slow
def test_sigint_while_tracing_stops_promptly_and_says_what_is_true(tmp_path):
    """Ctrl-C during the first trace: out within seconds, saying no epoch completed, and
    the follow-up --resume says the same."""
    import threading

    folder = tmp_path / "s"
    # A first trace that lasts: ~13 s from the search's first line on a quiet 2-core AMD
    # EPYC, against ~4 s for TINY_SEARCH, which lean tracing had brought within a second
    # of the 3 s wait below (the test failed whenever that epoch ended first).
    search = [*SLOW_TRACE_SEARCH, "--out", str(folder)]
    # as in a terminal: SIGINT handled even when the tests run where it is ignored (a
    # shell's background job), which the child would inherit
    proc = subprocess.Popen([sys.executable, "-m", "kdarts.cli", "search", *search],
                            cwd=tmp_path, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out, err = [], []
    readers = [threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=_lines, args=(proc.stderr, err), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 300
        while not any(line.startswith("search:") for line in out):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(err)[-2000:]
            time.sleep(0.2)
        time.sleep(3.0)  # inside the first trace of the step
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for reader in readers:
        reader.join(10)
    message = [line for line in err if line.startswith("Error:")]
    text = "".join(err)  # the exception's own lines come first, a TF trace may follow
    assert proc.returncode == 130, text[:2000] + "\n…\n" + text[-1000:]
    assert elapsed < 10, elapsed
    assert len(message) == 1 and "no epoch of the search completed" in message[0]
    assert "start over" in message[0] and "--resume" not in message[0]
    assert not (folder / "checkpoint.json").exists()
    assert_one_line_error(invoke("search", *search, "--resume"),
                          "no epoch of it completed", "run without --resume")


# ------------------------------------------------ own data end to end, TensorBoard (slow)

OWN_SEARCH = ["--channels", "4", "--layers", "3", "--steps", "2",
              "--primitives", "max_pool_3x3,skip_connect,sep_conv_3x3", "--batch-size", "4",
              "--epochs", "1", "--split", "half", "--schedule", "fixed", "--every", "2"]
# 10 epochs (cheap once traced): a model confident enough that int8 keeps its top-1 classes
OWN_TRAIN = ["--channels", "4", "--layers", "3", "--epochs", "10", "--batch-size", "8"]


def event_scalars(folder):
    """TensorBoard event files under ``folder`` → ``{tag: {step: value or None}}``."""
    import glob

    import tensorflow as tf

    tags = {}
    for path in sorted(glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"),
                                 recursive=True)):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                number = (float(tf.make_ndarray(value.tensor))
                          if plugin == "scalars" else None)
                tags.setdefault(value.tag, {})[event.step] = number
    return tags


@pytest.mark.slow
def test_imagenet_stem_train_and_export(tmp_path):
    """`--imagenet-stem` on 32x32 images (the least it takes): recorded, saved, exported."""
    from conftest import own_images

    from kdarts.export import load_model

    data = tmp_path / "big.npz"
    x, y = own_images(24, size=32, seed=2)
    np.savez(data, x=x, y=y)
    result = invoke("train", "--genotype", "DARTS_V2", "--dataset", data, "--imagenet-stem",
                    "--channels", "4", "--layers", "3", "--epochs", "1", "--batch-size", "8",
                    "--out", tmp_path / "t")
    assert result.exit_code == 0, result.output
    assert "3 layers, ImageNet stem," in result.output
    run = json.loads((tmp_path / "t" / "run.json").read_text())
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert run["args"]["imagenet_stem"] is True and metrics["args"]["imagenet_stem"] is True
    assert metrics["input"]["shape"] == [None, 32, 32, 3]
    model = load_model(tmp_path / "t" / "model.keras")
    assert model.imagenet_stem and metrics["parameters"] == model.parameter_count()
    result = invoke("export", tmp_path / "t" / "model.keras", "--out", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("source, quantize", [("png", "int8"), ("npz", "float16")])
def test_own_data_search_train_export_litert(source, quantize, png_folder, npz_file,
                                             tmp_path):
    """A PNG folder (with TensorBoard) and an .npz each go search → train → LiteRT."""
    from kdarts.data import load_dataset
    from kdarts.export import load_model, tflite_logits, tflite_metadata, tflite_runner
    from kdarts.image.export import FLOAT16_RTOL

    dataset = png_folder if source == "png" else npz_file
    board = ["--tensorboard"] if source == "png" else []
    result = invoke("search", "--dataset", dataset, *OWN_SEARCH, *board, "--out",
                    tmp_path / "s")
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "s" / "run.json").read_text())
    assert run["args"]["dataset"] == str(dataset) and run["num_train"] == 29
    result = invoke("train", "--genotype", tmp_path / "s", "--dataset", dataset, *OWN_TRAIN,
                    *board, "--out", tmp_path / "t")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["num_test"] == 7 and metrics["input"]["shape"] == [None, 8, 8, 3]
    result = invoke("export", tmp_path / "t" / "model.keras", "--format", "tflite",
                    "--quantize", quantize, "--data", dataset, "--out", tmp_path / "m.tflite")
    assert result.exit_code == 0, result.output
    assert f"{quantize} quantised" in result.output and "on 7 test images" in result.output

    # the LiteRT interpreter, fed the test images as stored, against the Keras model
    _, _, images, labels, _ = load_dataset(str(dataset))
    keras_logits = np.asarray(load_model(tmp_path / "t" / "model.keras")(
        images.astype(np.float32), training=False))
    runner = tflite_runner(tmp_path / "m.tflite")
    (spec,) = runner.get_input_details().values()
    contract = json.loads(tflite_metadata(tmp_path / "m.tflite")["kdarts.input"])
    assert contract["quantize"] == quantize and contract["shape"] == [None, 8, 8, 3]
    logits = tflite_logits(runner, images)
    if quantize == "int8":
        assert spec["dtype"] == np.uint8 and spec["quantization"] == (1.0, 0)
        assert contract["input_quantization"] == {"dtype": "uint8", "scale": 1.0,
                                                  "zero_point": 0}
        (q,) = runner(images=images).values()  # raw uint8 pixels straight in
        scale, zero_point = (contract["output_quantization"][k] for k in
                             ("scale", "zero_point"))
        np.testing.assert_allclose((q.astype(np.float32) - zero_point) * scale, logits)
        np.testing.assert_array_equal(_predictions(logits), _predictions(keras_logits))
    else:
        assert spec["dtype"] == np.float32
        np.testing.assert_allclose(logits, keras_logits, rtol=0, atol=FLOAT16_RTOL * max(
            1.0, np.abs(keras_logits).max()))
    if not board:
        assert not (tmp_path / "s" / "tensorboard").exists()
        return
    search_tags = event_scalars(tmp_path / "s" / "tensorboard")
    for tag in ("step/loss", "step/step_fi", "step/fi_ewma", "step/threshold",
                "step/alpha_steps", "step/pruned_ops", "step/lr"):
        assert sorted(search_tags[tag]) == [1, 2, 3], tag
    for tag in ("epoch/loss", "epoch/accuracy", "epoch/search_loss", "epoch/fi",
                "epoch/fi_ewma", "epoch/threshold", "epoch/alpha_steps", "epoch/pruned_ops",
                "epoch/lr"):
        assert list(search_tags[tag]) == [1], tag
    for tag in ("alpha/normal", "alpha/reduce", "genotype"):
        assert sorted(search_tags[tag]) == [0, 1], tag  # before training and per epoch
    assert search_tags["step/alpha_steps"][3] == 1.0  # fixed k=2: an α step at step 2
    train_tags = event_scalars(tmp_path / "t" / "tensorboard")
    assert sorted(train_tags["epoch_loss"]) == list(range(10))
    assert sorted(train_tags["epoch_learning_rate"]) == list(range(10))
