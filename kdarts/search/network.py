"""The search network (docs/method.md §1–2) and its alternating constrained search (§4–6).

``SearchNetwork`` is a ``keras.Model``: ``compile(...)`` then ``fit(...)`` runs
the whole search, one compiled ``train_step`` per minibatch. The step itself is
a few calls into pure rules (:mod:`.schedules`, :mod:`.regularizers`,
:mod:`.activations`); every piece of search state is a variable on the model,
so ``ModelCheckpoint``/``save_weights`` capture it and a resumed search continues
exactly.

Example:
    >>> import kdarts, tensorflow as tf
    >>> model = kdarts.SearchNetwork(num_classes=10, channels=4, layers=3,
    ...                              activation="crb")
    >>> model.compile(search_data=search_ds)          # doctest: +SKIP
    >>> model.fit(weight_ds, epochs=2, steps_per_epoch=20)  # doctest: +SKIP
    >>> print(model.genotype())                       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from kdarts.compat import SymbolicBuildOnlyIfUnbuilt, lean_in_other_threads, \
    learning_rate_schedule, loss_tracker, sublayers, variable_index
from kdarts.genotype import CRB_PRIMITIVES, PRIMITIVES, Genotype, discretize, num_edges
from kdarts.learning_rate import epoch_learning_rate
from kdarts.optimizers import FusedSGD
from kdarts.options import SKIP_PRUNED_MODES
from kdarts.parameters import count_parameters
from kdarts.ops import (
    BatchNormalization,
    FanInUniform,
    batch_norm,
    check_primitives,
    own_dtype_policy,
    synchronize_batch_norms,
)
from kdarts.preprocessing import Standardize
from kdarts.runtime import LeanTrainFunction
from kdarts.search.activations import AlphaInitializer, activate, check_activation, prune
from kdarts.search.cell import SearchCell, fanout_rows
from kdarts.search.edge import FanOut
from kdarts.search.pruning import auto_mode, kept_edges, next_traced_mask
from kdarts.search.regularizers import (
    Architecture,
    add_admm_state,
    get_regularizer,
    state_variables,
)
from kdarts.search.schedules import DynamicSchedule, add_schedule_state, get_schedule, \
    update_fi_ewma


@keras.saving.register_keras_serializable(package="kdarts")
class SearchNetwork(SymbolicBuildOnlyIfUnbuilt, LeanTrainFunction, keras.Model):
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
            :class:`~kdarts.search.edge.MixedEdge` per edge as the reference does.
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
        c_curr, reduction_prev = self.channels, False
        self.cells = []
        for i in range(self.num_layers):
            reduction = i in (self.num_layers // 3, 2 * self.num_layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(SearchCell(
                c_curr, reduction, reduction_prev, self.primitives, self.steps,
                self.multiplier, node_bn=self.activation == "crb", fused=self.fused,
                name=f"cell{i}"))
            reduction_prev = reduction
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
        # Under tf.distribute every replica computes the same search state from all-reduced
        # gradients and updates its own copy (aggregation "none": no cross-replica call)
        state = lambda name, shape=(), init="zeros", dtype="float32": self.add_weight(  # noqa
            shape=shape, initializer=init, dtype=dtype, trainable=False, autocast=False,
            name=name)
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
        self._search_metrics = {
            name: keras.metrics.Mean(name=name) for name in ("search_loss", "reg", "fi")}
        self._search_compiled = False
        self.trace_count = 0  # python-side: how often train_step was traced

    # -- structure -----------------------------------------------------------------------
    @property
    def arch_variables(self) -> list:
        """The architecture parameters α: ``[alpha_normal, alpha_reduce]``."""
        return [self.alpha_normal, self.alpha_reduce]

    @property
    def weight_variables(self) -> list:
        """Every trainable variable except α: the network weights w."""
        arch = {id(v) for v in self.arch_variables}
        return [v for v in self.trainable_variables if id(v) not in arch]

    def _masks(self):
        return [self.mask_normal, self.mask_reduce]

    def _kept_masks(self):
        return [self.kept_normal, self.kept_reduce]

    def _alive(self) -> np.ndarray:
        """The prune masks, normal and reduce stacked, as bool (read from the device)."""
        return np.stack([m.numpy() > 0.5 for m in self._masks()])

    def load_own_variables(self, store):
        """Keras's, and weight files without ``kept_normal``/``kept_reduce`` (two
        variables fewer): those start at ones, as a new search's."""
        kept = self._kept_masks()
        own = self._trainable_variables + self._non_trainable_variables
        if len(store.keys()) != len(own) - len(kept):
            return super().load_own_variables(store)
        others = [v for v in own if not any(v is k for k in kept)]
        for i, v in enumerate(others):
            v.assign(store[f"{i}"])
        for k in kept:
            k.assign(tf.ones(k.shape))

    @property
    def architecture(self) -> Architecture:
        """α, the masks and the cell shape, as the regulariser sees them."""
        return Architecture(cells=("normal", "reduce"), alphas=tuple(self.arch_variables),
                            masks=tuple(self._masks()), activation=self.activation,
                            primitives=tuple(self.primitives), steps=self.steps)

    @property
    def regularizer_variables(self) -> list:
        """The compiled regulariser's own variables (ADMM's Z and U; none for proximity)."""
        return state_variables(getattr(self, "regularizer_state", {}))

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
        """The discretised genotype of the current α (docs/method.md §3)."""
        genes = [discretize(w.numpy(), self.primitives, self.steps)[0]
                 for w in self.activated_weights()]
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
                **kwargs):
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
        """
        mode = skip_pruned_ops
        if isinstance(mode, bool):
            mode = "levels" if mode else "never"
        if mode not in SKIP_PRUNED_MODES:
            raise ValueError(f"compile(skip_pruned_ops={skip_pruned_ops!r}): one of "
                             f"{', '.join(SKIP_PRUNED_MODES)}, True or False")
        if mode == "every_step" and kwargs.get("jit_compile") is True:
            raise ValueError("compile(skip_pruned_ops='every_step') runs each op on a "
                             "data-dependent subset of edges, which XLA cannot compile; use "
                             "skip_pruned_ops='levels' (static shapes) with jit_compile=True")
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
        self.skip_pruned_ops = mode
        self.arch_optimizer = keras.optimizers.get(arch_optimizer)
        # float16 gradients underflow: Keras wrapped the weight optimizer, α's gets the same
        if (isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
                and not isinstance(self.arch_optimizer, keras.optimizers.LossScaleOptimizer)):
            self.arch_optimizer = keras.optimizers.LossScaleOptimizer(self.arch_optimizer)
        self.schedule = get_schedule(schedule)
        self.regularizer = get_regularizer(regularizer)
        self.regularizer_state = self.regularizer.create_state(self, self.architecture)
        self.search_data = search_data
        self.unrolled = bool(unrolled)
        self.weight_decay = float(weight_decay)
        self.arch_weight_decay = float(arch_weight_decay)
        self.clip_norm = float(clip_norm)
        lr = optimizer.learning_rate
        self._lr_cosine = None
        if lr_min is not None and learning_rate_schedule(optimizer) is None:
            self._lr_cosine = (float(lr.numpy() if hasattr(lr, "numpy") else lr), float(lr_min))
        if isinstance(self.schedule, DynamicSchedule) and int(self.search_step.numpy()) == 0:
            self.threshold.assign(self.schedule.initial_threshold)
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
        self._search_compiled = True
        self.train_function = None

    @property
    def metrics(self):
        extra = list(getattr(self, "_search_metrics", {}).values())
        return super().metrics + extra

    def build_optimizers(self) -> None:
        """Create both optimizers' slots (needed before restoring a checkpoint)."""
        if not self.built:
            raise ValueError("build the model (call it once, or model.build(shape)) first")
        with self.distribute_strategy.scope():  # slots mirror their variables
            if not self.optimizer.built:
                self.optimizer.build(self.weight_variables)
            if not self.arch_optimizer.built:
                self.arch_optimizer.build(self.arch_variables)

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

    # -- fit: attach the data streams where the saved state says they are -------------------
    def fit(self, x=None, y=None, *, epochs: int = 1, initial_epoch: int = 0,
            steps_per_epoch: int | None = None, **kwargs):
        """Keras ``fit`` on the weight split; the search split comes from ``compile``.

        ``x`` is a dataset of ``(images, labels)`` batches, finite (one epoch, repeated
        here) or infinite. Weight step ``s`` is paired with search batch ``s``: an α step
        reads the search batch of the weight step it precedes. Both streams resume where
        the model's step counter says they stopped, so a search restored from a
        checkpoint sees exactly the batches an uninterrupted one would have seen.
        """
        if not self._search_compiled:
            raise RuntimeError("call SearchNetwork.compile(...) before fit")
        if self.search_data is None:
            raise ValueError("SearchNetwork.compile(search_data=...) is required: the search "
                             "split is read on the steps that update α")
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
        if not self.built:
            self.build(tuple(x.element_spec[0].shape))
        self.build_optimizers()
        self._build_metrics()
        step = int(self.search_step.numpy())
        if step and step != initial_epoch * steps_per_epoch:
            raise ValueError(
                f"the model has taken {step} search steps, which is not initial_epoch "
                f"({initial_epoch}) × steps_per_epoch ({steps_per_epoch}); pass the epoch "
                "the checkpoint was written at")
        self.total_epochs.assign(float(epochs))
        self.steps_per_epoch.assign(float(steps_per_epoch))
        # what "auto" weighs: the whole search's steps, resumed or not
        self._fit_plan = (x.element_spec[0].shape[0], int(epochs) * int(steps_per_epoch))
        x = self.paired_stream(x, start_step=step)
        if step == 0:  # a new search (ADMM: Z starts at act(α₀), or α₀)
            self.regularizer.initialize(self.architecture, self.regularizer_state)
        self.train_function = None  # the step is traced for this fit's data
        kwargs.setdefault("shuffle", False)  # the data streams are shuffled by kdarts.data
        return super().fit(x, epochs=epochs, initial_epoch=initial_epoch,
                           steps_per_epoch=steps_per_epoch, **kwargs)

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

    # -- the step ------------------------------------------------------------------------
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
            arch = _sum_over_replicas(arch)
        if reduce in ("weights", "both"):
            weights = _sum_over_replicas(weights)
        return loss, logits, arch, weights

    def _penalty_gradients(self, t):
        with tf.GradientTape() as tape:
            reg = self._penalty(t)
        grads = tape.gradient(reg, self.arch_variables)
        return reg, [tf.zeros_like(a) if g is None else g
                     for g, a in zip(grads, self.arch_variables)]

    def _penalty(self, t):
        """R(α) of the compiled regulariser at clock ``t``."""
        return self.regularizer(self.architecture, self.regularizer_state, t,
                                self.total_epochs)

    def _alpha_gradients(self, x, y, xs, ys, t):
        """∇α [CE(search batch) + R(α)]: first-order (w fixed) or DARTS's unrolled one."""
        reg, reg_grads = self._penalty_gradients(t)
        if self.unrolled:
            ce, grads = self._unrolled_gradients(x, y, xs, ys)
        else:
            ce, _, grads, _ = self._gradients(xs, ys, reduce="arch",
                                              scale=_loss_scale(self.arch_optimizer))
        return [g + r for g, r in zip(grads, reg_grads)], ce, reg

    def _unrolled_gradients(self, x, y, xs, ys):
        """DARTS's second-order approximation (finite differences, ε = 0.01/‖∇w'‖)."""
        wvars = self.weight_variables
        sgd = getattr(self.optimizer, "inner_optimizer", self.optimizer)  # under loss scaling
        lr = tf.cast(sgd.learning_rate, tf.float32)
        momentum = float(getattr(sgd, "momentum", 0.0) or 0.0)
        w_scale, a_scale = _loss_scale(self.optimizer), _loss_scale(self.arch_optimizer)
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
        grads = [g + self.arch_weight_decay * v for g, v in zip(grads, self.arch_variables)]
        _apply_global(self.arch_optimizer, grads, self.arch_variables)
        if self.activation == "crb":  # method §4.4: only an α step can move α, so prune here
            for a, m in zip(self.arch_variables, self._masks()):
                new_a, new_m = prune(a, m)  # a pruned α is 0 and never moves again
                m.assign(new_m)
                a.assign(new_a)
        self.alpha_steps.assign_add(1)
        return ce, reg

    def _weight_step(self, x, y):
        """One SGD step on w (α fixed); returns ``(loss, logits, FI)`` with FI = Σ‖∇w‖²."""
        wvars = self.weight_variables
        loss, logits, _, grads = self._gradients(x, y, reduce="weights",
                                                 scale=_loss_scale(self.optimizer))
        # Σ g² as L2Loss (Σ g²/2, one kernel per variable instead of a square and a sum)
        fi = 2.0 * tf.add_n([tf.nn.l2_loss(g) for g in grads])
        # clipped to the global norm √FI (tf.clip_by_global_norm's rule, without summing
        # the same squares again), and weight decay: two ops per variable, not six
        norm = tf.sqrt(fi)
        clip = self.clip_norm * tf.minimum(1.0 / norm, 1.0 / self.clip_norm)
        clip += norm - norm  # NaN if FI is not finite: a LossScaleOptimizer skips the step
        grads = [g * clip + self.weight_decay * v for g, v in zip(grads, wvars)]
        _apply_global(self.optimizer, grads, wvars)
        return loss, logits, fi

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

    # -- the step, in docs/method.md §4's order -----------------------------------------------
    def _search_step(self, data, replicas: "_InPlace | _Replicas") -> dict:
        """One minibatch of the search: clock, α step if the schedule says so, weight step,
        the regulariser's end of step (ADMM's Z/U when due), metrics.

        ``replicas`` says where each piece runs. One device (:class:`_InPlace`): every
        piece in place, inside Keras's train function. Several replicas
        (:class:`_Replicas`): the clock and the decision once, in cross-replica context,
        and each other piece on every replica (``strategy.run``), the α step inside the
        ``tf.cond``: MirroredStrategy's cross-replica calls (all-reduces, a Keras
        optimizer's update) cannot sit in a conditional traced in replica context.
        """
        self.trace_count += 1  # runs at trace time only: counts (re)traces
        (x, y), _ = data
        step, t = self._advance_clock()  # §4.1
        take = self._decide(step)  # §4.2, §5

        def alpha_step():  # §4.2, and §4.4's crb prune
            ce, reg = replicas.run(self._alpha_step, data, t)
            # each replica's CE is its shard's mean ÷ R; the penalty is the same everywhere
            return replicas.sum(ce), replicas.mean(reg)

        search_loss, reg = tf.cond(take, alpha_step,
                                   lambda: (tf.constant(0.0), tf.constant(0.0)))
        loss, logits, fi = replicas.run(self._weight_step, x, y)  # §4.3
        replicas.run(self._track_fi, fi)  # §5: the dynamic schedule's FI EWMA
        replicas.run(self._regularizer_after_step, take)  # §4.5: ADMM's Z and U when due
        replicas.run(self._update_metrics, x, y, loss, logits, fi, take, search_loss, reg)
        return self._step_logs(replicas.local(fi), take)

    def train_step(self, data):
        """One search step on one device (Keras's train function calls it per batch)."""
        return self._search_step(data, _InPlace())

    def make_train_function(self, force: bool = False):
        """The train function (:class:`kdarts.runtime.LeanTrainFunction`'s); with crb, when
        :meth:`pruned_ops_mode` is ``"levels"``, traced for the edges that keep each op.

        Pruning is for good, so the mask only loses ones: a step traced for the mask of
        one moment computes every op alive later, on the same edges, and gives an edge
        pruned since zero kernels (its weight is 0, its statistics stay). The traced mask
        (``kept_normal``/``kept_reduce``) is all ones until the share of pruned ops
        reaches ``pruning.PRUNE_LEVELS[0]``; each time it first reaches a further level,
        the mask of that moment becomes the traced one
        (:func:`~kdarts.search.pruning.next_traced_mask`) and the step is traced again,
        before the next step. Being state, it is checkpointed: a resumed search traces the
        same step as the uninterrupted one (same kernels on the same edges, the same
        rounding).
        """
        if self.train_function is not None and not force:
            return self.train_function
        step = super().make_train_function(force=True)
        if self.pruned_ops_mode() != "levels":
            return step
        kept = self._update_kept()
        fans = self._kept_edges(kept)

        def train_function(iterator):
            # the traced mask is this closure's kept: only the prune masks need reading
            if next_traced_mask(self._alive(), kept) is not kept:  # a further level
                return self.make_train_function(force=True)(iterator)
            with self._tracing_kept(kept, fans):
                return step(iterator)

        train_function.lean_graph_optimization = getattr(step, "lean_graph_optimization", False)
        self.train_function = train_function
        return train_function

    def pruned_ops_mode(self, batch_size: int | None = None,
                        total_steps: int | None = None) -> str:
        """How this step leaves pruned ops out: compile's ``skip_pruned_ops``, with
        ``"auto"`` decided by :func:`~kdarts.search.pruning.auto_mode` from the built
        input shape and the search's batch size and weight steps (default: those of the
        running ``fit``, unknown before it); ``"never"`` where nothing is left out
        (softmax prunes nothing; the reference edges skip none)."""
        mode = getattr(self, "skip_pruned_ops", "auto")
        if self.activation != "crb" or not self.fused:
            return "never"
        if mode != "auto":
            return mode
        shape = (getattr(self, "_build_shapes_dict", None) or {}).get("input_shape")
        height, width = (None, None) if shape is None else tuple(shape)[1:3]
        plan_batch, plan_steps = getattr(self, "_fit_plan", (None, None))
        return auto_mode(height, width, self.channels, batch_size or plan_batch,
                         total_steps or plan_steps)

    def _update_kept(self) -> np.ndarray:
        """The traced mask (normal and reduce stacked, bool), moved on by
        :func:`~kdarts.search.pruning.next_traced_mask` from the prune mask of now."""
        kept = np.stack([k.numpy() > 0.5 for k in self._kept_masks()])
        moved = next_traced_mask(self._alive(), kept)
        if moved is not kept:
            for var, value in zip(self._kept_masks(), moved):
                var.assign(value.astype(np.float32))
        return moved

    @contextlib.contextmanager
    def _tracing_kept(self, kept: np.ndarray, fans: list | None = None):
        """Within it, the network is traced for the traced mask ``kept`` (each fan-out's
        ``kept`` edges, and the gradient function's key); outside, for every edge."""
        fans = self._kept_edges(kept) if fans is None else fans
        for fan, edges in fans:  # read at trace time only
            fan.kept = edges
        self._kept_key = kept.tobytes() if fans else None
        try:
            yield
        finally:
            for fan, _ in fans:
                fan.kept = None
            self._kept_key = None

    def _kept_edges(self, kept: np.ndarray) -> list:
        """``(fan-out, edges kept per op column)`` for every fan-out, from the traced mask
        (none if it is all ones: every op on every edge)."""
        if kept.all():
            return []
        return [(fan, kept_edges(kept[1 if cell.reduction else 0],
                                 fanout_rows(source, self.steps)))
                for cell in self.cells for source, fan in enumerate(cell.fanouts)]

    def _replicated_train_function(self):
        """The step under several replicas (see :class:`kdarts.runtime.LeanTrainFunction`,
        which calls it under the lean graph-optimiser settings: the step is one graph
        whose optimisation dominates the time before step 1)."""
        if self.steps_per_execution != 1:
            raise ValueError("a SearchNetwork under a multi-replica strategy runs one step per "
                             f"call: compile(steps_per_execution=1), got {self.steps_per_execution}")
        replicas = _Replicas(self.distribute_strategy)

        def one_step(iterator):
            return self._search_step(next(iterator), replicas)

        return tf.function(one_step, jit_compile=bool(self.jit_compile), autograph=False)

    def _advance_clock(self):
        """§4.1: the step counter and the clock ``t`` in fractional epochs; sets this step's
        weight learning rate. Returns ``(step, t)``."""
        step = self.search_step.assign_add(1)
        t = tf.cast(step, tf.float32) / self.steps_per_epoch
        if self._lr_cosine is not None:
            self.optimizer.learning_rate.assign(self.weight_learning_rate(step))
        return step, t

    def _decide(self, step) -> tf.Tensor:
        """§4.2/§5: whether this step takes an α step; moves the schedule's threshold."""
        take = self.schedule.decide(step, self.fi_ewma, self.threshold)
        self.threshold.assign(self.schedule.next_threshold(self.threshold, take))
        return take

    def _track_fi(self, fi) -> None:
        """§5: FI's EWMA, from FI on the first step. A float16 step whose gradients
        overflowed was skipped and says nothing of FI: it leaves the EWMA as it was."""
        ewma = getattr(self.schedule, "ewma", 0.2)
        new_ewma = update_fi_ewma(self.fi_ewma, fi, tf.equal(self.search_step, 1), ewma)
        applied = _weight_step_applied(self.optimizer, fi)
        if applied is not None:
            new_ewma = tf.where(applied, new_ewma, self.fi_ewma)
        self.fi_ewma.assign(new_ewma)

    def _regularizer_after_step(self, take) -> None:
        """§4.5: the regulariser's end of step (ADMM's Z/U update when its period says)."""
        self.regularizer.after_step(self.architecture, self.regularizer_state,
                                    self.alpha_steps, take)

    def _update_metrics(self, x, y, loss, logits, fi, take, search_loss, reg) -> None:
        """The step's metrics: the α step's CE and R(α) when one was taken, FI when the
        weight step was applied, the weight batch's loss and compiled metrics."""
        weight = tf.cast(take, tf.float32)
        self._search_metrics["search_loss"].update_state(search_loss, sample_weight=weight)
        self._search_metrics["reg"].update_state(reg, sample_weight=weight)
        applied = _weight_step_applied(self.optimizer, fi)
        self._search_metrics["fi"].update_state(
            fi, sample_weight=1.0 if applied is None else tf.cast(applied, tf.float32))
        # Keras scales a replica's loss by 1/R for the gradient sum; the metric wants the mean
        loss = loss * tf.distribute.get_strategy().num_replicas_in_sync
        loss_tracker(self).update_state(loss, sample_weight=tf.shape(x)[0])
        self.compute_metrics(x, y, logits)

    def _step_logs(self, fi, take) -> dict:
        logs = self.get_metrics_result()
        logs.update(
            fi_ewma=tf.identity(self.fi_ewma), threshold=tf.identity(self.threshold),
            alpha_steps=tf.cast(self.alpha_steps, tf.float32),
            pruned_ops=tf.add_n([tf.reduce_sum(1.0 - m) for m in self._masks()]),
            step_fi=fi, took_alpha_step=tf.cast(take, tf.float32),
            lr=tf.cast(self.optimizer.learning_rate, tf.float32),
        )
        return logs


# -- replication: where the step's pieces run ------------------------------------------------
class _InPlace:
    """One device (or a one-replica strategy, in Keras's replica context): each piece of
    the step is called in place and its results are the global batch's."""

    def run(self, fn, *args):
        return fn(*args)

    def sum(self, value):
        return value

    def mean(self, value):
        return value

    def local(self, value):
        return value


class _Replicas:
    """Several replicas, the step traced in cross-replica context: each piece runs on every
    replica (``strategy.run``); per-replica results are reduced, or read on the first
    replica where every replica holds the same value."""

    def __init__(self, strategy):
        self.strategy = strategy

    def run(self, fn, *args):
        return self.strategy.run(lean_in_other_threads(fn), args=args)

    def sum(self, value):
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)

    def mean(self, value):
        return self.strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)

    def local(self, value):
        return self.strategy.experimental_local_results(value)[0]


def _sum_over_replicas(grads: list) -> list:
    """Per-replica gradients (each of the shard's mean ÷ R) → the global batch's, on every
    replica; unchanged outside a multi-replica context."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return grads
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)


# -- loss scaling (mixed precision): no-ops for a float32 optimizer ---------------------------
def _loss_scale(optimizer):
    """The dynamic loss scale of a :class:`keras.optimizers.LossScaleOptimizer` (mixed
    precision), else None."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return tf.convert_to_tensor(optimizer.dynamic_scale)
    return None


def _weight_step_applied(optimizer, fi):
    """Whether a LossScaleOptimizer applied the weight step (it skips one whose float16
    gradients overflowed, FI then not finite); None without loss scaling: always."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return tf.math.is_finite(fi)
    return None


def _apply_global(optimizer, grads: list, variables: list) -> None:
    """Apply gradients that are already the global batch's (after clipping, decay, the
    regulariser). A Keras optimizer sums the replicas' gradients itself, so each replica
    hands it its 1/R share of the global one. A LossScaleOptimizer gets them scaled
    again: it skips the step (and halves the scale) if any is inf/NaN, else unscales."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    scale = _loss_scale(optimizer)
    if scale is not None:
        grads = [g * scale for g in grads]
    if replicas > 1:
        grads = [g / replicas for g in grads]
    optimizer.apply(grads, variables)


__all__ = ["SearchNetwork", "count_parameters"]
