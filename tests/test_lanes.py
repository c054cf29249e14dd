"""The test lanes (``pytest -m "not slow"`` and the full suite): tests that need no
TensorFlow run without loading it, and every test that uses TensorFlow runs it with the
command line's threads (one per kernel), which tests/conftest.py sets at TensorFlow's
first import."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdarts.runtime import set_cpu_threads_on_import

TESTS = Path(__file__).parent

#: Test modules whose tests need numpy only: a session of them must not load TensorFlow.
TF_FREE_MODULES = ("test_genotype.py", "test_atomic.py", "test_corpus.py",
                   "test_layering.py", "test_run_folder.py")

#: A pytest plugin that writes, at the end of the session, whether TensorFlow was loaded.
_TF_CHECK_PLUGIN = """\
import os, sys

def pytest_sessionfinish(session, exitstatus):
    with open(os.environ["TF_CHECK_OUT"], "w") as out:
        out.write(f"{'tensorflow' in sys.modules} {exitstatus}")
"""


def test_tensorflow_runs_with_one_thread_per_kernel():
    import tensorflow as tf

    assert tf.config.threading.get_intra_op_parallelism_threads() == 1
    assert tf.config.threading.get_inter_op_parallelism_threads() == 0


def test_tf_free_modules_run_without_loading_tensorflow(tmp_path):
    (tmp_path / "tf_check.py").write_text(_TF_CHECK_PLUGIN)
    out = tmp_path / "tf_check.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (
        str(tmp_path), os.environ.get("PYTHONPATH")))), "TF_CHECK_OUT": str(out)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider",
         "-p", "tf_check",
         *(str(TESTS / name) for name in TF_FREE_MODULES)],
        cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
    assert out.read_text() == "False 0", "a numpy-only test session loaded TensorFlow"


@pytest.mark.slow
def test_threads_are_set_at_the_first_tensorflow_import():
    """In a fresh process the test conftest leaves TensorFlow unloaded; whoever imports it
    first (here Keras) gets it with one intra-op thread."""
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "import conftest\n"
        "assert 'tensorflow' not in sys.modules, 'the conftest loaded TensorFlow'\n"
        "import keras\n"
        "import tensorflow as tf\n"
        "tf.constant(1.0) + 1.0\n"
        "t = tf.config.threading\n"
        "print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "0"]


def test_negative_counts_are_refused_before_the_import():
    with pytest.raises(ValueError, match="intra_op must be >= 0, got -1"):
        set_cpu_threads_on_import(intra_op=-1)
    with pytest.raises(ValueError, match="inter_op must be >= 0, got -2"):
        set_cpu_threads_on_import(inter_op=-2)
