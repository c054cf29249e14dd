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
