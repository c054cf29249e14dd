"""Tests for kdarts.data and the kdarts_digits TFDS builder (offline, small data)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from kdarts import data
from kdarts.data import digits as digits_builder

# its module fixtures are built once: keep the file on one test worker
pytestmark = pytest.mark.xdist_group("data")


@pytest.fixture(scope="module", autouse=True)
def _tfds_tempdir(tmp_path_factory):
    # TFDS's DatasetBuilder() makes an empty mkdtemp() folder for every builder
    # whose data is not prepared: keep those inside pytest's tmp.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tfds_tmp")))
        yield


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """A TFDS data_dir with kdarts_digits built while all network use fails."""
    path = str(tmp_path_factory.mktemp("tfds"))

    def no_network(*args, **kwargs):
        raise AssertionError("network or download used while building kdarts_digits")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", no_network)
        mp.setattr(tfds.download.DownloadManager, "download", no_network)
        mp.setattr(tfds.download.DownloadManager, "download_and_extract", no_network)
        builder = tfds.builder(data.DEFAULT_DATASET, data_dir=path)
        assert not builder.is_prepared()
        data.load_dataset(data_dir=path)
        assert tfds.builder(data.DEFAULT_DATASET, data_dir=path).is_prepared()
    return path


@pytest.fixture(scope="module")
def digits(digits_dir):
    return data.load_dataset(data_dir=digits_dir)


def _to_uint8(images, info):
    """The pipelines serve raw float32 pixels: exact integers for unaugmented pixels."""
    x = np.asarray(images)
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 255
    np.testing.assert_array_equal(x, np.rint(x))
    return x.astype(np.uint8)


def _indices(batches, info, lookup):
    """Maps every image of ``batches`` back to its index in the raw images (-1 if absent)."""
    return [lookup.get(img.tobytes(), -1)
            for x, _ in batches for img in _to_uint8(x, info)]


# ----------------------------------------------------------------------- loading


def test_digits_builder_is_real_data_with_fixed_split(digits):
    x_train, y_train, x_test, y_test, info = digits
    assert x_train.shape == (1437, 8, 8, 3) and x_test.shape == (360, 8, 8, 3)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int32
    assert info == data.DatasetInfo(
        name="kdarts_digits", num_classes=10, image_shape=(8, 8, 3), num_train=1437,
        num_test=360, mean=info.mean, std=info.std, class_names=tuple("0123456789"))
    # Grey replicated to 3 channels, full 0..255 range.
    assert (x_train[..., 0] == x_train[..., 2]).all() and x_train.max() == 255
    # Exactly scikit-learn's images and labels, split without overlap.
    from sklearn.datasets import load_digits

    sk = load_digits()
    sk_images = np.rint(sk.images * 255 / 16).astype(np.uint8)
    expected = {img.tobytes(): int(lab) for img, lab in zip(sk_images, sk.target)}
    got = {img[..., 0].tobytes(): int(lab)
           for img, lab in zip(np.concatenate([x_train, x_test]),
                               np.concatenate([y_train, y_test]))}
    assert got == expected
    # Stratified: every class is in the test split in proportion (~20 %).
    counts = np.bincount(y_test, minlength=10)
    assert counts.sum() == 360 and counts.min() >= 34 and counts.max() <= 38


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(data.DatasetError) as err:
        data.load_dataset("imagenet_tiny")
    message = str(err.value)
    assert "imagenet_tiny" in message
    for name in data.DATASETS:
        assert name in message
    assert isinstance(err.value, ValueError)


def test_unprepared_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DatasetError, match="download=True") as err:
        data.load_dataset("mnist", data_dir=str(tmp_path))
    assert "'mnist'" in str(err.value) and "not prepared" in str(err.value)


def test_cifar10_and_mnist_through_tfds_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        x_train, y_train, x_test, _, info = data.load_dataset("cifar10", data_dir=str(tmp_path))
        assert x_train.shape == (12, 32, 32, 3) and x_test.shape == (12, 32, 32, 3)
        assert info.num_classes == 10 and info.image_shape == (32, 32, 3)
        assert y_train.min() >= 0 and y_train.max() < 10
        # Greyscale keeps its one channel: the networks take the dataset's channels.
        x_mnist, *_, mnist_info = data.load_dataset("mnist", data_dir=str(tmp_path))
        assert x_mnist.shape == (12, 28, 28, 1) and mnist_info.image_shape == (28, 28, 1)
        assert len(mnist_info.mean) == len(mnist_info.std) == 1


def test_normalisation_is_zero_mean_unit_std_on_train(digits):
    x_train, *_, info = digits
    x = data.normalize(x_train, info.mean, info.std).numpy()
    assert x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 1, 2)), 1.0, atol=1e-3)


# ------------------------------------------------------------------------ splits


@pytest.mark.parametrize("split, every, num_search", [
    ("half", 10, 718), ("dynamic", 10, 131), ("dynamic", 4, 287), ("dynamic", 1, 718),
])
def test_split_sizes(split, every, num_search):
    weight, search = data.split_indices(1437, seed=3, split=split, every=every)
    assert len(search) == num_search and len(weight) == 1437 - num_search
    assert not set(weight) & set(search)
    assert sorted(np.concatenate([weight, search])) == list(range(1437))


def test_split_rejects_unknown_mode():
    with pytest.raises(data.DatasetError, match="half"):
        data.split_indices(100, seed=0, split="thirds")


def test_search_streams_disjoint_reshuffled_unflipped(digits_dir, digits):
    x_train, *_, info = digits
    raw = x_train[:200]
    lookup = {img.tobytes(): i for i, img in enumerate(raw)}  # digits are all distinct
    weight_idx, search_idx = data.split_indices(200, seed=5, split="dynamic", every=3)
    weight_ds, search_ds, ds_info, steps = data.search_datasets(
        "kdarts_digits", 16, 5, split="dynamic", every=3, data_dir=digits_dir,
        max_examples=200, padding=0)
    assert steps == len(weight_idx) // 16 == 9
    assert weight_ds.cardinality() == tf.data.INFINITE_CARDINALITY
    assert search_ds.cardinality() == tf.data.INFINITE_CARDINALITY
    x, y = next(iter(weight_ds))
    assert x.shape == (16, 8, 8, 3) and x.dtype == tf.float32 and y.dtype == tf.int32

    passes = list(weight_ds.take(2 * steps))
    seen = _indices(passes, ds_info, lookup)
    # No flip for digits and padding 0: every image is an original one.
    assert -1 not in seen
    first, second = seen[:steps * 16], seen[steps * 16:]
    assert set(first) <= set(weight_idx) and set(second) <= set(weight_idx)
    assert len(set(first)) == len(first) == len(set(second))  # a pass is a permutation
    assert first != second  # reshuffled every pass
    labels = np.concatenate([y for _, y in passes])
    np.testing.assert_array_equal(labels, np.asarray(digits[1])[seen])

    search_steps = len(search_idx) // 16
    seen_search = _indices(search_ds.take(search_steps), ds_info, lookup)
    assert set(seen_search) <= set(search_idx)
    assert len(set(seen_search)) == search_steps * 16


def test_search_streams_are_deterministic_and_seeded(digits_dir):
    def first_batches(seed):
        weight_ds, search_ds, _, _ = data.search_datasets(
            "kdarts_digits", 8, seed, data_dir=digits_dir, max_examples=64)
        return [b.numpy() for ds in (weight_ds, search_ds) for xy in ds.take(2) for b in xy]

    a, b, c = first_batches(1), first_batches(1), first_batches(2)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_skip_equals_offset_in_stream(digits_dir):
    kwargs = dict(data_dir=digits_dir, max_examples=120)
    weight_ds, search_ds, _, steps = data.search_datasets("kdarts_digits", 8, 4, **kwargs)
    assert steps == 7
    skipped_w, skipped_s, _, _ = data.search_datasets(
        "kdarts_digits", 8, 4, skip_weight_batches=9, skip_search_batches=3, **kwargs)
    full_w = list(weight_ds.take(13))  # batch 9 is in the second pass
    full_s = list(search_ds.take(7))
    for got, want in zip(skipped_w.take(4), full_w[9:]):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    for got, want in zip(skipped_s.take(4), full_s[3:]):
        np.testing.assert_array_equal(got[0], want[0])


def test_batch_larger_than_split_is_an_error(digits_dir):
    with pytest.raises(data.DatasetError, match="search split"):
        data.search_datasets("kdarts_digits", 16, 0, split="dynamic", every=10,
                             data_dir=digits_dir, max_examples=100)


def test_cifar10_mock_pipeline_flips_but_digits_do_not(tmp_path):
    with tfds.testing.mock_data(num_examples=40):
        x_train, *_ = data.load_dataset("cifar10", data_dir=str(tmp_path))
        weight_ds, _, info, steps = data.search_datasets(
            "cifar10", 4, 0, data_dir=str(tmp_path), padding=0)
        assert steps == 5
        images = _to_uint8(np.concatenate([x for x, _ in weight_ds.take(steps)]), info)
    raw = {img.tobytes() for img in x_train}
    flipped = {img[:, ::-1].tobytes() for img in x_train}
    kinds = ["raw" if img.tobytes() in raw else "flipped" if img.tobytes() in flipped
             else "other" for img in images]
    assert "other" not in kinds and "raw" in kinds and "flipped" in kinds


# ------------------------------------------------------------------ augmentation


def test_random_crop_is_a_zero_filled_shift():
    image = tf.reshape(tf.range(1, 8 * 8 * 3 + 1, dtype=tf.float32), [8, 8, 3])
    padded = np.pad(image.numpy(), [(2, 2), (2, 2), (0, 0)])
    shifts = {(dy, dx): padded[dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)}
    found = set()
    for s in range(40):
        out = data.random_crop(image, padding=2, seed=[s, 0]).numpy()
        match = [k for k, v in shifts.items() if np.array_equal(out, v)]
        assert len(match) == 1
        found.add(match[0])
    assert len(found) > 5
    assert data.default_padding(32) == 4 and data.default_padding(8) == 1


def test_cutout_fills_a_clipped_square():
    image = tf.ones([10, 10, 3])
    full = clipped = 0
    for s in range(60):
        out = data.cutout(image, length=4, seed=[s, 9]).numpy()
        zero = out == 0
        assert (zero == zero[..., :1]).all()  # all channels together
        rows = np.nonzero(zero[..., 0].any(axis=1))[0]
        cols = np.nonzero(zero[..., 0].any(axis=0))[0]
        # One solid rectangle ...
        assert zero[..., 0].sum() == len(rows) * len(cols)
        assert zero[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
        # ... of side 4 unless it touches a border, where it is clipped (never below 2).
        for idx in (rows, cols):
            touches = idx[0] == 0 or idx[-1] == 9
            assert len(idx) == 4 or (touches and 2 <= len(idx) < 4)
        full += len(rows) == len(cols) == 4
        clipped += len(rows) * len(cols) < 16
    assert full and clipped
    np.testing.assert_array_equal(data.cutout(image, 0, seed=[0, 0]), image)
    # the pipelines fill with the mean pixel, per channel (DARTS zeroes normalised images)
    filled = data.cutout(image, length=4, seed=[1, 9], fill=[7.0, 8.0, 9.0]).numpy()
    square = filled[..., 0] != 1
    assert square.sum() >= 4
    np.testing.assert_array_equal(filled[square], np.tile([7.0, 8.0, 9.0], (square.sum(), 1)))


# ---------------------------------------------------------- evaluation training


def test_train_datasets_epochs_cutout_and_test_set(digits_dir, digits):
    _, _, x_test, y_test, _ = digits
    train_ds, test_ds, info, steps = data.train_datasets(
        "kdarts_digits", 25, 3, cutout=4, data_dir=digits_dir, max_examples=64)
    assert steps == 3 and train_ds.cardinality() == 3
    epoch0 = list(train_ds)
    epoch1 = list(train_ds)
    assert [len(y) for _, y in epoch0] == [25, 25, 14]
    assert not np.array_equal(np.concatenate([y for _, y in epoch0]),
                              np.concatenate([y for _, y in epoch1]))
    # Cutout fills with the mean pixel: normalised, that is DARTS's zero
    mean_pixel = 255.0 * np.array(info.mean, np.float32)
    for x, _ in epoch0:
        x = np.asarray(x)
        assert x.min() >= 0 and x.max() <= 255  # raw pixels, not normalised
        filled = (x == mean_pixel).all(axis=-1)  # mean pixels are absent from the digits
        assert filled.reshape(len(x), -1).sum(axis=1).min() >= 4
    # Same seed → the same epochs; initial_epoch resumes at that epoch.
    again, *_ = data.train_datasets(
        "kdarts_digits", 25, 3, cutout=4, data_dir=digits_dir, max_examples=64)
    resumed, *_ = data.train_datasets(
        "kdarts_digits", 25, 3, cutout=4, data_dir=digits_dir, max_examples=64,
        initial_epoch=1)
    for want, got in ((epoch0, list(again)), (epoch1, list(again)), (epoch1, list(resumed))):
        for (xw, yw), (xg, yg) in zip(want, got):
            np.testing.assert_array_equal(xw, xg)
            np.testing.assert_array_equal(yw, yg)
    # Test set: in order, unaugmented, raw float32 pixels, remainder kept.
    test_batches = list(test_ds)
    assert len(test_batches) == 15 and len(test_batches[-1][1]) == 360 - 14 * 25
    np.testing.assert_array_equal(np.concatenate([y for _, y in test_batches]), y_test)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in test_batches]),
                                  x_test.astype(np.float32))


_FINGERPRINT = """
import hashlib
from kdarts import data

def fingerprint(data_dir):
    weight_ds, search_ds, _, _ = data.search_datasets(
        "kdarts_digits", 16, 7, split="dynamic", every=3, data_dir=data_dir,
        max_examples=200)
    train_ds, _, _, _ = data.train_datasets(
        "kdarts_digits", 16, 7, cutout=3, data_dir=data_dir, max_examples=100)
    h = hashlib.sha256()
    for ds, n in ((weight_ds, 3), (search_ds, 3), (train_ds, 2)):
        for x, y in ds.take(n):
            h.update(x.numpy().tobytes())
            h.update(y.numpy().tobytes())
    return h.hexdigest()
"""


@pytest.mark.slow
def test_batches_identical_across_processes(digits_dir, tmp_path):
    """Same seed → same batches in another process, whatever TF's global seed."""
    tf.random.set_seed(12345)  # must not matter: all randomness is stateless
    namespace: dict = {}
    exec(_FINGERPRINT, namespace)
    here = namespace["fingerprint"](digits_dir)
    script = _FINGERPRINT + "import sys\nprint(fingerprint(sys.argv[1]))\n"
    env = dict(os.environ, TMPDIR=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", script, digits_dir], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip().splitlines()[-1] == here


# ------------------------------------------------------------------------ download


def test_unreachable_host_fails_at_once_in_one_line(tmp_path, monkeypatch):
    """Offline: a one-line error naming the host and --data-dir, nothing left behind."""
    from kdarts.data import sources

    attempts = []

    def refuse(address, timeout=None):
        attempts.append(address)
        raise OSError("Network is unreachable")

    monkeypatch.setattr(sources.socket, "create_connection", refuse)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        lambda *a, **k: pytest.fail("download attempted while offline"))
    with pytest.raises(data.DatasetError) as err:
        data.load_dataset("cifar10", data_dir=str(tmp_path), download=True)
    message = str(err.value)
    assert "\n" not in message and "www.cs.toronto.edu" in message
    assert "--data-dir" in message and "Nothing was written" in message
    assert ("www.cs.toronto.edu", 443) in attempts
    assert os.listdir(tmp_path) == []


def test_failed_download_removes_its_partial_files(tmp_path, monkeypatch):
    from kdarts.data import sources

    (tmp_path / "mnist").mkdir()  # someone else's data, kept
    (tmp_path / "mnist" / "keep.txt").write_text("x")

    def partial_then_fail(builder, *args, **kwargs):
        folder = os.path.join(str(tmp_path), "downloads", "cifar10")
        os.makedirs(folder)
        with open(os.path.join(folder, "cifar-10-binary.tar.gz.tmp.1"), "wb") as f:
            f.write(b"partial")
        os.makedirs(os.path.join(str(tmp_path), "cifar10", "incomplete.ABC_3.0.2"))
        raise ConnectionError("Connection reset by peer\nwhile reading")

    monkeypatch.setattr(sources, "host_reachable", lambda host, timeout=None: True)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", partial_then_fail)
    with pytest.raises(data.DatasetError, match="partial files were removed") as err:
        data.load_dataset("cifar10", data_dir=str(tmp_path), download=True)
    assert "\n" not in str(err.value) and "ConnectionError" in str(err.value)
    assert sorted(os.listdir(tmp_path)) == ["mnist"]
    assert (tmp_path / "mnist" / "keep.txt").exists()


def test_host_probe_is_bounded(monkeypatch):
    import time as _time

    from kdarts.data import sources

    def hang(*args, **kwargs):  # a name lookup that hangs, then fails
        _time.sleep(3)
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(sources.socket, "create_connection", hang)
    start = _time.perf_counter()
    assert sources.host_reachable("example.invalid", timeout=0.5) is False
    assert _time.perf_counter() - start < 2


def test_digits_split_is_exact_and_stable():
    labels = np.repeat(np.arange(10), 30)
    train, test = digits_builder.digits_split(labels, num_test=60, seed=0)
    assert len(test) == 60 and not set(train) & set(test)
    np.testing.assert_array_equal(np.bincount(labels[test]), np.full(10, 6))
    again = digits_builder.digits_split(labels, num_test=60, seed=0)
    np.testing.assert_array_equal(test, again[1])


# ---------------------------------------------------------------------- own data


def _listing_order(x, y):
    """The arrays in a folder's listing order (class by class, files sorted by name)."""
    order = np.lexsort((np.arange(len(y)), y))
    return x[order], y[order]


def test_folder_npz_and_arrays_load_alike(png_folder, tmp_path):
    from conftest import CLASSES, own_images

    x, y = _listing_order(*own_images(36))
    x_train, y_train, x_test, y_test, info = data.load_dataset(str(png_folder))
    assert info.class_names == CLASSES and info.num_classes == 3
    assert info.image_shape == (8, 8, 3) and (info.num_train, info.num_test) == (29, 7)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int32
    # the fixed stratified hold-out: the same images for a folder and for arrays
    arrays = data.load_dataset((x, y))
    for got, want in zip((x_train, y_train, x_test, y_test), arrays[:4]):
        np.testing.assert_array_equal(got, want)
    assert info.mean == pytest.approx(arrays[4].mean) and info.std == pytest.approx(
        arrays[4].std)
    assert sorted(np.bincount(y_test)) == [2, 2, 3]  # each class in proportion
    # an .npz with its own test split keeps it; greyscale (N, H, W) gains a channel
    np.savez(tmp_path / "grey.npz", x=x[..., 0], y=y, x_test=x[:5, ..., 0], y_test=y[:5])
    gx, gy, gx_test, gy_test, ginfo = data.load_dataset(str(tmp_path / "grey.npz"))
    assert gx.shape == (36, 8, 8, 1) and gx_test.shape == (5, 8, 8, 1)
    assert ginfo.name == str(tmp_path / "grey.npz") and ginfo.num_test == 5
    with pytest.raises(data.DatasetError, match="holds 36 images but y 35 labels"):
        data.load_dataset((x, y[:-1]))
    with pytest.raises(data.DatasetError, match="pixel values span 0 .. 300"):
        data.load_dataset((np.full((36, 8, 8, 3), 300.0) * (y[:, None, None, None] > 0), y))


def test_streamed_folder_serves_what_arrays_serve(png_folder):
    """A folder decoded on the fly gives exactly the batches of the same images in memory:
    the order and augmentation depend only on the seed and the positions."""
    from conftest import own_images

    arrays = _listing_order(*own_images(36))
    folder = str(png_folder)
    streams = [data.search_datasets(spec, 4, 3, split="half") for spec in (folder, arrays)]
    assert streams[0][3] == streams[1][3] == 3
    for ds_folder, ds_arrays in ((streams[0][0], streams[1][0]), (streams[0][1], streams[1][1])):
        for (xa, ya), (xb, yb) in zip(ds_folder.take(5), ds_arrays.take(5)):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    trains = [data.train_datasets(spec, 8, 3, cutout=2) for spec in (folder, arrays)]
    for ds_a, ds_b in ((trains[0][0], trains[1][0]), (trains[0][1], trains[1][1])):
        batches = list(zip(ds_a, ds_b))
        assert batches
        for (xa, ya), (xb, yb) in batches:
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


def test_folder_with_test_split_greyscale_and_resize(tmp_path):
    from conftest import write_png_folder

    write_png_folder(tmp_path / "d" / "train", count=12, channels=1)
    write_png_folder(tmp_path / "d" / "test", count=6, size=12, channels=1, seed=2)
    with pytest.raises(data.DatasetError, match="different sizes.*--image-size"):
        data.load_dataset(str(tmp_path / "d"))
    x_train, _, x_test, y_test, info = data.load_dataset(str(tmp_path / "d"),
                                                         image_size=(8, 8))
    assert info.image_shape == (8, 8, 1) and len(info.mean) == 1
    assert x_train.shape == (12, 8, 8, 1) and x_test.shape == (6, 8, 8, 1)
    np.testing.assert_array_equal(y_test, [0, 0, 1, 1, 2, 2])
    # the training images are already 8x8: decoded as they are, not resampled
    from PIL import Image

    first = np.asarray(Image.open(tmp_path / "d" / "train" / "ant" / "000.png"))
    np.testing.assert_array_equal(x_train[0, ..., 0], first)


@pytest.mark.slow
def test_processes_building_the_digits_at_once_all_get_them(tmp_path):
    """Two first uses on a machine without the files (two test workers, two commands)
    both load the digits: one builds them, the other waits for its lock, then reads."""
    code = ("import sys; from kdarts.data import load_dataset; "
            "x, y, xt, yt, info = load_dataset('kdarts_digits', data_dir=sys.argv[1]); "
            "print(len(x), len(xt), int(x.sum() % 100003))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    assert outputs[0][0] == outputs[1][0]
    assert outputs[0][0].split()[:2] == ["1437", "360"]
