"""Token streams cut into BPTT segments for language modelling.

As the authors (and AWD-LSTM) batch a corpus: the token ids are cut into ``batch``
equally long contiguous streams (the remainder is dropped), and consecutive
segments of ``bptt`` tokens are read from all streams side by side, so row ``b``
of segment ``i + 1`` continues row ``b`` of segment ``i`` and the hidden state can
be carried from one segment to the next. Each target is the next token.

Example:
    >>> import numpy as np
    >>> ds = bptt_dataset(np.arange(41), batch_size=2, bptt=5)
    >>> x, y = next(iter(ds))
    >>> x.numpy().tolist(), y.numpy().tolist()
    ([[0, 1, 2, 3, 4], [20, 21, 22, 23, 24]], [[1, 2, 3, 4, 5], [21, 22, 23, 24, 25]])
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def batchify(ids, batch_size: int) -> np.ndarray:
    """(steps, batch): ``batch_size`` contiguous streams side by side, the remainder dropped."""
    ids = np.asarray(ids)
    steps = len(ids) // batch_size
    if steps < 2:
        raise ValueError(f"batchify: {len(ids)} tokens make fewer than 2 steps of a batch of "
                         f"{batch_size}")
    return ids[:steps * batch_size].reshape(batch_size, steps).T


def num_segments(steps: int, bptt: int) -> int:
    """Full ``bptt``-long segments (with their next-token targets) in ``steps`` time steps."""
    return (steps - 1) // bptt


def bptt_dataset(ids, batch_size: int, bptt: int) -> tf.data.Dataset:
    """``(tokens, targets)`` segments, each (batch, bptt) int32, in corpus order.

    The authors' loop also reads a last, shorter segment; every segment here has the
    same length, so the step is traced once.
    """
    streams = batchify(ids, batch_size).astype(np.int32)
    n = num_segments(len(streams), bptt)
    if n < 1:
        raise ValueError(f"bptt_dataset: {len(streams)} steps per stream hold no segment of "
                         f"{bptt} tokens and their targets")
    x = streams[:n * bptt].reshape(n, bptt, batch_size).transpose(0, 2, 1)
    y = streams[1:n * bptt + 1].reshape(n, bptt, batch_size).transpose(0, 2, 1)
    return tf.data.Dataset.from_tensor_slices((x, y))


class BPTTStream:
    """A token stream for the search, cut into segments as the authors' search loop cuts it.

    ``ids`` are batchified into ``batch_size`` streams. Each step reads a segment at the
    current position ``i``: ``seq_len = bptt`` with probability ``p_full`` (0.95), else
    ``int(bptt / 2)``; then ``i += seq_len``, and the epoch ends once ``i`` reaches the
    stream's second-to-last step (the last segment is shorter). The weight step's learning
    rate is scaled by ``seq_len / bptt``. ``std`` (None in the authors' search, whose line
    drawing it is commented out; 5 in their evaluation training) instead draws
    ``seq_len = min(max(min_length, int(normal(bptt or bptt/2, std))), bptt + max_delta)``.
    ``variable=False`` reads ``bptt`` tokens at every step (the last segment still shorter).

    The lengths come from ``numpy.random.RandomState(seed)``, one draw per step (two
    with ``std``) in one stream across epochs, as the authors' ``np.random`` seeded once
    — the same seed gives their run's lengths.

    Example:
        >>> stream = BPTTStream(np.arange(2 * 40), batch_size=2, bptt=5, seed=3)
        >>> [len(epoch) for epoch in stream.plan(2)]
        [8, 8]
    """

    def __init__(self, ids, batch_size: int, bptt: int, variable: bool = True,
                 p_full: float = 0.95, std: float | None = None, min_length: int = 5,
                 max_delta: int = 20, seed: int = 0):
        self.streams = batchify(ids, batch_size).astype(np.int32)
        self.batch_size, self.bptt = int(batch_size), int(bptt)
        self.variable, self.p_full, self.std = bool(variable), float(p_full), std
        self.min_length, self.max_delta, self.seed = int(min_length), int(max_delta), int(seed)
        if len(self.streams) < 3:
            raise ValueError("BPTTStream: fewer than 3 steps per stream")

    @property
    def max_length(self) -> int:
        """The longest segment a step can read (the padded length)."""
        return self.bptt + self.max_delta if self.variable and self.std else self.bptt

    @property
    def nominal_steps(self) -> int:
        """The authors' steps per epoch for the clock: stream length // bptt."""
        return max(1, len(self.streams) // self.bptt)

    def plan(self, epochs: int, search_steps: int | None = None) -> list[np.ndarray]:
        """Per epoch, rows ``(i, length, seq_len, j, search_length)``: the train segment at
        ``i`` of ``length`` tokens (``seq_len`` before the stream's end cut it), and the
        search segment the authors read at that step, at ``j = i mod (search_steps − 1)``."""
        rng = np.random.RandomState(self.seed)
        steps, bptt, epochs_rows = len(self.streams), self.bptt, []
        for _ in range(int(epochs)):
            rows, i = [], 0
            while i < steps - 2:
                if self.variable:
                    base = bptt if rng.random_sample() < self.p_full else bptt / 2.0
                    if self.std:
                        seq = max(self.min_length, int(rng.normal(base, self.std)))
                        seq = min(seq, bptt + self.max_delta)
                    else:
                        seq = int(base)
                else:
                    seq = bptt
                length = min(seq, steps - 1 - i)
                j = ls = 0
                if search_steps is not None:
                    j = i % (search_steps - 1)
                    ls = min(bptt, search_steps - 1 - j)
                rows.append((i, length, seq, j, ls))
                i += seq
            epochs_rows.append(np.array(rows, np.int64).reshape(-1, 5))
        return epochs_rows


def _padded(streams: np.ndarray, length: int) -> np.ndarray:
    return np.concatenate([streams, np.zeros((length + 1, streams.shape[1]), np.int32)])


def search_segments(train: BPTTStream, search: BPTTStream, epochs: int,
                    initial_epoch: int = 0) -> tuple[tf.data.Dataset, int, int]:
    """The search's steps for epochs ``initial_epoch..epochs-1``: ``(dataset, steps per
    epoch, steps before initial_epoch)``.

    Each element is ``((x, y, length, lr_scale, first, real), (xs, ys, search_length))``,
    segments (batch, time) padded at the end to a fixed length, so one traced step serves
    every length (padding costs the padded steps' compute, about 2.5 % at the authors'
    settings, where 5 % of segments are half long; a trace per length would retrace for
    every last-segment and search-segment length, 1 to bptt). Epochs have as many steps
    as their segments; shorter epochs end in steps with ``real`` False, which change
    nothing, so every Keras epoch is one pass over the text.
    """
    if search.batch_size != train.batch_size:
        raise ValueError(f"the search stream's batch ({search.batch_size}) is not the "
                         f"train stream's ({train.batch_size})")
    plan = train.plan(epochs, len(search.streams))
    per_epoch = max(len(p) for p in plan)
    before = sum(len(p) for p in plan[:initial_epoch])
    rows = []
    for p in plan[initial_epoch:]:
        pad = np.zeros((per_epoch - len(p), 5), np.int64)
        flags = np.zeros((per_epoch, 2), np.int64)
        flags[0, 0], flags[:len(p), 1] = 1, 1  # first, real
        rows.append(np.concatenate([np.concatenate([p, pad]), flags], axis=1))
    rows = np.concatenate(rows) if rows else np.zeros((0, 7), np.int64)
    t_len, s_len = train.max_length, search.bptt
    tr = tf.constant(_padded(train.streams, t_len))
    se = tf.constant(_padded(search.streams, s_len))
    bptt = float(train.bptt)

    def element(row):
        i, n, seq, j, ns, first, real = tf.unstack(row)

        def cut(streams, at, size):
            x = tf.transpose(tf.slice(streams, [at, 0], [size, -1]))
            y = tf.transpose(tf.slice(streams, [at + 1, 0], [size, -1]))
            return x, y

        x, y = cut(tr, tf.cast(i, tf.int32), t_len)
        xs, ys = cut(se, tf.cast(j, tf.int32), s_len)
        return ((x, y, tf.cast(n, tf.int32), tf.cast(seq, tf.float32) / bptt,
                 tf.cast(first, tf.bool), tf.cast(real, tf.bool)),
                (xs, ys, tf.cast(ns, tf.int32)))

    ds = tf.data.Dataset.from_tensor_slices(rows).map(element).prefetch(2)
    return ds, per_epoch, before


def eval_segments(ids, batch_size: int = 10, bptt: int = 35) -> tf.data.Dataset:
    """``(x, y, length)`` segments of the authors' evaluation: every ``bptt`` tokens from
    the start, the last one shorter, padded to ``bptt`` (batch, time)."""
    streams = batchify(ids, batch_size).astype(np.int32)
    steps = len(streams)
    starts = np.arange(0, steps - 1, bptt)
    lengths = np.minimum(bptt, steps - 1 - starts)
    padded = _padded(streams, bptt)
    x = np.stack([padded[s:s + bptt].T for s in starts])
    y = np.stack([padded[s + 1:s + 1 + bptt].T for s in starts])
    return tf.data.Dataset.from_tensor_slices((x, y, lengths.astype(np.int32)))
