"""DARTS's evaluation training recipe in Keras terms (docs/method.md §7).

* :class:`CoupledWeightDecaySGD`: SGD exactly as the reference's PyTorch
  ``torch.optim.SGD(momentum=0.9, weight_decay=3e-4)`` after
  ``clip_grad_norm(5)``: the L2 term ``wd·w`` is added to the *clipped*
  gradient of every trainable variable (BN scale/offset and biases included,
  as in the reference), before the momentum buffer. Keras's own
  ``weight_decay`` argument is decoupled (AdamW-style) and differs.
* :class:`EpochCosineDecay`: the learning rate annealed by cosine once per
  epoch, in the reference's call order (``CosineAnnealingLR.step()`` at the
  start of every epoch, so epoch ``e`` trains at ``η(e+1)``).
* :class:`~kdarts.image.cell.DropPathSchedule` (in :mod:`kdarts.image.cell`, with the
  drop-path it ramps): the probability ramp ``max_prob * epoch / epochs``;
  :meth:`EvalNetwork.fit` adds it by itself.
* :func:`compile_eval_network`: all of it plus sparse cross-entropy from
  logits and accuracy; the auxiliary loss is added by
  :meth:`EvalNetwork.compute_loss`.

Cutout is a data-pipeline step (:func:`kdarts.data.cutout`), not part of this.

Example:
    >>> model = EvalNetwork("DARTS_V2", num_classes=10)
    >>> callbacks = compile_eval_network(model, epochs=600, steps_per_epoch=521)
    >>> model.fit(train_ds, epochs=600, callbacks=callbacks)
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from kdarts.compat import variable_index
from kdarts.image.cell import DropPathSchedule
from kdarts.image.model import EvalNetwork
from kdarts.learning_rate import epoch_learning_rate

_PKG = "kdarts"


@keras.saving.register_keras_serializable(package=_PKG)
class CoupledWeightDecaySGD(keras.optimizers.SGD):
    """SGD with momentum and coupled L2 weight decay, PyTorch's semantics.

    Per variable, after Keras's gradient clipping (``global_clipnorm``):
    ``g ← g + l2·w``; ``v ← momentum·v + g``; ``w ← w − lr·v``
    (Nesterov: ``w ← w − lr·(g + momentum·v)``). The velocity is kept without
    the learning rate folded in, as PyTorch does, so a changing learning rate
    scales the whole step like in the reference.

    Args:
        learning_rate: float or :class:`keras.optimizers.schedules.LearningRateSchedule`.
        momentum: momentum factor in [0, 1].
        l2: the L2 coefficient added to the gradient (3e-4 in DARTS's evaluation).
        nesterov: Nesterov momentum.
        **kwargs: other :class:`keras.optimizers.SGD` arguments
            (``global_clipnorm``, ``name``, …); ``weight_decay`` (decoupled)
            is refused to avoid decaying twice.

    Example:
        >>> opt = CoupledWeightDecaySGD(0.025, momentum=0.9, l2=3e-4, global_clipnorm=5.0)
    """

    def __init__(self, learning_rate=0.01, momentum: float = 0.9, l2: float = 0.0,
                 nesterov: bool = False, **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError(
                "CoupledWeightDecaySGD: use `l2` (coupled, added to the gradient); "
                "Keras's decoupled `weight_decay` is not supported here"
            )
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, momentum=float(momentum),
                         nesterov=nesterov, **kwargs)
        if l2 < 0:
            raise ValueError(f"CoupledWeightDecaySGD: l2 must be >= 0, got {l2}")
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        learning_rate = ops.cast(learning_rate, dtype)
        gradient = tf.convert_to_tensor(ops.cast(gradient, dtype))  # dense, as the kernel takes
        if self.l2:
            gradient = gradient + ops.cast(self.l2, dtype) * variable
        if not self.momentum:
            self.assign_sub(variable, learning_rate * gradient)
            return
        # the rule above as one kernel per variable: TensorFlow's momentum is PyTorch's
        tf.raw_ops.ResourceApplyMomentum(
            var=variable.handle, accum=self.momentums[variable_index(self, variable)].handle,
            lr=learning_rate, grad=gradient, momentum=ops.cast(self.momentum, dtype),
            use_nesterov=bool(self.nesterov))

    def get_config(self) -> dict:
        return {**super().get_config(), "l2": self.l2}


@keras.saving.register_keras_serializable(package=_PKG)
class EpochCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing stepped once per epoch, in the reference's call order.

    ``lr(step) = η(min(step // steps_per_epoch + 1, epochs))`` with
    ``η(e) = minimum + (initial − minimum)·(1 + cos(π·e/epochs))/2``: constant
    within an epoch; epoch ``e`` (0-based) trains at ``η(e+1)`` because DARTS's
    ``train.py`` steps PyTorch's ``CosineAnnealingLR`` at the start of every
    epoch. With ``minimum=0`` the last epoch trains at 0, as the reference's does.

    Example:
        >>> schedule = EpochCosineDecay(0.025, epochs=600, steps_per_epoch=521)
        >>> round(float(schedule(0)), 8)   # η(1), not η(0) = 0.025
        0.02499983
    """

    def __init__(self, initial_learning_rate: float, epochs: int, steps_per_epoch: int,
                 minimum: float = 0.0, name: str = "EpochCosineDecay"):
        super().__init__()
        if int(epochs) < 1 or int(steps_per_epoch) < 1:
            raise ValueError(
                f"EpochCosineDecay: epochs and steps_per_epoch must be >= 1, got "
                f"{epochs} and {steps_per_epoch}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.epochs = int(epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.minimum = float(minimum)
        self.name = name

    def __call__(self, step):
        epoch = ops.floor(ops.cast(step, "float32") / self.steps_per_epoch)
        return epoch_learning_rate(epoch, self.epochs, self.initial_learning_rate,
                                   self.minimum)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "minimum": self.minimum,
            "name": self.name,
        }


def compile_eval_network(model, epochs: int, steps_per_epoch: int, lr: float = 0.025,
                         lr_min: float = 0.0, momentum: float = 0.9,
                         weight_decay: float = 3e-4, clip_norm: float | None = 5.0,
                         auxiliary_weight: float = 0.4, drop_path_prob: float | None = None,
                         jit_compile: bool = False, **compile_kwargs) -> list:
    """Compile an :class:`~kdarts.image.model.EvalNetwork` with DARTS's recipe; returns the callbacks for ``fit``.

    SGD (momentum, coupled L2 ``weight_decay`` on all trainable variables as
    the reference, global gradient-norm clipping ``clip_norm``), learning rate
    cosine-annealed per epoch from ``lr`` to ``lr_min``, sparse cross-entropy
    from logits plus ``auxiliary_weight`` × the auxiliary head's loss, and
    accuracy.

    Args:
        model: the network (its ``auxiliary_weight`` is set here).
        epochs, steps_per_epoch: the training length, for the schedules.
        drop_path_prob: maximum of the drop-path ramp; None keeps the
            model's configured ``drop_path_prob`` (the ramp ``EvalNetwork.fit``
            runs by itself).
        jit_compile: XLA; off by default: on a CPU, XLA's depthwise
            convolutions are slower than TensorFlow's own kernels.
        **compile_kwargs: passed to ``model.compile`` (e.g. ``steps_per_execution``).

    Returns:
        The callbacks to pass to ``model.fit``: empty, unless ``drop_path_prob``
        overrides the model's ramp maximum (then ``[DropPathSchedule(...)]``). The
        ramp itself belongs to the model, so a ``fit`` without them still ramps.

    Example:
        >>> callbacks = compile_eval_network(model, epochs=600, steps_per_epoch=521)
        >>> model.fit(train_ds, epochs=600, callbacks=callbacks)
    """
    if not isinstance(model, EvalNetwork):
        raise TypeError(
            f"compile_eval_network expects a kdarts.image.EvalNetwork, got {type(model).__name__}"
        )
    model.auxiliary_weight = float(auxiliary_weight)
    schedule = EpochCosineDecay(lr, epochs, steps_per_epoch, minimum=lr_min)
    optimizer = CoupledWeightDecaySGD(schedule, momentum=momentum, l2=weight_decay,
                                      global_clipnorm=clip_norm)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
        **compile_kwargs,
    )
    if model.built:
        # Creating the optimizer's variables now, not inside the first traced
        # train step, spares tf.function a second trace of the whole network
        # (a variable created while tracing forces a retrace): ~half the
        # start-up time of fit on CPU.
        model.optimizer.build(model.trainable_variables)  # a LossScaleOptimizer, if mixed
    if drop_path_prob is None:
        return []
    return [DropPathSchedule(drop_path_prob, epochs)]
