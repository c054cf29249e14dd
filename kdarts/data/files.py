"""Your own images: a folder of class sub-folders, an ``.npz`` file, or numpy arrays.

Everything here is checked and listed with numpy and Pillow only (no
TensorFlow), so the command line refuses a bad ``--dataset`` at once.

* A **folder** is read as :func:`keras.utils.image_dataset_from_directory`
  reads one: its sub-folders, sorted by name, are the classes (label 0 is the
  first), and every ``.png``, ``.jpg``/``.jpeg``, ``.bmp`` or ``.gif`` file
  under a class sub-folder (at any depth) is an image of that class. If the
  folder holds exactly ``train/`` and ``test/``, each laid out that way, they
  are the training and test splits; otherwise a fixed 20 % of each class is
  held out as the test split (:func:`stratified_split`, seed
  :data:`SPLIT_SEED`, the same for every run whatever its ``--seed``).
  The image size is the files' (they must all have one size), or
  ``image_size=(H, W)`` to which every image is resized (bilinear). The
  channels are the files': 1 if every image is greyscale, else 3 (greyscale
  images among colour ones are replicated, alpha is dropped).
* An **.npz** file holds ``x`` (N, H, W, C) or (N, H, W) pixel values 0..255
  and ``y`` (N,) integer labels ``0 .. K-1``; ``x_test``/``y_test``, if present,
  are the test split, else 20 % is held out as for a folder.
* **Arrays** (Python only): ``(x, y)``, ``(x, y, x_test, y_test)`` or a mapping
  with those keys, as in an ``.npz``.

Example:
    >>> spec = check_dataset("my_photos/")              # doctest: +SKIP
    >>> folder = scan_folder(spec)                      # doctest: +SKIP
    >>> folder.classes, folder.image_shape              # doctest: +SKIP
    (('cat', 'dog'), (32, 32, 3))
"""

from __future__ import annotations

import dataclasses
import os
import warnings
import zipfile
from typing import Mapping, Sequence

import numpy as np

from kdarts.data.catalog import DATASETS, DEFAULT_DATASET, IMAGE_SIZES, DatasetError
from kdarts.geometry import MIN_IMAGE_SIZE

#: Image file suffixes read from a folder (those ``image_dataset_from_directory`` reads).
IMAGE_EXTENSIONS: tuple[str, ...] = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
#: Share of a one-split source held out as the test split, per class.
TEST_FRACTION: float = 0.2
#: Seed of that hold-out: fixed, so every run tests on the same images.
SPLIT_SEED: int = 0
#: Pillow modes decoded as one channel; any other mode gives 3.
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_ARRAY_KEYS = ("x", "y", "x_test", "y_test")


class DataNotice(UserWarning):
    """kdarts changed the data it was given; the message says what, in one line.

    Raised as a warning (:func:`warnings.warn`) by :func:`split_arrays`; the
    command line prints it as a line of its output instead.
    """


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    """A folder of images listed for streaming (paths and labels, nothing decoded).

    Attributes:
        root: absolute path of the folder.
        classes: class names (sorted sub-folder names); label ``i`` is ``classes[i]``.
        train_paths, train_labels: the training split (before the weight/search split).
        test_paths, test_labels: the test split (``test/``, or the held-out share).
        image_shape: ``(H, W, C)`` every image is served at.
        resize: whether some image has another size and is resized on decoding.
        test_folder: whether the test split is the folder's own ``test/``.
    """

    root: str
    classes: tuple[str, ...]
    train_paths: np.ndarray
    train_labels: np.ndarray
    test_paths: np.ndarray
    test_labels: np.ndarray
    image_shape: tuple[int, int, int]
    resize: bool
    test_folder: bool


def is_path_spec(spec) -> bool:
    """Whether a ``--dataset`` value names a file or folder rather than a TFDS dataset.

    A known TFDS name is a name even if a folder of that name exists (write
    ``./mnist`` for the folder); anything with a path separator, a suffix, or
    naming an existing file or folder is a path.

    Example:
        >>> is_path_spec("cifar10"), is_path_spec("data/photos"), is_path_spec("d.npz")
        (False, True, True)
    """
    if isinstance(spec, os.PathLike):
        return True
    if not isinstance(spec, str) or spec in DATASETS:
        return False
    return (os.sep in spec or "/" in spec or os.path.splitext(spec)[1] != ""
            or os.path.exists(spec))


def check_dataset(spec, image_size: Sequence[int] | None = None) -> str:
    """Checks a ``--dataset`` value; returns it canonical (a name, or an absolute path).

    A folder is listed and every image decoded once (:func:`scan_folder`); an
    ``.npz`` has its keys, shapes and labels checked without loading the images
    (:func:`check_npz`). Errors are one line (:class:`~kdarts.data.catalog.DatasetError`).

    Example:
        >>> check_dataset("kdarts_digits")
        'kdarts_digits'
    """
    if not is_path_spec(spec):
        if spec not in DATASETS:
            raise DatasetError(
                f"Unknown dataset {spec!r}: neither a TFDS dataset kdarts knows "
                f"({', '.join(DATASETS)}; default {DEFAULT_DATASET!r}) nor an existing "
                "folder of class sub-folders or .npz file")
        if image_size is not None:
            raise DatasetError(f"--image-size resizes the images of a folder; {spec!r} is a "
                               "TFDS dataset with its own size")
        return spec
    path = os.path.abspath(os.fspath(spec))
    if not os.path.exists(path):
        raise DatasetError(f"--dataset {os.fspath(spec)}: no such file or folder")
    if os.path.isdir(path):
        scan_folder(path, image_size)
    elif path.lower().endswith(".npz"):
        if image_size is not None:
            raise DatasetError(f"--image-size resizes the images of a folder; the arrays of "
                               f"{os.path.basename(path)} have their own size")
        check_npz(path)
    else:
        raise DatasetError(f"--dataset {os.fspath(spec)}: a file that is not an .npz; give a "
                           "folder of class sub-folders or an .npz with x and y")
    return path


def served_size(spec: str, image_size: Sequence[int] | None = None) -> tuple[int, int]:
    """``(H, W)`` of the images a checked ``--dataset`` (:func:`check_dataset`) serves.

    No TensorFlow: a name's size is known, a folder's images are read (once per
    file version), an ``.npz``'s array header.

    Example:
        >>> served_size("cifar10")
        (32, 32)
    """
    if image_size is not None:
        size = parse_image_size(image_size)
    elif not is_path_spec(spec):
        size = IMAGE_SIZES[spec]
    elif os.path.isdir(spec):
        size = scan_folder(spec).image_shape[:2]
    else:
        size = check_npz(spec)["x"][0][1:3]
    return int(size[0]), int(size[1])


def train_size(spec: str, image_size: Sequence[int] | None = None) -> int:
    """Training images of a checked folder or ``.npz`` (:func:`check_dataset`), without
    TensorFlow: the whole training split, before the weight/search division.

    Example:
        >>> train_size("photos/")  # 180 images, 20 % held out  # doctest: +SKIP
        144
    """
    if os.path.isdir(spec):
        return len(scan_folder(spec, image_size).train_labels)
    arrays = check_npz(spec)
    num = len(arrays["y"])
    return num if "y_test" in arrays else num - int(round(TEST_FRACTION * num))


def parse_image_size(value) -> tuple[int, int] | None:
    """``"32"`` → (32, 32), ``"24,32"`` → (24, 32); None stays None.

    Example:
        >>> parse_image_size("24,32"), parse_image_size(16)
        ((24, 32), (16, 16))
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        parts = value.replace("x", ",").split(",")
    elif isinstance(value, int):
        parts = [value]
    else:
        parts = list(value)
    try:
        size = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise DatasetError(f"--image-size: expected H,W (or one side for a square), got "
                           f"{value!r}")
    _check_size(size, "--image-size")
    return size


# --------------------------------------------------------------------------- folders


def stratified_split(labels: np.ndarray, num_test: int,
                     seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified split: returns sorted ``(train_indices, test_indices)``.

    Each class is shuffled with a seeded legacy ``RandomState`` (whose stream
    numpy guarantees stable across versions) and every example gets its
    fractional rank within its class; the ``num_test`` smallest ranks form the
    test split, so each class contributes in proportion to its size (to within
    one example) and the split has exactly ``num_test`` examples.

    Example:
        >>> train, test = stratified_split(np.repeat([0, 1], 5), num_test=2)
        >>> len(train), len(test), sorted(np.repeat([0, 1], 5)[test])
        (8, 2, [0, 1])
    """
    labels = np.asarray(labels)
    if not 0 < num_test < len(labels):
        raise ValueError(f"num_test must be in (0, {len(labels)}), got {num_test}")
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(labels))
    frac_rank = np.empty(len(labels), dtype=np.float64)
    for c in np.unique(labels):
        members = order[labels[order] == c]  # this class, in shuffled order
        frac_rank[members] = (np.arange(len(members)) + 0.5) / len(members)
    # Stable sort of the shuffled order breaks ties between classes reproducibly.
    ranked = order[np.argsort(frac_rank[order], kind="stable")]
    return np.sort(ranked[num_test:]), np.sort(ranked[:num_test])


def holdout(labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed test hold-out of a one-split source: :data:`TEST_FRACTION` per class."""
    num_test = int(round(TEST_FRACTION * len(labels)))
    if num_test < 1 or len(labels) - num_test < 2:
        raise DatasetError(f"{where}: {len(labels)} images are too few to hold out a test "
                           f"split ({TEST_FRACTION:.0%}); add images or a test split")
    return stratified_split(labels, num_test)


def scan_folder(root: str, image_size: Sequence[int] | None = None) -> ImageFolder:
    """Lists a folder of class sub-folders and decodes every image once (Pillow, no
    TensorFlow) to check it.

    Raises:
        DatasetError: a missing or empty folder, fewer than two classes with
            images, an unreadable image, mixed sizes without ``image_size``,
            images (or ``image_size``) under :data:`kdarts.geometry.MIN_IMAGE_SIZE`.
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise DatasetError(f"--dataset {root}: no such folder")
    size = None if image_size is None else parse_image_size(image_size)
    subdirs = _subdirs(root)
    test_folder = set(subdirs) == {"train", "test"}
    if test_folder:
        classes, train_paths, train_labels = _list_classes(os.path.join(root, "train"))
        test_classes, test_paths, test_labels = _list_classes(os.path.join(root, "test"))
        extra = sorted(set(test_classes) - set(classes))
        if extra:
            raise DatasetError(f"{root}: test/ has class folders that train/ lacks "
                               f"({', '.join(extra[:5])}); both need the same classes")
        remap = np.array([classes.index(c) for c in test_classes], np.int32)
        test_labels = remap[test_labels] if len(test_labels) else test_labels
        if not len(test_paths):
            raise DatasetError(f"{root}: test/ holds no images in class sub-folders")
    else:
        classes, train_paths, train_labels = _list_classes(root)
    _check_labels_present(train_labels, classes, root)
    headers = [_header(p) for p in train_paths] + (
        [_header(p) for p in test_paths] if test_folder else [])
    paths = list(train_paths) + (list(test_paths) if test_folder else [])
    sizes = {(h, w) for h, w, _ in headers}
    if size is None:
        if len(sizes) > 1:
            first = headers[0][:2]
            other = next(i for i, h in enumerate(headers) if h[:2] != first)
            raise DatasetError(
                f"{root}: images of different sizes ({_hw(first)} in "
                f"{os.path.relpath(paths[0], root)}, {_hw(headers[other][:2])} in "
                f"{os.path.relpath(paths[other], root)}); pass --image-size H,W "
                "(image_size=(H, W)) to resize them all")
        size = next(iter(sizes))
        _check_size(size, f"{root}: images of")
    channels = 1 if all(mode in _GREY_MODES for _, _, mode in headers) else 3
    if not test_folder:
        train_idx, test_idx = holdout(train_labels, root)
        test_paths, test_labels = train_paths[test_idx], train_labels[test_idx]
        train_paths, train_labels = train_paths[train_idx], train_labels[train_idx]
    return ImageFolder(root=root, classes=tuple(classes), train_paths=train_paths,
                       train_labels=train_labels, test_paths=test_paths,
                       test_labels=test_labels, image_shape=(size[0], size[1], channels),
                       resize=sizes != {tuple(size)}, test_folder=test_folder)


def _subdirs(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir())


def _list_classes(folder: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sorted class sub-folders; their image files (sorted, any depth) and labels."""
    classes = _subdirs(folder)
    paths, labels = [], []
    for label, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(os.path.join(folder, name),
                                                    followlinks=True):
            dirnames.sort()
            for filename in sorted(filenames):
                if filename.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(dirpath, filename))
                    labels.append(label)
    return classes, np.array(paths, dtype=str), np.array(labels, dtype=np.int32)


def _check_labels_present(labels: np.ndarray, classes: list[str], root: str) -> None:
    if not len(labels):
        raise DatasetError(
            f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in class sub-folders; "
            "lay them out as <folder>/<class>/<image>")
    present = [classes[i] for i in np.unique(labels)]
    empty = [c for c in classes if c not in present]
    if empty and len(present) >= 2:
        raise DatasetError(
            f"{os.path.join(root, empty[0])}: a class sub-folder with no images "
            f"({', '.join(IMAGE_EXTENSIONS)}); every sub-folder is a class, so remove it "
            f"or add images ({len(empty)} such: {', '.join(empty[:5])})")
    if len(present) < 2:
        raise DatasetError(f"{root}: images of one class only ({present[0]}); a classifier "
                           "needs at least two class sub-folders with images")


_HEADERS: dict[tuple, tuple[int, int, str]] = {}


#: Pillow's names of the formats TensorFlow's ``decode_image`` reads (MPO is a JPEG).
_DECODED_FORMATS = frozenset({"BMP", "GIF", "JPEG", "MPO", "PNG"})


def _header(path: str) -> tuple[int, int, str]:
    """``(H, W, Pillow mode)`` of an image file (cached per file version).

    The whole image is decoded, not only its header: a truncated or corrupt file
    is refused here, naming it, before TensorFlow starts, instead of failing a run
    when the pipeline first serves it (the test split only at the final evaluation).
    """
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _HEADERS:
        from PIL import Image

        try:
            with Image.open(path) as image:
                width, height = image.size
                mode, kind = image.mode, image.format
                image.load()
        except Exception as err:  # Pillow raises OSError, SyntaxError, struct.error, ...
            reason = " ".join(str(err).split())[:120] or type(err).__name__
            raise DatasetError(f"{path}: not a readable image ({reason}); repair or "
                               "remove the file") from None
        if kind not in _DECODED_FORMATS:
            raise DatasetError(f"{path}: a {kind} image; kdarts reads PNG, JPEG, BMP and "
                               "GIF files (convert or remove it)")
        if kind == "BMP":
            _check_bmp(path, mode)
        _HEADERS[key] = (int(height), int(width), mode)
    return _HEADERS[key]


def _check_bmp(path: str, mode: str) -> None:
    """TensorFlow decodes uncompressed 8-bit (as grey), 24- and 32-bit BMPs only: it fails
    on the others, and would read a colour palette's indices as grey levels."""
    with open(path, "rb") as f:
        header = f.read(34)
    bits = int.from_bytes(header[28:30], "little")
    compression = int.from_bytes(header[30:34], "little")
    if bits not in (8, 24, 32) or compression not in (0, 3) or mode == "P":
        kind = (f"a {bits}-bit BMP" + (" with a colour palette" if mode == "P" else "")
                + (" (compressed)" if compression not in (0, 3) else ""))
        raise DatasetError(f"{path}: {kind}; TensorFlow reads uncompressed 8-bit grey, "
                           "24- and 32-bit BMPs only (save it as PNG)")


def _hw(size) -> str:
    return f"{size[0]}x{size[1]}"


def _check_size(size, what: str) -> None:
    if min(size) < MIN_IMAGE_SIZE:
        raise DatasetError(
            f"{what} {_hw(size)} are smaller than {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}, the "
            "least the networks take (they halve the image twice)")


# ----------------------------------------------------------------------------- arrays


def check_arrays(x_shape: Sequence[int], x_dtype, y, where: str, what: str = "x",
                 num_classes: int | None = None) -> np.ndarray:
    """Checks one split's images (shape and dtype only) and labels; returns the labels int32.

    Raises:
        DatasetError: ``x`` not (N, H, W[, C]) numbers, a ``y`` of another length,
            labels that are not non-negative integers, fewer than two classes
            (``num_classes`` None: the training split), images under
            :data:`kdarts.geometry.MIN_IMAGE_SIZE`.
    """
    label = "y" if what == "x" else "y_test"
    x_shape = tuple(int(d) for d in x_shape)
    if len(x_shape) not in (3, 4) or (len(x_shape) == 4 and x_shape[-1] < 1):
        raise DatasetError(f"{where}: {what} has shape {x_shape}; expected images (N, H, W, C) "
                           "or greyscale (N, H, W)")
    kind = np.dtype(x_dtype).kind
    if kind not in "uif":
        raise DatasetError(f"{where}: {what} holds {np.dtype(x_dtype)}, not pixel values "
                           "(uint8, or numbers 0..255)")
    _check_size(x_shape[1:3], f"{where}: images of")
    y = np.asarray(y)
    if y.ndim != 1:
        raise DatasetError(f"{where}: {label} has shape {y.shape}; expected one label per "
                           "image, (N,)")
    if len(y) != x_shape[0]:
        raise DatasetError(f"{where}: {what} holds {x_shape[0]} images but {label} "
                           f"{len(y)} labels; they must have the same length")
    if y.dtype.kind not in "iu":
        integral = y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.rint(y))
        if not integral:
            sample = y[:3].tolist() if y.dtype.kind in "fcOUSb" else []
            raise DatasetError(f"{where}: {label} holds {y.dtype} labels"
                               + (f" (such as {sample})" if sample else "")
                               + "; labels must be integers 0 .. classes-1")
    if len(y) and y.min() < 0:
        raise DatasetError(f"{where}: {label} has negative labels ({int(y.min())}); labels "
                           "must be integers 0 .. classes-1")
    y = y.astype(np.int32)
    if num_classes is None:
        found = np.unique(y)
        if len(found) < 2:
            raise DatasetError(f"{where}: {label} holds one class only; a classifier needs "
                               "at least two")
        if len(found) != int(found[-1]) + 1:
            # refused, not renumbered: a model's outputs are these numbers, and renumbering
            # would make output 1 mean the class the file calls 2
            missing = sorted(set(range(int(found[-1]) + 1)) - set(found.tolist()))
            raise DatasetError(
                f"{where}: {label} holds the labels {_listed(found)}, but classes are "
                f"numbered 0 .. classes-1 and {_listed(missing)} "
                f"{'has' if len(missing) == 1 else 'have'} no images; renumber the labels "
                f"0 .. {len(found) - 1} (kdarts does not, so that the model's outputs are "
                "your numbers)")
    elif len(y) and y.max() >= num_classes:
        raise DatasetError(f"{where}: {label} has label {int(y.max())}, but y has classes 0 .. "
                           f"{num_classes - 1} only")
    return y


def _listed(values, most: int = 8) -> str:
    values = [int(v) for v in values]
    text = ", ".join(str(v) for v in values[:most])
    return "{" + text + (", ..." if len(values) > most else "") + "}"


_NPZ_CHECKED: dict[tuple, dict] = {}


def check_npz(path: str) -> dict:
    """Checks an ``.npz``'s keys, shapes, labels and pixel values (no TensorFlow).

    Images of a dtype other than uint8 are loaded once to check their values
    (:func:`check_pixel_arrays`); the result is cached per file version.
    Returns ``{"x": (shape, dtype), "y": labels, "x_test": ..., "y_test": ...}``.
    """
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    if key not in _NPZ_CHECKED:
        _NPZ_CHECKED.clear()  # one file at a time: the entry holds its labels
        _NPZ_CHECKED[key] = _check_npz(path)
    return _NPZ_CHECKED[key]


def _check_npz(path: str) -> dict:
    where = path
    try:
        with zipfile.ZipFile(path) as archive:
            members = {os.path.splitext(n)[0]: n for n in archive.namelist()}
            for key in ("x", "y"):
                if key not in members:
                    raise DatasetError(
                        f"{where}: no {key!r} array (it holds {', '.join(sorted(members)) or 'nothing'}); "
                        "kdarts reads x (N, H, W, C) images and y (N,) integer labels")
            if ("x_test" in members) != ("y_test" in members):
                raise DatasetError(f"{where}: x_test and y_test go together (one is missing)")
            headers = {k: _npy_header(archive, members[k], where)
                       for k in ("x", "x_test") if k in members}
        with np.load(path, allow_pickle=False) as npz:
            y = npz["y"]
            y_test = npz["y_test"] if "y_test" in members else None
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        if isinstance(err, DatasetError):
            raise
        raise DatasetError(f"{where}: not a readable .npz ({' '.join(str(err).split())[:120]})"
                           ) from None
    labels = check_arrays(*headers["x"], y, where)
    result = {"x": headers["x"], "y": labels}
    if y_test is not None:
        result.update(x_test=headers["x_test"], y_test=_check_test(
            headers["x"], headers["x_test"], y_test, int(labels.max()) + 1, where))
    if any(np.dtype(dtype) != np.uint8 for _, dtype in headers.values()):
        with np.load(path, allow_pickle=False) as npz:
            check_pixel_arrays(_images(npz["x"]), where,
                               _images(npz["x_test"]) if y_test is not None else None)
    return result


def _check_test(x, x_test, y_test, num_classes: int, where: str) -> np.ndarray:
    shape, dtype = x_test
    if tuple(shape[1:]) != tuple(x[0][1:]):
        raise DatasetError(f"{where}: x_test images are {tuple(shape[1:])}, x images "
                           f"{tuple(x[0][1:])}; both splits need one size")
    return check_arrays(shape, dtype, y_test, where, "x_test", num_classes=num_classes)


def _npy_header(archive: zipfile.ZipFile, member: str, where: str) -> tuple[tuple, np.dtype]:
    with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)
        shape, _, dtype = reader(f)
    return shape, dtype


def split_arrays(arrays, where: str = "arrays") -> tuple[np.ndarray, ...]:
    """``(x, y)``, ``(x, y, x_test, y_test)`` or a mapping → checked ``x, y, x_test, y_test``.

    Without a test split, :data:`TEST_FRACTION` of each class is held out
    (:func:`holdout`). Images keep their dtype; greyscale (N, H, W) gains a
    channel axis; labels become int32. Float images whose values all lie in
    0..1 (``max <= 1``) are taken as pixel/255 and multiplied by 255, with a
    one-line :class:`DataNotice` warning: the networks take raw pixels 0..255,
    and so does every model trained on them. Both splits must then be on that
    scale.

    Example:
        >>> x, y = np.zeros((10, 8, 8, 1), np.uint8), np.arange(10) % 2
        >>> [a.shape for a in split_arrays((x, y))]
        [(8, 8, 8, 1), (8,), (2, 8, 8, 1), (2,)]
    """
    if isinstance(arrays, Mapping):
        missing = [k for k in ("x", "y") if k not in arrays]
        if missing:
            raise DatasetError(f"{where}: no {missing[0]!r} array; expected x (N, H, W, C) "
                               "and y (N,)")
        if ("x_test" in arrays) != ("y_test" in arrays):
            raise DatasetError(f"{where}: x_test and y_test go together (one is missing)")
        parts = [arrays[k] for k in _ARRAY_KEYS if k in arrays]
    else:
        parts = list(arrays)
    if len(parts) not in (2, 4):
        raise DatasetError(f"{where}: expected (x, y) or (x, y, x_test, y_test), got "
                           f"{len(parts)} arrays")
    x, y = _images(parts[0]), parts[1]
    y = check_arrays(x.shape, x.dtype, y, where)
    unit = _unit_scale(x)
    if len(parts) == 4:
        x_test = _images(parts[2])
        y_test = _check_test((x.shape, x.dtype), (x_test.shape, x_test.dtype), parts[3],
                             int(y.max()) + 1, where)
        check_pixel_arrays(x, where, x_test)
        if unit:
            _unit_notice(x, where, "x and x_test hold")
            x, x_test = _times_255(x), _times_255(x_test)
        return x, y, x_test, y_test
    check_pixel_arrays(x, where)
    if unit:
        _unit_notice(x, where, "x holds")
        x = _times_255(x)
    train, test = holdout(y, where)
    return x[train], y[train], x[test], y[test]


def _images(x) -> np.ndarray:
    x = np.asarray(x)
    return x[..., None] if x.ndim == 3 else x


def _unit_scale(x: np.ndarray) -> bool:
    """Whether float images hold pixel/255 (every value in 0..1, some above 0)."""
    return x.dtype.kind == "f" and bool(x.size) and 0.0 < float(x.max()) <= 1.0


def _unit_notice(x: np.ndarray, where: str, what: str) -> None:
    warnings.warn(f"{where}: {what} float pixel values 0..1 (max {float(x.max()):g}); "
                  "multiplied by 255, as kdarts and the models it trains take raw pixels "
                  "0..255", DataNotice, stacklevel=3)


def _times_255(x: np.ndarray) -> np.ndarray:
    return x * np.asarray(255.0, x.dtype)  # keeps the float dtype (float16 stays float16)


def check_pixel_arrays(x: np.ndarray, where: str, x_test: np.ndarray | None = None) -> None:
    """Pixel values of both splits: finite, 0..255 (or all 0..1, taken as pixel/255), and
    on one scale.

    Raises:
        DatasetError: NaN or infinite values, values outside 0..255, or one split on
            the 0..1 scale and the other on 0..255.
    """
    _check_pixels(x, where, "x")
    if x_test is None:
        return
    _check_pixels(x_test, where, "x_test")
    unit = _unit_scale(x)
    if x_test.size and _unit_scale(x_test) != unit:
        scales = {True: "0..1", False: "0..255"}
        raise DatasetError(
            f"{where}: x holds pixel values on the {scales[unit]} scale (max "
            f"{float(x.max()):g}) but x_test on the {scales[not unit]} scale (max "
            f"{float(x_test.max()):g}); both splits need one scale, 0..255")


def _check_pixels(x: np.ndarray, where: str, what: str) -> None:
    """Pixel values must be finite, 0..255: the networks normalise raw pixels inside."""
    if x.dtype == np.uint8 or not x.size:
        return
    if x.dtype.kind == "f":
        nan, inf = np.isnan(x), np.isinf(x)
        if nan.any() or inf.any():
            kinds = " and ".join(name for name, found in (("NaN", nan), ("infinite", inf))
                                 if found.any())
            first = int(np.flatnonzero((nan | inf).reshape(len(x), -1).any(axis=1))[0])
            raise DatasetError(
                f"{where}: {what} holds {kinds} values ({int(nan.sum() + inf.sum())} of "
                f"{x.size}, the first in image {first}); pixel values must be numbers "
                "0..255")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 255:
        raise DatasetError(f"{where}: {what} pixel values span {low:g} .. {high:g}; kdarts "
                           "takes raw pixels 0..255 (the networks normalise inside)")


__all__ = ["DataNotice", "IMAGE_EXTENSIONS", "ImageFolder",
           "MIN_IMAGE_SIZE", "SPLIT_SEED", "TEST_FRACTION", "check_arrays", "check_dataset",
           "check_npz", "check_pixel_arrays", "holdout", "is_path_spec", "parse_image_size",
           "scan_folder", "served_size", "split_arrays", "stratified_split", "train_size"]
