"""Opening a dataset: TFDS by name (downloaded once if asked), or your own images.

A dataset is named by a TFDS name, a folder of class sub-folders, an ``.npz``
file, or (Python) numpy arrays; :mod:`kdarts.data.files` says how each is read
and checks it without TensorFlow.

* TFDS datasets, the embedded default included, are read through TFDS
  (``tfds.builder(name).as_dataset(...)``) into uint8 NHWC numpy arrays held in
  memory (all supported datasets fit), with the channels the dataset stores
  (1 for MNIST-like greyscale data, 3 for colour).
* An ``.npz`` and arrays are held in memory as given.
* A folder is never loaded whole by the pipelines: :func:`open_source` lists
  its files and :mod:`kdarts.data.pipelines` decodes each image when it is
  served, so a folder larger than memory streams from disk. Its mean/std come
  from one streaming pass over its training images (over a seeded sample of
  :data:`STATS_SAMPLE` of them when there are more). :func:`load_dataset`
  decodes a folder into arrays when asked for arrays.

A download first checks, within a bounded wait, that the dataset's hosts can be
reached; a download that fails anyway removes what it had written, so a later
attempt (or ``--data-dir`` pointed elsewhere) starts clean.

Example:
    >>> x_train, y_train, x_test, y_test, info = load_dataset()
    >>> x_train.shape, x_test.shape
    ((1437, 8, 8, 3), (360, 8, 8, 3))
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import threading
import warnings
from urllib.parse import urlparse

import numpy as np

from kdarts.data import files
from kdarts.data.catalog import DATASETS, DEFAULT_DATASET, DatasetError, DatasetInfo, \
    check_dataset_name

_LOAD_BATCH = 4096
#: Most training images a streamed folder's mean/std are computed on (a seeded sample).
STATS_SAMPLE = 10_000
_DECODE_BATCH = 256
#: Seconds a download waits for one of its hosts to answer before giving up.
CONNECT_TIMEOUT = 15.0


def load_dataset(
    name=DEFAULT_DATASET,
    data_dir: str | None = None,
    download: bool = False,
    image_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, DatasetInfo]:
    """Loads a dataset into memory: TFDS by name, a folder, an ``.npz`` or arrays.

    ``kdarts_digits`` is built on first use (offline, from scikit-learn's
    copy). Any other TFDS dataset must already be prepared in ``data_dir``
    unless ``download=True`` (needs internet). Inside ``tfds.testing.mock_data``
    the data is TFDS's fake data. A folder is decoded whole here (the
    pipelines stream it instead, see :func:`open_source`).

    Args:
        name: one of :data:`~kdarts.data.DATASETS`, a folder of class
            sub-folders, an ``.npz`` with ``x``/``y`` (and optionally
            ``x_test``/``y_test``), or arrays ``(x, y)`` /
            ``(x, y, x_test, y_test)`` (see :mod:`kdarts.data.files`).
        data_dir: TFDS data directory; ``None`` means TFDS's default
            (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
        download: download and prepare the dataset if it is not there yet.
        image_size: ``(H, W)`` a folder's images are resized to (default: their
            own size, which must then be one).

    Returns:
        ``(train_images, train_labels, test_images, test_labels, info)``:
        images ``(N, H, W, C)`` (uint8, or arrays as given), labels int32
        ``(N,)``, and a :class:`~kdarts.data.DatasetInfo` whose mean/std come
        from the training images.

    Raises:
        DatasetError: unknown name, dataset not prepared and ``download=False``,
            a download that failed, or own data that does not fit
            (:mod:`kdarts.data.files`); the message says why, in one line.

    Example:
        >>> x, y, x_test, y_test, info = load_dataset("photos/")  # doctest: +SKIP
        >>> info.class_names                                      # doctest: +SKIP
        ('cat', 'dog')
    """
    if not isinstance(name, str) or files.is_path_spec(name):
        source = open_source(name, image_size=image_size)
        train, test = (source.train if source.train.images is not None
                       else _decode_split(source, source.train),
                       source.test if source.test.images is not None
                       else _decode_split(source, source.test))
        return train.images, train.labels, test.images, test.labels, source.info
    files.check_dataset(name, image_size)
    return _load_tfds(name, data_dir, download)


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a source: images in memory, or image files decoded when served.

    Attributes:
        labels: int32 ``(N,)``.
        images: ``(N, H, W, C)`` pixel values, or None for files.
        paths: ``(N,)`` image files, or None for images in memory.
    """

    labels: np.ndarray
    images: np.ndarray | None = None
    paths: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices) -> "Split":
        """The examples at ``indices`` (a slice or an index array), in that order."""
        return Split(self.labels[indices],
                     None if self.images is None else self.images[indices],
                     None if self.paths is None else self.paths[indices])


@dataclasses.dataclass(frozen=True)
class Source:
    """A dataset ready for the pipelines: training and test splits and their info.

    ``resize``: files whose size is not ``info.image_shape`` are resized when decoded.
    """

    train: Split
    test: Split
    info: DatasetInfo
    resize: bool = False

    @property
    def streamed(self) -> bool:
        return self.train.paths is not None


def open_source(name=DEFAULT_DATASET, data_dir: str | None = None, download: bool = False,
                image_size: tuple[int, int] | None = None) -> Source:
    """Opens any dataset :func:`load_dataset` takes, without loading a folder's images.

    A folder is listed (paths and labels); its mean/std come from one
    streaming pass over its training images, or over a seeded sample of
    :data:`STATS_SAMPLE` when there are more. Everything else is in memory.

    Example:
        >>> source = open_source("photos/")  # doctest: +SKIP
        >>> source.streamed, len(source.train), source.info.image_shape  # doctest: +SKIP
        (True, 2400, (64, 64, 3))
    """
    if isinstance(name, str) or isinstance(name, os.PathLike):
        spec = files.check_dataset(name, image_size)
        if spec in DATASETS:
            x, y, x_test, y_test, info = _load_tfds(spec, data_dir, download)
            return Source(Split(y, x), Split(y_test, x_test), info)
        if os.path.isdir(spec):
            return _open_folder(files.scan_folder(spec, image_size))
        with np.load(spec, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files if key in ("x", "y", "x_test",
                                                                    "y_test")}
        where, label = spec, spec
    else:
        if image_size is not None:
            raise DatasetError("image_size resizes the images of a folder; arrays have "
                               "their own size")
        arrays, where, label = name, "arrays", "arrays"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, y, x_test, y_test = files.split_arrays(arrays, where)
    notes = tuple(str(w.message) for w in caught if issubclass(w.category, files.DataNotice))
    for w in caught:  # recorded to keep the notices in info.notes; shown as ever
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    mean, std = channel_stats(x)
    info = DatasetInfo(name=label, num_classes=int(max(y.max(), y_test.max(initial=0))) + 1,
                       image_shape=tuple(int(d) for d in x.shape[1:]), num_train=len(x),
                       num_test=len(x_test), mean=mean, std=std, notes=notes)
    return Source(Split(y, x), Split(y_test, x_test), info)


def _open_folder(folder: files.ImageFolder) -> Source:
    train = Split(folder.train_labels, paths=folder.train_paths)
    test = Split(folder.test_labels, paths=folder.test_paths)
    partial = DatasetInfo(name=folder.root, num_classes=len(folder.classes),
                          image_shape=folder.image_shape, num_train=len(train),
                          num_test=len(test), mean=(0.0,), std=(1.0,),
                          class_names=folder.classes)
    source = Source(train, test, partial, resize=folder.resize)
    sample = train
    if len(train) > STATS_SAMPLE:
        # sorted: files are read in listing order, kinder to a disk than random order
        chosen = np.sort(np.random.RandomState(files.SPLIT_SEED).choice(
            len(train), STATS_SAMPLE, replace=False))
        sample = train.take(chosen)
    mean, std = _stats(np.asarray(batch) for batch in _decoded_batches(source, sample))
    return dataclasses.replace(source, info=dataclasses.replace(partial, mean=mean, std=std))


def sample_images(source: Source, split: Split, count: int,
                  seed: int | None = None) -> np.ndarray:
    """Up to ``count`` images of a split as float32 pixels: the first ones, or a seeded sample.

    Example:
        >>> source = open_source("kdarts_digits")
        >>> sample_images(source, source.train, 200, seed=0).shape
        (200, 8, 8, 3)
    """
    count = min(int(count), len(split))
    if seed is None:
        chosen = np.arange(count)
    else:
        chosen = np.sort(np.random.RandomState(seed).choice(len(split), count, replace=False))
    part = split.take(chosen)
    if part.images is None:
        part = _decode_split(source, part)
    return np.asarray(part.images, dtype=np.float32)


def decode_image(path, image_shape: tuple[int, int, int], resize: bool):
    """One image file → a uint8 ``(H, W, C)`` tensor at ``image_shape`` (for ``tf.data``).

    PNG, JPEG, BMP and GIF (its first frame); greyscale and colour are
    converted to ``C`` channels; a resized image is rounded back to whole
    pixel values, so every served image is what a user's uint8 image would be.
    """
    import tensorflow as tf

    height, width, channels = image_shape
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels,
                               expand_animations=False, dtype=tf.uint8)
    if resize:
        image = tf.image.resize(image, (height, width))
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    return tf.ensure_shape(image, image_shape)


def _decoded_batches(source: Source, split: Split):
    """A split's files decoded in order, in batches (``tf.data``, parallel, deterministic)."""
    import tensorflow as tf

    shape, resize = source.info.image_shape, source.resize
    ds = tf.data.Dataset.from_tensor_slices(split.paths).map(
        lambda p: decode_image(p, shape, resize), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True)
    try:
        yield from ds.batch(_DECODE_BATCH).as_numpy_iterator()
    except tf.errors.OpError as err:
        where = _undecodable(split.paths, shape, resize) or source.info.name
        raise DatasetError(f"{where}: TensorFlow cannot decode this image "
                           f"({' '.join(err.message.split())[:200]}); repair or remove "
                           "it") from None


def _undecodable(paths, shape, resize) -> str | None:
    """The first of ``paths`` TensorFlow fails to decode (one by one: an error path only)."""
    import tensorflow as tf

    for path in paths:
        try:
            decode_image(tf.constant(path), shape, resize)
        except (tf.errors.OpError, ValueError):
            return str(path)
    return None


def _decode_split(source: Source, split: Split) -> Split:
    shape = (0,) + tuple(source.info.image_shape)
    batches = list(_decoded_batches(source, split))
    images = np.concatenate(batches) if batches else np.zeros(shape, np.uint8)
    return Split(split.labels, images)


def _load_tfds(name: str, data_dir: str | None, download: bool):
    check_dataset_name(name)
    import tensorflow_datasets as tfds

    from kdarts.data import digits  # registers the "kdarts_digits" builder

    if name == DEFAULT_DATASET:
        builder = digits.prepared_builder(data_dir)
    else:
        builder = tfds.builder(name, data_dir=data_dir)
        if download and not builder.is_prepared():
            download_and_prepare(builder, name)
    # No `builder.is_prepared()` gate here: under `tfds.testing.mock_data` it
    # is False although `as_dataset` serves fake data. `as_dataset` itself is
    # the check: without prepared data it raises AssertionError.
    try:
        splits = builder.as_dataset(split=["train", "test"], as_supervised=True)
    except AssertionError as err:
        raise DatasetError(
            f"Dataset {name!r} is not prepared in {builder.data_dir_root}. It needs "
            f"a one-time download (internet access): call load_dataset({name!r}, "
            f"download=True) (command line: --download), or point data_dir at a "
            f"TFDS directory holding a prepared copy. Valid datasets: "
            f"{', '.join(DATASETS)}; the default {DEFAULT_DATASET!r} needs no download."
        ) from err
    train_images, train_labels = _split_to_numpy(splits[0])
    test_images, test_labels = _split_to_numpy(splits[1])
    label_key = builder.info.supervised_keys[1]
    labels = builder.info.features[label_key]
    mean, std = channel_stats(train_images)
    info = DatasetInfo(
        name=name,
        num_classes=int(labels.num_classes),
        class_names=tuple(str(n) for n in (labels.names or ())),
        image_shape=tuple(int(d) for d in train_images.shape[1:]),
        num_train=len(train_images),
        num_test=len(test_images),
        mean=mean,
        std=std,
    )
    return train_images, train_labels, test_images, test_labels, info


# ------------------------------------------------------------------------- download


def download_and_prepare(builder, name: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """``builder.download_and_prepare()`` with a bounded wait and a clean failure.

    Raises :class:`~kdarts.data.DatasetError` (one line) when no host of the dataset
    answers within ``timeout`` seconds, or when the download or preparation fails;
    either way the files this call created under the data folder are removed.
    """
    root = os.fspath(builder.data_dir_root)
    hosts = sorted({urlparse(url).hostname for url in (builder.url_infos or {})} - {None})
    hint = ("download it on a machine with internet access and pass its TFDS folder "
            "with --data-dir (data_dir=...)")
    if hosts and not any(host_reachable(h, timeout) for h in hosts):
        raise DatasetError(
            f"Cannot reach the host(s) of {name!r} ({', '.join(hosts)}) within "
            f"{timeout:g} s; {hint}. Nothing was written.")
    before = _entries(root)
    try:
        builder.download_and_prepare()
    except BaseException as err:
        _remove_new_entries(root, before)
        if not isinstance(err, Exception):
            raise  # Ctrl-C: the partial files are gone, the interrupt goes on
        raise DatasetError(
            f"Downloading {name!r} into {root} failed ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:300]}); {hint}. The partial files were "
            "removed.") from None


def host_reachable(host: str, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether a TCP connection to ``host`` (port 443, else 80) opens within ``timeout``.

    The name lookup and the connections run in a helper thread, so a lookup
    that hangs cannot hold the caller past ``timeout``.
    """
    result: list[bool] = []

    def probe():
        for port in (443, 80):
            try:
                socket.create_connection((host, port), timeout=timeout).close()
                result.append(True)
                return
            except OSError:
                continue
        result.append(False)

    thread = threading.Thread(target=probe, daemon=True, name=f"kdarts-probe-{host}")
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _entries(root: str) -> set[str]:
    """Every path under ``root`` (files and folders), relative to it."""
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def _remove_new_entries(root: str, before: set[str]) -> None:
    """Delete what appeared under ``root`` since ``before`` (outermost new paths first)."""
    for rel in sorted(_entries(root) - before, key=lambda p: p.count(os.sep)):
        path = os.path.join(root, rel)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)


# -------------------------------------------------------------------------- arrays


def _split_to_numpy(ds) -> tuple[np.ndarray, np.ndarray]:
    """Reads a supervised ``(image, label)`` dataset into uint8 NHWC and int32 arrays."""
    import tensorflow_datasets as tfds

    images, labels = [], []
    for x, y in tfds.as_numpy(ds.batch(_LOAD_BATCH)):
        images.append(x)
        labels.append(y)
    x = np.concatenate(images).astype(np.uint8, copy=False)
    y = np.concatenate(labels).astype(np.int32)
    if x.ndim == 3:  # (N, H, W) greyscale without a channel axis
        x = x[..., None]
    return x, y


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of images (pixel values 0..255) on the [0, 1] scale.

    Accumulated in float64 chunk by chunk: a float copy of all of CIFAR would
    take over a gigabyte.

    Example:
        >>> channel_stats(np.full((2, 4, 4, 1), 255, np.uint8))
        ((1.0,), (0.001,))
    """
    return _stats(images[start:start + _LOAD_BATCH]
                  for start in range(0, len(images), _LOAD_BATCH))


def _stats(chunks) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """:func:`channel_stats` over an iterable of NHWC chunks (one streaming pass)."""
    total = total_sq = None
    count = 0
    for chunk in chunks:
        flat = np.asarray(chunk).reshape(-1, chunk.shape[-1]).astype(np.float64)
        if total is None:
            total, total_sq = np.zeros(flat.shape[1]), np.zeros(flat.shape[1])
        total += flat.sum(axis=0)
        total_sq += np.square(flat).sum(axis=0)
        count += len(flat)
    mean = total / max(1, count)
    var = np.maximum(total_sq / max(1, count) - np.square(mean), 0.0)
    # A constant channel would divide by zero when normalising.
    std = np.maximum(np.sqrt(var), 1e-3 * 255.0)
    return tuple(float(m) for m in mean / 255.0), tuple(float(s) for s in std / 255.0)


__all__ = ["CONNECT_TIMEOUT", "STATS_SAMPLE", "Source", "Split", "channel_stats",
           "decode_image", "sample_images", "download_and_prepare", "host_reachable", "load_dataset",
           "open_source"]
