"""Corpus folders in the Penn Treebank layout, and the embedded corpus by name (no
TensorFlow)."""

import os

import numpy as np
import pytest

from kdarts.recurrent.corpus import (
    CORPUS_FILES,
    EMBEDDED_CORPUS,
    CorpusError,
    load_corpus,
    read_corpus_folder,
)


def write_corpus(folder, texts):
    for name, text in zip(CORPUS_FILES, texts):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write(text)
    return str(folder)


def test_folder_ids_follow_first_appearance_as_the_reference(tmp_path):
    folder = write_corpus(tmp_path, ["the cat sat\nthe dog\n", "a cat\n", "dog <unk>\n"])
    corpus = load_corpus(folder)
    assert corpus.vocabulary == ["the", "cat", "sat", "<eos>", "dog", "a", "<unk>"]
    np.testing.assert_array_equal(corpus.train, [0, 1, 2, 3, 0, 4, 3])
    np.testing.assert_array_equal(corpus.valid, [5, 1, 3])
    np.testing.assert_array_equal(corpus.test, [4, 6, 3])
    capped = read_corpus_folder(folder, vocab_size=4)  # <unk>, <eos>, then by frequency
    assert capped.vocabulary == ["<unk>", "<eos>", "the", "cat"]
    np.testing.assert_array_equal(capped.valid, [0, 3, 1])


@pytest.mark.parametrize("case, expected", [
    ("missing", "test.txt: missing; a corpus folder holds train.txt, valid.txt, test.txt"),
    ("empty", "valid.txt: holds no words"),
    ("binary", "train.txt: not UTF-8 text"),
])
def test_bad_folders_are_named(tmp_path, case, expected):
    texts = ["a b\n", "a\n", "b\n"]
    if case == "empty":
        texts[1] = "\n\n"
    folder = write_corpus(tmp_path, texts)
    if case == "missing":
        os.remove(os.path.join(folder, "test.txt"))
    if case == "binary":
        with open(os.path.join(folder, "train.txt"), "wb") as f:
            f.write(b"\xff\xfe\x00a")
    with pytest.raises(CorpusError, match=expected):
        load_corpus(folder)


def test_embedded_corpus_by_name_and_unknown_names():
    corpus = load_corpus(EMBEDDED_CORPUS, vocab_size=300)
    assert len(corpus.vocabulary) == 300 and corpus.vocabulary[:2] == ["<unk>", "<eos>"]
    with pytest.raises(CorpusError, match="nope: not a corpus: give 'kdarts_text' or a folder"):
        load_corpus("nope")
