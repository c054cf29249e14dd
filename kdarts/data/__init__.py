"""Datasets and deterministic input pipelines for the search and the evaluation.

* :mod:`kdarts.data.catalog`: the dataset names, :class:`DatasetInfo`,
  :class:`DatasetError` (no TensorFlow: the command line checks names with it).
* :mod:`kdarts.data.files`: your own images (a folder of class sub-folders, an
  ``.npz``, arrays), listed and checked without TensorFlow.
* :mod:`kdarts.data.sources`: :func:`load_dataset` and :func:`open_source`: TFDS
  (with a bounded, self-cleaning download) or your own images; a folder streams
  from disk.
* :mod:`kdarts.data.pipelines`: :func:`search_datasets`, :func:`train_datasets`
  and the augmentation steps; every pipeline serves raw float32 pixels (0..255)
  and the networks normalise inside.

The default dataset ``kdarts_digits`` (scikit-learn's 8x8 digits, see
:mod:`kdarts.data.digits`) is built locally without any download; the
others must be downloaded once with ``download=True`` (internet needed).

Example:
    >>> from kdarts.data import search_datasets
    >>> weight_ds, search_ds, info, steps = search_datasets(
    ...     "kdarts_digits", batch_size=64, seed=0, split="dynamic", every=10)
    >>> images, labels = next(iter(weight_ds))  # float32 (64, 8, 8, 3), int32 (64,)
"""

from kdarts.lazy_names import lazy_names as _lazy_names

from kdarts.data.catalog import (
    DATASETS,
    DEFAULT_DATASET,
    FLIP_DATASETS,
    PIXEL_RANGE,
    SPLIT_MODES,
    DatasetError,
    DatasetInfo,
    check_dataset_name,
)

# name → module; imported (with TensorFlow / TFDS) on first use
_LAZY = {
    "load_dataset": "kdarts.data.sources",
    "open_source": "kdarts.data.sources",
    "test_dataset": "kdarts.data.pipelines",
    "channel_stats": "kdarts.data.sources",
    "default_padding": "kdarts.data.pipelines",
    "normalize": "kdarts.data.pipelines",
    "random_crop": "kdarts.data.pipelines",
    "random_flip": "kdarts.data.pipelines",
    "cutout": "kdarts.data.pipelines",
    "split_indices": "kdarts.data.pipelines",
    "search_datasets": "kdarts.data.pipelines",
    "train_datasets": "kdarts.data.pipelines",
}


__getattr__, __dir__ = _lazy_names("kdarts.data", globals(), _LAZY)


__all__ = ["DATASETS", "DEFAULT_DATASET", "FLIP_DATASETS", "PIXEL_RANGE", "SPLIT_MODES",
           "DatasetError", "DatasetInfo", "check_dataset_name", *_LAZY]
