"""The search network (docs/method.md §1–2) of the image space.

``SearchNetwork`` is a ``keras.Model``: ``compile(...)`` then ``fit(...)`` runs
the whole search (§4–6), one compiled ``train_step`` per minibatch, through
:class:`~kdarts.search.alternating.AlternatingSearch`, which holds the step; this
module holds what is the image space's own: the supernet and its architecture view,
its gradients (:class:`ImageGradients`) and its data pairing (:class:`ImageStreams`).
Every piece of search state is a variable on the model, so
``ModelCheckpoint``/``save_weights`` capture it and a resumed search continues exactly.

Example:
    >>> import kdarts, tensorflow as tf
    >>> model = kdarts.SearchNetwork(num_classes=10, channels=4, layers=3,
    ...                              activation="crb")
    >>> model.compile(search_data=search_ds)          # doctest: +SKIP
    >>> model.fit(weight_ds, epochs=2, steps_per_epoch=20)  # doctest: +SKIP
    >>> print(model.genotype())                       # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from kdarts.compat import built_input_shape, learning_rate_schedule, loss_tracker, \
    sublayers, variable_index
from kdarts.image.edge import FanOut
from kdarts.image.genotype import CRB_PRIMITIVES, PRIMITIVES, Genotype, discretize, num_edges
from kdarts.image.operations import batch_norm, check_primitives
from kdarts.image.search_cell import SearchCell, fanout_rows
from kdarts.learning_rate import epoch_learning_rate
from kdarts.ops import BatchNormalization, FanInUniform, own_dtype_policy, synchronize_batch_norms
from kdarts.optimizers import FusedSGD
from kdarts.parameters import count_parameters
from kdarts.preprocessing import Standardize
from kdarts.search.activations import AlphaInitializer, activate, check_activation
from kdarts.search.alternating import AlternatingSearch, FitPlan, loss_scale, \
    sum_over_replicas
from kdarts.search.budget_dual import check_dual_lr
from kdarts.search.pruning import auto_mode, kept_edges
from kdarts.search.regularizers import Architecture, add_admm_state
from kdarts.search.schedules import add_schedule_state


class ImageGradients:
    """Mixin of :class:`SearchNetwork`: the image space's gradients and the updates they
    make (the α step, first order or DARTS's unrolled one; the weight step with FI, its
    clip and the cosine learning rate)."""

    def _gradients(self, x, y, reduce: str = "both", scale=None):
        """``(loss, logits, ∇α, ∇w)`` of the CE on one batch, traced once.

        The α step and the weight step (and the unrolled α gradient) all call this one
        ``tf.function``: the network is traced once per search instead of once per use,
        and the runtime drops the gradients a caller does not use once it inlines it.

        Under a ``tf.distribute`` strategy each replica's loss is its shard's mean ÷ R
        (Keras scales it), and the gradients named by ``reduce`` (``"arch"``,
        ``"weights"`` or ``"both"``) are summed over the replicas: those of the global
        batch, on every replica, as one device would compute them.

        ``scale`` (mixed precision): the loss is multiplied by it before the float16
        backward pass, so small gradients do not underflow, and the gradients divided by
        it after; a power of two, so both are exact. Overflow leaves inf/NaN gradients,
        which the :class:`keras.optimizers.LossScaleOptimizer` skips.
        """
        key = getattr(self, "_kept_key", None)  # the pruned ops left out of this trace
        if getattr(self, "_gradient_fn", None) is None or self._gradient_fn_key != key:
            self._gradient_fn_key = key
            variables = self.arch_variables + self.weight_variables

            @tf.function(autograph=False, reduce_retracing=True)
            def gradient_fn(x, y, scale):
                with tf.GradientTape() as tape:
                    logits = self(x, training=True)
                    loss = self.compute_loss(x=x, y=y, y_pred=logits, training=True)
                    scaled = loss if scale is None else loss * scale
                # an op left out of the trace (pruned on every edge) has no gradient: 0
                grads = [tf.zeros(v.shape, v.dtype) if g is None else tf.convert_to_tensor(g)
                         for g, v in zip(tape.gradient(scaled, variables), variables)]
                if scale is not None:
                    grads = [g / scale for g in grads]
                return loss, logits, grads

            self._gradient_fn = gradient_fn
        fn = self._gradient_fn
        if self.sync_batch_norm and tf.distribute.get_strategy().num_replicas_in_sync > 1:
            # synchronised BN all-reduces in the forward pass; MirroredStrategy cannot do
            # that inside a nested tf.function, so the network is traced at each use
            fn = fn.python_function
        loss, logits, grads = fn(x, y, scale)
        n = len(self.arch_variables)
        arch, weights = grads[:n], grads[n:]
        if reduce in ("arch", "both"):
            arch = sum_over_replicas(arch)
        if reduce in ("weights", "both"):
            weights = sum_over_replicas(weights)
        return loss, logits, arch, weights

    def _alpha_gradients(self, x, y, xs, ys, t):
        """∇α [CE(search batch) + R(α)]: first-order (w fixed) or DARTS's unrolled one."""
        reg, reg_grads = self._penalty_gradients(t)
        if self.unrolled:
            ce, grads = self._unrolled_gradients(x, y, xs, ys)
        else:
            ce, _, grads, _ = self._gradients(xs, ys, reduce="arch",
                                              scale=loss_scale(self.arch_optimizer))
        return [g + r for g, r in zip(grads, reg_grads)], ce, reg

    def _unrolled_gradients(self, x, y, xs, ys):
        """DARTS's second-order approximation (finite differences, ε = 0.01/‖∇w'‖)."""
        wvars = self.weight_variables
        sgd = getattr(self.optimizer, "inner_optimizer", self.optimizer)  # under loss scaling
        lr = tf.cast(sgd.learning_rate, tf.float32)
        momentum = float(getattr(sgd, "momentum", 0.0) or 0.0)
        w_scale, a_scale = loss_scale(self.optimizer), loss_scale(self.arch_optimizer)
        backup = [tf.identity(v) for v in wvars]
        _, _, _, grads = self._gradients(x, y, reduce="weights", scale=w_scale)
        for v, w0, g in zip(wvars, backup, grads):
            step = -lr * (g + self.weight_decay * w0)
            if momentum:  # Keras SGD: m ← μm − lr·g; w ← w + m
                m = sgd.momentums[variable_index(sgd, v)]
                step = momentum * m + step
            v.assign(w0 + step)  # w' = one virtual weight step
        ce, _, d_alpha, d_w = self._gradients(xs, ys, scale=a_scale)
        eps = 0.01 / (tf.linalg.global_norm(d_w) + 1e-12)
        hessian = []
        for sign in (1.0, -1.0):
            for v, w0, d in zip(wvars, backup, d_w):
                v.assign(w0 + sign * eps * d)
            hessian.append(self._gradients(x, y, reduce="arch", scale=a_scale)[2])
        for v, w0 in zip(wvars, backup):
            v.assign(w0)
        return ce, [da - lr * (hp - hn) / (2.0 * eps)
                    for da, hp, hn in zip(d_alpha, hessian[0], hessian[1])]

    def _alpha_step(self, data, t):
        """One α step on the search batch: ``(CE, R(α))``."""
        (x, y), (xs, ys) = data
        grads, ce, reg = self._alpha_gradients(x, y, xs, ys, t)
        self._apply_alpha_gradients(grads)
        return ce, reg

    def _weight_step(self, x, y):
        """One SGD step on w (α fixed); returns ``(loss, logits, FI)`` with FI = Σ‖∇w‖²."""
        loss, logits, _, grads = self._gradients(x, y, reduce="weights",
                                                 scale=loss_scale(self.optimizer))
        # Σ g² as L2Loss (Σ g²/2, one kernel per variable instead of a square and a sum)
        fi = 2.0 * tf.add_n([tf.nn.l2_loss(g) for g in grads])
        self._clip_and_apply(grads, fi)
        return loss, logits, fi

    def _clip_coefficient(self, norm) -> tf.Tensor:
        # clipped to the global norm √FI (tf.clip_by_global_norm's rule, without summing
        # the same squares again), and weight decay: two ops per variable, not six
        return self.clip_norm * tf.minimum(1.0 / norm, 1.0 / self.clip_norm)

    def weight_learning_rate(self, step) -> tf.Tensor:
        """The cosine learning rate of weight step ``step`` (1-based), as the reference runs it.

        The reference steps ``CosineAnnealingLR`` at the start of every epoch, so epoch
        ``e`` trains at ``η(e+1)``: 0.024976 in the first epoch of a 50-epoch search,
        exactly ``lr_min`` in the last. Derived from the step counter alone, so a
        resumed search continues the same sequence.
        """
        lr_max, lr_min = self._lr_cosine
        epoch = tf.floor(tf.cast(step - 1, tf.float32) / self.steps_per_epoch)
        return epoch_learning_rate(epoch, self.total_epochs, lr_max, lr_min)

    def _alpha_step_of(self, data, t):
        return self._alpha_step(data, t)

    def _weight_step_of(self, data):
        (x, y), _ = data
        loss, logits, fi = self._weight_step(x, y)
        return fi, (loss, logits)

    def _update_weight_metrics(self, data, loss, logits) -> None:
        """The weight batch's loss and compiled metrics."""
        (x, y), _ = data
        # Keras scales a replica's loss by 1/R for the gradient sum; the metric wants the mean
        loss = loss * tf.distribute.get_strategy().num_replicas_in_sync
        loss_tracker(self).update_state(loss, sample_weight=tf.shape(x)[0])
        self.compute_metrics(x, y, logits)


class ImageStreams:
    """Mixin of :class:`SearchNetwork`: the image space's data pairing, weight batch ``s``
    with search batch ``s``, both from where the step counter says."""

    def _build_metrics(self) -> None:
        """Create the compiled metrics' variables and build the loss now, not in the first
        trace (which would then run twice: tf.function retraces when a trace creates
        variables)."""
        y, logits = tf.zeros([1], tf.int32), tf.zeros([1, self.num_classes])
        with self.distribute_strategy.scope():
            self.compute_metrics(None, y, logits)
            # built now, Keras does not build it from the first (paired) batch under a strategy
            self.compute_loss(y=y, y_pred=logits)
        self.reset_metrics()

    def _prepare_fit(self) -> None:
        super()._prepare_fit()
        self._build_metrics()

    def _plan_fit(self, x, y, epochs, initial_epoch, steps_per_epoch) -> FitPlan:
        """``x`` is a dataset of ``(images, labels)`` batches, finite (one epoch, repeated
        here) or infinite. Weight step ``s`` is paired with search batch ``s``: an α step
        reads the search batch of the weight step it precedes."""
        if not isinstance(x, tf.data.Dataset):
            raise TypeError("SearchNetwork.fit takes the weight split as a tf.data.Dataset of "
                            f"(images, labels) batches, got {type(x).__name__}")
        if y is not None:
            raise ValueError("SearchNetwork.fit: the labels come with x, a dataset of "
                             "(images, labels) batches; y must be None")
        if steps_per_epoch is None:
            if int(x.cardinality()) > 0:
                steps_per_epoch = int(x.cardinality())
            else:
                raise ValueError("fit(steps_per_epoch=...) is required unless x is a finite "
                                 "tf.data.Dataset")
        shape = tuple(x.element_spec[0].shape)
        return FitPlan(input_shape=shape, steps_per_epoch=steps_per_epoch,
                       clock_steps=steps_per_epoch, before=initial_epoch * steps_per_epoch,
                       batch_size=shape[0], stream=lambda step: self.paired_stream(x, step))

    def paired_stream(self, x: tf.data.Dataset, start_step: int = 0) -> tf.data.Dataset:
        """The stream ``fit`` feeds the step: ``((x, y), (x_search, y_search))`` per step.

        ``x`` (the weight split) is repeated into one continuous stream over the epochs;
        weight step ``s`` is paired with search batch ``s`` of the compiled
        ``search_data``, and both start at ``start_step``. One stream keeps the step
        free of Python-held iterators: it compiles with XLA, and ``tf.distribute``
        splits both splits' batches across replicas.
        """
        search = self.search_data.repeat().skip(start_step)
        return tf.data.Dataset.zip((x.repeat().skip(start_step), search)).map(
            lambda w, s: ((w[0], w[1]), (s[0], s[1])))


@keras.saving.register_keras_serializable(package="kdarts")
class SearchNetwork(ImageGradients, ImageStreams, AlternatingSearch):
    """DARTS's search network with two shared α matrices (normal, reduce).

    Args:
        num_classes: classifier outputs (logits).
        channels: C of the first cells (16 in DARTS).
        layers: number of cells; cells ``layers//3`` and ``2*layers//3`` reduce.
        steps, multiplier, stem_multiplier: DARTS's cell shape (4, 4, 3).
        activation: ``"softmax"`` (DARTS) or ``"crb"`` (clip to [0, 1] with a
            permanent prune mask, node-level BN).
        primitives: candidate ops; default DARTS's 8, or 7 without ``none`` for crb.
        fused: compute all edges leaving a node together (fast); ``False`` runs one
            :class:`~kdarts.image.edge.MixedEdge` per edge as the reference does.
        mean, std: per-channel statistics of the training images on the [0, 1]
            scale (``DatasetInfo.mean``/``.std``): the network then takes raw pixels
            0–255, as :mod:`kdarts.data` serves them. None: inputs are used as they come.
        sync_batch_norm: under a ``tf.distribute`` strategy, every BN normalises with
            (and averages) the statistics of the global batch, so the search equals one
            device's on the same global batch; otherwise each replica uses its shard's.
            Needs ``fused=True``.
        dtype: Keras's ``dtype`` argument; ``"mixed_float16"`` computes the network in
            float16 with float32 variables. α, act(α), the regulariser, BN statistics, the
            logits and the loss stay float32, and ``compile`` adds dynamic loss scaling to
            both optimizers (:class:`keras.optimizers.LossScaleOptimizer`).

    Every conv and dense kernel (and the classifier's bias) starts as PyTorch's default
    init, :class:`~kdarts.ops.FanInUniform` U(±1/√fan_in); BN starts at scale 1, offset 0.
    """

    @own_dtype_policy
    def __init__(self, num_classes: int, channels: int = 16, layers: int = 8, steps: int = 4,
                 multiplier: int = 4, stem_multiplier: int = 3, activation: str = "softmax",
                 primitives: Sequence[str] | None = None, fused: bool = True,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 sync_batch_norm: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.channels = int(channels)
        self.num_layers = int(layers)
        self.steps = int(steps)
        self.multiplier = int(multiplier)
        self.stem_multiplier = int(stem_multiplier)
        self.activation = check_activation(activation)
        if primitives is None:
            primitives = CRB_PRIMITIVES if activation == "crb" else PRIMITIVES
        self.primitives = check_primitives(primitives)
        self.fused = bool(fused)
        self.sync_batch_norm = bool(sync_batch_norm)
        if self.sync_batch_norm and not self.fused:
            raise ValueError("sync_batch_norm needs the fused network (fused=True); the "
                             "reference MixedEdge network is for checking, not scaling out")
        if self.num_layers < 3:
            raise ValueError(f"layers must be >= 3 (two reduction cells), got {layers}")

        if (mean is None) != (std is None):
            raise ValueError("SearchNetwork: pass both mean and std (or neither)")
        self.standardize = (None if mean is None
                            else Standardize(mean, std, name="standardize"))
        c = self.stem_multiplier * self.channels
        # DARTS's search stem BN is affine (nn.BatchNorm2d defaults): matches its parameter count
        self.stem = keras.Sequential([
            keras.layers.Conv2D(c, 3, padding="same", use_bias=False,
                                kernel_initializer=FanInUniform(), name="stem_conv"),
            batch_norm(True, name="stem_bn"),
        ], name="stem")
        self.cells, c_curr = self._make_cells()
        self.global_pool = keras.layers.GlobalAveragePooling2D(name="global_pool")
        features = self.multiplier * c_curr
        # float32 logits under mixed precision: the loss and its scaling need the range
        self.classifier = keras.layers.Dense(self.num_classes, kernel_initializer=FanInUniform(),
                                             bias_initializer=FanInUniform(features),
                                             dtype="float32", name="classifier")

        shape = (num_edges(self.steps), len(self.primitives))
        init = AlphaInitializer(self.activation)
        # α and all search state stay float32 under mixed precision (autocast=False)
        self.alpha_normal = self.add_weight(shape=shape, initializer=init, autocast=False,
                                            name="alpha_normal")
        self.alpha_reduce = self.add_weight(shape=shape, initializer=init, autocast=False,
                                            name="alpha_reduce")
        state = self._add_state
        # crb prune mask: 1 = alive; softmax keeps it all ones
        self.mask_normal = state("mask_normal", shape, "ones")
        self.mask_reduce = state("mask_reduce", shape, "ones")
        # ADMM's Z and U (admm_z_normal, ..._reduce, admm_u_normal, ..._reduce), whatever the
        # regulariser: weight files address a model's variables by creation order, and
        # every checkpoint holds them here. Another regulariser's state comes at compile.
        add_admm_state(self, self.architecture)
        # schedule and clock
        add_schedule_state(self)
        # crb: the mask the step's kernels were last traced for (see make_train_function):
        # all ones until pruning.PRUNE_LEVELS[0] of the ops are pruned. State, so that a
        # resumed search runs the same kernels on the same edges as an uninterrupted one
        self.kept_normal = state("kept_normal", shape, "ones")
        self.kept_reduce = state("kept_reduce", shape, "ones")
        if self.sync_batch_norm:
            synchronize_batch_norms(self)
        self._add_search_metrics()
        self._init_search()

    def _make_cells(self) -> tuple[list, int]:
        """The ``layers`` search cells (cells ``layers//3`` and ``2*layers//3`` reduce,
        doubling C) and the last cell's C."""
        c_curr, reduction_prev, cells = self.channels, False, []
        for i in range(self.num_layers):
            reduction = i in (self.num_layers // 3, 2 * self.num_layers // 3)
            if reduction:
                c_curr *= 2
            cells.append(SearchCell(
                c_curr, reduction, reduction_prev, self.primitives, self.steps,
                self.multiplier, node_bn=self.activation == "crb", fused=self.fused,
                name=f"cell{i}"))
            reduction_prev = reduction
        return cells, c_curr

    # -- structure -----------------------------------------------------------------------
    @property
    def arch_variables(self) -> list:
        """The architecture parameters α: ``[alpha_normal, alpha_reduce]``."""
        return [self.alpha_normal, self.alpha_reduce]

    def _masks(self):
        return [self.mask_normal, self.mask_reduce]

    def _kept_masks(self):
        return [self.kept_normal, self.kept_reduce]

    @property
    def architecture(self) -> Architecture:
        """α, the masks and the cell shape, as the regulariser sees them."""
        return Architecture(cells=("normal", "reduce"), alphas=tuple(self.arch_variables),
                            masks=tuple(self._masks()), activation=self.activation,
                            primitives=tuple(self.primitives), steps=self.steps,
                            project=getattr(self, "_projection", None))

    def _budget_projection(self, budget):
        """D_B of the two cell types, in graph ops; the budget's table must price this
        network's candidate ops and cell shape."""
        from kdarts.budget import BudgetError
        from kdarts.image.projection import BudgetProjection

        if tuple(budget.primitives) != tuple(self.primitives) or budget.steps != self.steps:
            raise BudgetError(
                f"the budget's cost table prices {budget.steps}-node cells of "
                f"{', '.join(budget.primitives)}; this search has {self.steps}-node cells "
                f"of {', '.join(self.primitives)}")
        return BudgetProjection(budget, cells=("normal", "reduce"))

    def _state_ready(self) -> bool:
        return True  # α and the search state are made in __init__

    def activated_weights(self) -> list[tf.Tensor]:
        """``act(α)`` for the normal and the reduction cells."""
        return [activate(a, self.activation, m) for a, m in zip(self.arch_variables, self._masks())]

    def build(self, input_shape):
        if self.built:
            return
        # a forward pass on a tiny dummy input builds every layer with its real shapes
        shape = [2 if d is None else d for d in input_shape]
        self.call(tf.zeros(shape), training=False)
        self.built = True

    def call(self, inputs, training=None):
        weights = self.activated_weights()
        active = ([tf.cast(m, tf.bool) for m in self._masks()]
                  if self.activation == "crb" else [None, None])
        if self.standardize is not None:
            inputs = self.standardize(inputs)
        s0 = s1 = self.stem(inputs, training=training)
        for cell in self.cells:
            i = 1 if cell.reduction else 0
            s0, s1 = s1, cell(s0, s1, weights[i], active[i], training=training)
        return self.classifier(self.global_pool(s1))

    def genotype(self) -> Genotype:
        """The discretised genotype of the current α (docs/method.md §3): D(act(α)), or
        under a budget (``compile(budget=...)``) D_B's, exact (§8)."""
        weights = [w.numpy() for w in self.activated_weights()]
        if self.budget is not None:
            found = self.budget.project(dict(zip(("normal", "reduce"), weights)))
            genes = [found.genes["normal"], found.genes["reduce"]]
        else:
            genes = [discretize(w, self.primitives, self.steps)[0] for w in weights]
        concat = tuple(range(2 + self.steps - self.multiplier, self.steps + 2))
        return Genotype(normal=genes[0], normal_concat=concat, reduce=genes[1],
                        reduce_concat=concat)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes,
                "channels": self.channels, "layers": self.num_layers, "steps": self.steps,
                "multiplier": self.multiplier, "stem_multiplier": self.stem_multiplier,
                "activation": self.activation, "primitives": list(self.primitives),
                "fused": self.fused, "sync_batch_norm": self.sync_batch_norm,
                "mean": None if self.standardize is None else list(self.standardize.mean),
                "std": None if self.standardize is None else list(self.standardize.std)}

    # -- search configuration --------------------------------------------------------------
    def compile(self, optimizer=None, loss=None, metrics=None, *, arch_optimizer=None,
                schedule="dynamic", regularizer="proximity", search_data=None,
                unrolled: bool = False, weight_decay: float = 3e-4,
                arch_weight_decay: float = 1e-3, clip_norm: float = 5.0,
                lr_min: float | None = 0.001, skip_pruned_ops: bool | str = "auto",
                budget=None, budget_dual_lr: float | None = None, **kwargs):
        """Configure the search (defaults: docs/method.md §7).

        Args:
            optimizer: weight optimizer; default :class:`~kdarts.FusedSGD` (Keras's SGD
                in one kernel per variable) with 0.025 and momentum 0.9. With a float
                learning rate it is cosine-annealed per epoch down to ``lr_min`` in the
                reference's call order (epoch ``e`` trains at ``η(e+1)``, the last at
                ``lr_min``; see :meth:`weight_learning_rate`). ``lr_min=None`` leaves it
                alone.
            loss, metrics: default sparse CE from logits and accuracy.
            arch_optimizer: α optimizer; default Adam(3e-4, betas 0.5/0.999).
            schedule: ``"dynamic"``, ``"fixed"``, or a ``FixedSchedule``/``DynamicSchedule``.
            regularizer: a name registered in :data:`kdarts.options.REGULARIZERS`
                (``"proximity"``, ``"admm"``, ``"none"``/None), or a
                :class:`~kdarts.search.regularizers.Regularizer` (e.g.
                ``ADMM(variant="reference")`` for the authors' ADMM rules).
            search_data: the search split, a ``tf.data.Dataset`` of ``(x, y)`` batches
                (repeated; ``fit`` pairs its batch s with weight step s, and an α step
                taken at step s reads it).
            unrolled: DARTS's second-order α gradient instead of the first-order one.
            weight_decay, arch_weight_decay: L2 terms added to the gradients (after
                clipping, before momentum/Adam moments), as in the reference code.
            clip_norm: global gradient-norm clip of the weight step.
            skip_pruned_ops: crb only: how pruned ops are left out (docs/design.md,
                "Pruned ops"; the rules in :mod:`kdarts.search.pruning`). ``"auto"``
                (the default): ``"levels"`` when an image's input map times
                ``channels`` is at least ``pruning.LEVELS_MIN_MAP`` (16×16 px at C=8)
                and the search is long enough to earn its retraces back (map × batch ×
                weight steps ≥ ``pruning.LEVELS_MIN_WORK``: 1,526 steps at 16×16
                px, C=8, batch 32), else ``"never"``; :meth:`pruned_ops_mode` says
                which.
                ``"levels"`` (or True): each conv op runs on the edges that kept it
                when the step was last traced, gathered by constant indices (static
                shapes: XLA compiles it), an edge pruned since with zero kernels; the
                step is traced again when the share of pruned ops first reaches 25, 50
                and 75 % (``pruning.PRUNE_LEVELS``). ``"never"`` (or False):
                every op on every edge, zero kernels where pruned, one trace for the
                whole search. The two compute the same function; their sums round
                differently in the last bit, which can flip a ReLU whose input is a
                rounding residue near 0 and so move a search's numbers after the first
                retrace. ``"every_step"``: the edges that keep each op are gathered on
                every step (dynamic shapes, one trace; a graph nearly twice as large,
                and not with ``jit_compile``).
            budget: a :class:`kdarts.image.budget.Budget` (parameters, multiply-adds or
                latency of the evaluation network): the budgeted projection D_B
                replaces D in the regulariser (proximity's target, ADMM's Z) and in
                :meth:`genotype`, so the found genotype is within it (docs/method.md §8).
            budget_dual_lr: with a budget, η of the optional expected-cost term: the α
                loss gains λ·(E(act(α)) − B)/B, E the relaxed architecture's expected
                cost, and λ ≥ 0 (``budget_dual``, checkpointed) moves after every α step
                by λ ← max(0, λ + η·(E − B)/B) (:mod:`kdarts.search.budget_dual`). None
                (the default): no term, the step as without it. The logs then hold
                ``budget_dual`` (λ) and ``expected_cost_ratio`` (E/B).
        """
        budget_dual_lr = check_dual_lr(budget_dual_lr, budget)
        mode = self._check_pruned_mode(skip_pruned_ops, kwargs.get("jit_compile"))
        if optimizer is None:
            optimizer = FusedSGD(learning_rate=0.025, momentum=0.9)
        if arch_optimizer is None:
            arch_optimizer = keras.optimizers.Adam(learning_rate=3e-4, beta_1=0.5,
                                                   beta_2=0.999, epsilon=1e-8)
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics is None:
            metrics = ["accuracy"]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        if mode == "every_step" and self.jit_compile:  # "auto" turned XLA on (a GPU)
            warnings.warn("compile(skip_pruned_ops='every_step') has no effect under XLA "
                          "(jit_compile resolved to True): every op runs on every edge",
                          stacklevel=2)
        self._configure_search(arch_optimizer=arch_optimizer, schedule=schedule,
                               regularizer=regularizer, search_data=search_data,
                               weight_decay=weight_decay, arch_weight_decay=arch_weight_decay,
                               clip_norm=clip_norm, skip_pruned_ops=mode, budget=budget,
                               budget_dual_lr=budget_dual_lr)
        self.unrolled = bool(unrolled)
        lr = optimizer.learning_rate
        if lr_min is not None and learning_rate_schedule(optimizer) is None:
            self._lr_cosine = (float(lr.numpy() if hasattr(lr, "numpy") else lr), float(lr_min))
        xla = bool(self.jit_compile)
        for layer in sublayers(self):
            if isinstance(layer, FanOut):  # XLA: static shapes
                old = (layer.static_shapes, layer.skip_pruned)
                new = (xla, mode == "every_step")
                layer.static_shapes, layer.skip_pruned = new
            elif isinstance(layer, BatchNormalization):  # stem, cells, nodes: not under XLA
                old, new = layer.fused_kernel, not xla
                layer.fused_kernel = new
            else:
                continue
            if old != new:
                self._gradient_fn = None  # the network is traced again, as it now computes

    # -- pruned ops -------------------------------------------------------------------------
    def _leaves_pruned_ops_out(self) -> bool:
        return self.fused  # the reference edges skip none

    def _auto_pruned_mode(self, batch_size, total_steps) -> str:
        """:func:`~kdarts.search.pruning.auto_mode` from the built input shape."""
        shape = built_input_shape(self)
        height, width = (None, None) if shape is None else tuple(shape)[1:3]
        return auto_mode(height, width, self.channels, batch_size, total_steps)

    def _keep(self, kept: np.ndarray):
        """Each fan-out computes its ``kept`` edges per op (read at trace time only)."""
        key = kept.tobytes()
        if self.__dict__.get("_kept_fans", (None,))[0] != key:
            self.__dict__["_kept_fans"] = (key, self._kept_edges(kept))  # not tracked
        fans = self.__dict__["_kept_fans"][1]
        if not fans:
            return None
        for fan, edges in fans:
            fan.kept = edges

        def restore():
            for fan, _ in fans:
                fan.kept = None

        return restore

    def _kept_edges(self, kept: np.ndarray) -> list:
        """``(fan-out, edges kept per op column)`` for every fan-out, from the traced mask
        (none if it is all ones: every op on every edge)."""
        if kept.all():
            return []
        return [(fan, kept_edges(kept[1 if cell.reduction else 0],
                                 fanout_rows(source, self.steps)))
                for cell in self.cells for source, fan in enumerate(cell.fanouts)]


__all__ = ["ImageGradients", "ImageStreams", "SearchNetwork", "count_parameters"]
