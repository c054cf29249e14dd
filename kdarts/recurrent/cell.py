"""The recurrent cell a genotype fixes, as a Keras layer (DARTS's evaluation cell).

One time step maps the input ``x`` and the previous hidden state ``h`` to the next:

* state 0, a highway mix: ``c0, h0 = split(W0·[x, h])``, ``s0 = h + σ(c0)·(tanh(h0) − h)``;
* node ``k`` (1 … steps) applies its gene ``(f, j)`` to state ``j``:
  ``c, g = split(W_k·s_j)``, ``s_k = s_j + σ(c)·(f(g) − s_j)``;
* the output (and next hidden state) is the mean of the states the genotype's
  ``concat`` lists (nodes 1 … 8 for DARTS's cells).

As the authors' evaluation cell, it has no batch normalisation (their search cell's
shared BatchNorm is not in it) and no biases. Training masks are variational: one
``x_mask`` on the input and one ``h_mask`` on ``h`` and on every node's input state,
the same at every time step.

Example:
    >>> import tensorflow as tf
    >>> from kdarts.recurrent.genotype import DARTS_V2
    >>> cell = RecurrentCell(8, DARTS_V2)
    >>> outputs, last = cell(tf.zeros([5, 4, 8]), tf.zeros([4, 8]))
    >>> outputs.shape, last.shape
    (TensorShape([5, 4, 8]), TensorShape([4, 8]))
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kdarts.genotype import GenotypeError
from kdarts.recurrent.genotype import RecurrentGenotype
from kdarts.recurrent.operations import HIGHWAY_ACTIVATIONS, INIT_RANGE, highway


def as_recurrent_genotype(genotype, owner: str) -> RecurrentGenotype:
    """``genotype`` as a :class:`~kdarts.recurrent.genotype.RecurrentGenotype` (a dict
    from a config is read too); one-line :class:`~kdarts.GenotypeError` for any other kind."""
    if isinstance(genotype, RecurrentGenotype):
        return genotype
    if isinstance(genotype, dict):
        return RecurrentGenotype.from_dict(genotype, source=f"{owner} genotype")
    kind = type(genotype).__name__
    hint = " (a convolutional genotype)" if hasattr(genotype, "normal") else ""
    raise GenotypeError(f"{owner}: expected a RecurrentGenotype (e.g. kdarts.recurrent."
                        f"DARTS_V2), got {kind}{hint}")


@keras.saving.register_keras_serializable(package="kdarts")
class RecurrentCell(keras.layers.Layer):
    """A genotype's recurrent cell over a sequence (time-major).

    Args:
        units: hidden size (the authors' ``nhid``, 850 for PTB).
        genotype: a :class:`~kdarts.recurrent.RecurrentGenotype` (or its ``to_dict()``).

    Call arguments:
        inputs: (time, batch, features). hidden: (batch, units), the state before the
        first step. x_mask, h_mask: variational dropout masks (batch, features) and
        (batch, units), or None.

    Returns ``(outputs, last)``: every step's hidden state (time, batch, units) and the last.
    :meth:`step` runs one time step.
    """

    def __init__(self, units: int, genotype, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.genotype = as_recurrent_genotype(genotype, "RecurrentCell")

    def build(self, input_shape, *args):
        features = int(input_shape[-1])
        init = keras.initializers.RandomUniform(-INIT_RANGE, INIT_RANGE)
        u = self.units
        # W0's rows: the input's first, then the hidden state's (the reference's [x, h])
        self.w0 = self.add_weight(shape=(features + u, 2 * u), initializer=init, name="w0")
        self.node_kernels = self.add_weight(shape=(self.genotype.steps, u, 2 * u),
                                            initializer=init, name="node_kernels")
        self.built = True

    def input_projection(self, x):
        """The input's share of ``W0·[x, h]``, for any leading axes (one matmul for all steps)."""
        return tf.tensordot(x, self.w0[:-self.units], axes=1)

    def _step(self, x_part, h, h_mask=None):
        """One time step from the input's share of ``W0·[x, h]``."""
        hm = h if h_mask is None else h * h_mask
        c0, h0 = tf.split(x_part + tf.matmul(hm, self.w0[-self.units:]), 2, axis=-1)
        states = [highway(h, tf.sigmoid(c0), tf.tanh(h0))]
        for k, (op, pred) in enumerate(self.genotype.recurrent):
            s = states[pred]
            sm = s if h_mask is None else s * h_mask
            c, g = tf.split(tf.matmul(sm, self.node_kernels[k]), 2, axis=-1)
            states.append(highway(s, tf.sigmoid(c), HIGHWAY_ACTIVATIONS[op](g)))
        return tf.add_n([states[i] for i in self.genotype.concat]) / len(self.genotype.concat)

    def step(self, x, hidden, x_mask=None, h_mask=None):
        """One time step: ``x`` (batch, features), ``hidden`` (batch, units) → next hidden."""
        x = x if x_mask is None else x * x_mask
        return self._step(self.input_projection(x), hidden, h_mask)

    def call(self, inputs, hidden, x_mask=None, h_mask=None):
        x = inputs if x_mask is None else inputs * x_mask[None]
        x_part = self.input_projection(x)
        # one iteration in flight: with more, the gradient loop sums the kernels' per-step
        # gradients in a run-dependent order (last-bit differences, so no exact resume);
        # the steps depend on each other anyway, so nothing is lost
        outputs = tf.scan(lambda h, x_t: self._step(x_t, h, h_mask), x_part,
                          initializer=tf.convert_to_tensor(hidden, self.compute_dtype),
                          parallel_iterations=1)
        return outputs, outputs[-1]

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units,
                "genotype": self.genotype.to_dict()}
