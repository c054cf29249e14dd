"""The language model a recurrent genotype is evaluated with (the authors' ``RNNModel``).

Embedding (with embedding dropout: whole words) → locked input dropout →
:class:`~kdarts.recurrent.cell.RecurrentCell` (locked dropout on its input and
hidden state) → locked output dropout → a decoder tied to the embedding →
log-softmax. The defaults are the authors' PTB settings (``train_rnn.py``):
emsize = nhid = 850, and the dropout rates

=============  ========================  ==================================
kdarts         the reference's argument  drops
=============  ========================  ==================================
``dropout``    ``--dropout`` 0.75        the cell's output, before the decoder
``dropout_h``  ``--dropouth`` 0.25       the hidden state inside the cell
``dropout_x``  ``--dropoutx`` 0.75       the cell's input inside the cell
``dropout_i``  ``--dropouti`` 0.2        the embedded words
``dropout_e``  ``--dropoute`` 0.1        whole rows of the embedding
=============  ========================  ==================================

Masks come from stateless seeds (``seed`` and a draw counter variable), so a
checkpoint captures the dropout state too.

Example:
    >>> from kdarts.recurrent import DARTS_V2, RecurrentLanguageModel
    >>> model = RecurrentLanguageModel(vocab_size=50, genotype=DARTS_V2, units=8)
    >>> model(tf.zeros([2, 5], tf.int32)).shape          # doctest: +SKIP
    TensorShape([2, 5, 50])
    >>> log_probs, hidden = model.step(tf.zeros([2], tf.int32), tf.zeros([2, 8]))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from kdarts.recurrent.cell import RecurrentCell, as_recurrent_genotype
from kdarts.recurrent.corpus import EOS, UNK
from kdarts.recurrent.dropout import apply_mask, draw_masks
from kdarts.recurrent.operations import add_tied_embedding

DROPOUT_RATES = {"dropout": 0.75, "dropout_h": 0.25, "dropout_x": 0.75, "dropout_i": 0.2,
                 "dropout_e": 0.1}
"""The authors' evaluation rates (``train_rnn.py``), kdarts's names."""


@keras.saving.register_keras_serializable(package="kdarts")
class RecurrentLanguageModel(keras.Model):
    """A genotype's recurrent cell as a word-level language model, decoder tied.

    Args:
        vocab_size: words in the vocabulary.
        genotype: the cell (:class:`~kdarts.recurrent.RecurrentGenotype` or its dict).
        units: embedding and hidden size (the authors' emsize = nhid, 850).
        dropout, dropout_h, dropout_x, dropout_i, dropout_e: see the module docstring.
        vocabulary: optional, the words by id (``vocab_size`` of them); exports ship it
            and :func:`~kdarts.recurrent.generate` reads prompts with it.
        seed: seeds the dropout masks (default: drawn from numpy's global generator).

    ``call(tokens)``: (batch, time) ids → (batch, time, vocab) log-probabilities from a
    zero hidden state. :meth:`forward` carries a given hidden state (time-major),
    :meth:`step` runs one word.
    """

    def __init__(self, vocab_size: int, genotype, units: int = 850,
                 dropout: float = 0.75, dropout_h: float = 0.25, dropout_x: float = 0.75,
                 dropout_i: float = 0.2, dropout_e: float = 0.1,
                 vocabulary: Sequence[str] | None = None, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.units = int(units)
        self.genotype = as_recurrent_genotype(genotype, "RecurrentLanguageModel")
        self.rates = {"dropout": float(dropout), "dropout_h": float(dropout_h),
                      "dropout_x": float(dropout_x), "dropout_i": float(dropout_i),
                      "dropout_e": float(dropout_e)}
        self.vocabulary = None if vocabulary is None else [str(w) for w in vocabulary]
        if self.vocabulary is not None and len(self.vocabulary) != self.vocab_size:
            raise ValueError(f"RecurrentLanguageModel: the vocabulary has "
                             f"{len(self.vocabulary)} words, vocab_size is {self.vocab_size}")
        self.seed = int(np.random.randint(2**31 - 1)) if seed is None else int(seed)
        self.cell = RecurrentCell(self.units, self.genotype, name="cell")
        self.build((None, None))

    def build(self, input_shape=None):
        if self.built:
            return
        self.embedding, self.decoder_bias = add_tied_embedding(self, self.vocab_size, self.units)
        self.cell.build((None, None, self.units))
        # forward passes drawn so far: with `seed`, the stateless seed of the next masks
        self.dropout_draws = self.add_weight(shape=(), initializer="zeros", dtype="int64",
                                             trainable=False, name="dropout_draws")
        self.built = True

    def token_id(self, word: str) -> int:
        """The id of ``word`` (``<unk>``'s for an unknown word); needs the vocabulary."""
        if self.vocabulary is None:
            raise ValueError("RecurrentLanguageModel: this model has no vocabulary (pass "
                             "vocabulary=... when building it)")
        index = getattr(self, "_index", None)
        if index is None:
            index = self._index = {w: i for i, w in enumerate(self.vocabulary)}
        return index.get(word, index.get(UNK, 0))

    def dropout_masks(self, batch, training: bool) -> dict:
        """One forward pass's masks (empty without training); each draw advances the counter."""
        if not training:
            return {}
        return draw_masks(self.vocab_size, batch, self.units, self.rates, self.seed,
                          self.dropout_draws.assign_add(1))

    def decode(self, outputs):
        """Log-probabilities (..., vocab) of cell outputs (..., units), the tied decoder."""
        logits = tf.tensordot(outputs, self.embedding, axes=[[-1], [1]]) + self.decoder_bias
        return tf.nn.log_softmax(logits, axis=-1)

    def forward(self, tokens, hidden, training: bool = False, masks: dict | None = None):
        """``(log_probs, last_hidden, outputs, dropped)`` of a segment, all time-major.

        ``tokens``: (time, batch) ids; ``hidden``: (batch, units). ``outputs``: the cell's
        hidden states (the temporal activation regulariser's), ``dropped``: the same after
        the output dropout (the activation regulariser's). ``masks`` overrides the dropout
        masks (a dict as :meth:`dropout_masks` makes; a missing key is no dropout).
        """
        tokens = tf.convert_to_tensor(tokens)
        if masks is None:
            masks = self.dropout_masks(tf.shape(tokens)[1], training)
        table = apply_mask(self.embedding, masks.get("embedding"))
        x = apply_mask(tf.gather(table, tokens), masks.get("input"), time_axis=0)
        outputs, last = self.cell(x, hidden, x_mask=masks.get("x"), h_mask=masks.get("h"))
        dropped = apply_mask(outputs, masks.get("output"), time_axis=0)
        return self.decode(dropped), last, outputs, dropped

    def call(self, inputs, training=None):
        tokens = tf.transpose(tf.cast(inputs, tf.int32))
        hidden = tf.zeros([tf.shape(tokens)[1], self.units], self.compute_dtype)
        log_probs, _, _, _ = self.forward(tokens, hidden, training=bool(training))
        return tf.transpose(log_probs, [1, 0, 2])

    def step(self, token, hidden):
        """One word, no dropout: ``token`` (batch,) ids and ``hidden`` (batch, units) →
        ``(log_probs (batch, vocab), new hidden)``, the generation form."""
        x = tf.gather(self.embedding, tf.cast(token, tf.int32))
        new_hidden = self.cell.step(x, hidden)
        return self.decode(new_hidden), new_hidden

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "genotype": self.genotype.to_dict(), "units": self.units, **self.rates,
                "vocabulary": self.vocabulary, "seed": self.seed}

    def special_ids(self) -> dict:
        """``{"<unk>": id, "<eos>": id}`` where the vocabulary has them."""
        return {w: self.vocabulary.index(w) for w in (UNK, EOS)
                if self.vocabulary and w in self.vocabulary}


def language_model_parameter_count(vocab_size: int, units: int, steps: int = 8) -> int:
    """Trainable scalars of a language model, from its sizes alone (nothing built): the
    embedding (the decoder is tied to it), the decoder bias, W0 (2u × 2u for input size u)
    and ``steps`` node kernels (u × 2u). 22,960,000 at the authors' PTB sizes (10,000, 850).
    """
    return vocab_size * units + vocab_size + (2 * units) * (2 * units) + steps * units * 2 * units
