"""A full disk fails a run in one line and keeps the last good checkpoint (issue 37).

The full disk is injected: the writers are monkeypatched to write part of a file and then
fail as a full file system does (``OSError(ENOSPC)``; TensorFlow's checkpoint writer
raises ``ResourceExhaustedError``). Each case checks the error names the file, the bytes
needed and free, and that the previous files are unchanged byte for byte.
"""

import errno
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from kdarts.atomic import DiskFullError, atomic_write_bytes, atomic_write_text


def half_then_full(path, data):
    """A ``write_synced`` that writes half of ``data``, then finds the disk full."""
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def files(folder) -> dict:
    """Every file under ``folder`` (relative path → bytes), temp files included."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def test_a_full_disk_keeps_the_old_file_and_says_what_was_needed(tmp_path, monkeypatch):
    import kdarts.atomic

    old = tmp_path / "history.csv"
    old.write_text("epoch,loss\n0,1.5\n")
    monkeypatch.setattr(kdarts.atomic, "write_synced", half_then_full)
    with pytest.raises(DiskFullError) as caught:
        atomic_write_text(old, "epoch,loss\n0,1.5\n1,1.2\n" * 100)
    message = caught.value.strerror
    assert caught.value.errno == errno.ENOSPC and "\n" not in message
    assert message.startswith(f"{old}: the disk is full (writing it needs about 2.2 KB, ")
    assert re.search(r"[0-9.]+ (bytes|KB|MB|GB) free\); its previous version is kept$",
                     message)
    assert files(tmp_path) == {"history.csv": b"epoch,loss\n0,1.5\n"}
    with pytest.raises(DiskFullError, match="nothing was written"):
        atomic_write_bytes(tmp_path / "new.bin", b"x" * 10)
    assert sorted(files(tmp_path)) == ["history.csv"]


def test_other_write_errors_pass_unchanged(tmp_path, monkeypatch):
    import kdarts.atomic

    def denied(path, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(kdarts.atomic, "write_synced", denied)
    with pytest.raises(PermissionError) as caught:
        atomic_write_text(tmp_path / "a.txt", "a")
    assert not isinstance(caught.value, DiskFullError) and files(tmp_path) == {}


def test_epoch_checkpoint_keeps_the_last_good_pair(tmp_path, monkeypatch):
    import keras

    import kdarts.atomic
    import kdarts.callbacks
    from kdarts.callbacks import EpochCheckpoint, restore_checkpoint

    def model(seed):
        keras.utils.set_random_seed(seed)
        net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        net.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
        net.optimizer.build(net.trainable_variables)
        return net

    net = model(0)
    checkpoint = EpochCheckpoint(tmp_path)
    checkpoint.set_model(net)
    checkpoint.on_train_begin()
    checkpoint.on_epoch_end(0)
    first = files(tmp_path)
    assert sorted(first) == ["checkpoint.json", "checkpoint.weights.h5"]
    # the file made in memory is one load_weights reads
    other = model(1)
    assert restore_checkpoint(other, tmp_path) == 1
    for a, b in zip(net.variables + net.optimizer.variables,
                    other.variables + other.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    net.layers[0].kernel.assign(np.ones((3, 2), "float32"))
    monkeypatch.setattr(kdarts.callbacks, "write_synced", half_then_full)  # the weights
    with pytest.raises(DiskFullError, match="checkpoint.weights.h5: the disk is full"):
        checkpoint.on_epoch_end(1)
    assert files(tmp_path) == first
    monkeypatch.undo()
    monkeypatch.setattr(kdarts.atomic, "write_synced", half_then_full)  # the state only
    with pytest.raises(DiskFullError, match="checkpoint.json: the disk is full"):
        checkpoint.on_epoch_end(1)
    assert files(tmp_path) == first  # the new weights did not replace the old ones


def test_language_model_checkpoint_on_a_full_disk(tmp_path, monkeypatch):
    import tensorflow as tf

    from kdarts.cli import main

    out = tmp_path / "lm"
    real_write, kept = tf.train.Checkpoint.write, {}

    def write(self, prefix, *args, **kwargs):
        last = out / "checkpoint" / "last"
        if last.exists():  # the second epoch's checkpoint: the disk is full
            kept.update(files(last))
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{prefix}_temp/part-00000; No space left on device")
        return real_write(self, prefix, *args, **kwargs)

    monkeypatch.setattr(tf.train.Checkpoint, "write", write)
    result = CliRunner().invoke(main, [
        "train", "--genotype", "DARTS_V2", "--dataset", "kdarts_text", "--epochs", "2",
        "--units", "8", "--max-tokens", "1500", "--out", str(out)])
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "Traceback" not in result.output
    assert f"{out / 'checkpoint' / 'last'}: the disk is full" in lines[0]
    assert "its previous version is kept" in lines[0]
    assert "last checkpoint (epoch 1 of 2)" in lines[0] and "--resume" in lines[0]
    assert kept and files(out / "checkpoint" / "last") == kept
    assert not [p for p in os.listdir(out / "checkpoint") if ".tmp" in p]


WRAPPER = textwrap.dedent("""
    import errno, os, shutil, sys
    import kdarts.callbacks as callbacks

    real, calls = callbacks.write_synced, []

    def write_synced(path, data):  # the second checkpoint finds the disk full
        calls.append(path)
        if len(calls) < 2:
            return real(path, data)
        folder = os.path.dirname(path)
        for name in ("checkpoint.weights.h5", "checkpoint.json"):
            shutil.copy(os.path.join(folder, name), os.path.join(sys.argv[1], name))
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", path)

    callbacks.write_synced = write_synced
    from kdarts.cli import main
    main(sys.argv[2:], prog_name="kdarts")
""")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["search", "train"])
def test_a_full_disk_during_a_run_is_one_line_and_exit_1(tmp_path, command):
    out, kept = tmp_path / "run", tmp_path / "kept"
    kept.mkdir()
    args = ["--epochs", "2", "--channels", "4", "--layers", "3", "--max-examples", "96",
            "--batch-size", "8", "--out", str(out)]
    if command == "train":
        args = ["--genotype", "DARTS_V2", *args]
    proc = subprocess.run([sys.executable, "-c", WRAPPER, str(kept), command, *args],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    # the progress bars share stderr: every other line is the error
    lines = [line for line in re.split(r"[\r\n]+", proc.stderr)
             if line.strip() and not re.search(r"\d+/\d+ \[", line)]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr[-3000:]
    assert f"{out / 'checkpoint.weights.h5'}: the disk is full" in lines[0]
    assert "last checkpoint (epoch 1 of 2)" in lines[0]
    for name in ("checkpoint.weights.h5", "checkpoint.json"):
        assert (out / name).read_bytes() == (kept / name).read_bytes(), name
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]


def test_a_checkpoint_restores_its_seeds_in_a_process_that_built_other_models(tmp_path):
    """Drop-path's generators are named by Keras's process-wide counters: the same model
    built after other models has other names, and restores by the model's own order."""
    import keras

    from kdarts.callbacks import EpochCheckpoint, restore_checkpoint

    def model():
        net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2),
                                keras.layers.Dropout(0.5, seed=1),
                                keras.layers.Dropout(0.5, seed=2)])
        net.compile(optimizer="sgd", loss="mse")
        net.optimizer.build(net.trainable_variables)
        return net

    net = model()
    generators = [v for v in net.variables if "seed_generator" in v.path]
    assert len(generators) == 2
    generators[0].assign(np.array([7, 8], dtype=generators[0].dtype))
    checkpoint = EpochCheckpoint(tmp_path)
    checkpoint.set_model(net)
    checkpoint.on_train_begin()
    checkpoint.on_epoch_end(0)
    model()  # another model first: the counters move on
    later = model()
    assert [v.path for v in later.variables if "seed_generator" in v.path] != \
        [v.path for v in generators]
    assert restore_checkpoint(later, tmp_path) == 1
    restored = [v for v in later.variables if "seed_generator" in v.path]
    np.testing.assert_array_equal(np.asarray(restored[0]), [7, 8])
    np.testing.assert_array_equal(np.asarray(restored[1]), np.asarray(generators[1]))
    # a model with another number of generators is still refused
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2),
                              keras.layers.Dropout(0.5, seed=1)])
    other.compile(optimizer="sgd", loss="mse")
    other.optimizer.build(other.trainable_variables)
    with pytest.raises(ValueError, match="has no state for"):
        restore_checkpoint(other, tmp_path)
