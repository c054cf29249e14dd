"""kdarts.set_cpu_threads: TensorFlow's thread pools, set before first use."""

import subprocess
import sys

import pytest
import tensorflow as tf

from kdarts import set_cpu_threads


def test_threads_are_set_in_a_fresh_process():
    script = (
        "import kdarts, tensorflow as tf\n"
        "kdarts.set_cpu_threads(intra_op=1, inter_op=3)\n"
        "tf.constant(1.0) + 1.0  # TensorFlow starts with these pools\n"
        "t = tf.config.threading\n"
        "print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads())\n"
        "try:\n"
        "    kdarts.set_cpu_threads(intra_op=2)\n"
        "except RuntimeError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=True)
    first, second = done.stdout.splitlines()[:2]
    assert first == "1 3"
    assert "already running with intra_op=1, inter_op=3" in second
    assert "first thing in the process" in second


def test_bad_counts_and_late_calls_fail_clearly():
    with pytest.raises(ValueError, match="intra_op must be >= 0, got -1"):
        set_cpu_threads(intra_op=-1)
    tf.constant(1.0) + 1.0  # this process runs TensorFlow now
    current = tf.config.threading.get_intra_op_parallelism_threads()
    set_cpu_threads(intra_op=current,  # unchanged settings are accepted
                    inter_op=tf.config.threading.get_inter_op_parallelism_threads())
    with pytest.raises(RuntimeError, match="cannot change its threads now"):
        set_cpu_threads(intra_op=current + 1)
