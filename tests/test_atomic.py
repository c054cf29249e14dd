"""kdarts.atomic: a destination holds its old content or the new, never half of one.

Fast (no TensorFlow): the h5 writer is h5py itself, as ``model.save_weights`` uses it.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from kdarts.atomic import atomic_file, atomic_write_json, atomic_write_text

KDARTS = Path(__file__).resolve().parent.parent / "kdarts"


@pytest.fixture
def umask():
    """Set the process umask for one test (the suite's processes share nothing else)."""
    old = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(old)


def _listing(folder) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_content_and_leaves_no_temp_file(tmp_path, error):
    path = tmp_path / "run.json"
    path.write_text("old\n")
    with pytest.raises(type(error)):
        with atomic_file(path, suffix=".json") as tmp:
            with open(tmp, "w") as f:
                f.write("half of the ne")
            assert os.path.exists(tmp) and path.read_text() == "old\n"
            raise error
    assert path.read_text() == "old\n"
    assert _listing(tmp_path) == ["run.json"]


def test_a_failed_first_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "new.txt") as tmp:
            Path(tmp).write_text("partial")
            raise RuntimeError("interrupted")
    assert _listing(tmp_path) == []


def test_a_block_that_writes_nothing_fails_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(FileNotFoundError):
        with atomic_file(path):
            pass
    assert path.read_text() == "old" and _listing(tmp_path) == ["a.txt"]


def test_the_temp_file_is_a_fresh_name_beside_the_destination(tmp_path):
    path = tmp_path / "sub" / "plot.png"
    path.parent.mkdir()
    with atomic_file(path, suffix=".png") as tmp:
        assert os.path.dirname(tmp) == str(path.parent)  # same filesystem: rename is atomic
        assert tmp.endswith(".png") and os.path.basename(tmp).startswith(".tmp-")
        assert not os.path.exists(tmp)  # writers that create the file themselves
        with open(tmp, "x") as f:      # "x": fails if the file exists
            f.write("png")
    assert path.read_text() == "png" and _listing(path.parent) == ["plot.png"]


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_the_result_has_the_usual_permissions(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "x")
    with atomic_file(tmp_path / "b.bin") as tmp:
        Path(tmp).write_bytes(b"x")
    with atomic_file(tmp_path / "c.h5", suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f["x"] = np.arange(3)
    for name in ("a.txt", "b.bin", "c.h5"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def test_text_and_json_replace_the_old_file(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_text(path, "héllo\n")
    assert path.read_bytes() == "héllo\n".encode("utf-8")
    atomic_write_json(path, {"epoch": 3, "seeds": [1, 2]})
    assert json.loads(path.read_text()) == {"epoch": 3, "seeds": [1, 2]}
    assert path.read_text().endswith("}\n") and _listing(tmp_path) == ["state.json"]
    with pytest.raises(TypeError):  # not JSON: fails before anything is written
        atomic_write_json(path, {"x": object()})
    assert json.loads(path.read_text())["epoch"] == 3 and _listing(tmp_path) == ["state.json"]


def test_an_h5_writer_that_creates_the_file_itself(tmp_path):
    path = tmp_path / "checkpoint.weights.h5"
    path.write_bytes(b"an older checkpoint")
    with atomic_file(path, suffix=".weights.h5") as tmp:
        with h5py.File(tmp, "w") as f:  # "w" truncates; h5py's "w-" refuses an existing file
            f["kernel"] = np.ones((2, 3), "float32")
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["kernel"][...], np.ones((2, 3)))
    assert _listing(tmp_path) == ["checkpoint.weights.h5"]


def test_the_writers_use_kdarts_atomic_and_keep_no_copy():
    """genotype, checkpoints and plots write through kdarts.atomic: none of them makes its
    own temp file or renames one, and genotype.py defines no atomic_write_text."""
    for name in ("genotype.py", "checkpoints.py", "plots.py", "callbacks.py"):
        tree = ast.parse((KDARTS / name).read_text(encoding="utf-8"))
        calls = {f"{node.func.value.id}.{node.func.attr}" for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                 and isinstance(node.func.value, ast.Name)}
        assert not calls & {"tempfile.mkstemp", "os.replace", "os.rename"}, name
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert "atomic_write_text" not in defined, name
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "kdarts.atomic" in imported, name
