"""kdarts.checkpoints: the one writer (a file or a folder payload with its state, the
last good pair kept), the one reader and the resume rule. No TensorFlow."""

import errno
import json
import os

import pytest

from kdarts.atomic import DiskFullError
from kdarts.checkpoints import CheckpointFiles, read_checkpoint_state, resume_epoch, \
    write_checkpoint


def _folder_payload(text):
    def write(tmp):
        os.makedirs(tmp)
        with open(os.path.join(tmp, "variables"), "w") as f:
            f.write(text)
    return write


def _full(tmp):
    os.makedirs(tmp)
    with open(os.path.join(tmp, "variables"), "w") as f:
        f.write("half")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_folder_checkpoint_is_replaced_whole_or_not_at_all(tmp_path):
    files = CheckpointFiles.folder(tmp_path / "checkpoint" / "last")
    write_checkpoint(files, _folder_payload("one"), {"epoch": 1, "history": [2.0]})
    assert read_checkpoint_state(files) == {"epoch": 1, "history": [2.0]}
    write_checkpoint(files, _folder_payload("two"), {"epoch": 2, "history": []})
    assert sorted(os.listdir(files.payload)) == ["state.json", "variables"]
    assert open(os.path.join(files.payload, "variables")).read() == "two"
    with pytest.raises(DiskFullError, match=r"checkpoint/last: the disk is full .*previous "
                                            "version is kept"):
        write_checkpoint(files, _full, {"epoch": 3})
    assert read_checkpoint_state(files)["epoch"] == 2
    assert open(os.path.join(files.payload, "variables")).read() == "two"
    assert os.listdir(tmp_path / "checkpoint") == ["last"]  # no temp folder left


def test_a_weights_pair_and_what_the_reader_refuses(tmp_path):
    write_checkpoint(tmp_path, lambda tmp: open(tmp, "wb").close(), {"epoch": 4})
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "checkpoint.weights.h5"]
    assert read_checkpoint_state(tmp_path) == {"epoch": 4}
    os.unlink(tmp_path / "checkpoint.weights.h5")
    assert read_checkpoint_state(tmp_path) is None  # half a pair is no checkpoint
    with pytest.raises(ValueError, match="integer 'epoch'"):
        write_checkpoint(tmp_path, lambda tmp: None, {"epoch": "4"})
    (tmp_path / "checkpoint.weights.h5").write_bytes(b"w")
    (tmp_path / "checkpoint.json").write_text(json.dumps({"step": 4}))
    with pytest.raises(ValueError, match="not a kdarts checkpoint"):
        read_checkpoint_state(tmp_path)


def test_the_resume_epoch_is_the_states_and_the_models_count_must_agree():
    assert resume_epoch(None) == 0 and resume_epoch({"epoch": 2}, counted=2) == 2
    with pytest.raises(ValueError, match="records 2 epochs, but its model counts 3"):
        resume_epoch({"epoch": 2}, counted=3)
