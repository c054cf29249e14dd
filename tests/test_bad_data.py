"""Own data that is broken in one file or one value is refused in one line, before any work.

* A corrupt image (a truncated PNG) in either split of a folder, or a file that is
  not one of the formats TensorFlow decodes, is named by its path; nothing is written.
* A class sub-folder without images is refused (it would be a class with no examples).
* An ``.npz`` whose labels skip a class, or whose pixels hold NaN, says so (issue 37).
"""

import os

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import own_images, write_png_folder


def invoke(*args):
    from kdarts.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def refused_by_search_and_train(dataset, tmp_path) -> list[str]:
    """The one-line errors of ``search`` and ``train`` on ``dataset``; neither wrote."""
    out = tmp_path / "run"
    lines = [error_line(invoke("search", "--dataset", dataset, "--out", out))]
    assert not out.exists()
    lines.append(error_line(invoke("train", "--genotype", "DARTS_V2", "--dataset", dataset,
                                   "--out", out)))
    assert not out.exists()
    return lines


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_truncated_png_in_either_split_is_named(tmp_path, no_tf_work, split):
    root = tmp_path / "photos"
    write_png_folder(root / "train", count=12)
    write_png_folder(root / "test", count=6, seed=1)
    bad = sorted((root / split / "bee").iterdir())[0]
    truncate(bad)
    for line in refused_by_search_and_train(root, tmp_path):
        assert f"{bad}: not a readable image" in line and "remove the file" in line


def test_a_corrupt_image_of_the_held_out_share_is_named(tmp_path, no_tf_work):
    from kdarts.data.files import scan_folder

    root = write_png_folder(tmp_path / "photos", count=12)
    good = scan_folder(root)
    bad = good.test_paths[0]  # held out: the training never decodes it
    with open(bad, "r+b") as f:
        f.seek(60)
        f.write(b"\0" * 40)  # header intact, compressed data broken
    for line in refused_by_search_and_train(root, tmp_path):
        assert f"{bad}: not a readable image" in line


def test_a_file_tensorflow_cannot_decode_is_named(tmp_path, no_tf_work):
    from PIL import Image

    root = write_png_folder(tmp_path / "photos", count=12)
    tiff = root / "cat" / "odd.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tiff, format="TIFF")
    for line in refused_by_search_and_train(root, tmp_path):
        assert f"{tiff}: a TIFF image" in line and "PNG, JPEG, BMP and GIF" in line


def test_a_class_folder_without_images_is_refused(tmp_path, no_tf_work):
    root = write_png_folder(tmp_path / "photos", count=12)
    (root / "dog").mkdir()
    (root / "dog" / "readme.txt").write_text("no images yet")
    for line in refused_by_search_and_train(root, tmp_path):
        assert f"{root / 'dog'}: a class sub-folder with no images" in line
