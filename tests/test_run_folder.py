"""RunFolder: which folders a run accepts, and the lock that keeps a second process out.

None of these needs TensorFlow; the first test checks that the package loads without it.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from kdarts.runs import LOCK_FILE, SEARCH_DEFAULTS, RunError, RunFolder
from kdarts.runs.resume import search_state, train_state

ARGS = dict(SEARCH_DEFAULTS)


def write_run(folder, command="search", args=ARGS, **files):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "run.json"), "w") as f:
        json.dump({"command": command, "args": args}, f)
    for name, text in files.items():
        with open(os.path.join(folder, name.replace("_", ".")), "w") as f:  # run_json → run.json
            f.write(text)


def test_folder_logic_imports_no_tensorflow():
    script = ("import sys, tempfile, os\n"
              "from kdarts.runs import RunFolder, SEARCH_DEFAULTS\n"
              "from kdarts.runs.resume import search_state\n"
              "out = os.path.join(tempfile.mkdtemp(), 'run')\n"
              "folder = RunFolder(out, 'search')\n"
              "with folder.lock():\n"
              "    search_state(folder, dict(SEARCH_DEFAULTS), 'auto')\n"
              "print([m for m in ('tensorflow', 'keras') if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------ what it accepts


def test_new_and_empty_folders_are_fresh_starts(tmp_path):
    assert search_state(RunFolder(str(tmp_path / "new"), "search"), ARGS, False) is None
    (tmp_path / "empty").mkdir()
    assert search_state(RunFolder(str(tmp_path / "empty"), "search"), ARGS, "auto") is None
    assert train_state(RunFolder(str(tmp_path / "empty"), "train"), {}, False, False) \
        == (None, None)
    assert not (tmp_path / "new").exists()


def test_own_run_resumes_and_needs_resume(tmp_path):
    out = tmp_path / "s"
    write_run(out, checkpoint_json=json.dumps({"epoch": 3}), checkpoint_weights_h5="")
    folder = RunFolder(str(out), "search")
    assert search_state(folder, ARGS, True)["epoch"] == 3
    assert search_state(folder, ARGS, "auto")["epoch"] == 3
    with pytest.raises(RunError, match="already holds this search.*--resume"):
        search_state(folder, ARGS, False)


def test_other_kind_of_run_is_refused(tmp_path):
    out = tmp_path / "t"
    write_run(out, command="train", args={})
    with pytest.raises(RunError, match=r"holds a kdarts train run \(its run.json\), not a "
                                       "search run"):
        search_state(RunFolder(str(out), "search"), ARGS, "auto")


def test_other_arguments_are_refused_naming_the_difference(tmp_path):
    out = tmp_path / "s"
    write_run(out)
    with pytest.raises(RunError, match="different search run.*rho: 0.1 → 0.2") as err:
        search_state(RunFolder(str(out), "search"), {**ARGS, "rho": 0.2}, "auto")
    assert "\n" not in str(err.value)


def test_unrelated_files_and_a_file_as_out_are_refused(tmp_path):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match=r"not a kdarts search run \(notes.txt\)"):
        RunFolder(str(tmp_path / "f"), "search").read_run()
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file, not a folder"):
        RunFolder(str(tmp_path / "file"), "search").read_run()
    with pytest.raises(RunError, match="is a file, not a folder"):
        with RunFolder(str(tmp_path / "file"), "search").lock():
            pass


def test_overwrite_removes_only_the_runs_own_files(tmp_path):
    out = tmp_path / "t"
    write_run(out, command="train", args={"epochs": 1}, metrics_json="{}")
    assert train_state(RunFolder(str(out), "train"), {"epochs": 2}, False, True) == (None, None)
    assert os.listdir(out) == []


# --------------------------------------------------------------------------- the lock


def test_a_locked_folder_is_refused_with_one_line(tmp_path):
    out = str(tmp_path / "s")
    with RunFolder(out, "search").lock():
        lock = json.loads(open(os.path.join(out, LOCK_FILE)).read())
        assert lock == {"pid": os.getpid(), "host": socket.gethostname()}
        with pytest.raises(RunError) as err:
            with RunFolder(out, "search").lock():
                pass
        message = str(err.value)
        assert "\n" not in message
        assert f"in use by another kdarts run (pid {os.getpid()}" in message
        assert os.path.relpath(out) in message or out in message
        assert os.path.exists(os.path.join(out, LOCK_FILE))  # the holder keeps it
        # its folder checks ignore the lock file
        assert search_state(RunFolder(out, "search"), ARGS, "auto") is None
    assert not os.path.exists(out)  # created by the lock, left empty: removed


def test_a_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead = int(child.stdout)  # exited: no such process now
    (out / LOCK_FILE).write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    with RunFolder(str(out), "search").lock():
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (out / LOCK_FILE).exists() and out.exists()


def test_a_live_lock_of_another_process_or_host_is_kept(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"pid": os.getppid(),
                                             "host": socket.gethostname()}))
    with pytest.raises(RunError, match=f"pid {os.getppid()}"):
        with RunFolder(str(out), "search").lock():
            pass
    (out / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(RunError, match="pid 1 on elsewhere"):
        with RunFolder(str(out), "search").lock():
            pass
    assert (out / LOCK_FILE).exists()


def test_the_lock_is_released_after_an_exception(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    for error in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with RunFolder(str(out), "search").lock():
                (out / "run.json").write_text("{}")
                raise error
        assert not (out / LOCK_FILE).exists()
    with RunFolder(str(out), "search").lock():  # free again
        pass
    assert sorted(os.listdir(out)) == ["run.json"]


def test_a_refused_check_under_the_lock_leaves_nothing(tmp_path):
    out = tmp_path / "deep" / "s"
    folder = RunFolder(str(out), "search")
    with pytest.raises(RunError, match="no checkpoint"):
        with folder.lock():
            search_state(folder, ARGS, True)
    assert not (tmp_path / "deep").exists()


# ------------------------------------------------------------------- run.json's version


def test_migrate_run_upgrades_any_older_run_json():
    from kdarts.runs.folder import RUN_VERSION, migrate_run

    older = {k: v for k, v in ARGS.items()
             if k not in ("image_size", "mixed_precision", "arch_lr", "threshold")}
    run = migrate_run({"command": "search", "args": {**older, "skip_pruned_ops": True}})
    assert run["version"] == RUN_VERSION == 2
    assert run["args"] == {**ARGS, "arch_lr": 3e-4, "threshold": 1.0,
                           "skip_pruned_ops": "every_step"}
    train = migrate_run({"command": "train", "args": {"epochs": 3}})["args"]
    assert train == {"epochs": 3, "image_size": None, "imagenet_stem": False,
                     "mixed_precision": False}
    recurrent = {"space": "recurrent", "epochs": 1}
    assert migrate_run({"command": "search", "args": recurrent})["args"] == {
        **recurrent, "mixed_precision": False, "skip_pruned_ops": "never"}
    today = {"command": "search", "version": 2, "args": {"epochs": 1}}
    assert migrate_run(today) == today  # today's form is left as it is
    with pytest.raises(ValueError, match="version 3 .* a newer kdarts"):
        migrate_run({"command": "search", "version": 3, "args": {}})


def test_a_run_json_without_version_is_read_upgraded_and_a_newer_one_refused(tmp_path):
    out = tmp_path / "s"
    older = {**{k: v for k, v in ARGS.items() if k != "mixed_precision"},
             "skip_pruned_ops": False}
    write_run(out, args=older, checkpoint_json=json.dumps({"epoch": 1}),
              checkpoint_weights_h5="")
    folder = RunFolder(str(out), "search")
    assert folder.read_run()["args"] == {**ARGS, "skip_pruned_ops": "never"}
    assert search_state(folder, {**ARGS, "skip_pruned_ops": "never"}, True)["epoch"] == 1
    with pytest.raises(RunError, match="different search run.*skip_pruned_ops: 'never' → "
                                       "'auto'"):
        search_state(folder, ARGS, True)
    folder.upgrade_run()
    assert json.loads((out / "run.json").read_text()) == {
        "command": "search", "args": {**ARGS, "skip_pruned_ops": "never"}, "version": 2}
    folder.write_run({"args": ARGS})
    assert json.loads((out / "run.json").read_text())["version"] == 2
    write_run(tmp_path / "n")
    (tmp_path / "n" / "run.json").write_text(json.dumps(
        {"command": "search", "version": 7, "args": ARGS}))
    with pytest.raises(RunError, match=r"run.json: run.json version 7 is not one this "
                                       "kdarts knows") as err:
        search_state(RunFolder(str(tmp_path / "n"), "search"), ARGS, "auto")
    assert "\n" not in str(err.value)
