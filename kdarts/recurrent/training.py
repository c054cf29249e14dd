"""Training and evaluating a :class:`~kdarts.recurrent.RecurrentLanguageModel` as the authors do.

Their ``train_rnn.py`` (after AWD-LSTM), whose rules this module keeps:

* each batch reads a segment of variable length: ``bptt`` with probability 0.95, else
  ``bptt/2``, then ``max(5, int(N(that, 5)))`` capped at ``bptt + 20``
  (:func:`sample_sequence_length`); the learning rate of that step is scaled by
  ``seq_len / bptt``; the hidden state is carried from segment to segment and
  restarts from zeros each epoch;
* the loss: NLL + α·mean(dropped output²) (activation regulariser, α = 0 in their
  runs) + β·mean((h_{t+1} − h_t)²) (temporal activation regulariser, β = 1e-3);
* gradients clipped to global norm 0.25 (PyTorch's rule), then SGD lr 20 with L2
  8e-7 (:class:`~kdarts.recurrent.asgd.AveragedSGD`), switched to ASGD when the
  validation loss is non-monotone (:func:`~kdarts.recurrent.asgd.should_switch_to_asgd`,
  nonmono 5); under ASGD, validation and the best checkpoint use the averaged weights;
* validation with batch 10, the test with batch 1, in ``bptt`` segments; the loss is
  their sum of per-segment means × segment length divided by the stream length
  (:func:`evaluate_loss`).

Example:
    >>> from kdarts.recurrent import (DARTS_V2, RecurrentLanguageModel, stdlib_corpus,
    ...                               LanguageModelTrainer, evaluate_perplexity)
    >>> corpus = stdlib_corpus(vocab_size=200)                       # doctest: +SKIP
    >>> model = RecurrentLanguageModel(200, DARTS_V2, units=16)      # doctest: +SKIP
    >>> trainer = LanguageModelTrainer(model, corpus.train, corpus.valid, batch_size=4,
    ...                                bptt=8)                       # doctest: +SKIP
    >>> trainer.fit(epochs=3, checkpoint_dir="runs/lm")              # doctest: +SKIP
    >>> evaluate_perplexity(model, corpus.test, batch_size=1)       # doctest: +SKIP
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import weakref
from typing import Sequence

import numpy as np
import tensorflow as tf

from kdarts.checkpoints import FOLDER_STATE, CheckpointFiles, read_checkpoint_state, \
    resume_epoch, write_checkpoint
from kdarts.recurrent.asgd import AveragedSGD, should_switch_to_asgd
from kdarts.recurrent.data import batchify
from kdarts.recurrent.model import RecurrentLanguageModel
from kdarts.recurrent.operations import clip_coefficient, sequence_nll, slowness_penalty

EVAL_BATCH_SIZE = 10
TEST_BATCH_SIZE = 1
MIN_SEQUENCE_LENGTH = 5
STATE_FILE = FOLDER_STATE
VARIABLES_PREFIX = "variables"


def sample_sequence_length(rng: np.random.Generator, bptt: int, max_delta: int = 20) -> int:
    """The authors' segment length: ``bptt`` (p = 0.95) or ``bptt/2``, ``N(·, 5)``, in
    ``[5, bptt + max_delta]``."""
    mean = bptt if rng.random() < 0.95 else bptt / 2.0
    return min(max(MIN_SEQUENCE_LENGTH, int(rng.normal(mean, 5))), bptt + max_delta)


def segment(streams: np.ndarray, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, targets)``, time-major, from step ``start``; shorter at the end."""
    length = min(length, len(streams) - 1 - start)
    return streams[start:start + length], streams[start + 1:start + 1 + length]


_SEGMENT_SPEC = tf.TensorSpec([None, None], tf.int32)
_EVAL_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _eval_step(model: RecurrentLanguageModel):
    """One traced function per model: a segment's mean NLL and the last hidden state."""
    fn = _EVAL_STEPS.get(model)
    if fn is None:
        @tf.function(input_signature=[_SEGMENT_SPEC, _SEGMENT_SPEC,
                                      tf.TensorSpec([None, model.units], tf.float32)])
        def fn(tokens, targets, hidden):
            log_probs, last, _, _ = model.forward(tokens, hidden, training=False)
            return sequence_nll(log_probs, targets), last
        _EVAL_STEPS[model] = fn
    return fn


def evaluate_loss(model: RecurrentLanguageModel, ids, batch_size: int = EVAL_BATCH_SIZE,
                  bptt: int = 35) -> float:
    """The authors' evaluation loss of ``ids``: from a zero hidden state carried over
    ``bptt`` segments of ``batch_size`` streams, Σ (segment mean NLL × its length) /
    the stream length (their ``evaluate``; the last step has no target, so this is
    (L−1)/L of the mean NLL)."""
    streams = batchify(ids, batch_size).astype(np.int32)
    fn = _eval_step(model)
    hidden = tf.zeros([batch_size, model.units])
    total = 0.0
    for start in range(0, len(streams) - 1, bptt):
        tokens, targets = segment(streams, start, bptt)
        nll, hidden = fn(tokens, targets, hidden)
        total += float(nll) * len(tokens)
    return total / len(streams)


def evaluate_perplexity(model: RecurrentLanguageModel, ids, batch_size: int = EVAL_BATCH_SIZE,
                        bptt: int = 35) -> float:
    """``exp`` of :func:`evaluate_loss` (batch 10 for validation, 1 for the test)."""
    return math.exp(evaluate_loss(model, ids, batch_size, bptt))


def vocabulary_digest(model: RecurrentLanguageModel) -> str | None:
    """A short hash of the model's vocabulary (None without one), to match checkpoints."""
    if model.vocabulary is None:
        return None
    return hashlib.sha256("\n".join(model.vocabulary).encode()).hexdigest()[:16]


class LanguageModelTrainer:
    """The authors' evaluation training of a language model, resumable exactly.

    Args:
        model: a :class:`~kdarts.recurrent.RecurrentLanguageModel`.
        train_ids, valid_ids: token ids of the training and validation text.
        batch_size: training streams (64); bptt: mean segment length (35).
        learning_rate, clip_norm, weight_decay: SGD/ASGD's lr 20, clip 0.25, L2 8e-7.
        activity_l2, slowness: the loss's α (0) and β (1e-3), their ``--alpha``/``--beta``.
        nonmono: epochs the ASGD switch looks back (5).
        eval_batch_size: validation streams (10).
        max_seq_len_delta: the longest segment is ``bptt + max_seq_len_delta`` (20).
        seed: the segment lengths' seed (epoch ``e`` draws from ``(seed, e)``).

    The state a checkpoint holds: the model's variables (weights and its dropout draw
    counter), the optimizer's (switch flag, ASGD step count and step size, averages),
    the carried hidden state, and :attr:`epoch`, :attr:`history` (the SGD epochs'
    validation losses), :attr:`best_loss`, :attr:`since_best`.
    """

    def __init__(self, model: RecurrentLanguageModel, train_ids, valid_ids,
                 batch_size: int = 64, bptt: int = 35, learning_rate: float = 20.0,
                 clip_norm: float = 0.25, weight_decay: float = 8e-7,
                 activity_l2: float = 0.0, slowness: float = 1e-3, nonmono: int = 5,
                 eval_batch_size: int = EVAL_BATCH_SIZE, max_seq_len_delta: int = 20,
                 seed: int = 1267):
        if not isinstance(model, RecurrentLanguageModel):
            raise TypeError(f"LanguageModelTrainer: expected a RecurrentLanguageModel, got "
                            f"{type(model).__name__}")
        self.model = model
        self.streams = batchify(train_ids, batch_size).astype(np.int32)
        self.valid_ids = np.asarray(valid_ids)
        self.batch_size, self.bptt = int(batch_size), int(bptt)
        self.learning_rate, self.clip_norm = float(learning_rate), float(clip_norm)
        self.activity_l2, self.slowness = float(activity_l2), float(slowness)
        self.nonmono, self.eval_batch_size = int(nonmono), int(eval_batch_size)
        self.max_seq_len_delta, self.seed = int(max_seq_len_delta), int(seed)
        self.optimizer = AveragedSGD(weight_decay)
        self.optimizer.build(model.trainable_variables)
        self.hidden = tf.Variable(tf.zeros([batch_size, model.units]), trainable=False,
                                  name="hidden")
        self.epoch = 0
        self.history: list[float] = []
        self.best_loss = math.inf
        self.since_best = 0
        self._step = tf.function(self._train_step, input_signature=[
            _SEGMENT_SPEC, _SEGMENT_SPEC, tf.TensorSpec([], tf.float32)])

    # -- one epoch -----------------------------------------------------------------------
    def _train_step(self, tokens, targets, learning_rate):
        model = self.model
        weights = model.trainable_variables
        with tf.GradientTape() as tape:
            _, last, outputs, dropped = out = model.forward(tokens, self.hidden, training=True)
            nll = sequence_nll(out[0], targets)
            loss = nll + self.slowness * slowness_penalty(outputs)
            if self.activity_l2:
                loss += self.activity_l2 * tf.reduce_mean(tf.square(dropped))
        # the embedding's gradient arrives partly sparse (the lookup): make it dense
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, weights)]
        norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads]))
        coef = clip_coefficient(norm, self.clip_norm)
        self.optimizer.apply([g * coef for g in grads], weights, learning_rate)
        self.hidden.assign(last)
        return nll

    def train_epoch(self, on_step=None) -> float:
        """One pass over the training streams; the mean NLL of its segments.
        ``on_step(i, nll)`` is called after each segment's step."""
        rng = np.random.default_rng([self.seed, self.epoch])
        self.hidden.assign(tf.zeros_like(self.hidden))
        start, losses = 0, []
        while start < len(self.streams) - 2:
            length = sample_sequence_length(rng, self.bptt, self.max_seq_len_delta)
            tokens, targets = segment(self.streams, start, length)
            lr = self.learning_rate * length / self.bptt  # their rescale uses the drawn length
            nll = float(self._step(tokens, targets, tf.constant(lr, tf.float32)))
            if not math.isfinite(nll):
                raise FloatingPointError(f"training loss became {nll} in epoch "
                                         f"{self.epoch + 1}")
            losses.append(nll)
            if on_step is not None:
                on_step(len(losses) - 1, nll)
            start += length
        self.epoch += 1
        return float(np.mean(losses))

    def validate(self) -> float:
        """The validation loss, with the averaged weights under ASGD."""
        with self.optimizer.averaged_weights(self.model.trainable_variables):
            return evaluate_loss(self.model, self.valid_ids, self.eval_batch_size, self.bptt)

    def end_epoch(self, best_path: str | None = None) -> dict:
        """Validate, keep the best model (averaged under ASGD), apply the ASGD switch."""
        averaging = bool(self.optimizer.averaging.numpy())
        variables = self.model.trainable_variables
        with self.optimizer.averaged_weights(variables):
            val_loss = evaluate_loss(self.model, self.valid_ids, self.eval_batch_size, self.bptt)
            improved = val_loss < self.best_loss
            if improved:
                self.best_loss, self.since_best = val_loss, 0
                if best_path is not None:
                    _save_model_atomically(self.model, best_path)
        switched = False
        if not averaging:
            if should_switch_to_asgd(self.history, val_loss, self.nonmono):
                self.optimizer.start_averaging()
                switched = True
            self.history.append(val_loss)
        return {"epoch": self.epoch, "val_loss": val_loss, "val_ppl": math.exp(val_loss),
                "improved": improved, "averaging": averaging, "switched": switched}

    def run_epoch(self, best_path: str | None = None, on_step=None) -> dict:
        """:meth:`train_epoch` then :meth:`end_epoch`, counting the epochs since the best
        validation loss; the epoch's record, with its ``train_loss``."""
        train_loss = self.train_epoch(on_step)
        record = {"train_loss": train_loss, **self.end_epoch(best_path)}
        self.since_best += 0 if record["improved"] else 1
        return record

    def fit(self, epochs: int, checkpoint_dir: str | os.PathLike | None = None,
            patience: int = 20, log=None) -> list[dict]:
        """Train up to ``epochs`` (counting any already done) or until ``patience`` epochs
        bring no better validation loss (their ``--convergence``). With ``checkpoint_dir``:
        ``best.keras`` (the best validation model) and ``last/`` (:meth:`save`) after
        each epoch; an existing ``last/`` is resumed from first."""
        records = []
        last = best = None
        if checkpoint_dir is not None:
            os.makedirs(checkpoint_dir, exist_ok=True)
            last = os.path.join(checkpoint_dir, "last")
            best = os.path.join(checkpoint_dir, "best.keras")
            if os.path.isdir(last):
                self.restore(last)
        while self.epoch < epochs and self.since_best < patience:
            record = self.run_epoch(best)
            records.append(record)
            if last is not None:
                self.save(last)
            if log is not None:  # after the checkpoint: the log may say the epoch is kept
                log(record)
        return records

    # -- checkpoints -----------------------------------------------------------------------
    def _checkpoint(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(model_variables=list(self.model.variables),
                                   optimizer=self.optimizer, hidden=self.hidden)

    def state(self) -> dict:
        """The plain-Python part of the training state (what ``state.json`` holds)."""
        return {"epoch": self.epoch, "history": list(self.history),
                "best_loss": None if math.isinf(self.best_loss) else self.best_loss,
                "since_best": self.since_best, "vocab_size": self.model.vocab_size,
                "vocabulary": vocabulary_digest(self.model), "units": self.model.units,
                "genotype": self.model.genotype.to_dict(), "batch_size": self.batch_size}

    def save(self, path: str | os.PathLike) -> None:
        """Write the whole training state to the folder ``path`` (its variables and
        ``state.json``), replacing it through :func:`kdarts.checkpoints.write_checkpoint`."""
        write_checkpoint(CheckpointFiles.folder(path), self._write_variables, self.state())

    def _write_variables(self, folder: str) -> None:
        try:
            self._checkpoint().write(os.path.join(folder, VARIABLES_PREFIX))
        except tf.errors.ResourceExhaustedError as err:  # TensorFlow's ENOSPC/EDQUOT
            if "No space left" not in err.message and "quota" not in err.message:
                raise
            raise OSError(errno.EDQUOT if "quota" in err.message else errno.ENOSPC,
                          err.message) from None

    def restore(self, path: str | os.PathLike) -> None:
        """Load a training state written by :meth:`save` into this trainer and its model."""
        path = os.fspath(path)
        state = read_checkpoint_state(CheckpointFiles.folder(path))
        if state is None:
            raise FileNotFoundError(f"{path}: not a language-model checkpoint (no "
                                    f"{STATE_FILE})")
        mine = self.state()
        for key, what in (("vocab_size", "vocabulary size"), ("vocabulary", "vocabulary"),
                          ("units", "units"), ("genotype", "genotype"),
                          ("batch_size", "batch size")):
            if state.get(key) != mine[key]:
                raise ValueError(f"{path}: {what} mismatch: the checkpoint has "
                                 f"{_short(state.get(key))}, this trainer "
                                 f"{_short(mine[key])}")
        self._checkpoint().read(os.path.join(path, VARIABLES_PREFIX)).assert_consumed()
        self.epoch = resume_epoch(state)
        self.history = [float(v) for v in state["history"]]
        self.best_loss = math.inf if state["best_loss"] is None else float(state["best_loss"])
        self.since_best = int(state["since_best"])


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _save_model_atomically(model, path: str) -> None:
    from kdarts.atomic import atomic_file

    with atomic_file(path, suffix=".keras") as tmp:
        model.save(tmp)


__all__: Sequence[str] = ("LanguageModelTrainer", "evaluate_loss", "evaluate_perplexity",
                          "sample_sequence_length", "segment")
