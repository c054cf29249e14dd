"""The evaluation network: a discrete architecture trained from scratch.

:class:`EvalNetwork` is DARTS's ``NetworkCIFAR`` (``model.py``) in Keras 3,
NHWC: stem → ``layers`` cells (reducing at ``layers//3`` and
``2*layers//3``) → global average pool → Dense logits, with DARTS's
auxiliary head after cell ``2*layers//3`` and drop-path on every
non-identity op while training. ``imagenet_stem=True`` gives DARTS's
``NetworkImageNet`` instead: three stride-2 stem convs (:class:`ImageNetStem`)
and the ImageNet auxiliary head (:class:`AuxiliaryHeadImageNet`).

In inference (``training=False``: ``predict``, ``evaluate``, export) the
network returns logits only. In training with an auxiliary head it returns
``(logits, aux_logits)``, and :meth:`EvalNetwork.compute_loss` adds
``auxiliary_weight`` × the auxiliary cross-entropy, so ``compile``/``fit``
work unchanged and metrics see the main logits.

Example:
    >>> import numpy as np
    >>> from kdarts.image import EvalNetwork
    >>> model = EvalNetwork("DARTS_V2", num_classes=10, channels=8, layers=5)
    >>> x = np.zeros((2, 32, 32, 3), "float32")
    >>> model(x).shape
    TensorShape([2, 10])
    >>> logits, aux_logits = model(x, training=True)
    >>> model.parameter_count()  # trainable, auxiliary head excluded (as DARTS reports it)
    ...
"""

from __future__ import annotations

import os
from typing import Sequence

import keras
from keras import layers, ops

from kdarts.compat import SymbolicBuildFromElementSpec
from kdarts.geometry import IMAGENET_MIN_SIZE
from kdarts.image.cell import DropPathSchedule, EvalCell
from kdarts.image.genotype import Genotype, resolve_genotype
from kdarts.image.operations import batch_norm, symmetric_pad
from kdarts.image.replicas import ReplicatedTraining
from kdarts.ops import FanInUniform, own_dtype_policy, synchronize_batch_norms
from kdarts.parameters import count_parameters
from kdarts.preprocessing import Standardize, input_contract
from kdarts.runtime import LeanTrainFunction

_PKG = "kdarts"


@keras.saving.register_keras_serializable(package=_PKG)
class AuxiliaryHead(layers.Layer):
    """DARTS's CIFAR auxiliary classifier (docs/method.md §7), adapted to small maps.

    ReLU → avgpool 5×5 stride 3 valid → 1×1 conv 128 (no bias) → BN → ReLU →
    2×2 conv 768 valid (no bias) → BN → ReLU → flatten → Dense.

    DARTS assumes an 8×8 input (8 → 2 → 1). For smaller maps the pool size
    becomes ``min(5, H)`` and the conv kernel ``min(2, pooled size)``, so any
    map of at least 1×1 works (e.g. 2×2 from 8×8 digits); an 8×8 map gives
    exactly DARTS's head. Larger maps keep DARTS's sizes and flatten whatever
    spatial extent remains. The spatial size must therefore be static.

    Example:
        >>> import numpy as np
        >>> head = AuxiliaryHead(10)
        >>> head(np.zeros((2, 8, 8, 64), "float32")).shape
        (2, 10)
        >>> head.pool_size, head.kernel_size
        ((5, 5), (2, 2))
    """

    POOL, STRIDE, KERNEL = 5, 3, 2  # DARTS's sizes, for an 8x8 map
    HIDDEN, FEATURES = 128, 768
    FINAL_BN = True  # BN after the 2x2 conv

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.pool_size: tuple[int, int] | None = None
        self.kernel_size: tuple[int, int] | None = None
        self.conv1 = layers.Conv2D(self.HIDDEN, 1, use_bias=False,
                                   kernel_initializer=FanInUniform(), name="conv1")
        self.bn1 = batch_norm(True, name="bn1")
        self.bn2 = batch_norm(True, name="bn2") if self.FINAL_BN else None
        self.flatten = layers.Flatten(name="flatten")
        self.classifier = layers.Dense(self.num_classes, kernel_initializer=FanInUniform(),
                                       dtype="float32", name="classifier")

    def build(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        if height is None or width is None:
            raise ValueError(
                "AuxiliaryHead needs a static spatial size to choose its pool and "
                f"kernel sizes; got input shape {tuple(input_shape)}. Build the "
                "network with a fixed image size (e.g. (None, 32, 32, 3))."
            )
        self.pool_size = (min(self.POOL, height), min(self.POOL, width))
        pooled = [(n - p) // self.STRIDE + 1 for n, p in zip((height, width), self.pool_size)]
        self.kernel_size = (min(self.KERNEL, pooled[0]), min(self.KERNEL, pooled[1]))
        # the 2x2 conv's kernel depends on the map size, so it is made here
        self.conv2 = layers.Conv2D(self.FEATURES, self.kernel_size, use_bias=False,
                                   kernel_initializer=FanInUniform(), name="conv2")
        shape = (input_shape[0], pooled[0], pooled[1], input_shape[-1])
        self.conv1.build(shape)
        shape = shape[:-1] + (self.HIDDEN,)
        self.bn1.build(shape)
        self.conv2.build(shape)
        shape = self.conv2.compute_output_shape(shape)
        if self.bn2 is not None:
            self.bn2.build(shape)
        features = shape[1] * shape[2] * shape[3]
        # PyTorch's linear bias init U(±1/√in_features): known once the map size is
        self.classifier.bias_initializer = FanInUniform(features)
        self.classifier.build((shape[0], features))

    def call(self, x, training=None):
        # valid padding, so PyTorch's count_include_pad=False makes no difference
        x = ops.average_pool(ops.relu(x), self.pool_size, strides=self.STRIDE,
                             padding="valid")
        x = ops.relu(self.bn1(self.conv1(x), training=training))
        x = self.conv2(x)
        if self.bn2 is not None:
            x = self.bn2(x, training=training)
        return self.classifier(self.flatten(ops.relu(x)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package=_PKG)
class AuxiliaryHeadImageNet(AuxiliaryHead):
    """DARTS's ImageNet auxiliary classifier (``AuxiliaryHeadImageNet`` in ``model.py``).

    ReLU → avgpool 5×5 stride 2 valid → 1×1 conv 128 (no bias) → BN → ReLU →
    2×2 conv 768 valid (no bias) → ReLU → flatten → Dense. Unlike the CIFAR head
    there is no BN after the 768 conv: DARTS's code comments it out (commit
    28419ac, "comment out the last BN in the imagenet aux head", to match the
    paper's experiments, which ran without it). At 224×224 the head sees the
    7×7 map after the second reduction (7 → 2 → 1, so ``Linear(768)`` fits;
    DARTS's docstring says 14×14, which would not). Smaller maps shrink the pool
    and kernel as :class:`AuxiliaryHead` does (a 1×1 map works).

    Example:
        >>> import numpy as np
        >>> head = AuxiliaryHeadImageNet(10)
        >>> tuple(head(np.zeros((2, 7, 7, 64), "float32")).shape)
        (2, 10)
        >>> head.pool_size, head.kernel_size, head.bn2
        ((5, 5), (2, 2), None)
    """

    STRIDE = 2
    FINAL_BN = False


@keras.saving.register_keras_serializable(package=_PKG)
class ImageNetStem(layers.Layer):
    """DARTS's ``NetworkImageNet`` stems: three stride-2 3×3 convs; returns ``[s0, s1]``.

    ``stem0``: conv 3×3 stride 2 to C/2 (no bias) → BN → ReLU → conv 3×3 stride
    2 to C (no bias) → BN; ``stem1``: ReLU → conv 3×3 stride 2 to C (no bias) →
    BN, on ``stem0``'s output. The first cell reads ``s0 = stem0(x)`` (H/4) and
    ``s1 = stem1(s0)`` (H/8). The convs pad one pixel on every side, as
    PyTorch's ``padding=1`` (output ``ceil(n/2)``, pixel ``i`` centred on input
    pixel ``2i``, the grid of :class:`kdarts.image.operations.SepConv`).

    Example:
        >>> import numpy as np
        >>> s0, s1 = ImageNetStem(8)(np.zeros((2, 32, 32, 3), "float32"))
        >>> tuple(s0.shape), tuple(s1.shape)
        ((2, 8, 8, 8), (2, 4, 4, 8))
    """

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        if self.channels < 2:
            raise ValueError(f"ImageNetStem: channels must be >= 2 (its first conv has "
                             f"channels // 2), got {channels}")
        conv = lambda c, name: layers.Conv2D(  # noqa: E731
            c, 3, strides=2, padding="valid", use_bias=False,
            kernel_initializer=FanInUniform(), name=name)
        self.conv0 = conv(self.channels // 2, "stem0_conv0")
        self.bn0 = batch_norm(True, name="stem0_bn0")
        self.conv1 = conv(self.channels, "stem0_conv1")
        self.bn1 = batch_norm(True, name="stem0_bn1")
        self.conv2 = conv(self.channels, "stem1_conv")
        self.bn2 = batch_norm(True, name="stem1_bn")

    @staticmethod
    def _halve(shape, channels) -> tuple:
        half = lambda n: None if n is None else -(-n // 2)  # noqa: E731
        return (shape[0], half(shape[1]), half(shape[2]), channels)

    def build(self, input_shape):
        shape = tuple(input_shape)
        grow = lambda n: None if n is None else n + 2  # noqa: E731  (the padding)
        for conv, bn in ((self.conv0, self.bn0), (self.conv1, self.bn1),
                         (self.conv2, self.bn2)):
            conv.build((shape[0], grow(shape[1]), grow(shape[2]), shape[3]))
            shape = self._halve(shape, conv.filters)
            bn.build(shape)

    def _conv_bn(self, x, conv, bn, training):
        return bn(conv(symmetric_pad(x, 1)), training=training)

    def call(self, x, training=None):
        x = ops.relu(self._conv_bn(x, self.conv0, self.bn0, training))
        s0 = self._conv_bn(x, self.conv1, self.bn1, training)
        s1 = self._conv_bn(ops.relu(s0), self.conv2, self.bn2, training)
        return [s0, s1]

    def compute_output_shape(self, input_shape):
        s0 = self._halve(self._halve(tuple(input_shape), 0), self.channels)
        return [s0, self._halve(s0, self.channels)]

    def get_config(self) -> dict:
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package=_PKG)
class EvalNetwork(SymbolicBuildFromElementSpec, LeanTrainFunction, ReplicatedTraining,
                  keras.Model):
    """DARTS's evaluation network (``NetworkCIFAR``, or ``NetworkImageNet``) for a genotype.

    Args:
        genotype: a :class:`~kdarts.image.genotype.Genotype`, its dict (as in the
            saved config), a preset name (``"DARTS_V2"``) or a genotype JSON path.
        num_classes: number of output logits.
        channels: ``C``, the initial cell channels (36 in DARTS).
        layers: number of cells (20 in DARTS).
        auxiliary: attach the auxiliary head after cell ``2*layers//3``
            (used in training only).
        drop_path_prob: maximum of the drop-path ramp (DARTS's
            ``--drop_path_prob``): :meth:`fit` sets ``model.drop_path_prob`` to
            ``drop_path_prob * epoch / epochs`` at the start of every epoch, so
            training starts without drop-path, as the reference's does.
        stem_multiplier: the stem has ``stem_multiplier * C`` channels (not
            used with ``imagenet_stem``).
        auxiliary_weight: weight of the auxiliary loss (0.4 in DARTS); read
            when the train step is traced, so set it before ``compile``.
        seed: seed of the drop-path randomness (None: random).
        mean, std: per-channel statistics of the training images on the [0, 1]
            scale (``DatasetInfo.mean``/``.std``). Given, the network's first
            layer normalises, so it takes raw pixels (0–255, float32 or uint8)
            in training, inference and every export. None: inputs are used as
            they come (already normalised by the caller).
        dataset: the training data's name (a TFDS name, or the file name of a
            folder or ``.npz``), recorded in :meth:`input_contract` (with how to
            scale the digits from scikit-learn's 0..16); None: not recorded. Only
            with ``mean``/``std``.
        class_names: the name of each class (logit ``i`` is ``class_names[i]``),
            recorded in :meth:`input_contract`; None: not recorded. Only with
            ``mean``/``std``.
        imagenet_stem: DARTS's ``NetworkImageNet``: the :class:`ImageNetStem`
            (three stride-2 convs, so the first cell sees H/4 and H/8 maps and
            preprocesses ``s0`` with a ``FactorizedReduce``) and the
            :class:`AuxiliaryHeadImageNet`; cells, reductions, global average
            pooling and classifier as without it. Images need a side of at
            least 32 (:data:`kdarts.geometry.IMAGENET_MIN_SIZE`). DARTS uses
            C=48, 14 layers at 224×224.
        sync_batch_norm: under a ``tf.distribute`` strategy, every BN normalises with
            (and averages) the statistics of the global batch, as one device would.
        dtype: Keras's ``dtype``; ``"mixed_float16"`` computes in float16 with float32
            variables, BN statistics and logits (Keras adds loss scaling in ``compile``).

    With several replicas :meth:`train_step` sums the gradients over them before the
    optimizer's ``global_clipnorm`` clips them, so a step is one device's on the global
    batch (drop-path masks aside: each replica draws its own).

    Attributes:
        drop_path_prob: non-trainable scalar variable holding the current
            drop-path probability (checkpointed and saved with the model); 0
            until ``fit`` ramps it.
        standardize (None without mean/std), stem_conv and stem_bn (or stem, an
        :class:`ImageNetStem`, with ``imagenet_stem``), cells, auxiliary_head (None
        if not auxiliary), global_pool, classifier: the sublayers.

    Example:
        >>> model = EvalNetwork(DARTS_V2, num_classes=10)   # C=36, 20 layers
        >>> model.build((None, 32, 32, 3))
        >>> model.parameter_count(), model.parameter_count(include_auxiliary=True)
        (3349342, 3825768)
    """

    @own_dtype_policy
    def __init__(self, genotype: Genotype | dict | str | os.PathLike, num_classes: int,
                 channels: int = 36, layers: int = 20, auxiliary: bool = True,
                 drop_path_prob: float = 0.2, stem_multiplier: int = 3,
                 auxiliary_weight: float = 0.4, seed: int | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 imagenet_stem: bool = False, sync_batch_norm: bool = False,
                 dataset: str | None = None, class_names: Sequence[str] | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(genotype, dict):
            genotype = Genotype.from_dict(genotype)
        self.genotype = resolve_genotype(genotype)
        if int(layers) < 1 or int(channels) < 1 or int(num_classes) < 1:
            raise ValueError(
                f"EvalNetwork: layers, channels and num_classes must be >= 1; got "
                f"layers={layers}, channels={channels}, num_classes={num_classes}"
            )
        if not 0.0 <= float(drop_path_prob) < 1.0:
            raise ValueError(f"EvalNetwork: drop_path_prob must be in [0, 1), got {drop_path_prob}")
        self.num_classes = int(num_classes)
        self.channels = int(channels)
        self.num_layers = int(layers)
        self.auxiliary = bool(auxiliary)
        self.initial_drop_path_prob = float(drop_path_prob)
        self.stem_multiplier = int(stem_multiplier)
        self.auxiliary_weight = float(auxiliary_weight)
        self.seed = seed
        self.imagenet_stem = bool(imagenet_stem)
        self.sync_batch_norm = bool(sync_batch_norm)
        if self.imagenet_stem and self.channels < 2:
            raise ValueError(f"EvalNetwork: imagenet_stem needs channels >= 2, got {channels}")
        self.reduction_indices = (self.num_layers // 3, 2 * self.num_layers // 3)
        self.auxiliary_index = 2 * self.num_layers // 3

        # a variable (not a Python float) so the traced train step reads the
        # current value and checkpoints keep it; the ramp starts at 0
        self.drop_path_prob = self.add_weight(
            shape=(), dtype="float32", trainable=False, name="drop_path_prob",
            initializer="zeros",
        )

        if (mean is None) != (std is None):
            raise ValueError("EvalNetwork: pass both mean and std (or neither)")
        self.standardize = (None if mean is None
                            else Standardize(mean, std, dataset=dataset,
                                             class_names=class_names, name="standardize"))

        self._make_stem()
        self.cells = self._make_cells(seed)
        head = AuxiliaryHeadImageNet if self.imagenet_stem else AuxiliaryHead
        self.auxiliary_head = (head(self.num_classes, name="auxiliary_head")
                               if self.auxiliary else None)
        self.global_pool = keras.layers.GlobalAveragePooling2D(name="global_pool")
        features = len(self.cells[-1].concat) * self.cells[-1].channels
        # float32 logits under mixed precision: the loss and its scaling need the range
        self.classifier = keras.layers.Dense(self.num_classes, kernel_initializer=FanInUniform(),
                                             bias_initializer=FanInUniform(features),
                                             dtype="float32", name="classifier")
        if self.sync_batch_norm:
            synchronize_batch_norms(self)

    def _make_stem(self) -> None:
        """The stem: DARTS's conv + BN at ``stem_multiplier * C``, or the ImageNet stem."""
        if self.imagenet_stem:
            # NetworkImageNet: s0 = stem0(x) is twice s1 = stem1(s0), so the first
            # cell starts with reduction_prev=True
            self.stem = ImageNetStem(self.channels, name="stem")
        else:
            stem_channels = self.stem_multiplier * self.channels
            self.stem_conv = keras.layers.Conv2D(stem_channels, 3, padding="same",
                                                 use_bias=False,
                                                 kernel_initializer=FanInUniform(),
                                                 name="stem_conv")
            self.stem_bn = batch_norm(True, name="stem_bn")

    def _make_cells(self, seed: int | None) -> list:
        """The ``layers`` cells, reducing (channels doubled) at :attr:`reduction_indices`;
        each cell's drop-path seed is ``seed + i``."""
        g = self.genotype
        c = self.channels
        reduction_prev = self.imagenet_stem
        cells = []
        for i in range(self.num_layers):
            reduction = i in self.reduction_indices
            if reduction:
                c *= 2
            cells.append(EvalCell(
                g.reduce if reduction else g.normal,
                g.reduce_concat if reduction else g.normal_concat,
                c, reduction=reduction, reduction_prev=reduction_prev,
                seed=None if seed is None else int(seed) + i, name=f"cell_{i}",
            ))
            reduction_prev = reduction
        return cells

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 4:
            raise ValueError(f"EvalNetwork expects NHWC images, got input shape {shape}")
        if self.standardize is not None:
            self.standardize.build(shape)
        if self.imagenet_stem:
            if any(n is not None and n < IMAGENET_MIN_SIZE for n in shape[1:3]):
                raise ValueError(
                    f"EvalNetwork: imagenet_stem needs images of at least "
                    f"{IMAGENET_MIN_SIZE}x{IMAGENET_MIN_SIZE} (three stride-2 stem convs, "
                    f"then two reductions); got {shape[1]}x{shape[2]}")
            self.stem.build(shape)
            s0, s1 = self.stem.compute_output_shape(shape)
        else:
            self.stem_conv.build(shape)
            shape = self.stem_conv.compute_output_shape(shape)
            self.stem_bn.build(shape)
            s0 = s1 = shape
        for i, cell in enumerate(self.cells):
            cell.build([s0, s1])
            s0, s1 = s1, cell.compute_output_shape([s0, s1])
            if i == self.auxiliary_index and self.auxiliary_head is not None:
                # built now, not at its first (training) call, so inference-only
                # use still creates, saves and loads every weight
                self.auxiliary_head.build(s1)
        self.classifier.build((s1[0], s1[-1]))

    def call(self, inputs, training=None):
        if self.standardize is not None:
            inputs = self.standardize(inputs)
        if self.imagenet_stem:
            s0, s1 = self.stem(inputs, training=training)
        else:
            s0 = s1 = self.stem_bn(self.stem_conv(inputs), training=training)
        # read only when training, so inference graphs (exports) do not
        # capture the variable
        drop_prob = ops.convert_to_tensor(self.drop_path_prob) if training else 0.0
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell([s0, s1], drop_prob=drop_prob, training=training)
            if training and i == self.auxiliary_index and self.auxiliary_head is not None:
                aux_logits = self.auxiliary_head(s1, training=training)
        logits = self.classifier(self.global_pool(s1))
        if aux_logits is not None:
            return logits, aux_logits
        return logits

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    # -- training: the drop-path ramp, the auxiliary loss, metrics on the main logits --

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            **kwargs):
        """Keras ``fit``, with the model's drop-path ramp (DARTS's ``train.py``).

        At the start of every epoch ``drop_path_prob`` is set to
        ``max · epoch / epochs`` (0-based epoch, ``max`` the configured
        ``drop_path_prob``) by a :class:`~kdarts.image.DropPathSchedule` added here,
        so a plain ``fit`` ramps from 0 and ``fit(initial_epoch=k)`` resumes the
        ramp. A ``DropPathSchedule`` among ``callbacks`` replaces it. ``shuffle``
        defaults to False: kdarts's datasets shuffle themselves (reproducibly), and
        Keras would only warn that it ignores ``shuffle`` for them.
        """
        kwargs.setdefault("shuffle", False)
        callbacks = [] if callbacks is None else list(callbacks)
        if not any(isinstance(c, DropPathSchedule) for c in callbacks):
            callbacks.append(DropPathSchedule(self.initial_drop_path_prob, epochs))
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                           callbacks=callbacks, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss on the logits + ``auxiliary_weight`` × aux cross-entropy.

        The auxiliary term is cross-entropy from logits (sparse, or categorical
        when ``y`` is one-hot), as in DARTS, whatever loss was compiled.
        """
        aux_logits = None
        if isinstance(y_pred, (tuple, list)):
            y_pred, aux_logits = y_pred
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                    training=training)
        if aux_logits is not None and self.auxiliary_weight:
            loss = loss + self.auxiliary_weight * self.auxiliary_loss(y, aux_logits,
                                                                      sample_weight)
        return loss

    def auxiliary_loss(self, y, aux_logits, sample_weight=None):
        """Mean cross-entropy of the auxiliary logits (unweighted by ``auxiliary_weight``)."""
        one_hot = (len(y.shape) == len(aux_logits.shape) and y.shape[-1] == self.num_classes
                   and self.num_classes > 1)
        loss_fn = (keras.losses.CategoricalCrossentropy(from_logits=True) if one_hot
                   else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return loss_fn(y, aux_logits, sample_weight=sample_weight)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, (tuple, list)):
            y_pred = y_pred[0]
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    # -- bookkeeping --

    def input_contract(self) -> dict:
        """What the inference graph takes (shape, dtype, pixel range, statistics).

        Written to ``metrics.json`` by ``kdarts train`` and to every export's metadata.
        The network must be built.
        """
        if not self.built:
            raise ValueError("input_contract: build the network first (model.build(shape))")
        shape = (self.get_build_config() or {}).get("input_shape") or (None,) * 4
        return input_contract(tuple(shape)[1:], self.standardize)

    def parameter_count(self, include_auxiliary: bool = False) -> int:
        """Trainable parameters; without the auxiliary head by default.

        DARTS's ``count_parameters_in_MB`` leaves out the auxiliary head, so
        the default is the figure papers report (3.3M for DARTS_V2). The
        network must be built.
        """
        if not self.built:
            raise ValueError("parameter_count: build the network first (model.build(shape))")
        skip = []
        if not include_auxiliary and self.auxiliary_head is not None:
            skip = self.auxiliary_head.trainable_weights
        return count_parameters(self, exclude=skip)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "genotype": self.genotype.to_dict(),
            "num_classes": self.num_classes,
            "channels": self.channels,
            "layers": self.num_layers,
            "auxiliary": self.auxiliary,
            "drop_path_prob": self.initial_drop_path_prob,
            "stem_multiplier": self.stem_multiplier,
            "auxiliary_weight": self.auxiliary_weight,
            "seed": self.seed,
            "mean": None if self.standardize is None else list(self.standardize.mean),
            "std": None if self.standardize is None else list(self.standardize.std),
            "dataset": None if self.standardize is None else self.standardize.dataset,
            "class_names": (None if self.standardize is None
                            or self.standardize.class_names is None
                            else list(self.standardize.class_names)),
            "imagenet_stem": self.imagenet_stem,
            "sync_batch_norm": self.sync_batch_norm,
        }
