"""TensorFlow's C++ log lines stay off the screen of a kdarts user, in the Python API as in
the command line, unless TF_CPP_MIN_LOG_LEVEL=0 asks for them; the summary lines name
mixed precision.

Each test runs a fresh Python process (TensorFlow prints these lines while it loads, and
its float16 notice once per process), with TF_CPP_MIN_LOG_LEVEL unset as for a new user
and TF_ENABLE_ONEDNN_OPTS=1: oneDNN on, as TensorFlow has it by default on CPUs with
AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX, so its notices are printed on any x86 CPU.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: A line of TensorFlow's native logging: absl's pre-init notice, a glog-style line
#: (I/W/E/F, date, time), or the CPU-feature note's continuation.
TF_LOG_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|"
                         r"[IWEF]\d{4} \d\d:\d\d:\d\d|To enable the following instructions)",
                         re.MULTILINE)


def _python(code: str, tmp_path, timeout: float, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ.update(TF_ENABLE_ONEDNN_OPTS="1", PYTHONPATH=os.pathsep.join(
        [ROOT, os.environ.get("PYTHONPATH", "")]), **env)
    return subprocess.run([sys.executable, "-c", code], env=environ, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


API = """
import os
import kdarts
kdarts.set_cpu_threads(intra_op=1)
import keras  # after kdarts: TensorFlow is loaded already
net = kdarts.SearchNetwork(3, channels=4, layers=3, steps=1, multiplier=1,
                           primitives=("max_pool_3x3", "skip_connect"), dtype="mixed_float16")
net.build((2, 8, 8, 3))
print("logits", tuple(net(keras.ops.zeros((2, 8, 8, 3))).shape))
print("level", os.environ["TF_CPP_MIN_LOG_LEVEL"])
"""


@pytest.mark.slow
def test_python_api_prints_no_tensorflow_log_lines(tmp_path):
    """``import kdarts``, set the threads, build a float16 network: TensorFlow's load-time
    lines and its float16 notice ("oneDNN supports DT_HALF only on platforms with
    AVX-512") stay off stderr."""
    run = _python(API, tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "logits (2, 3)" in run.stdout
    assert "level 2" in run.stdout  # import kdarts's default
    assert not TF_LOG_LINE.search(run.stderr), run.stderr
    assert "DT_HALF" not in run.stderr


@pytest.mark.slow
def test_a_log_level_the_user_set_is_kept(tmp_path):
    """TF_CPP_MIN_LOG_LEVEL=0 (everything): kdarts keeps it and filters nothing."""
    run = _python("import os, kdarts\nkdarts.set_cpu_threads(intra_op=1)\n"
                  "print('level', os.environ['TF_CPP_MIN_LOG_LEVEL'])", tmp_path,
                  timeout=300, TF_CPP_MIN_LOG_LEVEL="0")
    assert run.returncode == 0, run.stderr
    assert "level 0" in run.stdout
    if sys.platform.startswith("linux") and os.uname().machine in ("x86_64", "AMD64"):
        assert "oneDNN custom operations are on" in run.stderr  # TensorFlow's INFO line


CLI = """
from kdarts.cli import main
tiny = ["--epochs", "1", "--layers", "3", "--channels", "4", "--max-examples", "64",
        "--batch-size", "4", "--mixed-precision"]
for args in (["search", "--steps", "1", "--primitives", "max_pool_3x3,skip_connect",
              "--out", "s"] + tiny,
             ["train", "--genotype", "s", "--no-auxiliary", "--out", "t"] + tiny):
    try:
        main(args, standalone_mode=False)
    except SystemExit as exit:
        assert not exit.code, exit
"""


@pytest.mark.slow
def test_cli_mixed_precision_says_so_and_prints_no_float16_notice(tmp_path):
    """``kdarts search --mixed-precision`` then ``kdarts train --mixed-precision`` (one
    process, tiny sizes): their summary lines say mixed precision, and TensorFlow's
    float16 notice is not printed."""
    run = _python(CLI, tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr
    summaries = [line for line in run.stdout.splitlines()
                 if line.startswith(("search: ", "train: "))]
    assert [s.split(":")[0] for s in summaries] == ["search", "train"], run.stdout
    assert all("mixed precision (float16)" in s for s in summaries), summaries
    assert "DT_HALF" not in run.stderr, run.stderr
    assert not TF_LOG_LINE.search(run.stderr), run.stderr
