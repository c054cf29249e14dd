"""Deterministic input pipelines for the search and the evaluation network.

The images, held in memory (TFDS datasets, ``.npz``, arrays) or listed as
files and decoded when served (a folder, see :func:`~kdarts.data.sources.open_source`),
are served by ``tf.data`` pipelines whose only randomness is stateless
(``tf.random.stateless_*``) and derived from one user seed, the epoch and the
element's position in the stream. Hence the same seed gives the same batches in
any process, independently of TensorFlow's global seed, and a resumed search
or training can skip straight to where it stopped.

Every pipeline serves **raw pixels**: float32 values in 0..255, with the
dataset's own channels. The networks normalise inside (their first layer,
:class:`kdarts.preprocessing.Standardize`, built from ``info.mean``/``info.std``),
so a trained or exported model takes images exactly as the user has them.

* :func:`search_datasets`: the training split shuffled once and divided into a
  weight split and a search split (50/50, or ``1/(1+k)`` for the search split
  under the dynamic split, docs/method.md §5), each served as an infinite stream.
* :func:`train_datasets`: evaluation-network training (per-epoch reshuffle,
  optional cutout) and the test set.
* :func:`random_crop`, :func:`random_flip`, :func:`cutout`, :func:`normalize`:
  the augmentation and normalisation steps, usable in any ``tf.data`` pipeline.

Example:
    >>> weight_ds, search_ds, info, steps = search_datasets(
    ...     "kdarts_digits", batch_size=64, seed=0, split="dynamic", every=10)
    >>> images, labels = next(iter(weight_ds))  # float32 (64, 8, 8, 3) in 0..255, int32 (64,)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import tensorflow as tf

from kdarts.data.catalog import FLIP_DATASETS, DatasetError, DatasetInfo, search_split_size
from kdarts.data.sources import Source, Split, decode_image, open_source

_NUMPY_SEED_LIMIT = 2**32  # np.random.RandomState accepts seeds in [0, 2**32).
_NO_END = 2**62  # Epoch range end standing in for "forever".

# Salts separating the independent random streams derived from one user seed.
_WEIGHT_ORDER, _WEIGHT_AUGMENT = 1, 2
_SEARCH_ORDER, _SEARCH_AUGMENT = 3, 4
_TRAIN_ORDER, _TRAIN_AUGMENT = 5, 6


# ------------------------------------------------------------ augmentation / normalisation


def default_padding(image_size: int) -> int:
    """Random-crop zero padding for an image side: 4 for 32 px, ``max(1, size // 8)`` in general.

    Example:
        >>> default_padding(32), default_padding(28), default_padding(8)
        (4, 3, 1)
    """
    return max(1, int(image_size) // 8)


def normalize(images, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
    """uint8 (or 0..255 float) images → float32 ``(x / 255 - mean) / std`` per channel.

    Args:
        images: ``(..., H, W, C)`` array or tensor.
        mean: per-channel mean on the [0, 1] scale (e.g. ``info.mean``).
        std: per-channel std on the [0, 1] scale (e.g. ``info.std``).

    Example:
        >>> x_train, _, _, _, info = load_dataset()
        >>> x = normalize(x_train, info.mean, info.std)  # ~zero mean, unit std
    """
    x = tf.cast(images, tf.float32) / 255.0
    return (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def random_crop(image, padding: int, seed) -> tf.Tensor:
    """Zero-pads ``padding`` pixels on each side, then crops back to the original size.

    Args:
        image: one ``(H, W, C)`` image (any dtype; padding is zeros, i.e. black
            before normalisation).
        padding: pixels added on each side; 0 returns the image unchanged.
        seed: stateless seed, shape ``[2]`` integers.

    Example:
        >>> out = random_crop(tf.ones([8, 8, 3]), padding=1, seed=[0, 1])
    """
    image = tf.convert_to_tensor(image)
    if padding <= 0:
        return image
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    out = tf.image.stateless_random_crop(padded, size=tf.shape(image), seed=seed)
    return tf.ensure_shape(out, image.shape)


def random_flip(image, seed) -> tf.Tensor:
    """Flips an ``(H, W, C)`` image left-right with probability 1/2.

    ``seed`` is a stateless seed, shape ``[2]`` integers.

    Example:
        >>> out = random_flip(tf.ones([32, 32, 3]), seed=[0, 1])
    """
    return tf.image.stateless_random_flip_left_right(image, seed=seed)


def cutout(image, length: int, seed, fill=0.0) -> tf.Tensor:
    """Fills a ``length`` x ``length`` square of an ``(H, W, C)`` image (DeVries & Taylor, 2017).

    The square's centre is uniform over the image, so near a border the square
    is clipped (smaller), as in DARTS's ``Cutout``. For odd ``length`` the
    square spans ``length // 2`` pixels before the centre and the rest after.
    DARTS zeroes normalised images, i.e. sets the square to the mean; kdarts
    serves raw pixels, so its pipelines pass the per-channel mean pixel as
    ``fill`` (the same image once normalised).

    Args:
        image: one ``(H, W, C)`` image, any dtype.
        length: side of the square; 0 returns the image unchanged.
        seed: stateless seed, shape ``[2]`` integers.
        fill: the square's value, a scalar or one value per channel.

    Example:
        >>> out = cutout(tf.ones([32, 32, 3]), length=16, seed=[0, 1])
    """
    image = tf.convert_to_tensor(image)
    if length <= 0:
        return image
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    cy = tf.random.stateless_uniform([], y_seed, minval=0, maxval=height, dtype=tf.int32)
    cx = tf.random.stateless_uniform([], x_seed, minval=0, maxval=width, dtype=tf.int32)
    y0, x0 = cy - length // 2, cx - length // 2
    rows, cols = tf.range(height), tf.range(width)
    in_rows = (rows >= y0) & (rows < y0 + length)
    in_cols = (cols >= x0) & (cols < x0 + length)
    inside = (in_rows[:, None] & in_cols[None, :])[..., None]
    filled = tf.broadcast_to(tf.cast(fill, image.dtype), tf.shape(image))
    return tf.where(inside, filled, image)


# ------------------------------------------------------------------------ pipelines


def split_indices(num_examples: int, seed: int, split: str = "half",
                  every: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Shuffles ``range(num_examples)`` once with ``seed`` and divides it (docs/method.md §5).

    ``"half"``: the search split gets ``num_examples // 2`` (the weight split
    the rest); ``"dynamic"``: the search split gets ``round(n / (1 + every))``,
    so both splits are consumed at the rate the dynamic schedule uses them.

    Returns:
        ``(weight_indices, search_indices)``, disjoint, covering everything.

    Example:
        >>> w, s = split_indices(1437, seed=0, split="dynamic", every=10)
        >>> len(w), len(s)
        (1306, 131)
    """
    _check_seed(seed)
    num_search = search_split_size(num_examples, split, every)
    # Legacy RandomState: numpy guarantees its stream across versions.
    order = np.random.RandomState(seed).permutation(num_examples)
    return order[num_search:], order[:num_search]


def search_datasets(
    name,
    batch_size: int,
    seed: int,
    split: str = "half",
    every: int = 10,
    data_dir: str | None = None,
    skip_weight_batches: int = 0,
    skip_search_batches: int = 0,
    max_examples: int | None = None,
    *,
    padding: int | None = None,
    flip: bool | None = None,
    download: bool = False,
    image_size: tuple[int, int] | None = None,
) -> tuple[tf.data.Dataset, tf.data.Dataset, DatasetInfo, int]:
    """Infinite weight-split and search-split streams for the architecture search.

    The training split is shuffled once with ``seed`` and divided by
    :func:`split_indices`. Each stream then goes over its split pass after
    pass, reshuffled every pass (the permutation of pass ``e`` is a stateless
    function of ``seed`` and ``e``), augmented with random crop (and flip for
    :data:`~kdarts.data.catalog.FLIP_DATASETS`; no cutout), served as raw float32
    pixels, batched with ``drop_remainder=True`` (so every pass has the same number of batches) and
    prefetched. The augmentation of an element depends only on ``seed`` and
    its position in the stream.

    Args:
        name: one of :data:`~kdarts.data.catalog.DATASETS`, a folder of class sub-folders (streamed
            from disk), an ``.npz``, or arrays ``(x, y)`` /
            ``(x, y, x_test, y_test)`` (see :mod:`kdarts.data.files`).
        batch_size: batch size of both streams.
        seed: the data seed, in ``[0, 2**32)``.
        split: ``"half"`` or ``"dynamic"`` (see :func:`split_indices`).
        every: the dynamic schedule's ``k`` (dynamic split only).
        data_dir: TFDS data directory (see :func:`~kdarts.data.sources.load_dataset`).
        skip_weight_batches: batches to skip at the start of the weight
            stream; a resumed search passes the number of batches it already
            consumed and then sees exactly the batches of an uninterrupted run.
        skip_search_batches: the same for the search stream.
        max_examples: use only the first ``max_examples`` training examples
            (tiny tests); the mean/std still come from the full training split.
        padding: random-crop padding; default :func:`default_padding` of the
            image height.
        flip: horizontal flips; default: only for :data:`~kdarts.data.catalog.FLIP_DATASETS` (own
            data is not flipped: a flip may change what an image means).
        download: passed to :func:`~kdarts.data.sources.load_dataset`.
        image_size: ``(H, W)`` a folder's images are resized to.

    Returns:
        ``(weight_ds, search_ds, info, steps_per_epoch)``: datasets of
        ``(float32 (B, H, W, C) images in 0..255, int32 (B,) labels)``, infinite;
        ``steps_per_epoch`` is the number of weight batches per pass.

    Raises:
        DatasetError: bad name/split, or a split smaller than ``batch_size``.

    Example:
        >>> weight_ds, search_ds, info, steps = search_datasets(
        ...     "kdarts_digits", batch_size=64, seed=0, split="half")
        >>> steps  # 719 weight examples // 64
        11
    """
    _check_positive(batch_size=batch_size)
    if skip_weight_batches < 0 or skip_search_batches < 0:
        raise ValueError("skip_weight_batches and skip_search_batches must be >= 0")
    source = open_source(name, data_dir=data_dir, download=download, image_size=image_size)
    info = source.info
    train = _cap(source.train, max_examples)
    weight_idx, search_idx = split_indices(len(train), seed, split=split, every=every)
    augment = _Augment(info, padding=padding, flip=flip, cutout=0)
    streams = []
    for part, indices, order_salt, augment_salt, skip in (
        ("weight", weight_idx, _WEIGHT_ORDER, _WEIGHT_AUGMENT, skip_weight_batches),
        ("search", search_idx, _SEARCH_ORDER, _SEARCH_AUGMENT, skip_search_batches),
    ):
        steps = len(indices) // batch_size
        if steps < 1:
            raise DatasetError(
                f"The {part} split of {info.name!r} has {len(indices)} examples, fewer than "
                f"batch_size={batch_size}; use a smaller batch or more examples."
            )
        start_epoch, skip_in_epoch = divmod(skip, steps)
        elements = tf.data.Dataset.range(start_epoch, _NO_END).flat_map(
            _epoch_elements(len(indices), steps * batch_size, _key(seed, order_salt)))
        # Skipping (position, index) pairs is cheap: nothing is decoded or augmented yet.
        elements = elements.skip(skip_in_epoch * batch_size)
        ds = _serve(elements, source, train.take(indices), augment,
                    _key(seed, augment_salt), batch_size, drop_remainder=True)
        streams.append(ds.apply(
            tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY)))
    return streams[0], streams[1], info, len(weight_idx) // batch_size


def train_datasets(
    name,
    batch_size: int,
    seed: int,
    cutout: int = 0,
    data_dir: str | None = None,
    max_examples: int | None = None,
    *,
    padding: int | None = None,
    flip: bool | None = None,
    initial_epoch: int = 0,
    download: bool = False,
    image_size: tuple[int, int] | None = None,
) -> tuple[tf.data.Dataset, tf.data.Dataset, DatasetInfo, int]:
    """Training and test datasets for the evaluation network.

    ``train_ds`` is finite: one epoch per iteration (as ``model.fit`` iterates
    it), reshuffled each epoch, augmented (crop, flip for
    :data:`~kdarts.data.catalog.FLIP_DATASETS`, then cutout filled with the mean pixel, which is
    DARTS's zeroing after normalisation), raw float32 pixels, batched, the last
    batch possibly smaller. Epoch ``e``'s order
    and augmentation are stateless functions of ``seed`` and ``e``; the
    dataset counts its own iterations, starting at ``initial_epoch`` (pass
    the epoch to resume from). ``test_ds`` is the test split as float32
    pixels, in order, unaugmented, batched without dropping the remainder.

    Args:
        name: any dataset :func:`search_datasets` takes.
        batch_size: batch size of both datasets.
        seed: the data seed, in ``[0, 2**32)``.
        cutout: cutout square side (0: none; DARTS uses 16 on CIFAR).
        data_dir: TFDS data directory (see :func:`~kdarts.data.sources.load_dataset`).
        max_examples: use only the first ``max_examples`` training examples.
        padding: random-crop padding; default :func:`default_padding`.
        flip: horizontal flips; default: only for :data:`~kdarts.data.catalog.FLIP_DATASETS`.
        initial_epoch: the epoch the first iteration of ``train_ds`` serves.
        download: passed to :func:`~kdarts.data.sources.load_dataset`.
        image_size: ``(H, W)`` a folder's images are resized to.

    Returns:
        ``(train_ds, test_ds, info, steps_per_epoch)`` with
        ``steps_per_epoch = ceil(num_train_used / batch_size)``.

    Example:
        >>> train_ds, test_ds, info, steps = train_datasets(
        ...     "kdarts_digits", batch_size=96, seed=0, cutout=4)
        >>> model.fit(train_ds, epochs=10, validation_data=test_ds)
    """
    _check_positive(batch_size=batch_size)
    if initial_epoch < 0:
        raise ValueError(f"initial_epoch must be >= 0, got {initial_epoch}")
    source = open_source(name, data_dir=data_dir, download=download, image_size=image_size)
    info = source.info
    train = _cap(source.train, max_examples)
    _check_seed(seed)
    augment = _Augment(info, padding=padding, flip=flip, cutout=cutout)
    num_train = len(train)
    steps = math.ceil(num_train / batch_size)

    # The epoch counter makes each iteration of the finite dataset a new epoch
    # without relying on TF's global seed (as shuffle(reshuffle_each_iteration)
    # would). Kept on the CPU, outside any function being traced.
    with tf.init_scope(), tf.device("/cpu:0"):
        next_epoch = tf.Variable(initial_epoch, dtype=tf.int64, trainable=False,
                                 name="kdarts_data_epoch")
    epoch = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).map(
        lambda _: next_epoch.assign_add(1) - 1)
    elements = epoch.flat_map(_epoch_elements(num_train, num_train, _key(seed, _TRAIN_ORDER)))
    train_ds = _serve(elements, source, train, augment, _key(seed, _TRAIN_AUGMENT),
                      batch_size, drop_remainder=False)
    train_ds = train_ds.apply(tf.data.experimental.assert_cardinality(steps))
    return train_ds, test_dataset(source, batch_size), info, steps


def test_dataset(source: Source, batch_size: int) -> tf.data.Dataset:
    """A source's test split as raw float32 pixels, in order, unaugmented, batched.

    Example:
        >>> test_ds = test_dataset(open_source("photos/"), batch_size=64)  # doctest: +SKIP
    """
    test = source.test
    if test.paths is None:
        ds = tf.data.Dataset.from_tensor_slices((test.images, test.labels)).batch(
            batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y),
                            num_parallel_calls=tf.data.AUTOTUNE)
    else:
        shape, resize = source.info.image_shape, source.resize
        ds = tf.data.Dataset.from_tensor_slices((test.paths, test.labels)).map(
            lambda p, y: (tf.cast(decode_image(p, shape, resize), tf.float32), y),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------- helpers


class _Augment:
    """The per-example transform: crop → flip → float32 → cutout (mean-filled)."""

    def __init__(self, info: DatasetInfo, padding: int | None, flip: bool | None,
                 cutout: int):
        if cutout < 0:
            raise ValueError(f"cutout must be >= 0, got {cutout}")
        self.padding = default_padding(info.image_shape[0]) if padding is None else int(padding)
        self.flip = info.name in FLIP_DATASETS if flip is None else bool(flip)
        self.cutout = int(cutout)
        self.mean_pixel = [255.0 * m for m in info.mean]

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        crop_seed, flip_seed, cutout_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 3))
        image = random_crop(image, self.padding, crop_seed)
        if self.flip:
            image = random_flip(image, flip_seed)
        image = tf.cast(image, tf.float32)
        return cutout(image, self.cutout, cutout_seed, fill=self.mean_pixel)


def _key(seed: int, salt: int) -> tf.Tensor:
    """Stateless seed of one random stream: ``[seed, salt]``."""
    return tf.constant([seed, salt], tf.int64)


def _epoch_elements(num_examples: int, per_epoch: int, order_key: tf.Tensor):
    """``epoch → Dataset of (stream position, example index)`` for that epoch.

    The epoch's order is a stateless permutation of ``seed`` and the epoch;
    only its first ``per_epoch`` entries are used (the drop_remainder share is
    left out at random, not always the same examples). Positions are global
    (``epoch * per_epoch + i``) so augmentation seeds never repeat.
    """

    def elements(epoch: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_examples, dtype=tf.int64),
            seed=tf.random.experimental.stateless_fold_in(order_key, epoch))
        positions = epoch * per_epoch + tf.range(per_epoch, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((positions, order[:per_epoch]))

    return elements


def _serve(elements: tf.data.Dataset, source: Source, split: Split, augment: _Augment,
           augment_key: tf.Tensor, batch_size: int, drop_remainder: bool) -> tf.data.Dataset:
    """(position, index) pairs → augmented, batched, prefetched raw-pixel examples.

    Images in memory are gathered by index; files are read and decoded by
    index, inside the map, so only the batches in flight are in memory.
    """
    labels_t = tf.constant(split.labels, tf.int32)
    if split.paths is None:
        images_t = tf.constant(split.images)
        image_at = lambda index: tf.gather(images_t, index)  # noqa: E731
    else:
        paths_t = tf.constant(split.paths)
        shape, resize = source.info.image_shape, source.resize
        image_at = lambda index: decode_image(tf.gather(paths_t, index), shape,  # noqa: E731
                                              resize)

    def load(position: tf.Tensor, index: tf.Tensor):
        seed = tf.random.experimental.stateless_fold_in(augment_key, position)
        return augment(image_at(index), seed), tf.gather(labels_t, index)

    ds = elements.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _cap(split: Split, max_examples: int | None) -> Split:
    if max_examples is None:
        return split
    if max_examples < 1:
        raise ValueError(f"max_examples must be >= 1, got {max_examples}")
    return split.take(slice(0, max_examples))


def _check_seed(seed: int) -> None:
    if not 0 <= int(seed) < _NUMPY_SEED_LIMIT:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if int(value) < 1:
            raise ValueError(f"{key} must be >= 1, got {value}")
