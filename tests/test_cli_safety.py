"""Refusals that protect the user's files and answer at once: exports that would replace
their own source or an existing artifact, outputs that cannot be created, inputs that
are not what a command takes, and data checks, all before TensorFlow is imported.

Most tests run ``kdarts`` in a fresh Python process and report whether TensorFlow was
imported (this test process has it loaded already): no training, no model, no data
loaded, so each takes well under a second.
"""

import importlib
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

# runs the command line in this process, then reports its exit status and whether
# TensorFlow was imported (the refusals must come before it)
_CLI = """
import sys
from kdarts.cli import main
try:
    main(sys.argv[1:], prog_name="kdarts")
except SystemExit as exit:
    print("exit", exit.code, "tensorflow" in sys.modules)
"""


def kdarts(*args, cwd):
    """``kdarts ARGS`` in a fresh process: ``(exit status, TensorFlow imported, stderr)``."""
    done = subprocess.run([sys.executable, "-c", _CLI, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    last = done.stdout.strip().splitlines()[-1].split()
    assert last[0] == "exit", done.stdout + done.stderr
    return int(last[1]), last[2] == "True", done.stderr


def assert_refused(args, *fragments, cwd):
    """A one-line ``Error:`` naming ``fragments``, a non-zero exit, TensorFlow not imported."""
    code, tensorflow, stderr = kdarts(*args, cwd=cwd)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code not in (0, None), stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]
    assert not tensorflow, f"TensorFlow was imported before the refusal: {lines[0]}"
    return lines[0]


def state(path):
    """A file's bytes and modification time (a folder's listing and its files' states)."""
    if os.path.isdir(path):
        return {name: state(os.path.join(path, name)) for name in sorted(os.listdir(path))}
    with open(path, "rb") as f:
        return f.read(), os.stat(path).st_mtime_ns


def fake_model(path):
    """A ``.keras``-named zip archive: passes the cheap checks, never loaded here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    return path


# ------------------------------------------------------------------------- export


def test_export_never_replaces_its_source(tmp_path):
    model = fake_model(tmp_path / "runs" / "x" / "train" / "model.keras")
    before = state(model)
    for extra in ([], ["--overwrite"]):  # the source is refused even with --overwrite
        assert_refused(["export", model, "--format", "keras", "--out", model, *extra],
                       "runs/x/train/model.keras", "is the model being exported",
                       "another --out", cwd=tmp_path)
    # the same file by another name: a symlink and a hard link
    os.symlink(model, tmp_path / "link.keras")
    os.link(model, tmp_path / "hard.keras")
    for source, out in (("link.keras", model), (model, "link.keras"), ("hard.keras", model),
                        (model, "hard.keras")):
        assert_refused(["export", source, "--format", "keras", "--out", out, "--overwrite"],
                       "is the model being exported", cwd=tmp_path)
    # a SavedModel folder holding the model would replace the training folder
    assert_refused(["export", model, "--format", "saved_model", "--out", model.parent,
                    "--overwrite"], "runs/x/train", "holds the model being exported",
                   cwd=tmp_path)
    assert state(model) == before
    assert sorted(os.listdir(model.parent)) == ["model.keras"]


def test_export_refuses_an_existing_destination_without_overwrite(tmp_path):
    model = fake_model(tmp_path / "runs" / "x" / "train" / "model.keras")
    previous = tmp_path / "saved_models" / "net.onnx"
    previous.parent.mkdir()
    previous.write_bytes(b"previous export")
    folder = tmp_path / "saved_models" / "net"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"previous SavedModel")
    before = state(tmp_path / "saved_models")
    line = assert_refused(["export", model, "--out", previous], "saved_models/net.onnx",
                          "already exists", "--overwrite", "another --out", cwd=tmp_path)
    assert "Traceback" not in line
    assert_refused(["export", model, "--format", "saved_model", "--out", folder],
                   "saved_models/net", "already exists", "--overwrite", cwd=tmp_path)
    # the default destination too: saved_models/<parent>-<run folder>.onnx
    default = tmp_path / "saved_models" / "x-train.onnx"
    default.write_bytes(b"another run's export")
    before = state(tmp_path / "saved_models")
    assert_refused(["export", model], "saved_models/x-train.onnx", "already exists",
                   cwd=tmp_path)
    # a folder that is not a SavedModel is never replaced, --overwrite or not
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.png").write_bytes(b"a photo")
    assert_refused(["export", model, "--format", "saved_model", "--out", other,
                    "--overwrite"], "photos", "not a SavedModel", cwd=tmp_path)
    assert state(tmp_path / "saved_models") == before
    assert state(other) == {"cat.png": state(other / "cat.png")}


def test_export_of_a_missing_model_is_reported_before_tensorflow(tmp_path):
    assert_refused(["export", tmp_path / "none.keras"], "none.keras", "no such file",
                   cwd=tmp_path)


def test_export_run_overwrite_passes_the_refusal(tmp_path, monkeypatch):
    """``overwrite=True`` reaches the model loading (a refusal would come before it)."""
    from kdarts.runs import RunError, export_run

    module = importlib.import_module("kdarts.export")

    model = fake_model(tmp_path / "train" / "model.keras")
    out = tmp_path / "net.onnx"
    out.write_bytes(b"previous export")
    with pytest.raises(RunError, match="already exists.*--overwrite"):
        export_run(str(model), "onnx", str(out))

    class Loaded(Exception):
        pass

    def load_model(path):
        raise Loaded(path)

    monkeypatch.setattr(module, "load_model", load_model)
    with pytest.raises(Loaded):
        export_run(str(model), "onnx", str(out), overwrite=True)
    assert out.read_bytes() == b"previous export"


def test_default_export_names_include_the_parent_folder():
    from kdarts.runs import default_export_path

    assert default_export_path("runs/x/train/model.keras", "onnx") == \
        os.path.join("saved_models", "x-train.onnx")
    assert default_export_path("runs/y/train/model.keras", "tflite", "int8") == \
        os.path.join("saved_models", "y-train_int8.tflite")
    assert default_export_path("runs/y/train/model.keras", "saved_model") == \
        os.path.join("saved_models", "y-train")
    assert default_export_path("nets/digits.keras", "onnx") == \
        os.path.join("saved_models", "digits.onnx")  # a named archive keeps its name


def test_quickstart_refuses_an_existing_export_it_did_not_write(tmp_path):
    other = tmp_path / "other.onnx"
    other.write_bytes(b"someone's model")
    before = state(other)
    assert_refused(["quickstart", "--out", tmp_path / "q", "--export-to", other],
                   "other.onnx", "already exists", "--overwrite", cwd=tmp_path)
    assert state(other) == before and not (tmp_path / "q").exists()


def test_quickstart_rerun_replaces_its_own_export_only(tmp_path, monkeypatch):
    """A rerun redoes the quickstart's own export; another quickstart's is refused."""
    import kdarts.runs as runs

    def search_run(out, **kwargs):
        return runs.SearchResult(out=out, epochs_done=8, complete=True, seconds=1.0)

    def train_run(genotype, out, **kwargs):
        return runs.TrainResult(out=out, epochs_done=20, complete=True,
                                metrics={"test_accuracy": 0.99}, seconds=1.0)

    def export_run(model, fmt, out, verify=True, overwrite=False, **kwargs):
        assert overwrite or not os.path.exists(out)
        with open(out, "wb") as f:
            f.write(os.urandom(16))  # each export differs, as a retrained model's would
        return runs.ExportRunResult(path=out, format=fmt, max_abs_diff=0.0,
                                    input_contract={}, seconds=1.0)

    import kdarts.runs.quickstart as quickstart

    monkeypatch.setattr(quickstart, "search_run", search_run)
    monkeypatch.setattr(quickstart, "train_run", train_run)
    monkeypatch.setattr(quickstart, "export_run", export_run)
    monkeypatch.setattr(quickstart, "describe_export", lambda result: "exported")
    onnx = str(tmp_path / "quick.onnx")
    runs.quickstart_run(str(tmp_path / "a"), onnx, report=None)
    runs.quickstart_run(str(tmp_path / "a"), onnx, report=None)  # its own: redone
    first = state(onnx)
    with pytest.raises(runs.RunError, match="quick.onnx already exists.*--overwrite"):
        runs.quickstart_run(str(tmp_path / "b"), onnx, report=None)
    assert state(onnx) == first
    with open(onnx, "wb") as f:  # replaced by something else: no longer the quickstart's
        f.write(b"edited")
    with pytest.raises(runs.RunError, match="already exists"):
        runs.quickstart_run(str(tmp_path / "a"), onnx, report=None)
    runs.quickstart_run(str(tmp_path / "b"), onnx, report=None, overwrite=True)
    assert state(onnx) != first and open(onnx, "rb").read() != b"edited"


# ---------------------------------------------------------- outputs and inputs


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize("args, named", [
    (["search", "--out", "/proc/kdarts-out"], "/proc/kdarts-out"),
    (["train", "--genotype", "DARTS_V2", "--out", "/proc/kdarts-out"], "/proc/kdarts-out"),
    (["quickstart", "--out", "/proc/kdarts-out"], "/proc/kdarts-out"),
    (["quickstart", "--out", "q", "--export-to", "/proc/kdarts.onnx"], "/proc/kdarts.onnx"),
    (["export", "model.keras", "--out", "/proc/kdarts.onnx"], "/proc/kdarts.onnx"),
])
def test_an_output_that_cannot_be_created_is_one_line(args, named, tmp_path):
    """/proc takes no new files (even for root, whom os.access lets write anywhere)."""
    fake_model(tmp_path / "model.keras")
    assert_refused(args, named, "cannot be", cwd=tmp_path)


def test_show_and_train_name_a_file_that_is_not_a_genotype(tmp_path):
    png = tmp_path / "some.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    for args in (["show", png], ["train", "--genotype", png, "--out", tmp_path / "t"]):
        assert_refused(args, "some.png", "not a genotype JSON file", "DARTS_V2",
                       cwd=tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["some.png"]


@pytest.fixture
def bad_data(tmp_path):
    """Datasets that fail their checks: each checkable without TensorFlow."""
    one_class = tmp_path / "one_class" / "cat"
    one_class.mkdir(parents=True)
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(one_class / f"{i}.png")
    (tmp_path / "broken.npz").write_bytes(b"not an npz")
    npz = tmp_path / "ok.npz"
    np.savez(npz, x=np.zeros((6, 8, 8, 3), np.uint8), y=np.arange(6) % 2)
    return {
        "missing": ([tmp_path / "nonexistent" / "folder"], "no such file or folder"),
        "one class": ([tmp_path / "one_class"], "one_class"),
        "broken npz": ([tmp_path / "broken.npz"], "broken.npz"),
        "size of an npz": ([npz, "--image-size", "16"], "--image-size"),
        "size too small": ([tmp_path / "one_class", "--image-size", "2"], "--image-size"),
    }


@pytest.mark.parametrize("command", [["search"], ["train", "--genotype", "DARTS_V2"]])
@pytest.mark.parametrize("case", ["missing", "one class", "broken npz", "size of an npz",
                                  "size too small"])
def test_data_is_checked_before_tensorflow(command, case, bad_data, tmp_path):
    (dataset, *extra), named = bad_data[case]
    assert_refused([*command, "--dataset", dataset, *extra, "--out", tmp_path / "run"],
                   named, cwd=tmp_path)
    assert not (tmp_path / "run").exists()


def test_imagenet_stem_size_is_checked_before_tensorflow(tmp_path):
    npz = tmp_path / "small.npz"
    np.savez(npz, x=np.zeros((6, 8, 8, 3), np.uint8), y=np.arange(6) % 2)
    assert_refused(["train", "--genotype", "DARTS_V2", "--dataset", npz, "--imagenet-stem",
                    "--out", tmp_path / "run"], "--imagenet-stem", "8x8", cwd=tmp_path)
