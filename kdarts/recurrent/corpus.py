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

import io
import os
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


#: The corpus every install carries (CPython's documentation, PTB-tokenised): its name
#: wherever a corpus is asked for (no download, no files).
EMBEDDED_CORPUS = "kdarts_text"
#: The files a corpus folder holds (the Penn Treebank layout).
CORPUS_FILES = ("train.txt", "valid.txt", "test.txt")


def is_corpus(dataset: str | None) -> bool:
    """Whether ``--dataset`` names a corpus: the embedded one, or a folder holding
    ``train.txt``, ``valid.txt`` and ``test.txt``."""
    if dataset is None:
        return False
    if dataset == EMBEDDED_CORPUS:
        return True
    return os.path.isdir(dataset) and all(
        os.path.isfile(os.path.join(dataset, name)) for name in CORPUS_FILES)


class CorpusError(ValueError):
    """A corpus that cannot be read; the message names the file and what was wrong."""


def _read_split(path: str) -> list[list[str]]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CorpusError(f"{path}: missing; a corpus folder holds "
                          f"{', '.join(CORPUS_FILES)} (one sentence a line)") from None
    except OSError as err:
        raise CorpusError(f"{path}: cannot read ({err.strerror})") from None
    try:  # the whole file at once: the error's offset is the file's, not a read chunk's
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise CorpusError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}, "
                          f"line {line})") from None
    # newlines as a text-mode file reads them (\r\n and \r end lines too)
    lines = [line.split() for line in io.StringIO(text, newline=None)]
    if not any(lines):
        raise CorpusError(f"{path}: holds no words")
    return lines


def read_corpus_folder(folder: str, vocab_size: int | None = None) -> Corpus:
    """A corpus in the Penn Treebank layout: ``train.txt``, ``valid.txt``, ``test.txt``,
    whitespace-separated words, one sentence a line, ``<eos>`` closing each line.

    With ``vocab_size`` None the vocabulary is every word in order of first appearance,
    train then valid then test, ``<eos>`` included (the reference's ids for PTB, whose
    files already carry ``<unk>``). With a size, it is capped as
    :func:`build_vocabulary` does from the training split; other words become ``<unk>``.
    """
    splits = [_read_split(os.path.join(folder, name)) for name in CORPUS_FILES]
    if vocab_size is None:
        vocabulary = list(dict.fromkeys(w for lines in splits for line in lines
                                        for w in line + [EOS]))
        if UNK not in vocabulary:
            vocabulary.append(UNK)  # encode() needs it; no word maps to it
    else:
        vocabulary = build_vocabulary(splits[0], vocab_size)
    return Corpus(*(encode(lines, vocabulary) for lines in splits), vocabulary)


def load_corpus(spec: str, vocab_size: int | None = None) -> Corpus:
    """``"kdarts_text"`` (the embedded corpus, 10,000 words unless ``vocab_size``) or a
    folder in the PTB layout (:func:`read_corpus_folder`)."""
    if spec == EMBEDDED_CORPUS:
        return stdlib_corpus(vocab_size or 10000)
    if os.path.isdir(spec):
        return read_corpus_folder(spec, vocab_size)
    raise CorpusError(f"{spec}: not a corpus: give {EMBEDDED_CORPUS!r} or a folder holding "
                      f"{', '.join(CORPUS_FILES)}")
