"""The export pipeline both contracts share, without TensorFlow: a failed write or a
refused verification leaves the destination as it was; side files arrive with the
artifact; ONNX Runtime's child process takes any contract's named feeds and outputs."""

from __future__ import annotations

import numpy as np
import pytest

from kdarts.export.artifact import ExportError
from kdarts.export.pipeline import check_tolerance, max_abs_difference, write_verified


def _write(text):
    def write(artifact):
        with open(artifact, "w", encoding="utf-8") as f:
            f.write(text)
    return write


def test_written_verified_then_moved_with_side_files(tmp_path):
    path, vocab = tmp_path / "lm.onnx", tmp_path / "lm.onnx.vocab.json"
    path.write_text("old")
    seen = []

    def verify(artifact):
        seen.append(open(artifact).read())
        assert not vocab.exists()  # side files follow the verified artifact
        return 0.5

    assert write_verified(str(path), "onnx", _write("new"), verify,
                          side_files={str(vocab): '{"tokens": []}'}) == 0.5
    assert seen == ["new"] and path.read_text() == "new"
    assert vocab.read_text() == '{"tokens": []}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm.onnx", "lm.onnx.vocab.json"]


def test_a_failure_leaves_the_destination_as_it_was(tmp_path):
    path, vocab = tmp_path / "net.onnx", tmp_path / "net.onnx.vocab.json"
    path.write_text("old")

    def broken(artifact):
        raise RuntimeError("converter\nfailed")

    def refuse(artifact):
        raise ExportError("export: differs")

    with pytest.raises(ExportError, match="writing the onnx artifact for .* failed: "
                                          "RuntimeError: converter failed"):
        write_verified(str(path), "onnx", broken)
    with pytest.raises(ExportError, match="differs"):
        write_verified(str(path), "onnx", _write("new"), refuse, side_files={str(vocab): "{}"})
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["net.onnx"]  # no temp folder left


def test_differences_and_tolerance():
    want = np.zeros((2, 3), np.float32)
    assert max_abs_difference([(want + 0.25, want), (want, want)], "x") == 0.25
    assert max_abs_difference([(want * np.nan, want)], "x") == float("inf")
    with pytest.raises(ExportError, match=r"x returns shape \(3,\) where the model returns"):
        max_abs_difference([(np.zeros(3), want)], "x")
    with pytest.raises(ExportError, match="differs from the Keras model by up to 0.25 "
                                          r"\(tolerance 0.1\)") as err:
        check_tolerance(0.25, 0.1, "the onnx artifact")
    assert err.value.max_abs_diff == 0.25


def test_named_feeds_in_a_child_onnx_runtime(tmp_path):
    """A two-input, two-output graph (a step form's shape): each feed's outputs by name."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from kdarts.inference import run_onnx_isolated

    graph = helper.make_graph(
        [helper.make_node("Cast", ["token"], ["t"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["hidden", "t"], ["new_hidden"]),
         helper.make_node("Neg", ["new_hidden"], ["log_probs"])], "step",
        [helper.make_tensor_value_info("token", TensorProto.INT32, ["batch", 1]),
         helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["batch", 2]),
         helper.make_tensor_value_info("new_hidden", TensorProto.FLOAT, ["batch", 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "step.onnx")
    feeds = [{"token": np.array([[n]], np.int32), "hidden": np.full((1, 2), 0.5, np.float32)}
             for n in (1, 2)]
    out = run_onnx_isolated(tmp_path / "step.onnx", feeds, ["log_probs", "new_hidden"])
    assert [[o.tolist() for o in outs] for outs in out] == [
        [[[-1.5, -1.5]], [[1.5, 1.5]]], [[[-2.5, -2.5]], [[2.5, 2.5]]]]
