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


def test_invalid_utf8_names_the_files_own_byte_offset(tmp_path):
    """The offset is the file's, far past the first read chunk, with its line."""
    folder = write_corpus(tmp_path, ["a b\n", "a\n", "b\n"])
    good = b"the cat sat on the mat\n" * 9000  # 207,000 bytes
    with open(os.path.join(folder, "train.txt"), "wb") as f:
        f.write(good + b"a \xff b\n")
    with pytest.raises(CorpusError) as caught:
        load_corpus(folder)
    message = str(caught.value)
    assert message.startswith(os.path.join(folder, "train.txt") + ": not UTF-8 text")
    assert f"at byte {len(good) + 2}, line 9001" in message


def test_corpus_folder_sizes_follow_its_tokens():
    """Small folders get the embedded corpus's sizes, PTB-sized ones the paper's, and the
    sizes grow with the tokens in between; the batch fits the validation split."""
    from kdarts.runs.recurrent import PTB_SEARCH, PTB_TRAIN, RECURRENT_SEARCH_DEFAULTS, \
        RECURRENT_TRAIN_DEFAULTS, corpus_sizes

    for command, small, paper in (("search", RECURRENT_SEARCH_DEFAULTS, PTB_SEARCH),
                                  ("train", RECURRENT_TRAIN_DEFAULTS, PTB_TRAIN)):
        tiny = corpus_sizes(command, 20_000, 2_500)
        ptb = corpus_sizes(command, 929_589, 73_760)
        middle = corpus_sizes(command, 250_000, 25_000)
        assert tiny == {k: small[k] for k in tiny}, command
        assert ptb == {k: paper[k] for k in ptb}, command
        for key in ("units", "bptt", "epochs"):
            assert tiny[key] < middle[key] < ptb[key], (command, key)
        assert tiny["batch_size"] <= middle["batch_size"] <= ptb["batch_size"]
        if command == "search":
            assert tiny["arch_lr"] > middle["arch_lr"] > ptb["arch_lr"]
            assert tiny["threshold"] > middle["threshold"] > ptb["threshold"]
        assert middle["batch_size"] & (middle["batch_size"] - 1) == 0  # a power of two
    # a validation split of 300 tokens holds 2 segments of 21 in 4 streams, not in 8
    assert corpus_sizes("search", 20_000, 300)["batch_size"] == 4
    assert corpus_sizes("search", 20_000, 300, bptt=5)["batch_size"] == 16


def test_a_small_folder_is_sized_in_one_line_and_given_options_win(tmp_path):
    from kdarts.runs.recurrent import RECURRENT_SEARCH_DEFAULTS, size_to_corpus

    words = [f"w{i}" for i in range(40)]
    line = " ".join(words) + "\n"
    folder = write_corpus(tmp_path, [line * 100, line * 40, line * 20])  # 4,100 tokens
    lines = []
    opts = size_to_corpus("search", {"dataset": folder}, lines.append)
    assert len(lines) == 1
    assert "4,100 training tokens" in lines[0] and "vocabulary 42" in lines[0]
    assert f"{RECURRENT_SEARCH_DEFAULTS['units']} units" in lines[0]
    for key in ("units", "bptt", "batch_size", "epochs", "arch_lr", "threshold"):
        assert opts[key] == RECURRENT_SEARCH_DEFAULTS[key], key
    lines.clear()
    opts = size_to_corpus("train", {"dataset": folder, "units": 12, "batch_size": 2},
                          lines.append)
    assert (opts["units"], opts["batch_size"]) == (12, 2)
    assert len(lines) == 1 and "units" not in lines[0] and "batch" not in lines[0]


def test_corpus_folder_search_learning_rate_reaches_the_papers_20():
    """The weights' SGD rate of a recurrent search grows with the corpus to the authors'
    20 (train_search_rnn.py's --lr) on a PTB-sized folder; the built-in corpus keeps 5."""
    from kdarts.runs.recurrent import RECURRENT_SEARCH_DEFAULTS, corpus_sizes

    assert corpus_sizes("search", 929_589, 73_760)["lr"] == 20.0
    assert corpus_sizes("search", 20_000, 2_500)["lr"] == RECURRENT_SEARCH_DEFAULTS["lr"] == 5.0
    assert 5.0 < corpus_sizes("search", 250_000, 25_000)["lr"] < 20.0
    assert "lr" not in corpus_sizes("train", 929_589, 73_760)
