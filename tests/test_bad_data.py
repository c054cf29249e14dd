"""Own data that is broken in one file or one value is refused in one line, before any work.

* A corrupt image (a truncated PNG) in either split of a folder, or a file that is
  not one of the formats TensorFlow decodes, is named by its path; nothing is written.
* A class sub-folder without images is refused (it would be a class with no examples).
* An ``.npz`` whose labels skip a class, or whose pixels hold NaN, says so (issue 37).
"""


import numpy as np
import pytest
from conftest import invoke, own_images, write_png_folder


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


# ------------------------------------------------------------------------------- .npz


def bad_npz(tmp_path, case):
    x, y = own_images(24, seed=2)
    path = tmp_path / f"{case}.npz"
    floats = x.astype(np.float32)
    if case == "gap":
        np.savez(path, x=x, y=np.where(y == 1, 2, y) * (y != 2))  # labels {0, 2}
    elif case == "nan":
        floats[5, 1, 2, 0] = np.nan
        np.savez(path, x=floats, y=y)
    elif case == "inf":
        floats[3, 0, 0, 1] = np.inf
        np.savez(path, x=x, y=y, x_test=floats[:6], y_test=y[:6])
    elif case == "scales":
        np.savez(path, x=floats / 255, y=y, x_test=floats[:6], y_test=y[:6])
    return path


@pytest.mark.parametrize("case, fragments", [
    ("gap", ["y holds the labels {0, 2}", "{1} has no images", "renumber the labels 0 .. 1",
             "kdarts does not"]),
    ("nan", ["x holds NaN values (1 of 4608, the first in image 5)", "numbers 0..255"]),
    ("inf", ["x_test holds infinite values (1 of", "the first in image 3"]),
    ("scales", ["x holds pixel values on the 0..1 scale", "x_test on the 0..255 scale"]),
])
def test_a_bad_npz_is_refused_naming_its_path(tmp_path, no_tf_work, case, fragments):
    path = bad_npz(tmp_path, case)
    for line in refused_by_search_and_train(path, tmp_path):
        assert line.startswith(f"Error: {path}: "), line
        for fragment in fragments:
            assert fragment in line, line


def test_npz_refusals_come_before_tensorflow_starts(tmp_path):
    import subprocess
    import sys

    path = bad_npz(tmp_path, "nan")
    code = ("import sys\nfrom kdarts.cli import main\ntry:\n"
            "    main(sys.argv[1:], prog_name='kdarts')\nfinally:\n"
            "    print('tensorflow loaded:', 'tensorflow' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, "search", "--dataset", str(path),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 2, proc.stderr
    assert lines[0].startswith(f"Error: {path}: x holds NaN values")
    assert lines[1] == "tensorflow loaded: False"
    assert not (tmp_path / "run").exists()


def test_bmps_tensorflow_cannot_read_are_named(tmp_path, no_tf_work):
    from PIL import Image

    from kdarts.data import DatasetError
    from kdarts.data.files import scan_folder

    root = write_png_folder(tmp_path / "photos", count=12)
    colour = Image.fromarray(own_images(1)[0][0])
    colour.save(root / "ant" / "rgb.bmp")
    colour.convert("L").save(root / "bee" / "grey.bmp")
    assert scan_folder(root).image_shape == (8, 8, 3)  # 24-bit and 8-bit grey: read
    for mode, kind in (("1", "a 1-bit BMP"), ("P", "a 8-bit BMP with a colour palette")):
        bad = root / "cat" / f"{mode}.bmp"
        colour.convert(mode).save(bad)
        with pytest.raises(DatasetError) as caught:
            scan_folder(root)
        assert str(caught.value).startswith(f"{bad}: {kind}; TensorFlow reads")
        bad.unlink()


def test_an_image_spoilt_after_the_check_is_named_by_the_decoder(tmp_path):
    from kdarts.data import DatasetError
    from kdarts.data.files import scan_folder
    from kdarts.data.sources import _open_folder

    root = write_png_folder(tmp_path / "photos", count=12)
    folder = scan_folder(root)
    bad = folder.train_paths[3]
    truncate(type(tmp_path)(bad))  # after the check: the decoder meets it first
    with pytest.raises(DatasetError) as caught:
        _open_folder(folder)
    message = str(caught.value)
    assert message.startswith(f"{bad}: TensorFlow cannot decode this image (")
    assert "\n" not in message
