"""``kdarts_digits``: scikit-learn's 8x8 handwritten digits as a local TFDS dataset.

The default kdarts dataset is real data that needs no download: the 1797
8x8 greyscale digit images (values 0..16) that ship inside scikit-learn
(UCI "Optical Recognition of Handwritten Digits", test part). Wrapping them in
a :class:`tfds.core.GeneratorBasedBuilder` lets every dataset, this one
included, go through the same ``tfds.builder(...).as_dataset(...)`` path.

Features: ``image`` uint8 ``(8, 8, 3)`` (0..16 rescaled to 0..255, grey
replicated to 3 channels so the networks' 3-channel stem applies unchanged)
and ``label`` ``ClassLabel(10)``. Splits: a fixed stratified split,
``train`` 1437 / ``test`` 360, the same on every machine (see
:func:`digits_split`).

Importing this module registers the builder under the TFDS name
``kdarts_digits``.

Example:
    >>> import tensorflow_datasets as tfds
    >>> from kdarts.data import digits  # registers "kdarts_digits"
    >>> builder = tfds.builder("kdarts_digits", data_dir="/tmp/tfds")
    >>> prepare(builder)  # offline: reads scikit-learn's copy
    >>> ds = builder.as_dataset(split="train", as_supervised=True)
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from kdarts.data.files import stratified_split

NAME = "kdarts_digits"
NUM_TEST = 360
SPLIT_SEED = 0

_CITATION = """\
@misc{alpaydin1998digits,
  author = {Alpaydin, E. and Kaynak, C.},
  title = {Optical Recognition of Handwritten Digits},
  year = {1998},
  howpublished = {UCI Machine Learning Repository},
  doi = {10.24432/C50P49}
}"""


def prepare(builder: tfds.core.DatasetBuilder) -> None:
    """Build the dataset's files from scikit-learn's copy, quietly (a second or two).

    No network: TFDS is told not to look for a prepared copy on GCS, and the
    builder never uses its download manager. TFDS's progress bars and its
    "Downloading and preparing" lines are kept off the console: nothing is
    downloaded, and a first command should not look as if it did.
    """
    config = tfds.download.DownloadConfig(try_download_gcs=False)
    tfds.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            builder.download_and_prepare(download_config=config)
    finally:
        tfds.enable_progress_bar()


def prepared_builder(data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The digits' builder in ``data_dir``, its files built first if they are missing.

    Processes that start on a machine without the files (test workers, two first
    commands) would each build them and collide on TFDS's final rename: one builds
    under a lock, the others wait for it, then read its files through a builder made
    after it finished (a builder made before holds no splits).
    """
    builder = tfds.builder(NAME, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    root = os.fspath(builder.data_dir_root)
    os.makedirs(root, exist_ok=True)
    with exclusive_lock(os.path.join(root, f".{NAME}.lock")):
        builder = tfds.builder(NAME, data_dir=data_dir)
        if not builder.is_prepared():
            prepare(builder)
    return builder


@contextlib.contextmanager
def exclusive_lock(path: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on the file ``path`` (created if missing) for
    the block; other processes (and threads) block until it is released. Where the
    platform has no ``fcntl``, the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Returns scikit-learn's digits as ``(images uint8 (1797, 8, 8, 3), labels int64)``.

    Values 0..16 are rescaled to 0..255 (rounded) and the grey channel is
    replicated three times.

    Example:
        >>> images, labels = digits_arrays()
        >>> images.shape, int(images.max())
        ((1797, 8, 8, 3), 255)
    """
    from sklearn.datasets import load_digits  # local: only needed to build

    digits = load_digits()
    grey = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images = np.repeat(grey[..., None], 3, axis=-1)
    return images, digits.target.astype(np.int64)


def digits_split(labels: np.ndarray, num_test: int = NUM_TEST,
                 seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified split: returns sorted ``(train_indices, test_indices)``.

    :func:`kdarts.data.files.stratified_split`, which also holds out the test
    split of a folder or an ``.npz`` without one: each class contributes in
    proportion to its size (to within one example), the same on every machine.

    Example:
        >>> train, test = digits_split(digits_arrays()[1])
        >>> len(train), len(test)
        (1437, 360)
    """
    return stratified_split(labels, num_test, seed)


class KdartsDigits(tfds.core.GeneratorBasedBuilder):
    """TFDS builder for scikit-learn's 8x8 digits (no download, see module doc)."""

    name = NAME
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "sklearn digits, 8x8x3 uint8, stratified 1437/360 split (seed 0).",
    }
    # Keep examples in index order: the content is fixed, the order is then
    # predictable, and shuffling is the input pipeline's job.
    disable_shuffling = True

    # TFDS 4.9.x locates a builder's file through the `importlib_resources`
    # backport, which it does not declare as a dependency (tensorflow/datasets
    # issue 11212); this file's path is known directly, so building works
    # without it.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        # Built directly (not via ``dataset_info_from_configs``) so no README /
        # CITATIONS file next to this module can change the metadata.
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "The 8x8 handwritten digits shipped with scikit-learn (1797 "
                "images, 10 classes), rescaled to 0..255 and replicated to 3 "
                "channels; fixed stratified train/test split."
            ),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 3)),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # The data ships with scikit-learn: nothing to download.
        images, labels = digits_arrays()
        train_idx, test_idx = digits_split(labels)
        return {
            "train": self._generate_examples(images, labels, train_idx),
            "test": self._generate_examples(images, labels, test_idx),
        }

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray,
                           indices: np.ndarray) -> Iterator[tuple[int, dict]]:
        for i in indices:
            # Key = index into scikit-learn's array: unique and stable.
            yield int(i), {"image": images[i], "label": int(labels[i])}
