"""The recurrent evaluation side (kdarts.recurrent): a genotype's cell and language model
against the authors' numbers (tests/data/recurrent_eval_reference.npz, written by
tools/reference_rnn.py --eval-out), ASGD against torch.optim.ASGD's numbers, exact
resume, exports and sampling."""

import json
import math
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdarts.genotype import GenotypeError
from kdarts.image.genotype import DARTS_V2 as CONV_DARTS_V2
from kdarts.parameters import count_parameters
from kdarts.recurrent.asgd import AveragedSGD, asgd_average, asgd_mu, should_switch_to_asgd
from kdarts.recurrent.cell import RecurrentCell
from kdarts.recurrent.export import export_language_model, generate, vocabulary_path
from kdarts.recurrent.genotype import DARTS_V1, DARTS_V2
from kdarts.recurrent.model import RecurrentLanguageModel, language_model_parameter_count
from kdarts.recurrent.operations import sequence_nll, slowness_penalty
from kdarts.recurrent.training import (
    LanguageModelTrainer,
    evaluate_loss,
    evaluate_perplexity,
    sample_sequence_length,
    segment,
)

REFERENCE = np.load(pathlib.Path(__file__).parent / "data" / "recurrent_eval_reference.npz")
VOCAB = ["<unk>", "<eos>"] + [f"w{i}" for i in range(48)]


def tiny_model(seed=1, vocabulary=VOCAB, **kwargs):
    return RecurrentLanguageModel(len(vocabulary), DARTS_V2, units=8, vocabulary=vocabulary,
                                  seed=seed, **kwargs)


# -- structure ------------------------------------------------------------------------------
def test_parameter_counts_match_the_authors_modules():
    # the authors' RNNModel(10000, 850, 850, 850, DARTSCell, DARTS_V2), counted in torch
    assert int(REFERENCE["count.eval_850_darts_v2"]) == 22_960_000
    assert language_model_parameter_count(10_000, 850) == 22_960_000
    model = tiny_model()
    assert count_parameters(model) == language_model_parameter_count(50, 8) == 1730
    # the decoder is tied: one embedding matrix, one bias
    assert sorted(v.path.split("/")[-1] for v in model.trainable_variables) == \
        ["decoder_bias", "embedding", "node_kernels", "w0"]


@pytest.mark.slow
def test_ptb_sized_model_builds_with_the_authors_count():
    model = RecurrentLanguageModel(10_000, DARTS_V2, units=850, seed=0)
    assert count_parameters(model) == 22_960_000


def test_genotype_of_the_wrong_kind_and_config_round_trip():
    with pytest.raises(GenotypeError, match="expected a RecurrentGenotype .*got Genotype "
                                            r"\(a convolutional genotype\)"):
        RecurrentCell(8, CONV_DARTS_V2)
    with pytest.raises(ValueError, match="the vocabulary has 2 words, vocab_size is 50"):
        RecurrentLanguageModel(50, DARTS_V2, units=8, vocabulary=["a", "b"])
    model = RecurrentLanguageModel(50, DARTS_V1, units=8, dropout=0.5, seed=3)
    clone = RecurrentLanguageModel.from_config(model.get_config())
    assert clone.genotype == DARTS_V1 and clone.rates == model.rates and clone.seed == 3


# -- parity with the authors' evaluation model -------------------------------------------------
def test_language_model_matches_the_authors_forward_and_gradients():
    r = {k[5:]: v for k, v in REFERENCE.items() if k.startswith("eval.")}
    model = RecurrentLanguageModel(50, DARTS_V2, units=8, seed=0)
    for name, var in (("embedding", model.embedding), ("decoder_bias", model.decoder_bias),
                      ("w0", model.cell.w0), ("node_kernels", model.cell.node_kernels)):
        var.assign(r[f"w.{name}"].astype("float32"))
    tokens, targets = r["tokens"].astype("int32"), r["targets"].astype("int32")
    hidden = tf.constant(r["hidden"], tf.float32)
    with tf.GradientTape() as tape:
        # training=True with every mask off: the training graph, as theirs ran
        log_probs, last, outputs, dropped = model.forward(tokens, hidden, training=True,
                                                          masks={})
        nll = sequence_nll(log_probs, targets)
        loss = nll + 2.0 * tf.reduce_mean(tf.square(dropped)) \
            + 1e-3 * slowness_penalty(outputs)
    np.testing.assert_allclose(log_probs.numpy(), r["log_probs"], atol=2e-6)
    np.testing.assert_allclose(last.numpy(), r["last_hidden"], atol=1e-6)
    assert abs(float(nll) - float(r["nll"])) < 1e-5
    assert abs(float(loss) - float(r["loss"])) < 1e-5
    variables = [model.embedding, model.decoder_bias, model.cell.w0, model.cell.node_kernels]
    grads = tape.gradient(loss, variables)
    for name, g in zip(("embedding", "decoder_bias", "w0", "node_kernels"), grads):
        want = r[f"grad.{name}"]
        np.testing.assert_allclose(tf.convert_to_tensor(g).numpy(), want,
                                   atol=2e-6 * max(1.0, np.abs(want).max()), err_msg=name)
    # evaluation mode is the same graph without masks
    again, _, _, _ = model.forward(tokens, hidden)
    np.testing.assert_allclose(again.numpy(), log_probs.numpy(), atol=1e-7)


# -- ASGD ---------------------------------------------------------------------------------------
def test_asgd_matches_torch_and_the_running_mean():
    r = {k[5:]: v for k, v in REFERENCE.items() if k.startswith("asgd.")}
    a, b = r["a"], r["b"]
    w = tf.Variable(r["start"].astype("float32"))
    opt = AveragedSGD(weight_decay=8e-7)
    opt.build([w])
    opt.start_averaging()
    for k, scale in enumerate(r["scales"]):
        grad = a.T @ (a @ w.numpy().astype("float64") - b)
        opt.apply([tf.constant(grad, tf.float32)], [w], float(r["lr"]) * scale)
        np.testing.assert_allclose(w.numpy(), r["params"][k], atol=1e-6)
        np.testing.assert_allclose(opt.averages[0].numpy(), r["averages"][k], atol=1e-6)
    # the average is the plain mean of the iterates from the second ASGD step on
    np.testing.assert_allclose(r["averages"][-1], r["params"][1:].mean(axis=0), atol=1e-12)
    assert [asgd_mu(k) for k in (1, 2, 3, 5)] == [1.0, 1.0, 0.5, 0.25]
    assert asgd_average(np.ones(2), np.full(2, 3.0), 2).tolist() == [3.0, 3.0]
    # averaged weights are swapped in for the block only
    kept = w.numpy().copy()
    with opt.averaged_weights([w]):
        np.testing.assert_array_equal(w.numpy(), opt.averages[0].numpy())
    np.testing.assert_array_equal(w.numpy(), kept)


def test_plain_sgd_until_the_switch():
    w = tf.Variable([1.0, -2.0])
    opt = AveragedSGD(weight_decay=0.1)
    opt.build([w])
    opt.apply([tf.constant([0.5, 0.5])], [w], 2.0)
    np.testing.assert_allclose(w.numpy(), [1.0 - 2 * (0.5 + 0.1), -2.0 - 2 * (0.5 - 0.2)],
                               rtol=1e-6)
    assert not bool(opt.averaging.numpy()) and opt.averages[0].numpy().tolist() == [0, 0]


@pytest.mark.parametrize("history, val, switch", [
    ([3.0, 4.0, 3.5, 3.4, 3.3, 3.2], 3.1, True),   # worse than epoch 1, the only older one
    ([3.0, 4.0, 3.5, 3.4, 3.3, 3.2], 3.0, False),  # not worse than the best older loss
    ([3.0, 4.0, 3.5, 3.4, 3.3, 3.2], 2.9, False),
    ([3.0, 4.0, 3.5, 3.4, 3.3], 9.0, False),       # not more than nonmono epochs yet
])
def test_switch_rule(history, val, switch):
    assert should_switch_to_asgd(history, val, nonmono=5) is switch


# -- training ---------------------------------------------------------------------------------
def corpus_ids(n, seed=0):
    return np.random.default_rng(seed).integers(0, len(VOCAB), n)


def trainer_for(model, **kwargs):
    ids = corpus_ids(500)
    return LanguageModelTrainer(model, ids[:400], ids[400:], batch_size=3, bptt=6,
                                **kwargs)


def test_segments_lengths_and_evaluation_follow_the_reference():
    rng = np.random.default_rng(0)
    lengths = [sample_sequence_length(rng, 35) for _ in range(2000)]
    assert min(lengths) >= 5 and max(lengths) <= 55
    assert 0.02 < np.mean(np.array(lengths) < 25) < 0.1   # the bptt/2 draws (p = 0.05)
    streams = np.arange(20).reshape(10, 2)
    x, y = segment(streams, 6, 8)  # cut at the end: 3 steps with targets left
    assert x.tolist() == [[12, 13], [14, 15], [16, 17]] and y[0].tolist() == [14, 15]
    model = tiny_model()
    ids = corpus_ids(211, seed=3)
    # their sum over segments × length / stream length, by hand from the batch form
    streams = ids[:210].reshape(10, 21).T
    log_probs = np.asarray(model(streams[:-1].T))  # one segment of 20 = all of it
    nll = -np.mean(np.take_along_axis(log_probs, streams[1:].T[..., None], -1))
    assert abs(evaluate_loss(model, ids, 10, bptt=35) - nll * 20 / 21) < 1e-5
    assert abs(evaluate_perplexity(model, ids, 10, bptt=35) - math.exp(nll * 20 / 21)) < 1e-3


@pytest.mark.slow
def test_resume_is_exact_and_checks_the_vocabulary(tmp_path):
    def run(model, trainer, epochs):
        for _ in range(epochs):
            trainer.train_epoch()
            trainer.end_epoch()
            if trainer.epoch == 1:
                trainer.optimizer.start_averaging()  # ASGD from epoch 2, averages to keep

    keras.utils.set_random_seed(0)
    whole = tiny_model()
    whole_trainer = trainer_for(whole)
    run(whole, whole_trainer, 3)

    keras.utils.set_random_seed(0)
    first = tiny_model()
    first_trainer = trainer_for(first)
    run(first, first_trainer, 1)
    first_trainer.train_epoch()
    first_trainer.end_epoch()
    first_trainer.save(tmp_path / "last")
    keras.utils.set_random_seed(5)  # a different init: everything must come from the file
    second = tiny_model()
    second_trainer = trainer_for(second)
    second_trainer.restore(tmp_path / "last")
    run(second, second_trainer, 1)

    assert bool(second_trainer.optimizer.averaging.numpy())
    assert second_trainer.history == whole_trainer.history and second_trainer.epoch == 3
    for a, b in zip(whole.variables + whole_trainer.optimizer.averages,
                    second.variables + second_trainer.optimizer.averages):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    assert float(np.abs(whole_trainer.optimizer.averages[0].numpy()).sum()) > 0

    other = tiny_model(vocabulary=VOCAB[:-1] + ["zz"])
    with pytest.raises(ValueError, match="vocabulary mismatch: the checkpoint has"):
        trainer_for(other).restore(tmp_path / "last")


@pytest.mark.slow
def test_fit_switches_to_asgd_and_keeps_the_best_model(tmp_path):
    keras.utils.set_random_seed(1)
    model = tiny_model()
    trainer = trainer_for(model, nonmono=1, learning_rate=60.0)  # noisy: non-monotone soon
    records = trainer.fit(epochs=6, checkpoint_dir=tmp_path, patience=20)
    history = [r["val_loss"] for r in records]
    switched = [r["switched"] for r in records]
    assert any(switched), history
    k = switched.index(True)
    assert should_switch_to_asgd(history[:k], history[k], 1)
    assert all(r["averaging"] for r in records[k + 1:])
    assert (tmp_path / "best.keras").exists() and (tmp_path / "last" / "state.json").exists()
    assert min(history) == pytest.approx(trainer.best_loss)


# -- export and sampling ------------------------------------------------------------------------
def test_step_form_and_generation():
    model = tiny_model()
    tokens = corpus_ids(12, seed=4).reshape(2, 6).astype("int32")
    batch = model(tokens).numpy()
    hidden = tf.zeros([2, 8])
    for t in range(6):
        log_probs, hidden = model.step(tokens[:, t], hidden)
        np.testing.assert_allclose(log_probs.numpy(), batch[:, t], atol=1e-6)
    words = generate(model, ["w1", "w2", "nonsense"], 6, temperature=0.8, seed=7)
    assert words == generate(model, ["w1", "w2", "nonsense"], 6, temperature=0.8, seed=7)
    assert len(words) == 6 and set(words) <= set(VOCAB)
    assert generate(model, ["w1"], 8, seed=1) != generate(model, ["w1"], 8, seed=2)


@pytest.mark.slow
def test_exports_match_keras(tmp_path):
    model = tiny_model()
    results = {
        "keras": export_language_model(model, tmp_path / "lm.keras"),
        "saved_model": export_language_model(model, tmp_path / "lm_saved", "saved_model"),
        "onnx_batch": export_language_model(model, tmp_path / "lm.onnx", "onnx"),
        "onnx_step": export_language_model(model, tmp_path / "lm_step.onnx", "onnx",
                                           form="step"),
    }
    for name, result in results.items():
        assert result.max_abs_diff <= 1e-5, name
        shipped = json.loads(pathlib.Path(vocabulary_path(result.path)).read_text())
        assert shipped["tokens"] == VOCAB and (shipped["unk_id"], shipped["eos_id"]) == (0, 1)
    assert set(results["onnx_step"].input_contract["forms"]) == {"step"}
    assert (tmp_path / "lm_saved" / "assets.extra" / "kdarts_vocab.json").exists()
    # the .keras file generates as the model does, and refuses to be its own destination
    assert generate(tmp_path / "lm.keras", ["w3"], 5, seed=0) == generate(model, ["w3"], 5,
                                                                          seed=0)
    with pytest.raises(ValueError, match="is the model being exported"):
        export_language_model(tmp_path / "lm.keras", tmp_path / "lm.keras")


@pytest.mark.slow
def test_keras_load_model_after_import_kdarts(tmp_path):
    """A saved language model loads with plain ``keras.models.load_model`` in a fresh
    process that imported only kdarts (which imports no TensorFlow itself) and Keras."""
    import subprocess
    import sys

    model = tiny_model()
    tokens = np.arange(12, dtype=np.int32).reshape(2, 6) % len(VOCAB)
    expected = model(tokens).numpy()
    path = tmp_path / "lm.keras"
    model.save(path)
    script = (
        "import sys\nimport numpy as np\nimport kdarts\n"
        "light = 'tensorflow' not in sys.modules\n"
        "import keras\n"
        "model = keras.models.load_model(sys.argv[1])\n"
        "tokens = np.arange(12, dtype=np.int32).reshape(2, 6) % model.vocab_size\n"
        "np.save(sys.argv[2], keras.ops.convert_to_numpy(model(tokens)))\n"
        "print(type(model).__name__, light)\n")
    done = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "out.npy")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["RecurrentLanguageModel", "True"]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)
