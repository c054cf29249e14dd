"""Loading a dataset into memory through TFDS, downloading it once if asked.

Every dataset, the embedded default included, is read through TFDS
(``tfds.builder(name).as_dataset(...)``) into uint8 NHWC numpy arrays held in
memory (all supported datasets fit), with the channels the dataset stores
(1 for MNIST-like greyscale data, 3 for colour).

A download first checks, within a bounded wait, that the dataset's hosts can be
reached; a download that fails anyway removes what it had written, so a later
attempt (or ``--data-dir`` pointed elsewhere) starts clean.

Example:
    >>> x_train, y_train, x_test, y_test, info = load_dataset()
    >>> x_train.shape, x_test.shape
    ((1437, 8, 8, 3), (360, 8, 8, 3))
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from urllib.parse import urlparse

import numpy as np

from kdarts.data.catalog import DATASETS, DEFAULT_DATASET, DatasetError, DatasetInfo, \
    check_dataset_name

_LOAD_BATCH = 4096
#: Seconds a download waits for one of its hosts to answer before giving up.
CONNECT_TIMEOUT = 15.0


def load_dataset(
    name: str = DEFAULT_DATASET,
    data_dir: str | None = None,
    download: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, DatasetInfo]:
    """Loads a dataset into memory through TFDS.

    ``kdarts_digits`` is built on first use (offline, from scikit-learn's
    copy). Any other dataset must already be prepared in ``data_dir`` unless
    ``download=True`` (needs internet). Inside ``tfds.testing.mock_data`` the
    data is TFDS's fake data.

    Args:
        name: one of :data:`~kdarts.data.DATASETS`.
        data_dir: TFDS data directory; ``None`` means TFDS's default
            (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
        download: download and prepare the dataset if it is not there yet.

    Returns:
        ``(train_images, train_labels, test_images, test_labels, info)``:
        images uint8 ``(N, H, W, C)``, labels int32 ``(N,)``, and a
        :class:`~kdarts.data.DatasetInfo` whose mean/std come from the training images.

    Raises:
        DatasetError: unknown name, dataset not prepared and ``download=False``,
            or a download that failed (the message says why, in one line).
    """
    check_dataset_name(name)
    import tensorflow_datasets as tfds

    from kdarts import digits_dataset  # registers the "kdarts_digits" builder

    builder = tfds.builder(name, data_dir=data_dir)
    if name == DEFAULT_DATASET:
        if not builder.is_prepared():
            digits_dataset.prepare(builder)
    elif download and not builder.is_prepared():
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
    mean, std = channel_stats(train_images)
    info = DatasetInfo(
        name=name,
        num_classes=int(builder.info.features[label_key].num_classes),
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
    """Per-channel mean and std of uint8 images on the [0, 1] scale.

    Accumulated in float64 chunk by chunk: a float copy of all of CIFAR would
    take over a gigabyte.

    Example:
        >>> channel_stats(np.full((2, 4, 4, 1), 255, np.uint8))
        ((1.0,), (0.001,))
    """
    channels = images.shape[-1]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    for start in range(0, len(images), _LOAD_BATCH):
        chunk = images[start:start + _LOAD_BATCH].reshape(-1, channels).astype(np.float64)
        total += chunk.sum(axis=0)
        total_sq += np.square(chunk).sum(axis=0)
    count = max(1, images.size // channels)
    mean = total / count
    var = np.maximum(total_sq / count - np.square(mean), 0.0)
    # A constant channel would divide by zero when normalising.
    std = np.maximum(np.sqrt(var), 1e-3 * 255.0)
    return tuple(float(m) for m in mean / 255.0), tuple(float(s) for s in std / 255.0)


__all__ = ["CONNECT_TIMEOUT", "channel_stats", "download_and_prepare", "host_reachable",
           "load_dataset"]
