"""Regularisers that pull α towards its discretisation (docs/method.md §6).

Each regulariser is configuration plus pure functions: the penalty ``R(α)``
(added to the α loss only) and, for ADMM, the auxiliary/dual update. Their
state (Z, U) lives in variables on the model. Everything here is graph ops,
the discretisation ``D`` included (:func:`discrete_onehot`), so the search step
never leaves the device.

ADMM comes in two variants. ``"spec"`` (the default) is docs/method.md §6's scaled ADMM.
``"reference"`` is what the authors' code (DARTS-PRIME's
``model_admm_hard_statebn.py`` / ``train_scheduled_hard_statebn.py``) runs; it
differs in four places:

============  =================================  ==========================================
              ``"spec"``                         ``"reference"``
============  =================================  ==========================================
Z update      ``D(act(α) + U) ⊙ mask``           ``D(act(α + U))``, unmasked: with crb,
                                                 entries pushed past 1 tie at 1, and ties go
                                                 to the lowest input, then op, index
U update      ``(γU + act(α) − Z) ⊙ mask``       ``(γU + α − Z) ⊙ mask``, raw α
period        every ``every`` α steps            every ``every − 1`` α steps (the counter
                                                 test ``(c + 1) % every == 0``, ``c`` reset
                                                 to 0 on update); ``every=1``: every
                                                 minibatch, α step or not
initial Z     ``act(α₀)``                        raw ``α₀``
============  =================================  ==========================================

The penalty is the same in both: ``ρ/2·Σ_cells ‖(act(α) − Z + U) ⊙ mask‖``.

Example:
    >>> import numpy as np
    >>> from kdarts.image.genotype import CRB_PRIMITIVES   # the image cell's, for instance
    >>> act = np.full((14, 7), 0.2, "float32")
    >>> z, u = admm_update(act, np.zeros_like(act), np.zeros_like(act),
    ...                    np.ones_like(act), CRB_PRIMITIVES)
    >>> int(tf.reduce_sum(z))   # one kept (edge, op) pair per gene: 2 per node × 4 nodes
    8
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import tensorflow as tf

from kdarts import compat, options
from kdarts.options import ADMM_VARIANTS
from kdarts.search.activations import activate


def l2(x, squared: bool = False) -> tf.Tensor:
    """Frobenius norm (or its square). The plain norm's gradient is kept finite at 0."""
    total = tf.reduce_sum(tf.square(x))
    if squared:
        return total
    # sqrt has an infinite slope at 0: a fully discrete α would give NaN gradients
    return tf.sqrt(tf.maximum(total, 1e-12))


def discrete_onehot(act, primitives: Sequence[str], steps: int = 4, *, inputs: int = 2,
                    keep: int = 2) -> tf.Tensor:
    """``D(act)`` in graph ops: the one-hot matrix of :func:`kdarts.discretize`, a constant.

    For each intermediate node, its incoming edges are ranked by their best non-``none``
    weight (ties: the lower input first) and the top two kept, each with its best
    non-``none`` op (ties: the first). Ties break exactly as :func:`kdarts.discretize`
    (numpy, used for genotypes) breaks them; ``tests/test_search_rules.py`` checks the two
    agree. Static shapes and no host round trip, so the step compiles with XLA and runs
    on any device.

    ``inputs`` and ``keep`` give the cell's shape: node ``i`` has ``inputs + i`` incoming
    edges and keeps ``keep`` of them. DARTS's convolutional cell is 2 and 2; its
    recurrent cell (:mod:`kdarts.recurrent`) is 1 and 1.

    Example:
        >>> act = np.zeros((5, 3), "float32"); act[1, 2] = 0.5
        >>> discrete_onehot(act, ["max_pool_3x3", "skip_connect", "sep_conv_3x3"], 2)[:2]
        <tf.Tensor: shape=(2, 3), dtype=float32, numpy=
        array([[1., 0., 0.],
               [0., 0., 1.]], dtype=float32)>
    """
    primitives = tuple(primitives)
    candidates = [j for j, p in enumerate(primitives) if p != "none"]
    if not candidates:
        raise ValueError("discrete_onehot: no candidate operation other than 'none'")
    act = tf.convert_to_tensor(act, tf.float32)
    fan_in = [inputs + i for i in range(steps)]
    expected = (sum(fan_in), len(primitives))
    if tuple(act.shape) != expected:
        raise ValueError(f"discrete_onehot: weights have shape {tuple(act.shape)}, expected "
                         f"{expected} ({steps} steps, {len(primitives)} primitives)")
    rows = tf.gather(act, candidates, axis=1)  # (E, K): the non-`none` columns
    strength = tf.reduce_max(rows, axis=1)  # (E,)
    # the first op reaching the maximum (tf.argmax leaves ties unspecified)
    k = len(candidates)
    first = tf.reduce_min(tf.where(tf.equal(rows, strength[:, None]), tf.range(k), k), axis=1)
    best = tf.gather(tf.constant(candidates + [0], tf.int32), first)  # column in `act`
    # rank of each edge among its node's: the edges ahead of it by strength, or tied
    # with it and of a lower input index (a stable descending sort, as numpy's)
    node = np.repeat(np.arange(steps), fan_in)
    same_node = tf.constant(node[:, None] == node[None, :])
    earlier = tf.constant(np.tri(len(node), k=-1, dtype=bool))  # [i, j]: j < i
    s_i, s_j = strength[:, None], strength[None, :]
    ahead = tf.logical_or(s_j > s_i, tf.logical_and(tf.equal(s_j, s_i), earlier))
    rank = tf.reduce_sum(tf.cast(tf.logical_and(ahead, same_node), tf.int32), axis=1)
    kept = tf.cast(rank < keep, tf.float32)
    return tf.stop_gradient(tf.one_hot(best, len(primitives)) * kept[:, None])


def admm_update(act, z, u, mask, primitives: Sequence[str], steps: int = 4,
                dual_decay: float = 1.0, *, inputs: int = 2, keep: int = 2,
                projected=None) -> tuple[tf.Tensor, tf.Tensor]:
    """One scaled-ADMM update of the auxiliary ``Z`` and dual ``U`` (graph ops).

    ``Z ← D(act + U) ⊙ mask`` then ``U ← (γ·U + act − Z) ⊙ mask``; ``inputs``, ``keep``:
    the cell's shape, as :func:`discrete_onehot` takes it. ``projected``: the
    projection of ``act + U`` when another one replaces D (a budget's D_B).
    """
    act, u, mask = (tf.convert_to_tensor(a, tf.float32) for a in (act, u, mask))
    if projected is None:
        projected = discrete_onehot(act + u, primitives, steps, inputs=inputs, keep=keep)
    z_new = projected * mask
    u_new = (dual_decay * u + act - z_new) * mask
    return z_new, u_new


def admm_update_reference(alpha, u, mask, primitives: Sequence[str], steps: int = 4,
                          activation: str = "crb", dual_decay: float = 1.0, *,
                          inputs: int = 2, keep: int = 2,
                          projected=None) -> tuple[tf.Tensor, tf.Tensor]:
    """The authors' Z/U update (``ADMM(variant="reference")``), graph ops.

    ``Z ← D(act(α + U))`` with raw ``α`` and no mask, then ``U ← (γ·U + α − Z) ⊙ mask``.
    ``projected``: the projection of ``act(α + U)`` when another one replaces D.

    Example:
        >>> alpha = np.full((5, 3), 0.2, "float32"); alpha[0, 1] = 1.4
        >>> z, u = admm_update_reference(alpha, np.zeros_like(alpha), np.ones_like(alpha),
        ...                              ["max_pool_3x3", "skip_connect", "sep_conv_3x3"], 2)
        >>> round(float(u[0, 1]), 6)   # the raw α (1.4) minus Z (1), not act(α) minus Z
        0.4
    """
    alpha, u, mask = (tf.convert_to_tensor(a, tf.float32) for a in (alpha, u, mask))
    z_new = projected if projected is not None else discrete_onehot(
        activate(alpha + u, activation), primitives, steps, inputs=inputs, keep=keep)
    u_new = (dual_decay * u + alpha - z_new) * mask
    return z_new, u_new


#: A regulariser's variables on the model: a name → one variable per cell type.
State = dict[str, list]


@dataclass(frozen=True)
class Architecture:
    """What a regulariser sees of a search model: its α matrices, one per cell type, their
    crb masks, and how they are activated and discretised.

    ``cells`` names the cell types (``("normal", "reduce")`` in the convolutional network,
    ``("",)`` for one unnamed cell); a regulariser's per-cell variables are named after
    them (:func:`state_variable`). ``inputs``, ``keep``: the cell's shape, as
    :func:`discrete_onehot` takes it.
    """

    cells: tuple[str, ...]
    alphas: tuple
    masks: tuple
    activation: str
    primitives: tuple[str, ...]
    steps: int
    inputs: int = 2
    keep: int = 2
    #: the projection over all cell types at once, replacing D (a budget's D_B:
    #: :class:`kdarts.image.projection.BudgetProjection`); None: D per cell type
    project: Callable[[Sequence], list] | None = None

    def activated(self) -> list[tf.Tensor]:
        """``act(α)`` of each cell type (masked under crb)."""
        return [activate(a, self.activation, m) for a, m in zip(self.alphas, self.masks)]

    def discretized(self, weights: Sequence) -> list[tf.Tensor]:
        """The projection of each cell type's weights ``w``: ``D(w)``
        (:func:`discrete_onehot`), or :attr:`project`'s, which sees every cell type at
        once (a budget couples them)."""
        if self.project is not None:
            return list(self.project(list(weights)))
        return [discrete_onehot(w, self.primitives, self.steps, inputs=self.inputs,
                                keep=self.keep) for w in weights]


def state_variable(model, name: str, shape) -> tf.Variable:
    """The model's float32 search-state variable ``name`` (non-trainable, never autocast,
    zeros at first), made on first request and kept as ``model.<name>``.

    A model made earlier holds it already, and keeps it; one built since takes it through
    :func:`kdarts.compat.unlocked_state`. Weight files address a model's own variables by
    creation order, so a variable made later comes after all the others.
    """
    existing = getattr(model, name, None)
    if existing is not None:
        return existing
    with model.distribute_strategy.scope(), compat.unlocked_state(model):
        variable = model.add_weight(shape=tuple(shape), initializer="zeros", dtype="float32",
                                    trainable=False, autocast=False, name=name)
        setattr(model, name, variable)
    return variable


def cell_state(model, arch: Architecture, name: str) -> list:
    """One :func:`state_variable` per cell type, shaped as its α: ``<name>_<cell>``."""
    return [state_variable(model, f"{name}_{cell}" if cell else name, alpha.shape)
            for cell, alpha in zip(arch.cells, arch.alphas)]


def add_admm_state(model, arch: Architecture) -> State:
    """ADMM's auxiliary Z and scaled dual U on ``model``: ``admm_z_<cell>`` for every
    cell type, then ``admm_u_<cell>`` (the variables the model has already are used)."""
    return {"z": cell_state(model, arch, "admm_z"), "u": cell_state(model, arch, "admm_u")}


class Regularizer:
    """A pull of α towards its discretisation, ``R(α)``, added to the α loss only (§6).

    The search step calls every regulariser alike:

    * ``create_state(model, arch)`` at ``compile``: its variables on the model (a
      :data:`State`; none by default), checkpointed with it;
    * ``initialize(arch, state)`` when a search starts (step 0, not on a resume);
    * ``regularizer(arch, state, t, total_epochs)`` in every α step: ``R(α)``, a scalar
      differentiable in ``arch.alphas``; ``t`` is the clock in fractional epochs;
    * ``after_step(arch, state, alpha_steps, took_alpha_step)`` at the end of every
      search step, after the weight step (graph ops: ``took_alpha_step`` is a tensor).

    ``from_options`` builds one from a run's options. A new regulariser subclasses this,
    overrides what it needs and is registered by name in
    :data:`kdarts.options.REGULARIZERS`.
    """

    name: ClassVar[str] = "none"

    @classmethod
    def from_options(cls, opts: Mapping[str, Any]) -> "Regularizer":
        """The regulariser a run's options (``rho``, ``admm_every``, ...) describe."""
        return cls()

    def create_state(self, model, arch: Architecture) -> State:
        return {}

    def initialize(self, arch: Architecture, state: State) -> None:
        pass

    def __call__(self, arch: Architecture, state: State, t, total_epochs) -> tf.Tensor:
        return tf.constant(0.0)

    def after_step(self, arch: Architecture, state: State, alpha_steps,
                   took_alpha_step) -> None:
        pass

    def get_config(self) -> dict:
        return {"name": self.name, **(asdict(self) if is_dataclass(self) else {})}


@dataclass(frozen=True)
class NoRegularizer(Regularizer):
    """No pull towards discretisation (plain DARTS)."""

    name: ClassVar[str] = "none"


@dataclass(frozen=True)
class Proximity(Regularizer):
    """``R = (t/T)·ρ/2·Σ_cells ‖act(α) − D(act(α))‖``; its weight grows linearly over the search."""

    name: ClassVar[str] = "proximity"
    rho: float = 0.1
    squared: bool = False

    @classmethod
    def from_options(cls, opts: Mapping[str, Any]) -> "Proximity":
        return cls(rho=opts["rho"])

    def weight(self, t, total_epochs) -> tf.Tensor:
        """The schedule factor ``t/T`` (fractional epochs over total epochs)."""
        t = tf.convert_to_tensor(t, tf.float32)
        return t / tf.maximum(tf.convert_to_tensor(total_epochs, tf.float32), 1e-12)

    def penalty(self, acts, onehots, t, total_epochs) -> tf.Tensor:
        """``acts``/``onehots``: one matrix per cell type (normal, reduce)."""
        norm = tf.add_n([l2(a - d, self.squared) for a, d in zip(acts, onehots)])
        return self.weight(t, total_epochs) * self.rho / 2.0 * norm

    def __call__(self, arch: Architecture, state: State, t, total_epochs) -> tf.Tensor:
        acts = arch.activated()
        return self.penalty(acts, arch.discretized(acts), t,
                            tf.cast(total_epochs, tf.float32))


@dataclass(frozen=True)
class ADMM(Regularizer):
    """``R = ρ/2·Σ_cells ‖(act(α) − Z + U) ⊙ mask‖``; Z, U updated every ``every`` α steps.

    ``variant="spec"`` (default) is docs/method.md §6's scaled ADMM; ``variant="reference"``
    the authors' rules (module docstring: Z unmasked from ``act(α + U)``, U from
    raw α, an update every ``every − 1`` α steps, Z starting at raw α₀). Its state is
    Z and U per cell type (:func:`add_admm_state`); the period counts the model's α steps.

    Example:
        >>> ADMM(rho=0.1, every=10, variant="reference").get_config()["variant"]
        'reference'
    """

    name: ClassVar[str] = "admm"
    rho: float = 0.1
    every: int = 10
    dual_decay: float = 1.0
    squared: bool = False
    variant: str = "spec"

    def __post_init__(self):
        if int(self.every) < 1:
            raise ValueError(f"ADMM.every must be >= 1, got {self.every}")
        if self.variant not in ADMM_VARIANTS:
            raise ValueError(f"unknown ADMM variant '{self.variant}'; valid: "
                             f"{', '.join(ADMM_VARIANTS)}")

    @classmethod
    def from_options(cls, opts: Mapping[str, Any]) -> "ADMM":
        return cls(rho=opts["rho"], every=opts["admm_every"], variant=opts["admm_variant"])

    def penalty(self, acts, zs, us, masks) -> tf.Tensor:
        norm = tf.add_n([l2((a - z + u) * m, self.squared)
                         for a, z, u, m in zip(acts, zs, us, masks)])
        return self.rho / 2.0 * norm

    def due(self, alpha_steps, took_alpha_step) -> tf.Tensor:
        """Whether Z and U update at the end of this minibatch.

        ``alpha_steps`` counts α steps so far, this minibatch's included. ``"spec"``:
        after every ``every``-th α step. ``"reference"``: the authors' counter ``c``
        (α steps since the last update) with the test ``(c + 1) % every == 0`` after
        each minibatch, i.e. after every ``(every − 1)``-th α step, or on every
        minibatch when ``every == 1``.
        """
        took = tf.convert_to_tensor(took_alpha_step, tf.bool)
        alpha_steps = tf.cast(alpha_steps, tf.int64)
        if self.variant == "reference":
            if self.every == 1:
                return tf.constant(True)
            period = self.every - 1
        else:
            period = self.every
        return tf.logical_and(took, tf.equal(tf.math.floormod(alpha_steps, period), 0))

    def initial_z(self, alpha, act):
        """Z before the first update: ``act(α₀)`` (spec) or raw ``α₀`` (reference)."""
        return alpha if self.variant == "reference" else act

    def update(self, alpha, act, z, u, mask, primitives: Sequence[str], steps: int = 4,
               activation: str = "crb", *, inputs: int = 2, keep: int = 2,
               projected=None) -> tuple[tf.Tensor, tf.Tensor]:
        """``(Z, U)`` after one update, graph ops (:func:`admm_update` or
        :func:`admm_update_reference`); ``inputs``, ``keep``: the cell's shape
        (:func:`discrete_onehot`); ``projected``: Z's projection when another one
        replaces D (:meth:`projection_targets`)."""
        shape = {"inputs": inputs, "keep": keep, "projected": projected}
        if self.variant == "reference":
            return admm_update_reference(alpha, u, mask, primitives, steps, activation,
                                         self.dual_decay, **shape)
        return admm_update(act, z, u, mask, primitives, steps, self.dual_decay, **shape)

    def projection_targets(self, arch: Architecture, acts, state: State) -> list:
        """What Z is the projection of, per cell type: ``act + U`` (spec) or
        ``act(α + U)`` (reference)."""
        if self.variant == "reference":
            return [activate(a + u, arch.activation) for a, u in zip(arch.alphas, state["u"])]
        return [act + u for act, u in zip(acts, state["u"])]

    # -- the Regularizer interface -------------------------------------------------------
    def create_state(self, model, arch: Architecture) -> State:
        return add_admm_state(model, arch)

    def initialize(self, arch: Architecture, state: State) -> None:
        for z, alpha, act in zip(state["z"], arch.alphas, arch.activated()):
            z.assign(self.initial_z(alpha, act))

    def __call__(self, arch: Architecture, state: State, t, total_epochs) -> tf.Tensor:
        return self.penalty(arch.activated(), state["z"], state["u"], arch.masks)

    def after_step(self, arch: Architecture, state: State, alpha_steps,
                   took_alpha_step) -> None:
        """Z and U at the end of the minibatch, when the variant's period says."""
        def update():
            acts = arch.activated()
            # a projection over all cell types (a budget) sees every cell's target at once
            projected = ([None] * len(acts) if arch.project is None
                         else arch.discretized(self.projection_targets(arch, acts, state)))
            for alpha, act, z, u, mask, target in zip(arch.alphas, acts, state["z"],
                                                      state["u"], arch.masks, projected):
                new_z, new_u = self.update(alpha, act, z, u, mask, arch.primitives,
                                           arch.steps, arch.activation, inputs=arch.inputs,
                                           keep=arch.keep, projected=target)
                z.assign(new_z)
                u.assign(new_u)
            return tf.no_op()

        tf.cond(self.due(alpha_steps, took_alpha_step), update, tf.no_op)


def state_variables(state: State) -> list:
    """A regulariser's variables, in the order it made them."""
    return [v for variables in state.values() for v in variables]


def get_regularizer(reg) -> Regularizer:
    """A regulariser from an instance, ``None``, a name registered in
    :data:`kdarts.options.REGULARIZERS` (``"none"``, ``"proximity"``, ``"admm"``, ...) or a
    dict of its name and fields."""
    if reg is None:
        reg = "none"
    if isinstance(reg, Regularizer):
        return reg
    if isinstance(reg, str):
        reg = {"name": reg}
    if isinstance(reg, dict):
        config = dict(reg)
        return options.regularizer_class(config.pop("name", None))(**config)
    raise TypeError(f"regularizer must be a regulariser, a name, a dict or None, "
                    f"got {type(reg).__name__}")
