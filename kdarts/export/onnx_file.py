"""The ONNX format: one file converted by tf2onnx, input ``images`` with a batch
dimension named ``batch``, the contract in its metadata and the input's doc string.
ONNX Runtime verifies it in a child process (:mod:`kdarts.inference`)."""

from __future__ import annotations

import json
import logging
from typing import Mapping

from kdarts.export.artifact import CONTRACT_KEY, INPUT_NAME, OUTPUT_NAME, quiet_tensorflow, \
    signature


def write(model, artifact: str, hwc, opset: int, contract: dict) -> None:
    """The ONNX file at ``artifact`` for images of size ``hwc`` in ``contract["dtype"]``."""
    import tensorflow as tf

    spec = signature(hwc, contract["dtype"])
    fn = tf.function(lambda images: {OUTPUT_NAME: model(images, training=False)},
                     input_signature=[spec])
    proto = convert(fn, [spec], opset)
    _name_batch_dim(proto)
    save(proto, artifact, contract, {INPUT_NAME: contract["description"]})


def convert(fn, specs, opset: int):
    """The ONNX proto of the ``tf.function`` ``fn`` traced for ``specs`` (tf2onnx, quiet)."""
    import tf2onnx

    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # tf2onnx logs its progress at INFO/WARNING
    try:
        with quiet_tensorflow():
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=opset)
    finally:
        logger.setLevel(level)
    return proto


def save(proto, artifact: str, contract: dict, doc_strings: Mapping[str, str]) -> None:
    """Save ``proto`` at ``artifact`` with the contract in its metadata (key
    ``kdarts.input``) and each input's ``doc_strings`` entry: any contract's ONNX file."""
    import onnx

    for value in proto.graph.input:
        value.doc_string = doc_strings.get(value.name, "")
    onnx.helper.set_model_props(proto, {CONTRACT_KEY: json.dumps(contract)})
    onnx.save(proto, artifact)


def _name_batch_dim(proto) -> None:
    """Name the dynamic batch dimension ``batch`` (tf2onnx leaves anonymous ``unk__N``)."""
    symbols = {v.type.tensor_type.shape.dim[0].dim_param
               for v in list(proto.graph.input) + list(proto.graph.output)
               if v.type.tensor_type.shape.dim}
    symbols.discard("")
    for value in list(proto.graph.input) + list(proto.graph.output) + list(
            proto.graph.value_info):
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param in symbols:
                d.dim_param = "batch"


__all__ = ["convert", "save", "write"]
