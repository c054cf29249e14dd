"""A small English corpus every Python install carries, tokenised the Penn Treebank way.

The text is CPython's own reference documentation as ``pydoc`` serves it offline
(``pydoc_data.topics``: about 80 topics, some 100k words, under the PSF licence of
the Python documentation). It is read from the running interpreter's standard
library, so kdarts ships none of it and needs no download; its exact words follow
the Python version.

Tokenised as Mikolov's PTB files are: lowercase words, numbers replaced by ``N``,
punctuation dropped, a vocabulary capped at the most frequent training words with
the rest mapped to ``<unk>``, and ``<eos>`` closing every line. Identifiers keep
their underscores and digits (``assert_stmt``), as the text is about code. The
topics, in name order, are cut into contiguous blocks of lines (80 % train, 10 %
valid, 10 % test), so each split is running text, as PTB's sections are.

Example:
    >>> corpus = stdlib_corpus(vocab_size=2000)
    >>> corpus.vocabulary[:2], len(corpus.vocabulary)
    (['<unk>', '<eos>'], 2000)
    >>> ds = bptt_dataset(corpus.train, batch_size=4, bptt=35)   # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

UNK, EOS = "<unk>", "<eos>"
_WORD = re.compile(r"[a-z_][a-z0-9_]*(?:'[a-z]+)?|\d+(?:[.,]\d+)*")


def ptb_words(line: str) -> list[str]:
    """A line's words, PTB style: lowercase, numbers as ``N``, punctuation dropped.

    Example:
        >>> ptb_words("Python 3.11 isn't slow: __debug__ is 2x faster!")
        ['python', 'N', "isn't", 'slow', '__debug__', 'is', 'N', 'x', 'faster']
    """
    return ["N" if w[0].isdigit() else w for w in _WORD.findall(line.lower())]


def build_vocabulary(lines: Iterable[Sequence[str]], size: int) -> list[str]:
    """``<unk>``, ``<eos>``, then the ``size − 2`` most frequent words (ties: alphabetical)."""
    if size < 3:
        raise ValueError(f"vocabulary size must be >= 3, got {size}")
    counts = Counter(w for line in lines for w in line)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    return [UNK, EOS] + [w for w in ranked if w not in (UNK, EOS)][:size - 2]


def encode(lines: Iterable[Sequence[str]], vocabulary: Sequence[str]) -> np.ndarray:
    """Word ids of the lines, each closed by ``<eos>``; unknown words are ``<unk>``."""
    index = {w: i for i, w in enumerate(vocabulary)}
    unk, eos = index[UNK], index[EOS]
    return np.array([i for line in lines for i in [index.get(w, unk) for w in line] + [eos]],
                    np.int32)


@dataclass(frozen=True)
class Corpus:
    """Token ids of the three splits and the vocabulary (id → word)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocabulary: list[str]


def split_lines(lines: Sequence, valid: float = 0.1, test: float = 0.1):
    """``(train, valid, test)``: contiguous blocks of ``lines``, the last two of the given
    shares (rounded down), in that order."""
    n_valid, n_test = int(len(lines) * valid), int(len(lines) * test)
    n_train = len(lines) - n_valid - n_test
    return lines[:n_train], lines[n_train:n_train + n_valid], lines[n_train + n_valid:]


def stdlib_lines() -> list[list[str]]:
    """The tokenised, non-empty lines of ``pydoc_data.topics``, topics in name order."""
    from pydoc_data.topics import topics

    return [words for name in sorted(topics)
            for words in map(ptb_words, topics[name].splitlines()) if words]


def stdlib_corpus(vocab_size: int = 10000) -> Corpus:
    """The PTB-style corpus of this Python's reference topics (module docstring)."""
    train, valid, test = split_lines(stdlib_lines())
    vocabulary = build_vocabulary(train, vocab_size)
    return Corpus(encode(train, vocabulary), encode(valid, vocabulary),
                  encode(test, vocabulary), vocabulary)
