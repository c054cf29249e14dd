"""The ``.keras`` format: checking and loading an archive, writing one, running it as a
user would; and the float32 copy every export starts from."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from kdarts.export.artifact import ModelLoadError, image_shape


def check_model_file(path: str | os.PathLike) -> None:
    """The checks :func:`load_model` makes before loading, without TensorFlow.

    Raises:
        ModelLoadError: the path is missing, is a folder, is not a ``.keras``
            file, or is not a zip archive (as every ``.keras`` file is).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelLoadError(f"{path}: no such file (expected a .keras model archive)")
    if os.path.isdir(path):
        hint = (" (it looks like a SavedModel: load it with tf.saved_model.load)"
                if os.path.exists(os.path.join(path, "saved_model.pb")) else "")
        raise ModelLoadError(f"{path}: is a folder, not a .keras model archive{hint}")
    if not path.endswith(".keras"):
        raise ModelLoadError(f"{path}: not a .keras file (Keras 3 archives end in .keras)")
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(
            f"{path}: not a valid Keras archive (a .keras file is a zip archive; this one "
            "is not, so it is truncated, corrupted or something else renamed)"
        )


def load_model(path: str | os.PathLike, compile: bool = False):
    """Load a ``.keras`` archive written by kdarts (or :func:`~kdarts.image.export.export_model`).

    kdarts's layers are registered on import, so no ``custom_objects`` are
    needed. ``compile=False`` (default) skips restoring the optimizer and
    loss: enough for inference and export.

    Raises:
        ModelLoadError: the path is missing, is a folder, is not a ``.keras``
            file, or is not a valid Keras archive; the message names the
            file and the reason.

    Example:
        >>> model = load_model("runs/eval/model.keras")
    """
    path = os.fspath(path)
    check_model_file(path)
    register_kdarts_layers()
    import keras

    try:
        return keras.models.load_model(path, compile=compile)
    except Exception as err:  # noqa: BLE001 - report any loader failure the same way
        raise ModelLoadError(
            f"{path}: could not load the Keras archive: {type(err).__name__}: {err}"
        ) from err


def register_kdarts_layers() -> None:
    """Import the modules whose layers a kdarts archive may contain (registration): those
    :data:`kdarts.keras_registry.SERIALIZABLE_MODULES` names, the image networks' and the
    language model's (named there, so export imports no layer above it)."""
    from kdarts.keras_registry import register_all

    register_all()


def float32_copy(model):
    """``model`` computing in float32: a mixed-precision model (float16 compute, float32
    variables) is rebuilt with the float32 policy and given the same weights; any other
    model is returned as it is.

    Every export runs this first, so artifacts take and return float32 (or uint8) and
    compute in float32 whatever precision the model trained in: every runtime runs them,
    and their logits are the trained model's up to float16 rounding.
    """
    import keras

    from kdarts.ops import dtype_policy_scope, is_mixed

    if not is_mixed(model):
        return model

    def float32(config):
        """The serialized model with every dtype policy float32 (names and other
        strings untouched)."""
        if isinstance(config, list):
            return [float32(v) for v in config]
        if not isinstance(config, dict):
            return config
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {k: "float32" if k == "dtype" and str(v).startswith("mixed_") else float32(v)
                for k, v in config.items()}

    config = float32(keras.saving.serialize_keras_object(model))
    with dtype_policy_scope("float32"):
        copy = keras.saving.deserialize_keras_object(config)
    if not copy.built:
        copy.build((None,) + image_shape(model))
    copy.set_weights(model.get_weights())
    return copy


def write(model, artifact: str, hwc, opset: int, contract: dict) -> None:
    """The whole model as a ``.keras`` archive (``model.save``; ``hwc`` and ``opset`` unused:
    the archive records its own input shape, and the contract is in its config)."""
    model.save(artifact)


def run(artifact: str, samples: list[np.ndarray], raw: bool) -> list[list[np.ndarray]]:
    """Per sample batch, the reloaded archive's logits for float32 images and (``raw``:
    the model normalises raw pixels) for the same images as uint8."""
    from kdarts.inference import as_uint8

    loaded = load_model(artifact)
    return [[np.asarray(loaded(x, training=False))]
            + ([np.asarray(loaded(as_uint8(x), training=False))] if raw else [])
            for x in samples]


__all__ = ["check_model_file", "float32_copy", "load_model", "register_kdarts_layers", "run",
           "write"]
