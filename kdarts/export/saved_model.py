"""The SavedModel format: ``serve``, ``serving_default`` (and ``serving_uint8`` for a model
that takes raw pixels), ``input_contract``, and the contract in ``assets.extra``."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from kdarts.export.artifact import CONTRACT_FILE, INPUT_NAME, OUTPUT_NAME, contract_text, \
    signature


def write(model, artifact: str, hwc, opset: int, contract: dict) -> None:
    """The SavedModel folder at ``artifact`` for images of size ``hwc`` (``opset`` unused)."""
    import keras
    import tensorflow as tf

    # No archive.track(model): the archive already tracks every variable the
    # endpoints use, and tracking the whole model also saves its variable
    # lists again, which slows saving for nothing.
    archive = keras.export.ExportArchive()
    serve = archive.add_endpoint(
        "serve", lambda images: model(images, training=False),
        input_signature=[signature(hwc)],
    )
    # serving_default names its output; it calls the traced `serve` rather
    # than tracing the network a second time
    archive.add_endpoint(
        "serving_default", lambda images: {OUTPUT_NAME: serve(images)},
        input_signature=[signature(hwc)],
    )
    if contract.get("normalized_inside"):
        archive.add_endpoint(
            "serving_uint8", lambda images: {OUTPUT_NAME: serve(tf.cast(images, tf.float32))},
            input_signature=[signature(hwc, "uint8")],
        )
    write_archive(archive, artifact, contract)


def write_archive(archive, artifact: str, contract: dict,
                  extra_files: Mapping[str, str] | None = None) -> None:
    """Write ``archive`` (a ``keras.export.ExportArchive`` holding its endpoints) with an
    ``input_contract`` endpoint, the contract and ``extra_files`` (name → text) in its
    ``assets.extra`` folder: any contract's SavedModel."""
    import tensorflow as tf

    text = contract_text(contract)
    archive.add_endpoint("input_contract", lambda: tf.constant(text), input_signature=[])
    archive.write_out(artifact, verbose=False)
    extra = os.path.join(artifact, "assets.extra")  # TF-Serving's folder for side files
    os.makedirs(extra, exist_ok=True)
    for name, content in {CONTRACT_FILE: text, **(extra_files or {})}.items():
        with open(os.path.join(extra, name), "w", encoding="utf-8") as f:
            f.write(content)


def run(artifact: str, samples: list[np.ndarray], raw: bool) -> list[list[np.ndarray]]:
    """Per sample batch, the logits of ``serve``, ``serving_default`` and (``raw``)
    ``serving_uint8``, loaded with ``tf.saved_model.load`` as a user would."""
    import tensorflow as tf

    from kdarts.inference import as_uint8

    loaded = tf.saved_model.load(artifact)
    signature_fn = loaded.signatures["serving_default"]
    outputs = []
    for x in samples:
        out = [np.asarray(loaded.serve(tf.constant(x))),
               np.asarray(signature_fn(**{INPUT_NAME: tf.constant(x)})[OUTPUT_NAME])]
        if raw:
            uint8 = loaded.signatures["serving_uint8"]
            out.append(np.asarray(uint8(**{INPUT_NAME: tf.constant(as_uint8(x))})[
                OUTPUT_NAME]))
        outputs.append(out)
    return outputs


__all__ = ["run", "write", "write_archive"]
