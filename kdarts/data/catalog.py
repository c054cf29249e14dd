"""The datasets kdarts knows by name, and what it records about a loaded one.

This module imports neither TensorFlow nor TFDS, so the command line can check
a dataset name (and print its ``--help``) before paying for them.

Example:
    >>> check_dataset_name("cifar10")
    'cifar10'
"""

from __future__ import annotations

import dataclasses

DEFAULT_DATASET: str = "kdarts_digits"
#: Supported TFDS names; the first is the default (built locally, no download).
DATASETS: tuple[str, ...] = (
    DEFAULT_DATASET, "cifar10", "cifar100", "mnist", "fashion_mnist", "svhn_cropped",
)
#: (H, W) of each named dataset's images.
IMAGE_SIZES: dict[str, tuple[int, int]] = {
    DEFAULT_DATASET: (8, 8), "cifar10": (32, 32), "cifar100": (32, 32), "mnist": (28, 28),
    "fashion_mnist": (28, 28), "svhn_cropped": (32, 32),
}
#: Datasets augmented with horizontal flips. Digits (kdarts_digits, mnist,
#: svhn) and clothes with a handedness (fashion_mnist) are not: a flip changes
#: what a digit means.
FLIP_DATASETS: frozenset[str] = frozenset({"cifar10", "cifar100"})
#: Ways to divide the training data into weight and search splits.
SPLIT_MODES: tuple[str, ...] = ("half", "dynamic")
#: The pixel scale every kdarts pipeline serves and every kdarts network takes.
PIXEL_RANGE: tuple[float, float] = (0.0, 255.0)
#: The unit of ``DatasetInfo.mean``/``.std`` and of the input contract's ``mean``/``std``:
#: pixel values divided by 255 (0..1), while images are fed in :data:`PIXEL_RANGE`.
STATS_UNIT: str = "pixel/255"
#: How to bring a named dataset's images from their usual source to :data:`PIXEL_RANGE`
#: and its channels, where that source stores them otherwise: a model fed the source's
#: values unscaled sees nearly black images and predicts nearly at random.
SOURCE_SCALING: dict[str, str] = {
    DEFAULT_DATASET: (
        "sklearn.datasets.load_digits() images hold values 0..16 in one channel: multiply "
        "by 255/16 and repeat the channel 3 times (kdarts.data.digits.digits_arrays() "
        "does both)"),
}


class DatasetError(ValueError):
    """A dataset that is unknown, not available locally, or too small for the request."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the networks and pipelines need to know about a loaded dataset.

    Attributes:
        name: TFDS name, the absolute path of a folder or ``.npz``, or ``"arrays"``.
        num_classes: number of classes (labels are ``0 .. num_classes - 1``).
        image_shape: ``(H, W, C)`` as the dataset stores its images (C = 1 for
            greyscale datasets such as MNIST).
        num_train: examples in the full training split.
        num_test: examples in the test split.
        mean: per-channel mean of the training images, pixel values scaled to [0, 1].
        std: per-channel standard deviation, same scale.
        class_names: the class names where the source has them (a folder's
            sub-folders, a TFDS dataset's label names: "0" .. "9" for the
            digits), else empty.
        notes: one-line notices of what kdarts changed in the data it was given
            (e.g. float images in 0..1 rescaled to 0..255), else empty.

    Example:
        >>> *_, info = load_dataset("kdarts_digits")  # doctest: +SKIP
        >>> info.image_shape, info.num_classes        # doctest: +SKIP
        ((8, 8, 3), 10)
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    num_train: int
    num_test: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def search_split_size(num_examples: int, split: str = "half", every: int = 10) -> int:
    """Examples of the search split a search divides ``num_examples`` into (docs/method.md §5).

    ``"half"``: ``num_examples // 2``; ``"dynamic"``: ``round(num_examples / (1 + every))``,
    the share the dynamic schedule consumes. The weight split has the rest, never fewer.

    Example:
        >>> search_split_size(1437, "dynamic", every=10), search_split_size(144, "dynamic")
        (131, 13)
    """
    if split == "half":
        return int(num_examples) // 2
    if split == "dynamic":
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        return int(round(int(num_examples) * (1.0 / (1.0 + every))))
    raise DatasetError(f"Unknown split {split!r}. Valid splits: {', '.join(SPLIT_MODES)}.")


def fit_batch_size(batch_size: int, num_examples: int) -> int:
    """``batch_size`` if a split of ``num_examples`` holds a batch, else the largest power
    of two it holds (0 for an empty split).

    Example:
        >>> fit_batch_size(32, 131), fit_batch_size(32, 13), fit_batch_size(32, 1)
        (32, 8, 1)
    """
    if num_examples >= batch_size:
        return int(batch_size)
    return 1 << (int(num_examples).bit_length() - 1) if num_examples >= 1 else 0


def check_dataset_name(name: str) -> str:
    """Returns ``name`` if it is supported, else raises :class:`DatasetError`.

    Example:
        >>> check_dataset_name("cifar10")
        'cifar10'
    """
    if name not in DATASETS:
        raise DatasetError(
            f"Unknown dataset {name!r}. Valid datasets: {', '.join(DATASETS)} "
            f"(default {DEFAULT_DATASET!r})."
        )
    return name


__all__ = ["DATASETS", "DEFAULT_DATASET", "DatasetError", "DatasetInfo", "FLIP_DATASETS",
           "IMAGE_SIZES", "PIXEL_RANGE", "SOURCE_SCALING", "SPLIT_MODES", "STATS_UNIT",
           "check_dataset_name", "fit_batch_size", "search_split_size"]
