"""Test-wide settings: quiet TensorFlow's C++ logging before it is imported, and run
TensorFlow with the threads the ``kdarts`` command line uses."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kdarts  # noqa: E402

kdarts.set_cpu_threads(intra_op=1)


import numpy as np  # noqa: E402
import pytest  # noqa: E402

CLASSES = ("ant", "bee", "cat")


def own_images(count: int, size: int = 8, channels: int = 3, seed: int = 0):
    """``count`` images whose class (``i % 3``) is a bright band of columns, on noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (count, size, size, channels)).astype(np.uint8)
    labels = np.arange(count) % len(CLASSES)
    for image, label in zip(images, labels):
        image[:, label * size // 3:(label + 1) * size // 3] += 180
    return images, labels.astype(np.int64)


def write_png_folder(root, count: int = 36, size: int = 8, channels: int = 3, seed: int = 0):
    """A folder of class sub-folders (``ant``, ``bee``, ``cat``), ``count`` PNG images."""
    from PIL import Image

    images, labels = own_images(count, size, channels, seed)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0] if channels == 1 else image).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def png_folder(tmp_path_factory):
    """3 classes x 12 PNG images of 8x8x3 (7 held out as the test split)."""
    return write_png_folder(tmp_path_factory.mktemp("own") / "png")


@pytest.fixture(scope="session")
def npz_file(tmp_path_factory):
    """An .npz of 36 8x8x3 images with x, y (7 held out as the test split)."""
    path = tmp_path_factory.mktemp("own") / "data.npz"
    x, y = own_images(36, seed=1)
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture
def no_tf_work(monkeypatch):
    """Make loading a dataset or building a network fail loudly: errors must come first."""
    import kdarts.data
    import kdarts.eval
    import kdarts.search

    def forbidden(*args, **kwargs):
        raise AssertionError("the CLI did TensorFlow work before rejecting its input")

    for module, name in ((kdarts.data, "search_datasets"), (kdarts.data, "train_datasets"),
                         (kdarts.search, "SearchNetwork"), (kdarts.eval, "EvalNetwork")):
        monkeypatch.setattr(module, name, forbidden)
