"""Regularisers that pull α towards its discretisation (SPEC §6).

Each regulariser is configuration plus pure functions: the penalty ``R(α)``
(added to the α loss only) and, for ADMM, the auxiliary/dual update. Their
state (Z, U) lives in variables on the model.

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
    """``R = ρ/2·Σ_cells ‖(act(α) − Z + U) ⊙ mask‖``; Z, U updated every ``every`` α steps."""

    rho: float = 0.1
    every: int = 10
    dual_decay: float = 1.0
    squared: bool = False

    def __post_init__(self):
        if int(self.every) < 1:
            raise ValueError(f"ADMM.every must be >= 1, got {self.every}")

    def penalty(self, acts, zs, us, masks) -> tf.Tensor:
        norm = tf.add_n([l2((a - z + u) * m, self.squared)
                         for a, z, u, m in zip(acts, zs, us, masks)])
        return self.rho / 2.0 * norm

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
