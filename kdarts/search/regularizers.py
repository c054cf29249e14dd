"""Regularisers that pull α towards its discretisation (docs/method.md §6).

Each regulariser is configuration plus pure functions: the penalty ``R(α)``
(added to the α loss only) and, for ADMM, the auxiliary/dual update. Their
state (Z, U) lives in variables on the model.

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
    >>> act = np.full((14, 7), 0.2, "float32")
    >>> z, u = admm_update(act, np.zeros_like(act), np.zeros_like(act),
    ...                    np.ones_like(act), CRB_PRIMITIVES)
    >>> int(z.sum())   # one kept (edge, op) pair per gene: 2 per node × 4 nodes
    8
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

from kdarts.genotype import CRB_PRIMITIVES, discretize  # noqa: F401  (CRB_PRIMITIVES: doc example)


def l2(x, squared: bool = False) -> tf.Tensor:
    """Frobenius norm (or its square). The plain norm's gradient is kept finite at 0."""
    total = tf.reduce_sum(tf.square(x))
    if squared:
        return total
    # sqrt has an infinite slope at 0: a fully discrete α would give NaN gradients
    return tf.sqrt(tf.maximum(total, 1e-12))


def discrete_onehot(act, primitives: Sequence[str], steps: int = 4) -> tf.Tensor:
    """``D(act)`` as a tensor: the one-hot matrix of :func:`kdarts.discretize`, a constant."""
    primitives = tuple(primitives)

    def _np(a):
        return discretize(a, primitives, steps)[1].astype(np.float32)

    out = tf.numpy_function(_np, [tf.convert_to_tensor(act, tf.float32)], tf.float32,
                            stateful=False)
    out.set_shape(act.shape)
    return tf.stop_gradient(out)


def admm_update(act: np.ndarray, z: np.ndarray, u: np.ndarray, mask: np.ndarray,
                primitives: Sequence[str], steps: int = 4,
                dual_decay: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One scaled-ADMM update of the auxiliary ``Z`` and dual ``U`` (pure numpy).

    ``Z ← D(act + U) ⊙ mask`` then ``U ← (γ·U + act − Z) ⊙ mask``.
    """
    act, u, mask = (np.asarray(a, np.float32) for a in (act, u, mask))
    z_new = discretize(act + u, primitives, steps)[1] * mask
    u_new = (dual_decay * u + act - z_new) * mask
    return z_new.astype(np.float32), u_new.astype(np.float32)


def _activate_np(x: np.ndarray, activation: str) -> np.ndarray:
    """``act`` in numpy, unmasked: clip to [0, 1] (crb) or softmax per edge."""
    if activation == "crb":
        return np.clip(x, 0.0, 1.0)
    if activation == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(f"unknown activation '{activation}'; valid: softmax, crb")


def admm_update_reference(alpha: np.ndarray, u: np.ndarray, mask: np.ndarray,
                          primitives: Sequence[str], steps: int = 4, activation: str = "crb",
                          dual_decay: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The authors' Z/U update (``ADMM(variant="reference")``), pure numpy.

    ``Z ← D(act(α + U))`` with raw ``α`` and no mask, then ``U ← (γ·U + α − Z) ⊙ mask``.

    Example:
        >>> alpha = np.full((5, 3), 0.2, "float32"); alpha[0, 1] = 1.4
        >>> z, u = admm_update_reference(alpha, np.zeros_like(alpha), np.ones_like(alpha),
        ...                              ["max_pool_3x3", "skip_connect", "sep_conv_3x3"], 2)
        >>> round(float(u[0, 1]), 6)   # the raw α (1.4) minus Z (1), not act(α) minus Z
        0.4
    """
    alpha, u, mask = (np.asarray(a, np.float32) for a in (alpha, u, mask))
    z_new = discretize(_activate_np(alpha + u, activation), primitives, steps)[1]
    u_new = (dual_decay * u + alpha - z_new) * mask
    return z_new.astype(np.float32), u_new.astype(np.float32)


ADMM_VARIANTS = ("spec", "reference")


@dataclass(frozen=True)
class NoRegularizer:
    """No pull towards discretisation (plain DARTS)."""

    def get_config(self) -> dict:
        return {"name": "none"}


@dataclass(frozen=True)
class Proximity:
    """``R = (t/T)·ρ/2·Σ_cells ‖act(α) − D(act(α))‖``; its weight grows linearly over the search."""

    rho: float = 0.1
    squared: bool = False

    def weight(self, t, total_epochs) -> tf.Tensor:
        """The schedule factor ``t/T`` (fractional epochs over total epochs)."""
        t = tf.convert_to_tensor(t, tf.float32)
        return t / tf.maximum(tf.convert_to_tensor(total_epochs, tf.float32), 1e-12)

    def penalty(self, acts, onehots, t, total_epochs) -> tf.Tensor:
        """``acts``/``onehots``: one matrix per cell type (normal, reduce)."""
        norm = tf.add_n([l2(a - d, self.squared) for a, d in zip(acts, onehots)])
        return self.weight(t, total_epochs) * self.rho / 2.0 * norm

    def get_config(self) -> dict:
        return {"name": "proximity", **asdict(self)}


@dataclass(frozen=True)
class ADMM:
    """``R = ρ/2·Σ_cells ‖(act(α) − Z + U) ⊙ mask‖``; Z, U updated every ``every`` α steps.

    ``variant="spec"`` (default) is docs/method.md §6's scaled ADMM; ``variant="reference"``
    the authors' rules (module docstring: Z unmasked from ``act(α + U)``, U from
    raw α, an update every ``every − 1`` α steps, Z starting at raw α₀).

    Example:
        >>> ADMM(rho=0.1, every=10, variant="reference").get_config()["variant"]
        'reference'
    """

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
               activation: str = "crb") -> tuple[np.ndarray, np.ndarray]:
        """``(Z, U)`` after one update, numpy in and out (:func:`admm_update` or
        :func:`admm_update_reference`)."""
        if self.variant == "reference":
            return admm_update_reference(alpha, u, mask, primitives, steps, activation,
                                         self.dual_decay)
        return admm_update(act, z, u, mask, primitives, steps, self.dual_decay)

    def get_config(self) -> dict:
        return {"name": "admm", **asdict(self)}


def get_regularizer(reg) -> NoRegularizer | Proximity | ADMM:
    """A regulariser from an instance, ``None``/``"none"``, ``"proximity"``, ``"admm"`` or a dict."""
    if reg is None:
        return NoRegularizer()
    if isinstance(reg, (NoRegularizer, Proximity, ADMM)):
        return reg
    if isinstance(reg, str):
        reg = {"name": reg}
    if isinstance(reg, dict):
        config = dict(reg)
        name = config.pop("name", None)
        classes = {"none": NoRegularizer, "proximity": Proximity, "admm": ADMM}
        if name not in classes:
            raise ValueError(f"unknown regulariser '{name}'; valid: {', '.join(classes)}")
        return classes[name](**config)
    raise TypeError(f"regularizer must be a regulariser, a name, a dict or None, "
                    f"got {type(reg).__name__}")
