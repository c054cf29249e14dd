"""The ``kdarts`` command line on the recurrent space (a corpus as ``--dataset``): search
→ train → export → generate end to end on tiny settings, resume, and the refusals.

Tracing dominates the cost (the cell is unrolled in the graph), so there is one tiny
run, shared by the slow tests of this module (one xdist group): a one-epoch search, the
finished search run again (refused) and resumed (its genotype written again without
training), a training, an ONNX export and generation. Resuming after an interrupted
epoch is tested on the run folder's functions (tests/test_recurrent.py tests exact
resume of the model). Every refusal
is a one-line error given before any corpus is read or model built.
"""

import csv
import json
import os
import re
import shutil
import zipfile

import pytest
from click.testing import CliRunner

from kdarts.cli import main
from kdarts.recurrent.genotype import RecurrentGenotype, num_recurrent_edges
from kdarts.runs.recurrent import RECURRENT_SEARCH_DEFAULTS, RECURRENT_TRAIN_DEFAULTS
# this folder is on sys.path (conftest); users_folder: every test runs in a folder of its own
from test_cli import assert_one_line_error, users_folder  # noqa: F401

# 25 weight steps: the first 2000 tokens of each split, 8 streams of 250, bptt
# ~10; a vocabulary of 50 words, 8 units
TINY = ["--units", "8", "--bptt", "10", "--vocab-size", "50", "--max-tokens", "2000",
        "--batch-size", "8", "--seed", "0"]
# a threshold far above this model's FI: an α step on most of the 25 steps, so that α
# moves and crb prunes in so short a search
TINY_SEARCH = ["search", "--dataset", "kdarts_text", *TINY, "--epochs", "1",
               "--threshold", "1e7"]
# lr 20 (the default, for 64 units and more) is too high for 8 units and 25 steps
TINY_TRAIN = [*TINY, "--epochs", "1", "--lr", "5"]


def invoke(*args):
    """Run the CLI in process; unexpected exceptions propagate (click's exits do not)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else None


@pytest.fixture
def no_recurrent_work(monkeypatch, no_tf_work):
    """Reading a corpus, building a model, exporting or sampling fails loudly (and the
    image space's data and networks, :func:`no_tf_work`): refusals must come first."""
    import kdarts.recurrent.corpus
    import kdarts.recurrent.export

    def forbidden(*args, **kwargs):
        raise AssertionError("the CLI did recurrent work before rejecting its input")

    for module, name in ((kdarts.recurrent.corpus, "load_corpus"),
                         (kdarts.recurrent.export, "export_language_model"),
                         (kdarts.recurrent.export, "load_language_model"),
                         (kdarts.recurrent.export, "generate")):
        monkeypatch.setattr(module, name, forbidden)


def recurrent_genotype_file(path):
    from kdarts.recurrent.genotype import DARTS_V2

    DARTS_V2.save(path)
    return path


def fake_language_model(path):
    """A .keras archive whose config names a RecurrentLanguageModel (nothing loadable)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "RecurrentLanguageModel"}))
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", b"")
    return path


# ------------------------------------------------------------------------ refusals


def test_options_of_the_other_space_are_refused(tmp_path, no_recurrent_work):
    out = tmp_path / "run"
    result = invoke("search", "--dataset", "kdarts_text", "--channels", "4", "--out", out)
    assert_one_line_error(result, "--channels applies to image data", "kdarts_text")
    result = invoke("search", "--dataset", "kdarts_text", "--layers", "3", "--no-sync-bn",
                    "--primitives", "tanh", "--out", out)
    assert_one_line_error(result, "--layers, --primitives, --sync-bn/--no-sync-bn apply to "
                          "image data")
    result = invoke("search", "--units", "8", "--max-tokens", "100", "--out", out)
    assert_one_line_error(result, "--units, --max-tokens apply to a corpus",
                          "not to the image data kdarts_digits")
    genotype = recurrent_genotype_file(tmp_path / "rnn.json")
    result = invoke("train", "--genotype", genotype, "--cutout", "4", "--out", out)
    assert_one_line_error(result, "--cutout applies to image data", "kdarts_text")
    result = invoke("train", "--genotype", "DARTS_V2", "--bptt", "12", "--out", out)
    assert_one_line_error(result, "--bptt applies to a corpus")
    assert not out.exists()


def test_a_genotype_of_the_other_space_is_refused(tmp_path, no_recurrent_work):
    from kdarts.image.genotype import DARTS_V2

    out = tmp_path / "run"
    recurrent = recurrent_genotype_file(tmp_path / "rnn.json")
    result = invoke("train", "--genotype", recurrent, "--dataset", "kdarts_digits",
                    "--out", out)
    assert_one_line_error(result, "is a recurrent cell", "not on the image data kdarts_digits")
    image = tmp_path / "cnn.json"
    DARTS_V2.save(image)
    result = invoke("train", "--genotype", image, "--dataset", "kdarts_text", "--out", out)
    assert_one_line_error(result, "is an image network's genotype", "kdarts_text")
    # a search folder holding a genotype counts as its genotype
    folder = tmp_path / "search"
    folder.mkdir()
    recurrent_genotype_file(folder / "genotype.json")
    result = invoke("train", "--genotype", folder, "--dataset", "kdarts_digits", "--out", out)
    assert_one_line_error(result, "is a recurrent cell")
    assert not out.exists()


def test_corpus_folder_checks(tmp_path, no_recurrent_work):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.txt").write_text("a b c\n")
    result = invoke("search", "--dataset", corpus, "--out", tmp_path / "run")
    assert_one_line_error(result, "holds no valid.txt, test.txt", "kdarts_text")
    result = invoke("search", "--dataset", "kdarts_text", "--batch-size", "4", "--bptt", "1",
                    "--out", tmp_path / "run")
    assert result.exit_code == 2 and "--bptt" in result.output  # click's range check
    assert not (tmp_path / "run").exists()


def test_a_corpus_folder_is_sized_in_one_line(tmp_path, monkeypatch):
    """A small folder's search and training get sizes for its tokens, said in one line
    before the run starts; the options given stay as given."""
    import kdarts.runs.language_model
    import kdarts.runs.recurrent

    started = {}
    monkeypatch.setattr(kdarts.runs.recurrent.RecurrentSearchFit, "start",
                        lambda self, *a: started.setdefault("search", self.job.opts))
    monkeypatch.setattr(kdarts.runs.language_model.LanguageModelFit, "start",
                        lambda self, *a: started.setdefault("train", self.job.opts))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    line = " ".join(f"w{i}" for i in range(40)) + "\n"
    for name, copies in (("train.txt", 200), ("valid.txt", 40), ("test.txt", 20)):
        (corpus / name).write_text(line * copies)
    search = invoke("search", "--dataset", corpus, "--out", tmp_path / "s")
    train = invoke("train", "--genotype", recurrent_genotype_file(tmp_path / "g.json"),
                   "--dataset", corpus, "--units", "16", "--out", tmp_path / "t")
    for result, command in ((search, "search"), (train, "train")):
        assert result.exit_code == 0, result.output
        sized = [x for x in result.output.splitlines() if x.startswith("sizes for")]
        assert len(sized) == 1 and "8,200 training tokens" in sized[0], result.output
        table = RECURRENT_SEARCH_DEFAULTS if command == "search" else RECURRENT_TRAIN_DEFAULTS
        assert started[command]["epochs"] == table["epochs"]
    assert "units" not in train.output and started["train"]["units"] == 16


def test_run_folders_of_another_run_are_refused(tmp_path, no_recurrent_work):
    image = tmp_path / "image"
    image.mkdir()
    (image / "run.json").write_text(json.dumps({"command": "search", "args": {
        "dataset": "kdarts_digits", "epochs": 8}}))
    before = listing(image)
    result = invoke("search", "--dataset", "kdarts_text", "--out", image)
    assert_one_line_error(result, "holds an image search run, not a recurrent one")
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"command": "search", "args": {
        "space": "recurrent", "dataset": "kdarts_text", "epochs": 9}}))
    result = invoke("search", "--dataset", "kdarts_text", "--out", other)
    assert_one_line_error(result, "different recurrent search run", "epochs: 9 → 4")
    result = invoke("search", "--dataset", "kdarts_text", "--resume",
                    "--out", tmp_path / "none")
    assert_one_line_error(result, "--resume: no checkpoint")
    assert listing(image) == before and listing(other) == ["run.json"]
    assert not (tmp_path / "none").exists()


def test_export_and_generate_refusals(tmp_path, no_recurrent_work):
    model = fake_language_model(tmp_path / "lm.keras")
    for args, fragment in (
            (["--format", "tflite"], "language model, which exports to keras, saved_model, onnx"),
            (["--format", "tflite", "--quantize", "int8"], "--format tflite"),
            (["--format", "onnx", "--quantize", "float16"], "--quantize float16"),
            (["--input-dtype", "uint8"], "takes int32 word ids"),
            (["--format", "keras", "--form", "step"], "--form applies to --format onnx")):
        assert_one_line_error(invoke("export", model, *args), fragment)
    image_model = tmp_path / "net.keras"
    with zipfile.ZipFile(image_model, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Functional"}))
    assert_one_line_error(invoke("export", image_model, "--form", "step"),
                          "--form applies to a language model")
    assert_one_line_error(invoke("generate", image_model, "--prompt", "the"),
                          "is not a language model")
    assert_one_line_error(invoke("generate", model, "--prompt", "  "), "--prompt")
    assert_one_line_error(invoke("generate", tmp_path / "none.keras", "--prompt", "a"),
                          "none.keras")
    assert sorted(os.listdir(tmp_path)) == ["lm.keras", "net.keras"]


def test_corpus_and_prompt_refusals_come_before_tensorflow(tmp_path):
    """In a fresh process: a corpus that cannot be read, one too short for the batch, and
    a prompt of only unknown words are refused in one line with TensorFlow not imported."""
    from test_cli_safety import assert_refused

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("train.txt", "test.txt"):
        (corpus / name).write_text("the cat sat\n" * 50)
    (corpus / "valid.txt").write_bytes(b"the cat\n" * 40 + b"a \xff b\n")
    assert_refused(["search", "--dataset", corpus, "--out", tmp_path / "s"],
                   "valid.txt: not UTF-8 text", "at byte 322, line 41", cwd=tmp_path)
    assert_refused(["train", "--genotype", "DARTS_V2", "--dataset", "kdarts_text",
                    "--max-tokens", "20", "--batch-size", "8", "--out", tmp_path / "t"],
                   "the train split has 20 tokens", "--batch-size 8", cwd=tmp_path)
    model = tmp_path / "lm.keras"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("config.json", json.dumps({
            "class_name": "RecurrentLanguageModel",
            "config": {"vocabulary": ["<unk>", "<eos>", "the", "cat"]}}))
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", b"")
    assert_refused(["generate", model, "--prompt", "Zebra quagga zebra"],
                   "no word of it is in", "unknown: zebra, quagga", "e.g. the, cat",
                   cwd=tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["corpus", "lm.keras"]


def test_each_space_gets_its_own_defaults(tmp_path, monkeypatch):
    """The image defaults this command shows (epochs 8, α lr 0.05, threshold 50, lr 0.025,
    batch 64) do not leak into a recurrent run: it gets only the options given."""
    import kdarts.runs.language_model
    import kdarts.runs.recurrent
    from kdarts.runs.recurrent import RECURRENT_SEARCH_DEFAULTS, RECURRENT_TRAIN_DEFAULTS, \
        resolve_recurrent_options

    calls = {}
    monkeypatch.setattr(kdarts.runs.recurrent, "recurrent_search_run",
                        lambda out, **kw: calls.setdefault("search", kw))
    monkeypatch.setattr(kdarts.runs.language_model, "recurrent_train_run",
                        lambda genotype, out, **kw: calls.setdefault("train", kw))
    assert invoke("search", "--dataset", "kdarts_text", "--out", tmp_path / "s",
                  "--every", "5").exit_code == 0
    genotype = recurrent_genotype_file(tmp_path / "rnn.json")
    assert invoke("train", "--genotype", genotype, "--out", tmp_path / "t",
                  "--lr", "10").exit_code == 0
    for command, table, given in (("search", RECURRENT_SEARCH_DEFAULTS, {"every": 5}),
                                  ("train", RECURRENT_TRAIN_DEFAULTS, {"lr": 10.0})):
        options = {k: v for k, v in calls[command].items() if k in table}
        assert resolve_recurrent_options(command, options) == {**table, **given}
    assert calls["train"]["dataset"] is None  # a recurrent genotype: the embedded corpus


def test_a_corpus_search_takes_the_strategy_mixed_precision_and_pruned_ops(tmp_path,
                                                                           monkeypatch):
    """--strategy, --mixed-precision and --skip-pruned-ops reach the recurrent search
    (the image-only --sync-bn is refused); every_step is an image-only mode."""
    import kdarts.runs.recurrent

    calls = {}
    monkeypatch.setattr(kdarts.runs.recurrent, "recurrent_search_run",
                        lambda out, **kw: calls.setdefault("search", kw))
    assert invoke("search", "--dataset", "kdarts_text", "--out", tmp_path / "s",
                  "--strategy", "mirrored", "--mixed-precision",
                  "--skip-pruned-ops", "levels").exit_code == 0
    given = calls["search"]
    assert (given["strategy"], given["mixed_precision"], given["skip_pruned_ops"]) == (
        "mirrored", True, "levels")
    monkeypatch.undo()
    result = invoke("search", "--dataset", "kdarts_text", "--skip-pruned-ops", "every_step",
                    "--out", tmp_path / "e")
    assert_one_line_error(result, "--skip_pruned_ops: one of auto, levels, never")


# --------------------------------------------------------------- end to end (slow)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A tiny search, run again without and with --resume, a training of its genotype,
    an ONNX export and generation."""
    root = tmp_path_factory.mktemp("lm")
    search, train = root / "search", root / "train"
    runs = {"search": invoke(*TINY_SEARCH, "--out", search)}
    runs["genotype_after_search"] = (search / "genotype.json").read_text()
    runs["again"] = invoke(*TINY_SEARCH, "--out", search)
    runs["finished"] = invoke(*TINY_SEARCH, "--out", search, "--resume")
    # the same search, its run.json saying the corpus had other text when it started
    changed = root / "changed"
    shutil.copytree(search, changed)
    run = json.loads((changed / "run.json").read_text())
    (changed / "run.json").write_text(json.dumps({**run, "num_train_tokens": 7}))
    runs["changed_mtime"] = os.stat(changed / "genotype.json").st_mtime_ns
    runs["changed"] = invoke(*TINY_SEARCH, "--out", changed, "--resume")
    runs["show"] = invoke("show", search / "genotype.json", "--png", root / "cell.png")
    runs["train"] = invoke("train", "--genotype", search / "genotype.json", *TINY_TRAIN,
                           "--out", train)
    runs["export"] = invoke("export", train / "model.keras", "--format", "onnx",
                            "--out", root / "lm.onnx")
    runs["generate"] = [invoke("generate", train / "model.keras", "--prompt", "The list is",
                               "--length", 12, "--seed", seed) for seed in (3, 3, 4)]
    runs["generate_folder"] = invoke("generate", train, "--prompt", "the", "--length", 5,
                                     "--temperature", 0)
    return root, runs


@pytest.mark.slow
def test_search_train_export_generate(lm):
    """One test for the one run: with -n 2 (--dist loadgroup) a worker may run other
    modules' tests between two of this module's, and a module fixture is then built
    again."""
    check_search(*lm)
    check_train_export_generate(*lm)


def check_search(root, runs):
    search = root / "search"
    searched = runs["search"]
    assert searched.exit_code == 0, searched.output
    assert {"run.json", "history.csv", "checkpoint.json", "checkpoint.weights.h5",
            "genotype.json", "genotype.png", "search_record.json", "alpha.png",
            "schedule.png"} <= set(os.listdir(search))
    assert_one_line_error(runs["again"], "already holds this search", "epoch 1 of 1",
                          "--resume")
    run = json.loads((search / "run.json").read_text())
    args = run["args"]
    assert args["space"] == "recurrent" and args["epochs"] == 1 and args["units"] == 8
    for key in ("arch_lr", "lr", "rho", "every"):  # the recurrent defaults, not the image ones
        assert args[key] == RECURRENT_SEARCH_DEFAULTS[key], key
    with open(search / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0"]
    state = json.loads((search / "checkpoint.json").read_text())
    assert state["epoch"] == 1 and state["search_step"] > 20
    # a valid recurrent genotype, and the search acted on it: crb pruned ops and the cell
    # is not what the initial α gives
    genotype = RecurrentGenotype.load(search / "genotype.json")
    assert len(genotype.recurrent) == 8
    assert all(0 <= source <= node for node, (_, source) in enumerate(genotype.recurrent))
    assert genotype != RecurrentGenotype.from_dict(run["initial_genotype"])
    done = re.search(r"(\d+) α steps, (\d+) of (\d+) ops pruned", searched.output)
    assert done, searched.output
    assert int(done.group(1)) > 0 and int(done.group(2)) > 0
    assert int(done.group(3)) == 4 * num_recurrent_edges()
    assert (search / "genotype.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the finished search resumed writes the same genotype again, without training
    finished = runs["finished"]
    assert finished.exit_code == 0, finished.output
    assert "resuming" not in finished.output and "search done" in finished.output
    assert (search / "genotype.json").read_text() == runs["genotype_after_search"]
    # resuming over a corpus that changed since is refused, and nothing is rewritten
    assert_one_line_error(runs["changed"], "kdarts_text changed since this run started",
                          "choose another --out")
    assert os.stat(root / "changed" / "genotype.json").st_mtime_ns == runs["changed_mtime"]
    show = runs["show"]
    assert show.exit_code == 0, show.output
    assert show.output.startswith(str(genotype)) and "cell drawn" in show.output
    assert (root / "cell.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def check_train_export_generate(root, runs):
    train = root / "train"
    result = runs["train"]
    assert result.exit_code == 0, result.output
    metrics = json.loads((train / "metrics.json").read_text())
    assert metrics["args"]["units"] == 8 and metrics["args"]["lr"] == 5.0
    assert metrics["genotype"] == json.loads((root / "search" / "genotype.json").read_text())
    assert metrics["vocab_size"] == 50
    # better than a uniform guess over the 50 words after one epoch
    assert 1 < metrics["valid_perplexity"] < 50 and 1 < metrics["test_perplexity"] < 50
    vocab = json.loads((train / "model.keras.vocab.json").read_text())["tokens"]
    assert len(vocab) == 50 and vocab[:2] == ["<unk>", "<eos>"]
    export = runs["export"]
    assert export.exit_code == 0, export.output
    line = export.output.strip()
    assert "exported language model onnx" in line and "verified against the Keras model" in line
    assert float(line.rsplit("= ", 1)[1]) <= 1e-5
    assert json.loads((root / "lm.onnx.vocab.json").read_text())["tokens"] == vocab
    import onnx

    proto = onnx.load(root / "lm.onnx")
    assert [i.name for i in proto.graph.input] == ["tokens"]
    first, same, other = runs["generate"]
    unknown = [w for w in ("the", "list", "is") if w not in vocab]
    for result in (first, other):
        assert result.exit_code == 0, result.output
        words = result.stdout.split()
        assert len(words) == 12 and set(words) <= set(vocab)
        # unknown prompt words among known ones: read as <unk>, said in one line
        notes = result.stderr.strip().splitlines()
        assert notes == ([f"note: not in the model's vocabulary, read as <unk>: "
                          f"{', '.join(unknown)}"] if unknown else []), result.stderr
    assert first.stdout == same.stdout and first.stdout != other.stdout
    greedy = runs["generate_folder"]
    assert greedy.exit_code == 0, greedy.output
    assert len(greedy.stdout.split()) == 5 and set(greedy.stdout.split()) <= set(vocab)


@pytest.mark.slow
def test_sigterm_says_what_was_kept_and_releases_the_lock(tmp_path):
    """SIGTERM after the first checkpoint: one line saying what was kept, exit 143, the
    folder's lock removed and its checkpoint kept."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "s"
    args = [*TINY_SEARCH[1:], "--epochs", "200", "--out", str(out)]  # far longer than waited
    proc = subprocess.Popen([sys.executable, "-m", "kdarts.cli", "search", *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "checkpoint.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == 143, stderr[-2000:]
    assert len(errors) == 1, stderr[-2000:]
    assert errors[0].startswith("Error: terminated (SIGTERM); the search's last checkpoint "
                                "(epoch "), errors[0]
    assert "--resume continues it" in errors[0]
    assert not (out / ".lock").exists() and (out / "checkpoint.json").exists()
    epoch = json.loads((out / "checkpoint.json").read_text())["epoch"]
    assert f"(epoch {epoch} of 200)" in errors[0]
