"""kdarts.set_cpu_threads: TensorFlow's thread pools, set before first use."""

import json
import subprocess
import sys

import pytest
import tensorflow as tf

from kdarts import set_cpu_threads


@pytest.mark.slow
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


def test_tf_config_is_checked_and_names_the_chief(monkeypatch):
    """Only the chief writes a multi-worker run's files; a bad TF_CONFIG gets a clear error."""
    from kdarts.runtime import is_chief, read_tf_config

    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    for cfg, chief in (({"cluster": cluster, "task": {"type": "worker", "index": 0}}, True),
                       ({"cluster": cluster, "task": {"type": "worker", "index": 1}}, False),
                       ({"cluster": {**cluster, "chief": ["127.0.0.1:3"]},
                         "task": {"type": "worker", "index": 0}}, False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps(cfg))
        assert is_chief("multiworker") is chief
        assert is_chief("mirrored") is True
    for raw, message in (("", "is not set"), ("{not json", "expected JSON"),
                         (json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                   "index": 2}}),
                          "task index 2 is not among the 2 workers")):
        monkeypatch.setenv("TF_CONFIG", raw)
        with pytest.raises(ValueError, match=message):
            read_tf_config()


def test_lean_graph_optimization_sets_the_call_options_and_restores_them():
    """The search step's calls carry the lean grappler fields; other calls are untouched."""
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.eager import context

    from kdarts.runtime import (LEAN_GRAPH_REWRITES, lean_graph_optimization,
                                with_lean_graph_optimization)

    def rewrites():
        serialized = context.context().function_call_options.config_proto_serialized
        return config_pb2.ConfigProto.FromString(serialized).graph_options.rewrite_options

    before = context.context().function_call_options.config_proto_serialized
    seen = []
    step = with_lean_graph_optimization(lambda x: seen.append(rewrites()) or x + 1)
    assert step(1) == 2
    with pytest.raises(ZeroDivisionError):  # restored on the way out of an error too
        with lean_graph_optimization():
            1 / 0
    assert context.context().function_call_options.config_proto_serialized == before
    assert {f: getattr(seen[0], f) for f in LEAN_GRAPH_REWRITES} == LEAN_GRAPH_REWRITES
    assert rewrites().meta_optimizer_iterations == 0  # TensorFlow's default outside
    # a tf.function runs under them, and the options keep a user's own grappler settings
    tf.config.optimizer.set_experimental_options({"constant_folding": False})
    try:
        with lean_graph_optimization():
            assert rewrites().constant_folding == rewrites().OFF
            assert float(tf.function(lambda x: x * 2.0)(tf.constant(3.0))) == 6.0
    finally:
        tf.config.optimizer.set_experimental_options({"constant_folding": True})
