"""Test-wide settings: quiet TensorFlow's C++ logging before it is imported, and run
TensorFlow with the threads the ``kdarts`` command line uses.

The threads are set when a test (or the module it is in) first imports TensorFlow, not
here, so a session of tests that need no TensorFlow never loads it (tests/test_lanes.py)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kdarts.runtime import set_cpu_threads_on_import  # noqa: E402

set_cpu_threads_on_import(intra_op=1)


import numpy as np  # noqa: E402
import pytest  # noqa: E402

CLASSES = ("ant", "bee", "cat")


def invoke(*args):
    """Run the ``kdarts`` CLI in process; unexpected exceptions propagate (click's exits
    do not)."""
    from click.testing import CliRunner

    from kdarts.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


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
    import kdarts.image

    def forbidden(*args, **kwargs):
        raise AssertionError("the CLI did TensorFlow work before rejecting its input")

    for module, name in ((kdarts.data, "search_datasets"), (kdarts.data, "train_datasets"),
                         (kdarts.image, "SearchNetwork"), (kdarts.image, "EvalNetwork")):
        monkeypatch.setattr(module, name, forbidden)


# ------------------------------------------- no test writes into the checkout (issue 37)

#: Paths of the checkout the guard ignores: the environment, caches and build outputs.
_CHECKOUT_SCRATCH = (".venv", "**/__pycache__", ".pytest_cache", "*.egg-info", "build", "dist")
#: Untracked (not ignored) sources: files being written by whoever edits the checkout
#: while the suite runs, not test outputs.
_SOURCE_SUFFIXES = (".py", ".md")


def _checkout_files(root: str) -> dict[str, tuple[int, int]] | None:
    """The checkout's ignored files and untracked non-source files (outside
    :data:`_CHECKOUT_SCRATCH`) with their size and mtime; None outside a git checkout."""
    import subprocess

    excludes = [f":(exclude,glob){p}" if "*" in p else f":(exclude){p}"
                for p in _CHECKOUT_SCRATCH]
    try:
        done = subprocess.run(["git", "status", "--porcelain", "-z", "--ignored", "-uall",
                               "--", ".", *excludes], cwd=root, capture_output=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    files = {}
    for entry in done.stdout.decode("utf-8", "surrogateescape").split("\0"):
        if entry[:3] == "!! " or (entry[:3] == "?? " and not entry.endswith(_SOURCE_SUFFIXES)):
            path = os.path.join(root, entry[3:])
            try:
                stat = os.stat(path)
            except OSError:
                continue
            files[entry[3:]] = (stat.st_size, stat.st_mtime_ns)
    return files


def _is_xdist_worker(session) -> bool:
    return hasattr(session.config, "workerinput")


def pytest_sessionstart(session):
    """Snapshot the checkout's untracked and ignored files (the controller only)."""
    if not _is_xdist_worker(session):
        session.config._kdarts_checkout = _checkout_files(str(session.config.rootpath))


def pytest_sessionfinish(session, exitstatus):
    """Fail the session if a test created or changed a file in the checkout: tests write
    only under their temporary folders, never beside a user's runs and exports."""
    before = getattr(session.config, "_kdarts_checkout", None)
    if _is_xdist_worker(session) or before is None:
        return
    after = _checkout_files(str(session.config.rootpath)) or {}
    written = sorted(p for p, stamp in after.items() if before.get(p) != stamp)
    if written:
        shown = ", ".join(written[:10]) + (f" and {len(written) - 10} more"
                                           if len(written) > 10 else "")
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (f"tests wrote into the checkout {session.config.rootpath} outside "
                   f"temporary folders: {shown}")
        if reporter is not None:
            reporter.write("\n")
            reporter.write_line(f"ERROR: {message}", red=True, bold=True)
        else:
            print(f"ERROR: {message}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
