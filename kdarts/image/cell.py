"""The evaluation network's cell, its drop-path regulariser and that regulariser's ramp.

An :class:`EvalCell` is one cell of a discrete architecture (a
:class:`~kdarts.image.genotype.Genotype`), as in DARTS's ``model.py``: two
preprocessed inputs, ``steps`` nodes each summing two ops, and the channel
concat of the genotype's ``concat`` nodes. BatchNorm is affine
(``make_op(..., affine=True, search=False)``).

Example:
    >>> import numpy as np
    >>> from kdarts.image.genotype import DARTS_V2
    >>> cell = EvalCell(DARTS_V2.normal, DARTS_V2.normal_concat, channels=8)
    >>> x = np.zeros((2, 16, 16, 24), "float32")
    >>> tuple(cell([x, x]).shape)
    (2, 16, 16, 32)
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers, ops

from kdarts.image.operations import FactorizedReduce, Identity, ReLUConvBN, make_op

_PKG = "kdarts"


@keras.saving.register_keras_serializable(package=_PKG)
class DropPath(layers.Layer):
    """Drops a whole sample's branch with probability ``rate`` (training only).

    A per-sample Bernoulli keep mask, with survivors divided by the keep
    probability so the expected output is unchanged (DARTS's ``drop_path``).
    ``rate`` is a call argument, not a constructor one, because the network
    ramps it during training from a variable. The mask's randomness comes from
    a :class:`keras.random.SeedGenerator`, so a ``seed`` makes it repeatable;
    its state is a variable, so it is checkpointed with the model.

    One instance may be called several times (once per op of a cell): each
    call draws a fresh mask.

    Example:
        >>> import numpy as np
        >>> drop = DropPath(seed=1)
        >>> x = np.ones((4, 2, 2, 3), "float32")
        >>> y = drop(x, rate=0.5, training=True)   # each sample all 0 or all 2
        >>> bool(np.array_equal(drop(x, rate=0.5), x))   # inference: identity
        True
    """

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, rate=0.0, training=None):
        if not training:
            return x
        keep = 1.0 - ops.cast(rate, x.dtype)
        # one draw per sample, broadcast over height, width and channels
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        noise = keras.random.uniform(shape, dtype=x.dtype, seed=self.seed_generator)
        mask = ops.cast(noise < keep, x.dtype)
        # rate == 0 gives keep == 1 and mask == 1 (uniform is in [0, 1)): exactly x
        return x * mask / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


class DropPathSchedule(keras.callbacks.Callback):
    """Ramp ``model.drop_path_prob`` linearly: ``max_prob * epoch / epochs``.

    Set at the start of each epoch (0-based, as DARTS's ``train.py``), so the
    first epoch trains without drop-path and the last at
    ``max_prob * (epochs - 1) / epochs``. Resuming with ``fit(initial_epoch=k)``
    continues the ramp. The value lives in the model's variable, so it is
    saved with checkpoints.

    :meth:`EvalNetwork.fit` adds one with the model's configured maximum and
    ``fit``'s ``epochs``; pass one yourself to ramp to another maximum or over
    another length.

    Example:
        >>> model.fit(ds, epochs=600, callbacks=[DropPathSchedule(0.3, epochs=600)])
    """

    def __init__(self, max_prob: float, epochs: int):
        super().__init__()
        if not 0.0 <= float(max_prob) < 1.0:
            raise ValueError(f"DropPathSchedule: max_prob must be in [0, 1), got {max_prob}")
        if int(epochs) < 1:
            raise ValueError(f"DropPathSchedule: epochs must be >= 1, got {epochs}")
        self.max_prob = float(max_prob)
        self.epochs = int(epochs)

    def value(self, epoch: int) -> float:
        """The probability used during ``epoch`` (0-based)."""
        return self.max_prob * min(epoch, self.epochs) / self.epochs

    def on_epoch_begin(self, epoch, logs=None):
        variable = getattr(self.model, "drop_path_prob", None)
        if not isinstance(variable, keras.Variable):
            raise TypeError(
                "DropPathSchedule: the model has no `drop_path_prob` variable "
                f"({type(self.model).__name__}); use it with kdarts.image.EvalNetwork"
            )
        variable.assign(self.value(epoch))


@keras.saving.register_keras_serializable(package=_PKG)
class EvalCell(layers.Layer):
    """One cell of the evaluation network, built from a genotype's gene list.

    Args:
        genes: ``(op_name, input_index)`` pairs, two per intermediate node
            (``genotype.normal`` or ``genotype.reduce``).
        concat: indices of the nodes concatenated into the output.
        channels: ``C``, the channels of every op in the cell.
        reduction: a reduction cell (ops reading the two input nodes use
            stride 2).
        reduction_prev: the previous cell reduced, so ``s0`` is twice as
            large as ``s1`` and is preprocessed by a ``FactorizedReduce``.
        seed: seed of the cell's drop-path randomness (None: random).

    Call arguments:
        inputs: ``[s0, s1]``, the outputs of the two previous cells.
        drop_prob: drop-path probability (scalar tensor or float), used
            only when ``training``. Identity ops are never dropped.
        training: training mode (BatchNorm statistics, drop-path).

    The output has ``len(concat) * channels`` channels.
    """

    def __init__(self, genes: Sequence[Sequence], concat: Sequence[int], channels: int,
                 reduction: bool = False, reduction_prev: bool = False,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.genes = [(str(op), int(index)) for op, index in genes]
        self.concat = [int(i) for i in concat]
        self.channels = int(channels)
        self.reduction = bool(reduction)
        self.reduction_prev = bool(reduction_prev)
        self.seed = seed
        if len(self.genes) % 2:
            raise ValueError(f"EvalCell: need two genes per node, got {len(self.genes)}")
        self.steps = len(self.genes) // 2

        c = self.channels
        self.preprocess0 = (FactorizedReduce(c, affine=True, name="preprocess0")
                            if self.reduction_prev
                            else ReLUConvBN(c, 1, 1, affine=True, name="preprocess0"))
        self.preprocess1 = ReLUConvBN(c, 1, 1, affine=True, name="preprocess1")
        self.cell_ops = [
            make_op(op, c, strides=2 if self.reduction and index < 2 else 1,
                    affine=True, search=False, layer_name=f"op{k}_{op}")
            for k, (op, index) in enumerate(self.genes)
        ]
        self.drop_path = DropPath(seed=seed, name="drop_path")

    def build(self, input_shape):
        s0_shape, s1_shape = (tuple(s) for s in input_shape)
        self.preprocess0.build(s0_shape)
        self.preprocess1.build(s1_shape)
        states = [self.preprocess0.compute_output_shape(s0_shape),
                  self.preprocess1.compute_output_shape(s1_shape)]
        for node in range(self.steps):
            out = None
            for k in (2 * node, 2 * node + 1):
                op, index = self.cell_ops[k], self.genes[k][1]
                op.build(states[index])
                out = op.compute_output_shape(states[index])
            states.append(out)

    def call(self, inputs, drop_prob=0.0, training=None):
        s0, s1 = inputs
        states = [self.preprocess0(s0, training=training),
                  self.preprocess1(s1, training=training)]
        for node in range(self.steps):
            total = None
            for k in (2 * node, 2 * node + 1):
                op = self.cell_ops[k]
                h = op(states[self.genes[k][1]], training=training)
                # DARTS drops every op but the identity (pools and
                # FactorizedReduce included)
                if training and not isinstance(op, Identity):
                    h = self.drop_path(h, rate=drop_prob, training=training)
                total = h if total is None else total + h
            states.append(total)
        return ops.concatenate([states[i] for i in self.concat], axis=-1)

    def compute_output_shape(self, input_shape):
        s1_shape = tuple(input_shape[1])
        out = len(self.concat) * self.channels
        if self.reduction:
            # "same" padding at stride 2: ceil(n / 2)
            half = lambda n: None if n is None else -(-n // 2)  # noqa: E731
            return (s1_shape[0], half(s1_shape[1]), half(s1_shape[2]), out)
        return s1_shape[:-1] + (out,)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "genes": [list(g) for g in self.genes],
            "concat": list(self.concat),
            "channels": self.channels,
            "reduction": self.reduction,
            "reduction_prev": self.reduction_prev,
            "seed": self.seed,
        }
