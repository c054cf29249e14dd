"""The alternating constrained search (docs/method.md §4–6), written once for every space.

:class:`AlternatingSearch` is the base of both search models, as Keras's ``BaseConv``
serves ``Conv2D``: it holds the method and each space's model supplies what is its
own. The base owns

* the search state: the clock, the schedule's state, FI's EWMA, the α-step count and
  the regulariser's state (variables, so a checkpoint captures them);
* ``compile``/``fit``'s plumbing: the resume check, the clock's epoch length, the
  regulariser's start, and handing Keras the paired weight and search stream;
* the step in the method's order (§4: clock, decision, α step, weight step, FI,
  the regulariser's end of step, metrics), on one device (:class:`InPlace`) or on R
  replicas (:class:`Replicas`);
* loss scaling for mixed precision (both optimizers, overflowing steps skipped);
* the pruned-op policy: the traced mask, moved on by the levels of
  :mod:`kdarts.search.pruning`, and the retrace it asks for.

A space's model supplies its gradients and the updates they make
(:meth:`~AlternatingSearch._alpha_step_of`, :meth:`~AlternatingSearch._weight_step_of`),
its architecture view (:attr:`~AlternatingSearch.arch_variables`, the masks, the traced
masks, :attr:`~AlternatingSearch.architecture`, the network traced for a mask) and its
data pairing (:meth:`~AlternatingSearch._plan_fit`, a :class:`FitPlan`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from kdarts.compat import SymbolicBuildOnlyIfUnbuilt, lean_in_other_threads, \
    own_variables
from kdarts.options import SKIP_PRUNED_MODES
from kdarts.runtime import LeanTrainFunction
from kdarts.search.activations import prune
from kdarts.search.budget_dual import check_dual_lr, cost_term, dual_ascent, relative_excess
from kdarts.search.pruning import next_traced_mask
from kdarts.search.regularizers import Architecture, get_regularizer, state_variable, \
    state_variables
from kdarts.search.schedules import DynamicSchedule, get_schedule, update_fi_ewma


@dataclasses.dataclass(frozen=True)
class FitPlan:
    """How a space's ``fit`` feeds the search: what its data pairing decided.

    Attributes:
        input_shape: the shape the model is built with, if it is not built yet.
        steps_per_epoch: Keras's steps per epoch (padding steps included).
        clock_steps: the steps of one epoch of the method's clock ``t``.
        before: the steps taken before ``initial_epoch`` (what a resumed model has taken).
        batch_size: the global batch (``skip_pruned_ops="auto"`` weighs it).
        stream: ``start_step ->`` the dataset of the step's elements from that step on.
    """

    input_shape: tuple
    steps_per_epoch: int
    clock_steps: int
    before: int
    batch_size: int | None
    stream: Callable[[int], tf.data.Dataset]


class PrunedOpsPolicy:
    """Mixin of :class:`AlternatingSearch`: which pruned ops the traced step leaves out
    (crb, ``compile(skip_pruned_ops=...)``), the traced mask and its retrace rule.

    The space says what its masks are (:meth:`_masks`, :meth:`_kept_masks`), when it
    can leave ops out at all and what ``"auto"`` means for it, and how its network is
    traced for a mask (:meth:`_keep`)."""

    def _check_pruned_mode(self, skip_pruned_ops, jit_compile) -> str:
        mode = skip_pruned_ops
        if isinstance(mode, bool):
            mode = "levels" if mode else "never"
        if mode not in self.pruned_modes:
            raise ValueError(f"compile(skip_pruned_ops={skip_pruned_ops!r}): one of "
                             f"{', '.join(self.pruned_modes)}, True or False")
        if mode == "every_step" and jit_compile is True:
            raise ValueError("compile(skip_pruned_ops='every_step') runs each op on a "
                             "data-dependent subset of edges, which XLA cannot compile; use "
                             "skip_pruned_ops='levels' (static shapes) with jit_compile=True")
        return mode

    def _masks(self) -> list:
        """The crb prune masks (1 = alive), one per α variable."""
        raise NotImplementedError

    def _kept_masks(self) -> list:
        """The masks the step was last traced for, one per α variable."""
        raise NotImplementedError

    def _alive(self) -> np.ndarray:
        """The prune masks, stacked, as bool (read from the device)."""
        return np.stack([m.numpy() > 0.5 for m in self._masks()])

    def load_own_variables(self, store):
        """Keras's, and weight files without the traced masks (as many variables fewer):
        those start at ones, as a new search's."""
        kept = self._kept_masks()
        own = own_variables(self)
        if len(store.keys()) != len(own) - len(kept):
            return super().load_own_variables(store)
        others = [v for v in own if not any(v is k for k in kept)]
        for i, v in enumerate(others):
            v.assign(store[f"{i}"])
        for k in kept:
            k.assign(tf.ones(k.shape))

    def make_train_function(self, force: bool = False):
        """The train function (:class:`kdarts.runtime.LeanTrainFunction`'s); with crb, when
        :meth:`pruned_ops_mode` is ``"levels"``, traced for the ops the traced mask keeps.

        Pruning is for good, so the mask only loses ones: a step traced for the mask of
        one moment computes every op alive later, and gives an op pruned since a zero
        weight. The traced mask (:meth:`_kept_masks`) is all ones until the share of
        pruned ops reaches ``pruning.PRUNE_LEVELS[0]``; each time it first reaches a
        further level, the mask of that moment becomes the traced one
        (:func:`~kdarts.search.pruning.next_traced_mask`) and the step is traced again,
        before the next step. Being state, it is checkpointed: a resumed search traces the
        same step as the uninterrupted one (the same rounding).
        """
        if self.train_function is not None and not force:
            return self.train_function
        step = super().make_train_function(force=True)
        if self.pruned_ops_mode() != "levels":
            return step
        kept = self._update_kept()

        def train_function(iterator):
            # the traced mask is this closure's kept: only the prune masks need reading
            if next_traced_mask(self._alive(), kept) is not kept:  # a further level
                return self.make_train_function(force=True)(iterator)
            with self._tracing_kept(kept):
                return step(iterator)

        train_function.lean_graph_optimization = getattr(step, "lean_graph_optimization", False)
        self.train_function = train_function
        return train_function

    def pruned_ops_mode(self, batch_size: int | None = None,
                        total_steps: int | None = None) -> str:
        """How this step leaves pruned ops out: compile's ``skip_pruned_ops``, with
        ``"auto"`` decided by the space (:meth:`_auto_pruned_mode`) from the search's
        batch size and weight steps (default: those of the running ``fit``, unknown before
        it); ``"never"`` where nothing is left out (softmax prunes nothing)."""
        mode = getattr(self, "skip_pruned_ops", "auto")
        if self.activation != "crb" or not self._leaves_pruned_ops_out():
            return "never"
        if mode != "auto":
            return mode
        plan_batch, plan_steps = getattr(self, "_fit_plan", (None, None))
        return self._auto_pruned_mode(batch_size or plan_batch, total_steps or plan_steps)

    def _leaves_pruned_ops_out(self) -> bool:
        """Whether this network can leave pruned ops out of its step at all."""
        return True

    def _auto_pruned_mode(self, batch_size, total_steps) -> str:
        """``skip_pruned_ops="auto"``'s choice for this space."""
        return "never"

    def _update_kept(self) -> np.ndarray:
        """The traced mask (stacked, bool), moved on by
        :func:`~kdarts.search.pruning.next_traced_mask` from the prune mask of now."""
        kept = np.stack([k.numpy() > 0.5 for k in self._kept_masks()])
        moved = next_traced_mask(self._alive(), kept)
        if moved is not kept:
            for var, value in zip(self._kept_masks(), moved):
                var.assign(value.astype(np.float32))
        return moved

    @contextlib.contextmanager
    def _tracing_kept(self, kept: np.ndarray):
        """Within it, the network is traced for the traced mask ``kept``; outside, for
        every op. The space's :meth:`_keep` sets it up and says whether anything is
        left out (then the gradient functions are keyed by it)."""
        restore = self._keep(kept)
        self._kept_key = kept.tobytes() if restore is not None else None
        try:
            yield
        finally:
            if restore is not None:
                restore()
            self._kept_key = None

    def _keep(self, kept: np.ndarray):
        """Trace the space's network for the traced mask ``kept``: returns the function
        that undoes it, or None when nothing is left out."""
        return None


class AlternatingSearch(PrunedOpsPolicy, SymbolicBuildOnlyIfUnbuilt, LeanTrainFunction,
                        keras.Model):
    """A ``keras.Model`` whose ``fit`` runs DARTS-PRIME's alternating search.

    Subclasses create the search state (:func:`~kdarts.search.schedules.add_schedule_state`,
    the regulariser's) and define the space's part: :attr:`arch_variables`,
    :meth:`_masks`, :meth:`_kept_masks`, :attr:`architecture`, :meth:`_alpha_step_of`,
    :meth:`_weight_step_of`, :meth:`_update_weight_metrics`, :meth:`_plan_fit`, and,
    to leave pruned ops out, :meth:`_auto_pruned_mode` and :meth:`_keep`.
    """

    #: the ``skip_pruned_ops`` modes this space computes
    pruned_modes: tuple[str, ...] = SKIP_PRUNED_MODES

    def _init_search(self) -> None:
        self._search_compiled = False
        self.budget = None  # a space's budget from compile (an image Budget): D_B replaces D
        self._projection = None
        self.budget_dual_lr = None  # η of the budget's dual λ (None: no expected-cost term)
        self._kept_key = None
        self._lr_cosine = None  # (lr_max, lr_min) when the search anneals the weight rate
        self.trace_count = 0  # python-side: how often train_step was traced

    def _add_search_metrics(self, names=("search_loss", "reg", "fi")) -> None:
        self._search_metrics = {name: keras.metrics.Mean(name=name) for name in names}

    def _add_state(self, name: str, shape=(), init="zeros", dtype="float32"):
        """A non-trainable float32 state variable. Under tf.distribute every replica computes
        the same state from all-reduced gradients and updates its own copy."""
        return self.add_weight(shape=shape, initializer=init, dtype=dtype, trainable=False,
                               autocast=False, name=name)

    # -- the architecture view (the space's) ------------------------------------------------
    @property
    def arch_variables(self) -> list:
        """The architecture parameters α."""
        raise NotImplementedError

    @property
    def weight_variables(self) -> list:
        """Every trainable variable except α: the network weights w."""
        arch = {id(v) for v in self.arch_variables}
        return [v for v in self.trainable_variables if id(v) not in arch]

    @property
    def architecture(self) -> Architecture:
        """α, the masks and the cell shape, as the regulariser sees them."""
        raise NotImplementedError

    def _budget_projection(self, budget):
        """The space's D_B in graph ops for ``budget`` (:class:`kdarts.image.budget.Budget`)."""
        raise ValueError(f"{type(self).__name__} takes no budget")

    def _state_ready(self) -> bool:
        """Whether α and the search state exist (the regulariser's state needs them)."""
        return self.built

    @property
    def regularizer_variables(self) -> list:
        """The compiled regulariser's own variables (ADMM's Z and U; none for proximity)."""
        return state_variables(getattr(self, "regularizer_state", {}))

    def _create_regularizer_state(self) -> None:
        """The compiled regulariser's variables on the model (after the model's own)."""
        self.regularizer_state = self.regularizer.create_state(self, self.architecture)

    # -- compile ------------------------------------------------------------------------------
    def _configure_search(self, *, arch_optimizer, schedule, regularizer, search_data,
                          weight_decay: float, arch_weight_decay: float, clip_norm: float,
                          skip_pruned_ops: str, budget=None, budget_dual_lr=None) -> None:
        """The search's part of ``compile``, after Keras's (which set the weight optimizer)."""
        self.budget_dual_lr = check_dual_lr(budget_dual_lr, budget)
        self.budget = budget
        self._projection = None if budget is None else self._budget_projection(budget)
        if self.budget_dual_lr is not None:
            # λ, made here (after every other variable: weight files address them by
            # creation order), so a search without the term keeps its variables and step
            state_variable(self, "budget_dual", ())  # kept as self.budget_dual
        self.arch_optimizer = keras.optimizers.get(arch_optimizer)
        # float16 gradients underflow: Keras wrapped the weight optimizer, α's gets the same
        if (isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
                and not isinstance(self.arch_optimizer, keras.optimizers.LossScaleOptimizer)):
            self.arch_optimizer = keras.optimizers.LossScaleOptimizer(self.arch_optimizer)
        self.schedule = get_schedule(schedule)
        if getattr(self.schedule, "latch", False) and not self._takes_latch():
            raise ValueError(f"{type(self).__name__}.compile: a latching schedule (DynamicSchedule("
                             "latch=True), 'dynamic-latched') is the authors' recurrent search's "
                             "rule; this search takes 'dynamic' or 'fixed' (the authors' "
                             "convolutional loop has no latch)")
        self.regularizer = get_regularizer(regularizer)
        if self._state_ready():  # else build makes it
            self._create_regularizer_state()
        self.search_data = search_data
        self.weight_decay = float(weight_decay)
        self.arch_weight_decay = float(arch_weight_decay)
        self.clip_norm = float(clip_norm)
        self.skip_pruned_ops = skip_pruned_ops
        if (self._state_ready() and isinstance(self.schedule, DynamicSchedule)
                and int(self.search_step.numpy()) == 0):
            self.threshold.assign(self.schedule.initial_threshold)
        self._search_compiled = True
        self.train_function = None

    def _takes_latch(self) -> bool:
        """Whether this search runs a latching schedule (the space's epochs define it)."""
        return False

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

    # -- fit: attach the data streams where the saved state says they are -------------------
    def _plan_fit(self, x, y, epochs: int, initial_epoch: int,
                  steps_per_epoch: int | None) -> FitPlan:
        """The space's data pairing: checks ``x`` and says how to feed it (:class:`FitPlan`)."""
        raise NotImplementedError

    def _prepare_fit(self) -> None:
        """What the space creates before the step is traced (after the model is built)."""
        self.build_optimizers()

    def fit(self, x=None, y=None, *, epochs: int = 1, initial_epoch: int = 0,
            steps_per_epoch: int | None = None, **kwargs):
        """Keras ``fit`` on the weight split; the search split comes from ``compile``.

        Both streams resume where the model's step counter says they stopped, so a search
        restored from a checkpoint sees exactly the data an uninterrupted one would have.
        """
        name = type(self).__name__
        if not self._search_compiled:
            raise RuntimeError(f"call {name}.compile(...) before fit")
        if self.search_data is None:
            raise ValueError(f"{name}.compile(search_data=...) is required: the search "
                             "split is read on the steps that update α")
        plan = self._plan_fit(x, y, epochs, initial_epoch, steps_per_epoch)
        if not self.built:
            self.build(plan.input_shape)
        self._prepare_fit()
        step = int(self.search_step.numpy())
        if step and step != plan.before:
            raise ValueError(
                f"the model has taken {step} search steps, not the {plan.before} before "
                f"initial_epoch ({initial_epoch}); pass the epoch the checkpoint was "
                "written at")
        self.total_epochs.assign(float(epochs))
        self.steps_per_epoch.assign(float(plan.clock_steps))
        # what "auto" weighs: the whole search's steps, resumed or not
        self._fit_plan = (plan.batch_size, int(epochs) * int(plan.steps_per_epoch))
        stream = plan.stream(step)
        if step == 0:  # a new search (ADMM: Z starts at act(α₀), or α₀)
            self.regularizer.initialize(self.architecture, self.regularizer_state)
        self.train_function = None  # the step is traced for this fit's data
        kwargs.setdefault("shuffle", False)  # the data streams are shuffled by kdarts.data
        return super().fit(stream, epochs=epochs, initial_epoch=initial_epoch,
                           steps_per_epoch=plan.steps_per_epoch, **kwargs)

    # -- the step, in docs/method.md §4's order -----------------------------------------------
    def _search_step(self, data, replicas: "InPlace | Replicas") -> dict:
        """One minibatch of the search: clock, α step if the schedule says so, weight step,
        the regulariser's end of step (ADMM's Z/U when due), metrics. A step whose data
        says it is padding (:meth:`_is_real`) changes nothing.

        ``replicas`` says where each piece runs. One device (:class:`InPlace`): every
        piece in place, inside Keras's train function. Several replicas
        (:class:`Replicas`): the clock and the decision once, in cross-replica context,
        and each other piece on every replica (``strategy.run``), the α step inside the
        ``tf.cond``: MirroredStrategy's cross-replica calls (all-reduces, a Keras
        optimizer's update) cannot sit in a conditional traced in replica context.
        """
        self.trace_count += 1  # runs at trace time only: counts (re)traces
        real = self._is_real(data, replicas)
        if real is None:
            return self._alternate(data, replicas)
        return tf.cond(real, lambda: self._alternate(data, replicas),
                       lambda: self._step_logs(tf.constant(0.0), tf.constant(False)))

    def _alternate(self, data, replicas) -> dict:
        step, t = self._advance_clock()  # §4.1
        replicas.run(self._begin_step, data)
        take = self._decide(step)  # §4.2, §5

        def alpha_step():  # §4.2, and §4.4's crb prune
            ce, reg = replicas.run(self._alpha_step_of, data, t)
            # each replica's CE is its shard's mean ÷ R; the penalty is the same everywhere
            return replicas.sum(ce), replicas.mean(reg)

        search_loss, reg = tf.cond(take, alpha_step,
                                   lambda: (tf.constant(0.0), tf.constant(0.0)))
        fi, outputs = replicas.run(self._weight_step_of, data)  # §4.3
        replicas.run(self._track_fi, fi)  # §5: the dynamic schedule's FI EWMA
        replicas.run(self._regularizer_after_step, take)  # §4.5: ADMM's Z and U when due
        replicas.run(self._update_metrics, data, fi, take, search_loss, reg, outputs)
        return self._step_logs(replicas.local(fi), take)

    def _is_real(self, data, replicas):
        """Whether this step is one of the search's (None: always), read from ``data``."""
        return None

    def _begin_step(self, data) -> None:
        """The space's start of a step (the recurrent search's hidden-state restart)."""

    def _alpha_step_of(self, data, t):
        """One α step on this step's data: ``(CE, R(α))``."""
        raise NotImplementedError

    def _weight_step_of(self, data):
        """One weight step on this step's data: ``(FI, outputs)``, ``outputs`` a tuple for
        :meth:`_update_weight_metrics`."""
        raise NotImplementedError

    def _update_weight_metrics(self, data, *outputs) -> None:
        """The space's metrics of the weight batch."""
        raise NotImplementedError

    def train_step(self, data):
        """One search step on one device (Keras's train function calls it per batch)."""
        return self._search_step(data, InPlace())

    def _replicated_train_function(self):
        """The step under several replicas (see :class:`kdarts.runtime.LeanTrainFunction`,
        which calls it under the lean graph-optimiser settings)."""
        if self.steps_per_execution != 1:
            raise ValueError(f"a {type(self).__name__} under a multi-replica strategy runs one "
                             "step per call: compile(steps_per_execution=1), got "
                             f"{self.steps_per_execution}")
        replicas = Replicas(self.distribute_strategy)

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

    def _penalty(self, t) -> tf.Tensor:
        """R(α) of the compiled regulariser at clock ``t``."""
        return self.regularizer(self.architecture, self.regularizer_state, t,
                                self.total_epochs)

    def _budget_excess(self) -> tf.Tensor:
        """``(E(act(α)) − B)/B`` of the budget's expected cost (docs/method.md §8)."""
        expected = self._projection.expected_cost(self.architecture.activated())
        return relative_excess(expected, self.budget.limit)

    def _penalty_gradients(self, t):
        """``(R(α), ∇α R)`` (zeros where R does not depend on α); with the budget's dual
        (``compile(budget_dual_lr=...)``) the gradient also holds its term λ·(E − B)/B."""
        with tf.GradientTape() as tape:
            reg = self._penalty(t)
            total = reg
            if self.budget_dual_lr is not None:
                total = reg + cost_term(self.budget_dual, self._budget_excess())
        grads = tape.gradient(total, self.arch_variables)
        return reg, [tf.zeros_like(a) if g is None else g
                     for g, a in zip(grads, self.arch_variables)]

    def _apply_alpha_gradients(self, grads: list) -> None:
        """The α update: L2 on α, the α optimizer, crb's prune (§4.4: only an α step can
        move α, so prune here; a pruned α is 0 and never moves again), the budget's dual λ
        when it has one, the count."""
        grads = [g + self.arch_weight_decay * v for g, v in zip(grads, self.arch_variables)]
        apply_global(self.arch_optimizer, grads, self.arch_variables)
        if self.activation == "crb":
            for a, m in zip(self.arch_variables, self._masks()):
                new_a, new_m = prune(a, m)
                m.assign(new_m)
                a.assign(new_a)
        if self.budget_dual_lr is not None:  # λ's dual ascent, at the α just taken
            self.budget_dual.assign(dual_ascent(self.budget_dual, self._budget_excess(),
                                                self.budget_dual_lr))
        self.alpha_steps.assign_add(1)

    def _clip_and_apply(self, grads: list, fi, lr_scale=None) -> None:
        """The weight update: clip to ``clip_norm`` (PyTorch's rule, by the global norm
        √FI), L2, the step's share ``lr_scale`` of the learning rate, the optimizer. The
        factor is NaN if FI is not finite: a LossScaleOptimizer then skips the step."""
        norm = tf.sqrt(fi)
        clip = self._clip_coefficient(norm)
        clip += norm - norm
        wvars = self.weight_variables
        grads = [g * clip + self.weight_decay * v for g, v in zip(grads, wvars)]
        if lr_scale is not None:
            grads = [g * lr_scale for g in grads]
        apply_global(self.optimizer, grads, wvars)

    def _clip_coefficient(self, norm) -> tf.Tensor:
        """The factor that clips gradients of global norm ``norm`` to ``clip_norm`` (the
        space's reference rounds it its own way)."""
        raise NotImplementedError

    def _track_fi(self, fi) -> None:
        """§5: FI's EWMA, from FI on the first step. A float16 step whose gradients
        overflowed was skipped and says nothing of FI: it leaves the EWMA as it was."""
        ewma = getattr(self.schedule, "ewma", 0.2)
        new_ewma = update_fi_ewma(self.fi_ewma, fi, tf.equal(self.search_step, 1), ewma)
        applied = weight_step_applied(self.optimizer, fi)
        if applied is not None:
            new_ewma = tf.where(applied, new_ewma, self.fi_ewma)
        self.fi_ewma.assign(new_ewma)

    def _regularizer_after_step(self, take) -> None:
        """§4.5: the regulariser's end of step (ADMM's Z/U update when its period says)."""
        self.regularizer.after_step(self.architecture, self.regularizer_state,
                                    self.alpha_steps, take)

    def _update_metrics(self, data, fi, take, search_loss, reg, outputs) -> None:
        """The step's metrics: the α step's CE and R(α) when one was taken, FI when the
        weight step was applied, and the space's metrics of the weight batch."""
        weight = tf.cast(take, tf.float32)
        self._search_metrics["search_loss"].update_state(search_loss, sample_weight=weight)
        self._search_metrics["reg"].update_state(reg, sample_weight=weight)
        applied = weight_step_applied(self.optimizer, fi)
        if applied is None:
            self._search_metrics["fi"].update_state(fi, sample_weight=1.0)
        else:  # a skipped step's FI (inf) weighs nothing, and adds no NaN
            self._search_metrics["fi"].update_state(tf.where(applied, fi, 0.0),
                                                    sample_weight=tf.cast(applied, tf.float32))
        self._update_weight_metrics(data, *outputs)

    def _step_logs(self, fi, take) -> dict:
        logs = self.get_metrics_result()
        logs.update(
            fi_ewma=tf.identity(self.fi_ewma), threshold=tf.identity(self.threshold),
            alpha_steps=tf.cast(self.alpha_steps, tf.float32),
            pruned_ops=tf.add_n([tf.reduce_sum(1.0 - m) for m in self._masks()]),
            step_fi=tf.cast(fi, tf.float32), took_alpha_step=tf.cast(take, tf.float32),
            lr=tf.cast(self.optimizer.learning_rate, tf.float32),
        )
        if self.budget_dual_lr is not None:  # λ and E(act(α))/B
            logs.update(budget_dual=tf.identity(self.budget_dual),
                        expected_cost_ratio=1.0 + self._budget_excess())
        return logs

# -- replication: where the step's pieces run ------------------------------------------------
class InPlace:
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


class Replicas:
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


def num_replicas() -> int:
    """Replicas computing the step together (1 outside tf.distribute)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def sum_over_replicas(grads: list) -> list:
    """Per-replica gradients (each of the shard's mean ÷ R) → the global batch's, on every
    replica; unchanged outside a multi-replica context."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return grads
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)


# -- loss scaling (mixed precision): no-ops for a float32 optimizer ---------------------------
def loss_scale(optimizer):
    """The dynamic loss scale of a :class:`keras.optimizers.LossScaleOptimizer` (mixed
    precision), else None."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return tf.convert_to_tensor(optimizer.dynamic_scale)
    return None


def weight_step_applied(optimizer, fi):
    """Whether a LossScaleOptimizer applied the weight step (it skips one whose float16
    gradients overflowed, FI then not finite); None without loss scaling: always."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return tf.math.is_finite(fi)
    return None


def apply_global(optimizer, grads: list, variables: list) -> None:
    """Apply gradients that are already the global batch's (after clipping, decay, the
    regulariser). A Keras optimizer sums the replicas' gradients itself, so each replica
    hands it its 1/R share of the global one. A LossScaleOptimizer gets them scaled
    again: it skips the step (and halves the scale) if any is inf/NaN, else unscales."""
    replicas = num_replicas()
    scale = loss_scale(optimizer)
    if scale is not None:
        grads = [g * scale for g in grads]
    if replicas > 1:
        grads = [g / replicas for g in grads]
    optimizer.apply(grads, variables)


__all__ = ["AlternatingSearch", "FitPlan", "InPlace", "Replicas", "apply_global",
           "loss_scale", "num_replicas", "sum_over_replicas", "weight_step_applied"]
