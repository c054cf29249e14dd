"""What a model says it takes, and own data that does not fit the defaults.

* The input contract names the unit of its ``mean``/``std`` and the dataset, and for
  the digits how to bring scikit-learn's 0..16 images to the 0..255 the model takes;
  models saved before it named the dataset still load.
* Float images in 0..1 (an ``.npz`` or arrays) are rescaled to 0..255 with a one-line
  notice, not taken silently as nearly black 0..255 images.
* A search on a small folder or ``.npz`` lowers the default batch to fit its search
  split and says so; a ``--batch-size`` given that does not fit is refused at once.
* README's own-data commands pass the command line's checks.
"""

import json
import os
import re
import shlex
import warnings

import numpy as np
import pytest
from conftest import invoke, own_images, write_png_folder

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def error_line(result) -> str:
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# ------------------------------------------------------------------- input contract


def test_digits_contract_says_how_to_scale_sklearns_digits():
    from sklearn.datasets import load_digits

    from kdarts.data.digits import digits_arrays
    from kdarts.image import EvalNetwork

    model = EvalNetwork("DARTS_V2", 10, channels=2, layers=3, auxiliary=False,
                        mean=[0.3] * 3, std=[0.4] * 3, dataset="kdarts_digits")
    model.build((None, 8, 8, 3))
    contract = model.input_contract()
    assert contract["dataset"] == "kdarts_digits"
    scaling = contract["source_scaling"]
    assert "load_digits()" in scaling and "255/16" in scaling and "3 times" in scaling
    assert scaling in contract["description"]  # the ONNX input doc string carries it
    # what the note says is what kdarts_digits holds: 0..16 × 255/16, grey repeated 3 times
    grey = load_digits().images * (255 / 16)
    images, _ = digits_arrays()
    np.testing.assert_array_equal(images, np.repeat(np.rint(grey)[..., None], 3, axis=-1))


def test_contract_names_the_unit_of_mean_and_std():
    from kdarts.preprocessing import Standardize, input_contract

    contract = input_contract((8, 8, 1), Standardize([0.25], [0.5], dataset="photos"))
    # the keys readers know keep their meaning: pixels 0..255 in, mean/std on 0..1
    assert contract["pixel_range"] == [0.0, 255.0]
    assert contract["mean"] == [0.25] and contract["std"] == [0.5]
    assert contract["normalized_inside"] is True and contract["shape"] == [None, 8, 8, 1]
    assert contract["stats_unit"] == "pixel/255"
    assert "pixel/255" in contract["description"]
    assert contract["dataset"] == "photos" and "source_scaling" not in contract
    layer = Standardize([0.25], [0.5])  # what stats_unit says: (x / 255 - mean) / std
    np.testing.assert_allclose(layer(np.full((1, 1, 1, 1), 127.5, np.float32)).numpy(), 0.5)


def test_models_saved_before_the_dataset_was_recorded_still_load():
    import keras

    from kdarts.image import EvalNetwork
    from kdarts.preprocessing import Standardize

    model = EvalNetwork("DARTS_V2", 3, channels=2, layers=3, auxiliary=False,
                        mean=[0.3], std=[0.4], dataset="data.npz")
    config = keras.saving.serialize_keras_object(model)
    assert config["config"]["dataset"] == "data.npz"
    copy = keras.saving.deserialize_keras_object(config)
    copy.build((None, 8, 8, 1))
    assert copy.input_contract()["dataset"] == "data.npz"

    del config["config"]["dataset"]  # as an older kdarts wrote it
    old = keras.saving.deserialize_keras_object(config)
    old.build((None, 8, 8, 1))
    contract = old.input_contract()
    assert contract["dataset"] is None and "source_scaling" not in contract
    assert contract["mean"] == [0.3] and contract["stats_unit"] == "pixel/255"
    layer_config = Standardize([0.3], [0.4]).get_config()
    del layer_config["dataset"]
    assert Standardize.from_config(layer_config).dataset is None


# ----------------------------------------------------------------- float 0..1 images


def test_float_npz_in_0_to_1_is_rescaled_with_a_notice(tmp_path):
    from kdarts.data import open_source
    from kdarts.data.files import DataNotice

    x, y = own_images(30, seed=3)
    np.savez(tmp_path / "bytes.npz", x=x, y=y)
    np.savez(tmp_path / "unit.npz", x=x.astype(np.float32) / 255, y=y)
    np.savez(tmp_path / "floats.npz", x=x.astype(np.float32), y=y)  # 0..255 as numbers

    with pytest.warns(DataNotice) as caught:
        unit = open_source(str(tmp_path / "unit.npz"))
    assert len(caught) == 1
    (note,) = unit.info.notes
    assert note == str(caught[0].message) and "\n" not in note
    assert note.startswith(f"{tmp_path / 'unit.npz'}: x holds float pixel values 0..1")
    assert "255" in note
    reference = open_source(str(tmp_path / "bytes.npz"))
    for got, want in ((unit.train, reference.train), (unit.test, reference.test)):
        np.testing.assert_allclose(got.images, want.images, atol=1e-3)
    np.testing.assert_allclose(unit.info.mean, reference.info.mean, atol=1e-6)
    np.testing.assert_allclose(unit.info.std, reference.info.std, atol=1e-6)

    with warnings.catch_warnings():
        warnings.simplefilter("error", DataNotice)  # 0..255 floats are taken as they are
        floats = open_source(str(tmp_path / "floats.npz"))
    assert floats.info.notes == () and floats.train.images.max() > 200


def test_arrays_on_two_scales_are_refused():
    from kdarts.data import DatasetError
    from kdarts.data.files import split_arrays

    x, y = own_images(12, seed=4)
    with pytest.raises(DatasetError) as err:
        split_arrays((x.astype(np.float32) / 255, y, x, y), "mixed.npz")
    message = str(err.value)
    assert "\n" not in message and message.startswith("mixed.npz: x holds")
    assert "0..1 scale" in message and "x_test on the 0..255 scale" in message


# -------------------------------------------------------------- small own data, batch


def test_split_sizes_are_the_pipelines(tmp_path):
    from kdarts.data import split_indices
    from kdarts.data.catalog import fit_batch_size, search_split_size

    for n in (2, 13, 48, 144, 1437):
        for split, every in (("half", 10), ("dynamic", 1), ("dynamic", 10)):
            weight, search = split_indices(n, 0, split, every)
            assert search_split_size(n, split, every) == len(search) <= len(weight)
    assert [fit_batch_size(32, n) for n in (0, 1, 13, 31, 32, 131)] == [0, 1, 8, 16, 32, 32]


def test_search_lowers_the_default_batch_for_a_small_folder(tmp_path, monkeypatch):
    """README's folder command on 180 images: batch 8 (13 search images), said in one line."""
    import kdarts.data
    from kdarts.data import DatasetError
    from kdarts.data.files import train_size

    folder = write_png_folder(tmp_path / "photos", count=180)
    assert train_size(str(folder)) == 144
    seen = {}

    def stop(name, batch_size, **kwargs):  # what the search would load with, then stop
        seen["batch_size"] = batch_size
        raise DatasetError("stopped before loading")

    monkeypatch.setattr(kdarts.data, "search_datasets", stop)
    result = invoke("search", "--dataset", folder, "--out", tmp_path / "s")
    assert seen == {"batch_size": 8}, result.output
    lines = result.output.splitlines()
    assert lines[0] == (f"batch size 8: the search split of {folder} has 13 images (1/11 of "
                        "144), fewer than the default 32; --batch-size sets another")


def test_a_batch_given_that_does_not_fit_is_refused_first(tmp_path, no_tf_work):
    folder = write_png_folder(tmp_path / "photos", count=180)
    line = error_line(invoke("search", "--dataset", folder, "--batch-size", "32",
                             "--out", tmp_path / "s"))
    assert "--batch-size 32: the search split of" in line
    assert "has 13 images (1/11 of 144 training images)" in line
    assert "--batch-size 13 or less" in line
    x, y = own_images(5, seed=5)  # 4 training images: 1/11 of them is no image at all
    np.savez(tmp_path / "tiny.npz", x=x, y=y)
    line = error_line(invoke("search", "--dataset", tmp_path / "tiny.npz", "--out",
                             tmp_path / "t"))
    assert "would hold no image (1/11 of 4 training images)" in line
    assert "--split half" in line


@pytest.mark.slow
def test_small_float_npz_search_and_train(tmp_path):
    """A 60-image float .npz in 0..1, default batch: search (batch 4) → train → contract."""
    x, y = own_images(60, seed=6)
    data = tmp_path / "data.npz"
    np.savez(data, x=x.astype(np.float32) / 255, y=y)
    search = ["search", "--dataset", data, "--channels", "2", "--layers", "3", "--steps", "1",
              "--primitives", "max_pool_3x3,skip_connect", "--epochs", "1", "--out",
              tmp_path / "s"]
    result = invoke(*search)
    assert result.exit_code == 0, result.output
    notice = "data.npz: x holds float pixel values 0..1"
    assert result.output.count(notice) == 1, result.output  # a line, not also a warning
    assert f"batch size 4: the search split of {data} has 4 images (1/11 of 48)" in \
        result.output
    run = json.loads((tmp_path / "s" / "run.json").read_text())
    assert run["args"]["batch_size"] == 4 and run["steps_per_epoch"] == 11
    # the same command chooses the same batch: this search, not another one
    assert "already holds this search" in error_line(invoke(*search))

    result = invoke("train", "--genotype", tmp_path / "s", "--dataset", data, "--channels",
                    "2", "--layers", "3", "--epochs", "1", "--out", tmp_path / "t")
    assert result.exit_code == 0, result.output
    assert result.output.count(notice) == 1, result.output
    contract = json.loads((tmp_path / "t" / "metrics.json").read_text())["input"]
    assert contract["dataset"] == "data.npz" and contract["stats_unit"] == "pixel/255"
    assert "source_scaling" not in contract
    assert min(contract["mean"]) > 0.1  # statistics of 0..255 pixels, not of 0..1 ones


# --------------------------------------------------------------------------- README


def readme_own_data_commands() -> list[list[str]]:
    """The ``kdarts search``/``train`` lines of README's "Your own images" block."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Your own images", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["kdarts"] and words[1] in ("search", "train"):
            commands.append(words[1:])
    return commands


def test_readme_own_data_commands_pass_the_checks(tmp_path, monkeypatch):
    """Each line, run where photos/ (180 images) and arrays.npz exist, passes every
    check before TensorFlow (the search's, its batch choice included)."""
    from kdarts.cli import main
    from kdarts.data.files import check_dataset, parse_image_size
    from kdarts.runs import SEARCH_DEFAULTS, RunError, check_search_folder

    write_png_folder(tmp_path / "photos", count=180)
    x, y = own_images(180, seed=7)
    np.savez(tmp_path / "arrays.npz", x=x, y=y)
    monkeypatch.chdir(tmp_path)
    commands = readme_own_data_commands()
    assert {words[0] for words in commands} == {"search", "train"}
    assert any("arrays.npz" in words for words in commands)
    for words in commands:
        command = main.commands[words[0]]
        try:
            params = command.make_context(words[0], words[1:]).params
            if words[0] == "search":
                check_search_folder(params["out"], **{k: v for k, v in params.items()
                                                      if k in SEARCH_DEFAULTS})
            else:
                check_dataset(params["dataset"], parse_image_size(params["image_size"]))
        except (RunError, ValueError, SystemExit) as err:
            pytest.fail(f"README: kdarts {' '.join(words)}: {err}")


# ----------------------------------------------------------------------- class names


def test_the_contract_names_the_classes():
    from kdarts.data import open_source
    from kdarts.image import EvalNetwork

    assert open_source("kdarts_digits").info.class_names == tuple("0123456789")
    model = EvalNetwork("DARTS_V2", 3, channels=2, layers=3, auxiliary=False, mean=[0.3],
                        std=[0.4], dataset="png", class_names=("ant", "bee", "cat"))
    model.build((None, 8, 8, 1))
    assert model.input_contract()["class_names"] == ["ant", "bee", "cat"]
    again = EvalNetwork.from_config(model.get_config())  # what model.keras reloads
    again.build((None, 8, 8, 1))
    assert again.input_contract()["class_names"] == ["ant", "bee", "cat"]
    plain = EvalNetwork("DARTS_V2", 3, channels=2, layers=3, auxiliary=False, mean=[0.3],
                        std=[0.4])
    plain.build((None, 8, 8, 1))
    assert "class_names" not in plain.input_contract()


@pytest.mark.slow
def test_a_folders_class_names_are_recorded(tmp_path, png_folder):
    import keras

    out = tmp_path / "t"
    result = invoke("train", "--genotype", "DARTS_V2", "--dataset", png_folder, "--channels",
                    "2", "--layers", "3", "--epochs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["class_names"] == ["ant", "bee", "cat"]
    assert metrics["input"]["class_names"] == ["ant", "bee", "cat"]
    model = keras.models.load_model(out / "model.keras")
    assert model.input_contract()["class_names"] == ["ant", "bee", "cat"]
