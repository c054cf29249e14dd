"""The networks' first layer: raw pixels in, the normalised images the cells learn on.

kdarts's pipelines serve raw pixels and every network built by kdarts
normalises inside, so a trained ``.keras`` model and every export take images
as people have them: pixel values 0–255, float32 or uint8, with the dataset's
channel count. :func:`input_contract` states that contract in the form written
to ``metrics.json`` and to every exported artifact's metadata.

Example:
    >>> import numpy as np
    >>> layer = Standardize(mean=[0.5], std=[0.25])
    >>> layer(np.array([[[[255]]]], np.uint8)).numpy().ravel()   # (1 - 0.5) / 0.25
    array([2.], dtype=float32)
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from kdarts.data.catalog import PIXEL_RANGE, SOURCE_SCALING, STATS_UNIT


@keras.saving.register_keras_serializable(package="kdarts")
class Standardize(keras.layers.Layer):
    """``(x / 255 − mean) / std`` per channel, for images of any numeric dtype.

    Args:
        mean: per-channel mean of the training images on the [0, 1] scale
            (pixel/255, ``DatasetInfo.mean``).
        std: per-channel standard deviation on the same scale (``DatasetInfo.std``).
        dataset: the name of the data the statistics come from (a TFDS name, or a
            folder's or ``.npz``'s file name), recorded in the input contract;
            None if unknown (models saved without it).
        class_names: the name of each output (logit ``i`` is ``class_names[i]``),
            recorded in the input contract; None if the data names none.

    Inputs are cast to float32 first, so uint8 images and float32 pixel values
    0–255 give the same result. The statistics are constants of the layer's
    config (no weights): exports fold them into the graph.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 dataset: str | None = None, class_names: Sequence[str] | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.dataset = None if dataset is None else str(dataset)
        self.class_names = None if not class_names else tuple(str(c) for c in class_names)
        if not self.mean or len(self.mean) != len(self.std):
            raise ValueError(f"Standardize: need one mean and one std per channel, got "
                             f"{len(self.mean)} means and {len(self.std)} stds")
        if min(self.std) <= 0:
            raise ValueError(f"Standardize: std must be > 0, got {self.std}")
        scale = PIXEL_RANGE[1] - PIXEL_RANGE[0]
        # x·a + b with a = 1/(255·std), b = −mean/std: one multiply-add per pixel
        self._a = np.array([1.0 / (scale * s) for s in self.std], "float32")
        self._b = np.array([-m / s for m, s in zip(self.mean, self.std)], "float32")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def build(self, input_shape):
        self._check_channels(input_shape)

    def _check_channels(self, shape) -> None:
        # broadcasting would silently turn 1-channel images into 3-channel ones
        if shape[-1] is not None and int(shape[-1]) != self.channels:
            raise ValueError(
                f"the model takes images with {self.channels} channel(s) (the training "
                f"data's), got input shape {tuple(shape)}")

    def call(self, x):
        self._check_channels(x.shape)
        return ops.cast(x, "float32") * self._a + self._b

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, dtype="float32")

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": list(self.mean), "std": list(self.std),
                "dataset": self.dataset,
                "class_names": None if self.class_names is None else list(self.class_names)}


def input_contract(image_shape: Sequence[int | None],
                   standardize: Standardize | None) -> dict:
    """What a model takes, as recorded in ``metrics.json`` and export metadata.

    Args:
        image_shape: ``(H, W, C)`` the model was built for.
        standardize: the model's first layer, or None if it normalises nothing
            (then it takes whatever it was trained on, e.g. a user's own normalisation).

    The images go in at ``pixel_range`` (0–255); ``mean`` and ``std`` are in the unit
    ``stats_unit`` names, pixel/255 (the model computes ``(x / 255 - mean) / std``).
    ``dataset`` names the training data when the model knows it, and
    ``source_scaling`` (only for a dataset whose usual source stores other values,
    such as scikit-learn's 0..16 digits) says how to bring those to 0–255.

    Example:
        >>> input_contract((8, 8, 3), Standardize([0.5] * 3, [0.25] * 3))["pixel_range"]
        [0.0, 255.0]
    """
    shape = [None] + [None if d is None else int(d) for d in image_shape]
    if standardize is None:
        return {"layout": "NHWC", "shape": shape, "dtype": "float32",
                "pixel_range": None, "normalized_inside": False,
                "description": "float32 NHWC images, preprocessed as the model was trained"}
    description = (f"raw images, NHWC with {standardize.channels} channel(s), pixel values "
                   "0-255 (float32 or uint8); the model normalises with the training "
                   "split's per-channel mean/std itself (given on the 0-1 scale, "
                   f"{STATS_UNIT})")
    contract = {
        "layout": "NHWC", "shape": shape, "dtype": "float32 or uint8",
        "pixel_range": list(PIXEL_RANGE), "normalized_inside": True,
        "mean": list(standardize.mean), "std": list(standardize.std),
        "stats_unit": STATS_UNIT, "dataset": standardize.dataset,
    }
    if standardize.class_names:
        contract["class_names"] = list(standardize.class_names)
    scaling = SOURCE_SCALING.get(standardize.dataset)
    if scaling:
        contract["source_scaling"] = scaling
        description += f"; {standardize.dataset}: {scaling}"
    contract["description"] = description
    return contract


__all__ = ["Standardize", "input_contract"]
