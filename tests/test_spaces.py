"""The one lookup of a search space: each kind of input to its space, an input of no
space to one clear error; and what each space names resolves (without TensorFlow)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from kdarts.spaces import IMAGE_SPACE, RECURRENT_SPACE, SPACES, SpaceError, resolve, \
    space_for, space_named


def _archive(path, class_name):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": class_name, "config": {}}))
    return path


def test_datasets(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (corpus / name).write_text("a b\n")
    assert space_for(dataset="kdarts_text") is RECURRENT_SPACE
    assert space_for(dataset=str(corpus)) is RECURRENT_SPACE
    for dataset in ("kdarts_digits", "cifar10", str(tmp_path / "x.npz")):
        assert space_for(dataset=dataset) is IMAGE_SPACE
    (corpus / "test.txt").unlink()  # part of a corpus: neither space's, said in one line
    with pytest.raises(SpaceError, match="holds no test.txt: a corpus is 'kdarts_text'"):
        space_for(dataset=str(corpus))


def test_genotypes(tmp_path):
    from kdarts.image.genotype import DARTS_V2
    from kdarts.recurrent.genotype import DARTS_V2 as RNN_V2

    (tmp_path / "search").mkdir()
    RNN_V2.save(tmp_path / "search" / "genotype.json")
    DARTS_V2.save(tmp_path / "cells.json")
    for genotype in (RNN_V2, RNN_V2.to_dict(), str(tmp_path / "search"),
                     str(tmp_path / "search" / "genotype.json")):
        assert space_for(genotype=genotype) is RECURRENT_SPACE, genotype
    for genotype in (DARTS_V2, DARTS_V2.to_dict(), "DARTS_V2", str(tmp_path / "cells.json")):
        assert space_for(genotype=genotype) is IMAGE_SPACE, genotype
    (tmp_path / "other.json").write_text('{"cells": []}')
    for unknown in (str(tmp_path / "missing.json"), str(tmp_path / "other.json"), "V3"):
        with pytest.raises(SpaceError, match="not a genotype of either space"):
            space_for(genotype=unknown)
        assert space_for(genotype=unknown, default="image") is IMAGE_SPACE


def test_saved_models_and_runs(tmp_path):
    assert space_for(saved_model=_archive(tmp_path / "lm.keras", "RecurrentLanguageModel")) \
        is RECURRENT_SPACE
    assert space_for(saved_model=_archive(tmp_path / "net.keras", "EvalNetwork")) \
        is IMAGE_SPACE
    (tmp_path / "text.keras").write_text("not a zip")
    with pytest.raises(SpaceError, match="not a .keras archive of a kdarts model"):
        space_for(saved_model=tmp_path / "text.keras")
    assert space_for(run={"space": "recurrent", "epochs": 2}) is RECURRENT_SPACE
    assert space_for(run={"epochs": 2}) is IMAGE_SPACE  # written before the recurrent space
    with pytest.raises(SpaceError, match="unknown search space 'video'"):
        space_for(run={"space": "video"})
    with pytest.raises(SpaceError, match="the spaces are image, recurrent"):
        space_named("video")
    with pytest.raises(TypeError, match="exactly one"):
        space_for(dataset="kdarts_text", genotype="DARTS_V2")


def test_each_space_names_what_exists():
    """Every reference resolves, to the run functions and defaults the runs export; the
    run files of both spaces are the folder's inventory."""
    import kdarts.runs
    from kdarts.runs.folder import RUN_FILES

    assert IMAGE_SPACE.job("search") is kdarts.runs.search_run
    assert RECURRENT_SPACE.job("train") is kdarts.runs.recurrent_train_run
    assert RECURRENT_SPACE.defaults_for("search") is kdarts.runs.RECURRENT_SEARCH_DEFAULTS
    for space in SPACES.values():
        assert space_named(space.name) is space
        for reference in (space.genotype_loader, space.genotype_figure, space.exporter):
            assert callable(resolve(reference))
    for command in ("search", "train"):
        assert set(RUN_FILES[command]) == (set(IMAGE_SPACE.run_files[command])
                                           | set(RECURRENT_SPACE.run_files[command]))


def test_no_tensorflow_at_import():
    code = ("import sys, kdarts.spaces as s; s.space_for(dataset='kdarts_text'); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]
