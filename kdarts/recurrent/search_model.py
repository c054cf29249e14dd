"""The recurrent search model for language modelling: what its search has of its own.

Embedding → :class:`~kdarts.recurrent.search_cell.RecurrentSearchCell` over a BPTT segment →
a decoder tied to the embedding → log-softmax. ``compile(...)`` then ``fit(...)``
runs the search through :class:`~kdarts.search.alternating.AlternatingSearch`, the
step :class:`kdarts.SearchNetwork` runs (docs/method.md §4–6), with
the authors' language-model settings: an α step when the schedule says so (Adam
3e-3, L2 1e-3, on the search split), then a weight step (SGD lr 20, clip 0.25, L2
5e-7, the temporal activation regulariser β = 1e-3), FI = Σ‖∇w‖² before clipping
for the dynamic schedule, crb pruning, a regulariser (proximity, ADMM or any other
registered in :data:`kdarts.options.REGULARIZERS`). The rules come from
:mod:`kdarts.search` (activations, schedules, regularisers, which see α through the
same :class:`~kdarts.search.regularizers.Architecture` view as in the convolutional
search); every piece of state (α, mask, the regulariser's Z/U, schedule, clock, the
hidden states carried from segment to segment) is a variable, so the step is one
graph with no Python in it.

Example:
    >>> from kdarts.recurrent import RecurrentSearchModel, bptt_dataset
    >>> model = RecurrentSearchModel(vocab_size=50, units=16, activation="crb")
    >>> model.compile(search_data=bptt_dataset(valid_ids, 4, 8))      # doctest: +SKIP
    >>> model.fit(bptt_dataset(train_ids, 4, 8), epochs=2)           # doctest: +SKIP
    >>> print(model.genotype())                                      # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from kdarts.budget import RECURRENT_BUDGET_REFUSAL, BudgetError
from kdarts.compat import built_input_shape, unlocked_state
from kdarts.ops import own_dtype_policy
from kdarts.options import RECURRENT_SKIP_PRUNED_MODES
from kdarts.parameters import count_parameters
from kdarts.recurrent.data import BPTTStream, eval_segments, search_segments
from kdarts.recurrent.dropout import apply_mask, draw_masks
from kdarts.recurrent.genotype import (
    CRB_RECURRENT_PRIMITIVES,
    RECURRENT_PRIMITIVES,
    RecurrentGenotype,
    discretize_recurrent,
    num_recurrent_edges,
)
from kdarts.recurrent.operations import (
    add_tied_embedding,
    clip_coefficient,
    sequence_nll,
    slowness_penalty,
    time_mask,
)
from kdarts.recurrent.search_cell import RecurrentSearchCell
from kdarts.search.activations import AlphaInitializer, activate, check_activation
from kdarts.search.alternating import AlternatingSearch, FitPlan, loss_scale, num_replicas, \
    sum_over_replicas
from kdarts.search.pruning import recurrent_auto_mode, recurrent_kept_edges
from kdarts.search.regularizers import Architecture, add_admm_state
from kdarts.search.schedules import add_schedule_state

# the recurrent cell's shape for discrete_onehot (and the regulariser's Architecture):
# node k reads 1 + k states, keeps one
RECURRENT_SHAPE = {"inputs": 1, "keep": 1}


class RecurrentGradients:
    """Mixin of :class:`RecurrentSearchModel`: the language model's gradients and the
    updates they make (the α step, first order or the authors' unrolled one; the weight
    step with the slowness penalty, FI and PyTorch's clip)."""

    def alpha_gradient(self, tokens, targets, hidden, t, masks: dict | None = None,
                       length=None):
        """``(∇α, CE, R, last_hidden)`` of CE(search segment) + R(α), w held fixed.

        Time-major ``tokens``/``targets``; ``masks`` as
        :meth:`RecurrentSearchModel.forward` takes them. Under R replicas each computes its
        shard's share (CE ÷ R) and ∇α is the global one.
        """
        share, scale = _replica_share(), loss_scale(self.arch_optimizer)
        with tf.GradientTape() as tape:
            log_probs, last, _ = self.forward(tokens, hidden, training=True, masks=masks,
                                              length=length)
            ce = sequence_nll(log_probs, targets, length)
            reg = self._penalty(t)
            loss = _scaled(ce + reg, share, scale)
        grad = _unscaled(tape.gradient(loss, self.alpha), scale)
        if share is not None:
            grad, ce = sum_over_replicas([grad])[0], ce * share
        return grad, ce, reg, last

    def _ce_gradients(self, tokens, targets, hidden, masks, length, params, sources,
                      update_stats=True):
        """``(CE, ∇sources CE, last)`` at weights ``params`` (tensors) on a segment."""
        share = _replica_share()
        with tf.GradientTape() as tape:
            tape.watch(params)
            log_probs, last, _ = self.forward(tokens, hidden, training=True, masks=masks,
                                              params=params, length=length,
                                              update_stats=update_stats)
            ce = sequence_nll(log_probs, targets, length)
            loss = ce if share is None else ce * share
        grads = tape.gradient(loss, sources)
        return ce, _global([tf.convert_to_tensor(g) for g in grads]), last

    def unrolled_alpha_gradient(self, train, search, t, eta, masks: dict | None = None,
                                search_masks: dict | None = None):
        """``(∇α, CE, R, last_hidden)``: DARTS's second-order α gradient (see ``compile``).

        ``train``/``search``: ``(tokens, targets, hidden, length)``, time-major. ``eta``:
        the virtual step's learning rate. ``masks`` are the train segment's dropout masks,
        used for the virtual step and both finite-difference passes (the Hessian is of the
        loss the virtual step took); ``search_masks`` the search segment's. The moving
        statistics move with the three train passes, not the virtual model's, as the
        reference's copy does. R(α) adds its own gradient (w-free).
        """
        x, y, h, n = train
        xs, ys, hs, ns = search
        w = [tf.convert_to_tensor(v) for v in self.weight_variables]
        _, g, _ = self._ce_gradients(x, y, h, masks, n, w, w)
        coef = self.clip_norm / (_norm(g) + 1e-6)  # PyTorch's factor, applied only when < 1
        virtual = [wi - eta * (gi * tf.minimum(coef, 1.0) + self.weight_decay * wi)
                   for wi, gi in zip(w, g)]
        if self.unrolled == "reference":  # their copy reloads the stale tied decoder matrix
            virtual[0] = w[0]
        ce, grads, last = self._ce_gradients(xs, ys, hs, search_masks, ns, virtual,
                                             [self.alpha] + virtual, update_stats=False)
        d_alpha, v = grads[0], grads[1:]
        v = [a * tf.minimum(1.0, self.clip_norm / (_norm(v) + 1e-6)) for a in v]
        eps = 0.01 / _norm(v)
        hessian = [self._ce_gradients(x, y, h, masks, n,
                                      [wi + sign * eps * vi for wi, vi in zip(w, v)],
                                      [self.alpha])[1][0]
                   for sign in (1.0, -1.0)]
        # the reference scales by the first clip's coefficient even when it is above 1
        d_alpha = d_alpha - eta * coef * (hessian[0] - hessian[1]) / (2.0 * eps)
        reg, reg_grads = self._penalty_gradients(t)
        share = _replica_share()
        return d_alpha + reg_grads[0], ce if share is None else ce * share, reg, last

    def weight_gradients(self, tokens, targets, hidden, masks: dict | None = None,
                         length=None):
        """``(∇w, CE, FI, last_hidden)``: the weight loss's gradients (unclipped) and Σ‖∇w‖²."""
        share, scale = _replica_share(), loss_scale(self.optimizer)
        with tf.GradientTape() as tape:
            log_probs, last, outputs = self.forward(tokens, hidden, training=True, masks=masks,
                                                    length=length)
            ce = sequence_nll(log_probs, targets, length)
            loss = ce + self.slowness * slowness_penalty(outputs, length)
            if self.activity_l2:
                dropped = apply_mask(outputs, (masks or {}).get("output"), time_axis=0)
                values, count = time_mask(tf.square(dropped), length)
                loss += self.activity_l2 * tf.reduce_sum(values) / count
            loss = _scaled(loss, share, scale)
        grads = tape.gradient(loss, self.weight_variables)
        # the embedding's arrives sparse
        grads = _global([_unscaled(tf.convert_to_tensor(g), scale) for g in grads])
        fi = tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads])
        return grads, ce, fi, last

    def apply_weight_step(self, grads, fi, lr_scale=None) -> None:
        """Clip to ``clip_norm``, add the L2 term, one optimizer step (the reference's order).

        ``lr_scale``: the step's learning rate × this (the segment's length / bptt); the
        whole update is scaled, which is the learning rate's scaling for plain SGD."""
        self._clip_and_apply(grads, fi, lr_scale)

    def _clip_coefficient(self, norm) -> tf.Tensor:
        return clip_coefficient(norm, self.clip_norm)

    def _learning_rate(self) -> tf.Tensor:
        return tf.cast(self.optimizer.learning_rate, tf.float32)

    def _alpha_step(self, train, search, t, lr_scale):
        """One α step on the time-major search segment ``search`` (``(tokens, targets,
        length)``; ``train`` the weight segment, for the unrolled gradient): ``(CE, R)``."""
        xs, ys, ns = search
        hidden, search_hidden = self._rows(self.hidden), self._rows(self.search_hidden)
        if self.unrolled:
            x, y, n = train
            batch = int(hidden.shape[0])
            masks = self._dropout_masks(batch, True)
            grad, ce, reg, last = self.unrolled_alpha_gradient(
                (x, y, hidden, n), (xs, ys, search_hidden, ns), t,
                self._learning_rate() * lr_scale, masks, self._dropout_masks(batch, True))
        else:
            grad, ce, reg, last = self.alpha_gradient(xs, ys, search_hidden, t, length=ns)
        self._apply_alpha_gradients([grad])
        self._carry(self.search_hidden, last)
        return ce, reg

    def _alpha_step_of(self, data, t):
        train, search = _time_major(data)
        return self._alpha_step(train[:3], search, t, train[3])

    def _weight_step_of(self, data):
        (x, y, n, lr_scale), _ = _time_major(data)
        grads, ce, fi, last = self.weight_gradients(x, y, self._rows(self.hidden), length=n)
        self.apply_weight_step(grads, fi, lr_scale)
        self._carry(self.hidden, last)
        return fi, (ce,)

    def _update_weight_metrics(self, data, ce) -> None:
        """The weight segment's CE (its shard's, averaged over the replicas)."""
        self._search_metrics["loss"].update_state(ce)


class BPTTStreams:
    """Mixin of :class:`RecurrentSearchModel`: its data pairing, BPTT segments of the
    training and the search text, and the hidden states carried from one to the next
    (each replica its rows of them)."""

    def _plan_fit(self, x, y, epochs, initial_epoch, steps_per_epoch) -> FitPlan:
        """``x``: a :class:`~kdarts.recurrent.data.BPTTStream` (the authors' segments: mostly
        ``bptt`` long, 5 % half as long, the learning rate scaled by length / bptt; one
        Keras epoch is one pass over the text), or a finite dataset of fixed ``(tokens,
        targets)`` segments in corpus order (one epoch; ``steps_per_epoch`` may cut it).
        Both hidden states restart from zeros at every epoch, as the reference's."""
        streams = isinstance(x, BPTTStream)
        if streams != isinstance(self.search_data, BPTTStream) or y is not None or not (
                streams or isinstance(x, tf.data.Dataset)):
            raise TypeError("RecurrentSearchModel.fit takes a BPTTStream (with a BPTTStream "
                            "as compile's search_data) or a tf.data.Dataset of (tokens, "
                            "targets) segments (with such a dataset as search_data), and no y")
        if streams:
            segments, steps_per_epoch, before = search_segments(x, self.search_data, epochs,
                                                                initial_epoch)
            return FitPlan(input_shape=(x.batch_size, x.max_length),
                           steps_per_epoch=steps_per_epoch, clock_steps=x.nominal_steps,
                           before=before, batch_size=x.batch_size,
                           stream=lambda step: segments.map(_per_row))
        if steps_per_epoch is None:
            steps_per_epoch = int(x.cardinality())
            if steps_per_epoch <= 0:
                raise ValueError("fit(steps_per_epoch=...) is required unless x is finite")
        shape = tuple(x.element_spec[0].shape)
        return FitPlan(input_shape=shape, steps_per_epoch=steps_per_epoch,
                       clock_steps=steps_per_epoch, before=initial_epoch * steps_per_epoch,
                       batch_size=shape[0],
                       stream=lambda step: self._fixed_segments(x, step, steps_per_epoch))

    def _fixed_segments(self, x, step: int, steps_per_epoch: int) -> tf.data.Dataset:
        """Fixed ``(tokens, targets)`` segments paired with the search split's from weight
        step ``step`` on, in the element form :func:`search_segments` gives."""
        stream = tf.data.Dataset.zip((x.repeat().skip(step),
                                      self.search_data.repeat().skip(step)))

        def fixed(k, pair):
            (xt, yt), (xs, ys) = pair
            n, ns = tf.shape(xt)[1], tf.shape(xs)[1]
            return ((xt, yt, n, tf.constant(1.0), tf.equal((k + step) % steps_per_epoch, 0),
                     tf.constant(True)), (xs, ys, ns))

        return stream.enumerate().map(fixed).map(_per_row)

    def _prepare_fit(self) -> None:
        if self.hidden is None:
            raise ValueError("the search carries hidden states of a fixed batch: build the "
                             "model with a known batch size (segments batched with "
                             "drop_remainder)")
        super()._prepare_fit()

    def _is_real(self, data, replicas):
        """A step marked not ``real`` (an epoch's padding) changes nothing."""
        return replicas.local(data[0][5])[0]

    def _begin_step(self, data) -> None:
        first = data[0][4][0]
        for h in (self.hidden, self.search_hidden):  # the reference restarts both each epoch
            h.assign(tf.where(first, tf.zeros_like(h), h))
        if self._latches():  # the authors' latch is reset at each epoch's start
            self.alpha_latch.assign(tf.where(first, 0.0, self.alpha_latch))

    def _takes_latch(self) -> bool:
        return True

    def _latches(self) -> bool:
        return getattr(self.schedule, "latch", False) and \
            getattr(self, "alpha_latch", None) is not None

    def _create_latch_state(self) -> None:
        """A latching schedule's state (1: an α step was taken this epoch), after every
        other variable, so that a search without it keeps its weight files' layout."""
        if getattr(self.schedule, "latch", False) and getattr(self, "alpha_latch", None) is None:
            with self.distribute_strategy.scope(), unlocked_state(self):
                self.alpha_latch = self._add_state("alpha_latch")

    def _decide(self, step) -> tf.Tensor:
        """The schedule's decision (which alone moves its threshold), latched for the rest
        of the epoch by a latching schedule."""
        take = super()._decide(step)
        if not self._latches():
            return take
        take = self.schedule.latched(take, self.alpha_latch > 0.5)
        self.alpha_latch.assign(tf.cast(take, tf.float32))
        return take

    def _rows(self, state):
        """This replica's rows of a carried hidden state (all of it on one device)."""
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            return state
        rows = int(state.shape[0]) // ctx.num_replicas_in_sync
        return state[ctx.replica_id_in_sync_group * rows:][:rows]

    def _carry(self, state, last) -> None:
        """Carry every replica's ``last`` rows into ``state``, which all replicas hold."""
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            last = ctx.all_gather(last, axis=0)
        state.assign(tf.cast(last, state.dtype))


@keras.saving.register_keras_serializable(package="kdarts")
class RecurrentSearchModel(RecurrentGradients, BPTTStreams, AlternatingSearch):
    """DARTS's recurrent cell search for language modelling, one α matrix (36 × ops).

    Args:
        vocab_size: words in the vocabulary (``<unk>`` and ``<eos>`` included).
        units: embedding and hidden size (the authors' emsize = nhid, 300 in their search).
        activation: ``"crb"`` (clip to [0, 1] with a permanent prune mask) or ``"softmax"``.
        primitives: candidate activations; default the 5 with ``none`` (softmax) or 4 (crb).
        steps: intermediate nodes (8).
        dropout, dropout_h, dropout_x, dropout_i, dropout_e: the authors' search rates
            for the cell's output, its hidden-state inputs, its input, the embedded
            input and whole embedding rows (0.75, 0.25, 0.75, 0.2, 0).
        seed: seeds the dropout masks (default: drawn from numpy's global generator, which
            ``keras.utils.set_random_seed`` seeds; the weights follow Keras's global seed).
        dtype: Keras's ``dtype`` argument; ``"mixed_float16"`` computes the cell, the
            embedding and the decoder in float16 with float32 variables. α, act(α), the
            normalisation's statistics, the carried hidden states, the log-probabilities
            and the losses stay float32, and ``compile`` adds dynamic loss scaling to both
            optimizers (:class:`keras.optimizers.LossScaleOptimizer`).

    ``call(tokens)`` takes (batch, time) word ids and returns (batch, time, vocab) log
    probabilities from a zero hidden state; :meth:`forward` carries a given one.
    """

    pruned_modes = RECURRENT_SKIP_PRUNED_MODES

    @own_dtype_policy
    def __init__(self, vocab_size: int, units: int = 300, activation: str = "crb",
                 primitives: Sequence[str] | None = None, steps: int = 8,
                 dropout: float = 0.75, dropout_h: float = 0.25, dropout_x: float = 0.75,
                 dropout_i: float = 0.2, dropout_e: float = 0.0, seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.units = int(units)
        self.activation = check_activation(activation)
        if primitives is None:
            primitives = CRB_RECURRENT_PRIMITIVES if activation == "crb" else RECURRENT_PRIMITIVES
        self.steps = int(steps)
        self.rates = {"dropout": float(dropout), "dropout_h": float(dropout_h),
                      "dropout_x": float(dropout_x), "dropout_i": float(dropout_i),
                      "dropout_e": float(dropout_e)}
        self.seed = int(np.random.randint(2**31 - 1)) if seed is None else int(seed)
        self.cell = RecurrentSearchCell(self.units, primitives, self.steps, name="cell")
        self.primitives = self.cell.primitives
        self._init_search()

    # -- structure -----------------------------------------------------------------------
    def build(self, input_shape):
        """``input_shape``: (batch, time). A known batch also creates the carried hidden states."""
        if self.built:
            return
        self.embedding, self.decoder_bias = add_tied_embedding(self, self.vocab_size, self.units)
        self.cell.build((None, None, self.units))
        shape = (num_recurrent_edges(self.steps), len(self.primitives))
        # α and all search state stay float32 under mixed precision (autocast=False)
        self.alpha = self.add_weight(shape=shape, initializer=AlphaInitializer(self.activation),
                                     autocast=False, name="alpha")
        state = self._add_state
        self.mask = state("mask", shape, "ones")  # crb: 1 = alive
        # crb: the mask the step was last traced for (AlternatingSearch.make_train_function)
        self.kept = state("kept", shape, "ones")
        # ADMM's Z and U (admm_z, admm_u), whatever the regulariser: weight files address
        # a model's variables by creation order, and every checkpoint holds them here.
        # Another regulariser's state comes after all of these (_create_regularizer_state).
        add_admm_state(self, self.architecture)
        add_schedule_state(self)
        # forward passes drawn so far: with `seed`, the stateless seed of the next masks
        self.dropout_draws = state("dropout_draws", dtype="int64")
        batch = input_shape[0]
        # the hidden states carried from segment to segment, as the reference's loop keeps
        # them: one for the weight split, one for the search split; zeroed at each epoch
        self.hidden = None if batch is None else state("hidden", (batch, self.units))
        self.search_hidden = None if batch is None else state("search_hidden",
                                                              (batch, self.units))
        self._add_search_metrics(("loss", "search_loss", "reg", "fi"))
        if self._search_compiled:  # compiled before it was built: its regulariser's state
            self._create_regularizer_state()
            self._create_latch_state()
        self.built = True

    @property
    def arch_variables(self) -> list:
        return [self.alpha]

    @property
    def architecture(self) -> Architecture:
        """α, its mask and the cell's shape, as the regulariser sees them: one unnamed cell
        type (a regulariser's per-cell variable ``<name>`` is the model's ``<name>``)."""
        return Architecture(cells=("",), alphas=(self.alpha,), masks=(self.mask,),
                            activation=self.activation, primitives=tuple(self.primitives),
                            steps=self.steps, **RECURRENT_SHAPE)

    def _masks(self) -> list:
        return [self.mask]

    def _kept_masks(self) -> list:
        return [self.kept]

    def activated_weights(self) -> tf.Tensor:
        """``act(α)`` (36, ops)."""
        return activate(self.alpha, self.activation, self.mask)

    def _dropout_masks(self, batch: int, training: bool) -> dict:
        """One forward pass's masks for a batch of ``batch`` rows. Under R replicas, each
        replica's rows of the global batch's masks: the search drops what one device's drops."""
        if not training:
            return {}
        ctx = tf.distribute.get_replica_context()
        replicas = 1 if ctx is None else ctx.num_replicas_in_sync
        masks = draw_masks(self.vocab_size, batch * replicas, self.units, self.rates,
                           self.seed, self.dropout_draws.assign_add(1))
        if replicas == 1:
            return masks
        start = ctx.replica_id_in_sync_group * batch
        return {key: m if m is None or key == "embedding" else m[start:start + batch]
                for key, m in masks.items()}

    def forward(self, tokens, hidden, training: bool = False, masks: dict | None = None,
                params=None, length=None, update_stats: bool = True):
        """``(log_probs, last_hidden, outputs)`` of a segment, all time-major.

        ``tokens``: (time, batch) ids; ``hidden``: (batch, units). ``outputs`` are the
        cell's hidden states before the output dropout (the slowness penalty's). ``masks``
        overrides the dropout masks (a dict as :meth:`_dropout_masks` makes; a missing
        key is no dropout). ``params``: tensors to use instead of :attr:`weight_variables`
        (same order). ``length``: valid steps of a segment padded at the end
        (``last_hidden`` is the state after them). ``update_stats``: False leaves the
        normalisation's moving statistics alone.
        """
        batch = tokens.shape[1] if tokens.shape[1] is not None else tf.shape(tokens)[1]
        if masks is None:
            masks = self._dropout_masks(batch, training)
        cast = lambda v: None if v is None else tf.cast(v, self.compute_dtype)  # noqa: E731
        masks = {key: cast(m) for key, m in masks.items()}
        embedding, bias, w0, kernels = (cast(v) for v in (
            params if params is not None else self.weight_variables))
        table = apply_mask(embedding, masks.get("embedding"))
        x = apply_mask(tf.gather(table, tokens), masks.get("input"), time_axis=0)
        outputs, last = self.cell(x, cast(hidden), self.activated_weights(),
                                  x_mask=masks.get("x"), h_mask=masks.get("h"),
                                  training=training, kernels=(w0, kernels), length=length,
                                  update_stats=update_stats)
        dropped = apply_mask(outputs, masks.get("output"), time_axis=0)
        logits = tf.einsum("tbu,vu->tbv", dropped, embedding) + bias
        # float32 log-probabilities under mixed precision: the loss and its scaling need
        # the range
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        return log_probs, tf.cast(last, tf.float32), tf.cast(outputs, tf.float32)

    def call(self, inputs, training=None):
        tokens = tf.transpose(tf.convert_to_tensor(inputs))
        hidden = tf.zeros([tf.shape(tokens)[1], self.units])
        log_probs, _, _ = self.forward(tokens, hidden, training=bool(training))
        return tf.transpose(log_probs, [1, 0, 2])

    def genotype(self) -> RecurrentGenotype:
        """The discretised cell of the current α: one (op, predecessor) per node."""
        genes, _ = discretize_recurrent(self.activated_weights().numpy(), self.primitives,
                                        self.steps)
        return RecurrentGenotype(recurrent=genes, concat=tuple(range(1, self.steps + 1)))

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size, "units": self.units,
                "activation": self.activation, "primitives": list(self.primitives),
                "steps": self.steps, **self.rates, "seed": self.seed}

    # -- search configuration --------------------------------------------------------------
    def compile(self, optimizer=None, *, arch_optimizer=None, schedule="dynamic",
                regularizer="proximity", search_data=None, unrolled: bool | str = False,
                weight_decay: float = 5e-7, arch_weight_decay: float = 1e-3,
                clip_norm: float = 0.25, slowness: float = 1e-3, activity_l2: float = 0.0,
                skip_pruned_ops: bool | str = "auto", budget=None, **kwargs):
        """Configure the search (defaults: the authors' ``train_search_rnn.py``).

        Args:
            optimizer: weight optimizer; default plain SGD, lr 20.
            arch_optimizer: α optimizer; default Adam(3e-3, betas 0.9/0.999).
            schedule: ``"dynamic"``, ``"fixed"`` or a schedule instance. The authors' PTB
                script runs the dynamic schedule without averaging FI (``ewma=1.0``);
                ``"dynamic"`` is docs/method.md §5's (0.2). ``"dynamic-latched"``
                (``DynamicSchedule(latch=True)``) is the authors' code as it runs: after
                the first α step of an epoch, every step of it takes one.
            regularizer: a name registered in :data:`kdarts.options.REGULARIZERS`
                (``"proximity"``, ``"admm"``, ``"none"``, ...) or a
                :class:`~kdarts.search.regularizers.Regularizer`; D keeps one
                (op, predecessor) per node. Its state is made here (or when ``fit``
                builds the model), after the model's own variables.
            search_data: the search split. With :class:`~kdarts.recurrent.data.BPTTStream`
                training text (the authors' variable-length segments), a ``BPTTStream`` of
                the search text: each α step reads ``bptt`` tokens at the weight step's
                position modulo the search text's length, as the reference does. With a
                dataset of fixed ``(tokens, targets)`` segments, the same kind of dataset:
                segment s is read by an α step taken at weight step s.
            unrolled: DARTS's second-order α gradient (architect_rnn.py's): one virtual
                weight step w' = w − η(clip(∇w L_train) + λw) at the weight step's learning
                rate η, ∇α L_search(w') minus η·c times the finite-difference product
                (∇α L_train(w + εv) − ∇α L_train(w − εv)) / 2ε with v = clip(∇w' L_search),
                ε = 0.01/‖v‖ and c the first clip's coefficient. ``"reference"``: as
                the authors' code computes it, whose virtual model keeps the embedding
                (= decoder) matrix at w: their copy loads the state dict's stale
                ``decoder.weight`` over the stepped, tied ``encoder.weight``.
            weight_decay, arch_weight_decay: L2 terms added to the gradients after clipping.
            clip_norm: global gradient-norm clip of the weight step (PyTorch's rule).
            slowness, activity_l2: the weight loss's temporal activation regulariser β·
                mean((h_{t+1} − h_t)²) and activation regulariser α·mean(h_dropped²).
            skip_pruned_ops: crb only: ``"levels"`` (or True) leaves out of the traced step
                every edge whose ops are all pruned (its state's rows of the node's
                matmul), traced again at the levels of ``pruning.PRUNE_LEVELS`` as the
                image search is; ``"never"`` (or False) computes every edge; ``"auto"``
                (the default) decides by :func:`~kdarts.search.pruning.recurrent_auto_mode`.
            budget: refused (:data:`kdarts.budget.RECURRENT_BUDGET_REFUSAL` says why); the image
                space's :meth:`SearchNetwork.compile <kdarts.image.SearchNetwork.compile>`
                takes one.
            **kwargs: Keras's (``jit_compile=True`` compiles the step with XLA).
        """
        mode = self._check_pruned_mode(skip_pruned_ops, kwargs.get("jit_compile"))
        if optimizer is None:
            optimizer = keras.optimizers.SGD(learning_rate=20.0)
        if arch_optimizer is None:
            arch_optimizer = keras.optimizers.Adam(learning_rate=3e-3, beta_1=0.9,
                                                   beta_2=0.999, epsilon=1e-8)
        kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer, **kwargs)
        # XLA compiles nested functions one by one; a synchronised normalisation
        # all-reduces, which MirroredStrategy cannot do inside a nested function
        self.cell.trace_step_once = not self.jit_compile and num_replicas() == 1
        if unrolled not in (False, True, "reference"):
            raise ValueError(f"unrolled must be False, True or 'reference', got {unrolled!r}")
        self.unrolled = unrolled
        self.slowness = float(slowness)
        self.activity_l2 = float(activity_l2)
        self._configure_search(arch_optimizer=arch_optimizer, schedule=schedule,
                               regularizer=regularizer, search_data=search_data,
                               weight_decay=weight_decay, arch_weight_decay=arch_weight_decay,
                               clip_norm=clip_norm, skip_pruned_ops=mode, budget=budget)
        if self.built:
            self._create_latch_state()

    def _budget_projection(self, budget):
        raise BudgetError(RECURRENT_BUDGET_REFUSAL)

    @property
    def metrics(self):
        return list(getattr(self, "_search_metrics", {}).values())

    def evaluate(self, x=None, y=None, batch_size: int = 10, bptt: int = 35, verbose=0,
                 **kwargs) -> dict:
        """``{"loss", "perplexity"}`` of token ids ``x`` as the authors' ``evaluate``: the
        text batchified into ``batch_size`` streams, read ``bptt`` tokens at a time (the
        last segment shorter), the hidden state carried from a zero one, every dropout
        off and the normalisation on its moving statistics. The loss is the mean over
        every predicted token (the authors divide the token-weighted sum by one more
        step than they predict). ``x`` may also be a
        :class:`~kdarts.recurrent.data.BPTTStream` (its streams and bptt)."""
        if y is not None or kwargs:
            raise TypeError("RecurrentSearchModel.evaluate takes token ids (or a BPTTStream)")
        if isinstance(x, BPTTStream):
            ids, batch_size, bptt = x.streams.T.reshape(-1), x.batch_size, x.bptt
        else:
            ids = np.asarray(x)
        segments = eval_segments(ids, batch_size, bptt)
        if not self.built:
            self.build((None, bptt))
        if getattr(self, "_eval_function", None) is None:
            def segment_loss(tokens, targets, length, hidden):
                log_probs, last, _ = self.forward(tf.transpose(tokens), hidden,
                                                  training=False, length=length)
                nll = sequence_nll(log_probs, tf.transpose(targets), length)
                return nll, last
            self._eval_function = tf.function(segment_loss, autograph=False,
                                              reduce_retracing=True)
        hidden = tf.zeros([batch_size, self.units])
        total, count = 0.0, 0
        for tokens, targets, length in segments:
            nll, hidden = self._eval_function(tokens, targets, length, hidden)
            total += float(nll) * int(length)
            count += int(length)
        loss = total / count
        return {"loss": loss, "perplexity": float(np.exp(loss))}

    # -- pruned ops: edges whose every op is pruned ------------------------------------------
    def _auto_pruned_mode(self, batch_size, total_steps) -> str:
        shape = built_input_shape(self)
        length = None if shape is None else tuple(shape)[1]
        return recurrent_auto_mode(self.units, batch_size, length, total_steps)

    def _keep(self, kept: np.ndarray):
        """The cell computes only the edges the traced mask keeps an op on."""
        edges = recurrent_kept_edges(kept[0], self.steps)
        if edges is None:
            return None
        self.cell.kept_edges = edges

        def restore():
            self.cell.kept_edges = None

        return restore


def _time_major(data):
    """A step's element (see :func:`~kdarts.recurrent.data.search_segments`) with its
    segments time-major and its per-row scalars read once: ``((x, y, length, lr_scale),
    (xs, ys, search_length))``."""
    (x, y, n, lr_scale, _, _), (xs, ys, ns) = data
    return ((tf.transpose(x), tf.transpose(y), n[0], lr_scale[0]),
            (tf.transpose(xs), tf.transpose(ys), ns[0]))


def _per_row(train, search):
    """A step's element with every scalar repeated per row, so that ``tf.distribute``
    splits it across replicas as it splits the segments."""
    rows = tf.shape(train[0])[0]
    tile = lambda v: tf.fill([rows], v)  # noqa: E731
    x, y, n, lr_scale, first, real = train
    xs, ys, ns = search
    return ((x, y, tile(n), tile(lr_scale), tile(first), tile(real)), (xs, ys, tile(ns)))


def _replica_share():
    """``1/R`` under R > 1 replicas (each computes its shard's share of the global mean);
    None on one device."""
    replicas = num_replicas()
    return None if replicas == 1 else 1.0 / replicas


def _scaled(loss, share, scale):
    """The loss a replica differentiates: its share of the global mean (``share``, None
    on one device), times the loss scale under mixed precision (None: none), so that
    small float16 gradients do not underflow."""
    if share is not None:
        loss = loss * share
    return loss if scale is None else loss * scale


def _unscaled(grad, scale):
    """A gradient of a loss scaled by ``scale`` (a power of two: exact), unscaled."""
    return grad if scale is None else grad / scale


def _global(grads: list) -> list:
    """The global batch's gradients from each replica's share (unchanged on one device)."""
    return sum_over_replicas(grads) if num_replicas() > 1 else grads


def _norm(tensors: list) -> tf.Tensor:
    return tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(a)) for a in tensors]))


def count_weights(model: RecurrentSearchModel) -> int:
    """Trainable scalars except α (the reference's parameter count)."""
    return count_parameters(model, exclude=model.arch_variables)
