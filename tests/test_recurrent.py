"""The recurrent cell search (kdarts.recurrent): genotypes, the cell against the authors'
numbers (tests/data/recurrent_reference.npz, written by tools/reference_rnn.py), and a
short search."""

import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdarts.genotype import GenotypeError
from kdarts.recurrent.corpus import (
    build_vocabulary,
    encode,
    ptb_words,
    split_lines,
    stdlib_corpus,
)
from kdarts.recurrent.data import batchify, bptt_dataset
from kdarts.recurrent.genotype import (
    CRB_RECURRENT_PRIMITIVES,
    DARTS_V1,
    DARTS_V2,
    RECURRENT_PRIMITIVES,
    RecurrentGenotype,
    discretize_recurrent,
    resolve_recurrent_genotype,
)
from kdarts.recurrent.search_model import RecurrentSearchModel, count_weights
from kdarts.search.regularizers import ADMM, Proximity, discrete_onehot
from kdarts.search.schedules import DynamicSchedule, FixedSchedule

REFERENCE = np.load(pathlib.Path(__file__).parent / "data" / "recurrent_reference.npz")


# -- genotypes ---------------------------------------------------------------------------
def test_presets_and_json_round_trip(tmp_path):
    assert DARTS_V2.recurrent[:2] == (("sigmoid", 0), ("relu", 1))
    assert DARTS_V1.concat == DARTS_V2.concat == tuple(range(1, 9))
    path = tmp_path / "cell.json"
    DARTS_V1.save(path)
    assert RecurrentGenotype.load(path) == DARTS_V1
    assert resolve_recurrent_genotype("DARTS") is DARTS_V2
    assert resolve_recurrent_genotype(str(path)) == DARTS_V1
    assert "state 6 = sigmoid(state 5)" in str(DARTS_V2)


@pytest.mark.parametrize("data, message", [
    ({"recurrent": [["none", 0]]}, r"recurrent\[0\] has unknown op 'none'"),
    ({"recurrent": [["tanh", 0], ["relu", 2]]}, r"recurrent\[1\] = \('relu', 2\): predecessor 2 is out of range for node 2"),
    ({"recurrent": [["tanh", 0]], "concat": [2]}, r"'concat' = \[2\] must list state"),
    ({"recurrent": [["tanh", "0"]]}, r"recurrent\[0\] = \['tanh', '0'\] is not an"),
    ({"recurrent": [["tanh", 0]], "normal": []}, r"unknown field\(s\) normal"),
    ([], r"expected a JSON object"),
])
def test_invalid_genotypes_name_the_problem(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GenotypeError, match=str(path) + ": " + message):
        RecurrentGenotype.load(path)


def test_discretisation_keeps_one_edge_per_node_and_matches_the_graph_rule():
    w = np.zeros((36, 5), "float32")
    w[0, 0] = 9.0  # `none` never wins
    w[1, 2], w[2, 2] = 0.5, 0.5  # node 1: a tie between states 0 and 1 keeps state 0
    w[3:6, 4] = [0.1, 0.3, 0.2]  # node 2: state 1, identity
    genes, onehot = discretize_recurrent(w, RECURRENT_PRIMITIVES)
    assert genes[:3] == [("tanh", 0), ("relu", 0), ("identity", 1)]
    assert onehot.sum() == 8 and onehot[:, 0].sum() == 0
    graph = discrete_onehot(w, RECURRENT_PRIMITIVES, 8, inputs=1, keep=1)
    np.testing.assert_array_equal(graph.numpy(), onehot)
    rng = np.random.default_rng(0)
    for _ in range(20):  # coarse values: many ties, broken the same way by both
        w = rng.integers(0, 4, (36, 4)).astype("float32") / 4
        np.testing.assert_array_equal(
            discrete_onehot(w, CRB_RECURRENT_PRIMITIVES, 8, inputs=1, keep=1).numpy(),
            discretize_recurrent(w, CRB_RECURRENT_PRIMITIVES)[1])


def test_bptt_segments_continue_each_stream():
    ids = np.arange(4 * 13 + 3)
    streams = batchify(ids, 4)
    assert streams.shape == (13, 4) and streams[0, 1] == 13
    segments = list(bptt_dataset(ids, batch_size=4, bptt=5).as_numpy_iterator())
    assert len(segments) == 2  # (13 − 1) // 5: the short last segment is dropped
    (x0, y0), (x1, _) = segments
    assert x0.shape == (4, 5) and x0[1].tolist() == [13, 14, 15, 16, 17]
    np.testing.assert_array_equal(y0[:, :-1], x0[:, 1:])
    np.testing.assert_array_equal(x1[:, 0], y0[:, -1])  # segment 2 starts where 1 stopped


def test_the_search_header_counts_the_steps_the_search_takes():
    """The header's steps per epoch are the steps each epoch of the search runs (the
    progress bar's count), not the stream length over bptt: segment lengths vary."""
    from kdarts.recurrent.data import BPTTStream, search_segments
    from kdarts.runs.recurrent import epoch_steps

    train = BPTTStream(np.arange(32 * 1830), 32, 20, seed=0)  # the embedded corpus's shape
    valid = BPTTStream(np.arange(32 * 240), 32, 20)
    low, high = epoch_steps(train, 4)
    _, per_epoch, _ = search_segments(train, valid, 4)
    assert high == per_epoch and low <= high
    assert train.nominal_steps < low  # some segments are half long: more steps than 91
    assert [len(p) for p in train.plan(4)].count(high) >= 1


def test_stdlib_corpus_is_ptb_style_running_text():
    assert ptb_words("In 2019, DARTS's cells won't use __init__ 3.5x") == [
        "in", "N", "darts's", "cells", "won't", "use", "__init__", "N", "x"]
    assert build_vocabulary([["b", "a", "b"], ["c"]], 3) == ["<unk>", "<eos>", "b"]
    assert encode([["b", "zz"], []], ["<unk>", "<eos>", "b"]).tolist() == [2, 0, 1, 1]
    assert split_lines(list(range(20))) == (list(range(16)), [16, 17], [18, 19])
    corpus = stdlib_corpus(vocab_size=500)
    words = corpus.vocabulary
    assert len(words) == 500 and words[:2] == ["<unk>", "<eos>"] and "the" in words[:5]
    for split in (corpus.train, corpus.valid, corpus.test):
        assert split.dtype == np.int32 and split.max() < 500 and split[-1] == 1
        assert 0.0 < (split == 0).mean() < 0.3  # a capped vocabulary leaves some <unk>
    assert len(corpus.train) > 5 * len(corpus.valid) > 5 * 1000 and len(corpus.test) > 1000
    x, y = next(iter(bptt_dataset(corpus.valid, batch_size=4, bptt=35)))
    assert x.shape == y.shape == (4, 35)


def test_locked_dropout_masks_are_per_sequence_and_seeded():
    model = RecurrentSearchModel(vocab_size=30, units=8, dropout_e=0.5, seed=7)
    model.build((4, 5))
    masks = model._dropout_masks(4, training=True)
    assert set(masks) == {"embedding", "input", "x", "h", "output"}
    assert masks["embedding"].shape == (30, 1) and masks["h"].shape == (4, 8)
    assert set(np.unique(masks["x"])) == {0.0, 4.0}  # rate 0.75: kept units scaled by 4
    assert model._dropout_masks(4, training=False) == {}
    tokens = tf.constant(np.arange(20).reshape(5, 4) % 30)
    hidden = tf.zeros([4, 8])
    plain, _, _ = model.forward(tokens, hidden, training=True, masks={})
    dropped, _, outputs = model.forward(tokens, hidden, training=True)
    assert np.abs(plain - dropped).max() > 1e-3
    again = RecurrentSearchModel(vocab_size=30, units=8, dropout_e=0.5, seed=7)
    again.build((4, 5))
    for a, b in zip(again.weights, model.weights):
        a.assign(b)
    again.cell.moving_mean.assign(np.zeros(8)), again.cell.moving_variance.assign(np.ones(8))
    model.cell.moving_mean.assign(np.zeros(8)), model.cell.moving_variance.assign(np.ones(8))
    model.dropout_draws.assign(again.dropout_draws)
    np.testing.assert_array_equal(again.forward(tokens, hidden, training=True)[0],
                                  model.forward(tokens, hidden, training=True)[0])


# -- parity with the authors' cell -------------------------------------------------------
def reference(activation):
    return {k.split(".", 1)[1]: REFERENCE[k] for k in REFERENCE.files
            if k.startswith(activation + ".")}


def assert_close(actual, desired, rel=1e-5, what=""):
    """Within float32 rounding: max |actual − desired| ≤ rel · max |desired|."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    assert actual.shape == desired.shape, what
    error, scale = np.abs(actual - desired).max(), np.abs(desired).max()
    assert error <= rel * scale, f"{what}: max abs difference {error:.3g} at scale {scale:.3g}"


def weight_map(model):
    return {"embedding": model.embedding, "decoder_bias": model.decoder_bias,
            "w0": model.cell.w0, "node_kernels": model.cell.node_kernels}


@pytest.mark.parametrize("activation", ["crb", pytest.param("softmax", marks=pytest.mark.slow)])
def test_cell_forward_gradients_and_step_equal_the_authors(activation):
    ref = reference(activation)
    vocab, units = ref["w.embedding"].shape
    model = RecurrentSearchModel(vocab, units, activation=activation)
    model.build(tuple(ref["tokens"].T.shape))
    assert tuple(model.alpha.shape) == ref["alpha"].shape == (36, 4 if activation == "crb" else 5)
    model.compile(regularizer=Proximity(rho=0.1))
    model.total_epochs.assign(2.0)
    for name, var in weight_map(model).items():
        var.assign(ref[f"w.{name}"])
    model.alpha.assign(ref["alpha"])
    tokens, targets = tf.constant(ref["tokens"]), tf.constant(ref["targets"])
    hidden = tf.constant(ref["hidden"], tf.float32)

    # the α loss (CE + proximity at t/T = 0.25) and its gradient, every mask off
    d_alpha, ce, reg, last = model.alpha_gradient(tokens, targets, hidden, 0.5, masks={})
    assert_close(ce + reg, ref["alpha_loss"], what="α loss")
    assert_close(last, ref["last_hidden"], what="last hidden state")
    assert_close(d_alpha, ref["d_alpha"], what="dα")
    # one forward pass: 6 steps × 9 normalisations moved the shared moving statistics
    assert_close(model.cell.moving_mean, ref["moving_mean"], what="moving mean")
    assert_close(model.cell.moving_variance, ref["moving_variance"], what="moving variance")
    log_probs, _, _ = model.forward(tokens, hidden, training=True, masks={})
    assert_close(log_probs, ref["log_probs"], what="log-probabilities")

    # the weight loss (CE + slowness): gradients, FI, and one clipped SGD step
    grads, ce, fi, _ = model.weight_gradients(tokens, targets, hidden, masks={})
    assert_close(ce, ref["ce"], what="CE")
    assert_close(fi, ref["fi"], what="FI")
    assert model.weight_variables == list(weight_map(model).values())
    for name, g in zip(weight_map(model), grads):
        assert_close(g, ref[f"grad.{name}"], what=f"dW {name}")
    model.optimizer.build(model.weight_variables)
    model.apply_weight_step(grads, fi)
    for name, var in weight_map(model).items():
        assert_close(var, ref[f"step.{name}"], what=f"stepped {name}")
    # the step moved every weight: the comparison is not of unchanged values
    assert all(np.abs(ref[f"step.{n}"] - ref[f"w.{n}"]).max() > 1e-3 for n in weight_map(model))


UNROLLED = np.load(pathlib.Path(__file__).parent / "data" / "recurrent_unrolled_reference.npz")


@pytest.mark.parametrize("activation", ["crb", pytest.param("softmax", marks=pytest.mark.slow)])
def test_unrolled_alpha_step_equals_the_authors(activation):
    """One second-order α step against the authors' architect (tools/reference_rnn.py
    --unrolled-out): a virtual SGD step at lr 20 × 5/6 (a 5-of-6-token segment's), the
    finite-difference Hessian-vector product, Adam with L2 on α; dropout off."""
    ref = {k.split(".", 1)[1]: UNROLLED[k] for k in UNROLLED.files
           if k.startswith(activation + ".")}
    vocab, units = ref["w.embedding"].shape
    model = RecurrentSearchModel(vocab, units, activation=activation, dropout=0.0,
                                 dropout_h=0.0, dropout_x=0.0, dropout_i=0.0)
    model.build(tuple(ref["tokens"].T.shape))
    # "reference": their virtual model keeps the tied embedding at w (see compile)
    model.compile(regularizer="none", unrolled="reference")
    model.optimizer.build(model.weight_variables)
    model.arch_optimizer.build(model.arch_variables)
    for name, var in weight_map(model).items():
        var.assign(ref[f"w.{name}"])
    model.alpha.assign(ref["alpha"])
    model.hidden.assign(ref["hidden"])
    model.search_hidden.assign(ref["search_hidden"])
    # the search segment (5 steps) padded to the train segment's 6, its length given
    pad = lambda a: np.concatenate([a, np.zeros_like(a[:1])])  # noqa: E731
    train = (tf.constant(ref["tokens"]), tf.constant(ref["targets"]), tf.constant(6))
    search = (tf.constant(pad(ref["search_tokens"])), tf.constant(pad(ref["search_targets"])),
              tf.constant(5))
    masks = {}
    grad, ce, _, last = model.unrolled_alpha_gradient(
        (*train[:2], model.hidden, train[2]), (*search[:2], model.search_hidden, search[2]),
        0.5, float(ref["eta"]), masks, masks)
    # the finite-difference quotient divides float32 gradient differences by 2ε
    assert_close(grad, ref["d_alpha"], rel=1e-4, what="unrolled dα")
    assert_close(last, ref["last_search_hidden"], what="search hidden state")
    # the second-order term is no rounding error: dα moved from the first-order gradient
    assert np.abs(ref["d_alpha"] - ref["d_alpha_first_order"]).max() > 0.5 * np.abs(
        ref["d_alpha"]).max()
    model.unrolled = True  # the method's virtual step moves the embedding too
    moved = model.unrolled_alpha_gradient(
        (*train[:2], model.hidden, train[2]), (*search[:2], model.search_hidden, search[2]),
        0.5, float(ref["eta"]), masks, masks)[0]
    assert np.abs(moved - grad).max() > 0.1 * np.abs(grad).max()
    model.unrolled = "reference"
    model.cell.moving_mean.assign(np.zeros(units))
    model.cell.moving_variance.assign(np.ones(units))
    model._alpha_step(train, search, 0.5, 5 / 6)  # the step itself: Adam, L2, the carry
    # Keras's Adam adds ε to √v before the bias correction (PyTorch after it): on the
    # first step ε acts ~32× larger, visible where |dα| is ~1e-5
    assert_close(model.alpha, ref["stepped_alpha"], rel=1e-4, what="α after the step")
    assert_close(model.search_hidden, ref["last_search_hidden"], what="carried hidden")
    # the moving statistics moved with the three train passes (not the virtual model's)
    assert_close(model.cell.moving_mean, ref["moving_mean"], what="moving mean")
    assert_close(model.cell.moving_variance, ref["moving_variance"], what="moving variance")


def test_search_model_has_the_authors_parameter_count():
    model = RecurrentSearchModel(vocab_size=10000, units=300)
    model.build((None, 35))
    assert count_weights(model) == int(REFERENCE["count.search_300_crb"]) == 4_810_000


# -- the search --------------------------------------------------------------------------
def tiny_corpus(seed=0):
    """Token ids with structure to learn: each word mostly predicts the next."""
    rng = np.random.default_rng(seed)
    ids = [0]
    for _ in range(4 * 8 * 6 * 2):
        ids.append((ids[-1] * 7 + 3) % 30 if rng.random() < 0.8 else int(rng.integers(30)))
    return np.array(ids)


class StopAfterOneEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


@pytest.mark.slow
def test_short_crb_search_prunes_moves_the_genotype_and_resumes_exactly(tmp_path):
    ids = tiny_corpus()
    train, valid = ids[:4 * 8 * 6 + 1], ids[4 * 8 * 6:]

    def search(callbacks=(), weights=None, initial_epoch=0):
        keras.utils.set_random_seed(3)
        model = RecurrentSearchModel(vocab_size=30, units=8, activation="crb", seed=5)
        model.build((4, 8))
        initial = model.genotype()
        # a fast α optimizer so a few α steps move α visibly, and CE alone (proximity
        # would pull α towards its initial discretisation); the dynamic schedule with a
        # high first threshold takes α steps as soon as FI has an average
        model.compile(optimizer=keras.optimizers.SGD(1.0),
                      arch_optimizer=keras.optimizers.Adam(0.05), regularizer="none",
                      schedule=DynamicSchedule(every=2, initial_threshold=1e4),
                      search_data=bptt_dataset(valid, 4, 8))
        if weights:
            model.optimizer.build(model.weight_variables)
            model.arch_optimizer.build(model.arch_variables)
            model.load_weights(weights)
        history = model.fit(bptt_dataset(train, 4, 8), epochs=2, verbose=0,
                            callbacks=list(callbacks), initial_epoch=initial_epoch)
        return model, initial, history.history

    model, initial, logs = search()
    assert model.trace_count == 1
    steps = int(model.search_step.numpy())
    assert steps == 10 and 1 <= int(model.alpha_steps.numpy()) < steps
    mask, alpha = model.mask.numpy(), model.alpha.numpy()
    assert logs["pruned_ops"][-1] == (1 - mask).sum() > 0  # crb pruned for good ...
    assert np.all(alpha[mask == 0] == 0) and np.all(alpha[mask == 1] > 0)
    assert model.genotype() != initial  # ... and α moved the discretised cell

    # interrupted after epoch 1, saved, restored into a new model and resumed: the same
    # search (every piece of state, the dropout draws included, is a saved variable)
    first, _, _ = search(callbacks=[StopAfterOneEpoch()])
    assert int(first.search_step.numpy()) == 5
    path = str(tmp_path / "search.weights.h5")
    first.save_weights(path)
    resumed, _, _ = search(weights=path, initial_epoch=1)
    for a, b in zip(resumed.variables, model.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


@pytest.mark.slow
def test_fixed_schedule_admm_softmax_search_keeps_its_state_in_variables():
    """One epoch of 3 segments under FixedSchedule(1): an α step every step, ADMM's Z and U
    updated on device, the hidden state carried."""
    ids = tiny_corpus(1)[:4 * 16]  # 16 steps per stream: 3 segments of 5 and targets
    keras.utils.set_random_seed(0)
    model = RecurrentSearchModel(vocab_size=30, units=8, activation="softmax", seed=1)
    model.compile(schedule=FixedSchedule(1), regularizer=ADMM(every=1),
                  search_data=bptt_dataset(ids, 4, 5))
    assert not model.built  # fit builds it with the segments' batch
    logs = model.fit(bptt_dataset(ids, 4, 5), epochs=1, verbose=0).history
    assert int(model.alpha_steps.numpy()) == 3 and logs["took_alpha_step"] == [1.0]
    assert model.alpha.shape == (36, 5) and model.mask.numpy().all()  # softmax never prunes
    assert np.abs(model.hidden.numpy()).sum() > 0  # the last segment's state, carried
    z, u = model.admm_z.numpy(), model.admm_u.numpy()
    # Z is D(act(α) + U): one (op, predecessor) per node, never `none`
    assert z.sum() == 8 and z[:, 0].sum() == 0 and np.abs(u).sum() > 0
    assert logs["reg"][0] > 0


@pytest.mark.slow
def test_variable_length_search_resumes_exactly_logs_evaluates_and_runs_under_xla(tmp_path):
    """The authors' segment lengths (BPTTStream; p_full 0.5 so half-long segments occur
    in two epochs of a tiny text), Keras callbacks, exact resume from save_weights,
    evaluate, and the XLA step against the graph step."""
    from kdarts.recurrent.data import BPTTStream

    ids = tiny_corpus(2)
    train, valid = ids[:4 * 14], ids[4 * 14:4 * 24]
    plan = BPTTStream(train, 4, 5, p_full=0.5, seed=3).plan(2, 10)
    assert [p.tolist() for p in plan] == [
        p.tolist() for p in BPTTStream(train, 4, 5, p_full=0.5, seed=3).plan(2, 10)]
    lengths = np.concatenate(plan)[:, 2]
    assert set(lengths) == {5, 2} and len(plan[0]) != len(plan[1])  # epochs differ in steps

    def search(epochs=2, initial_epoch=0, weights=None, callbacks=(), jit=False, **rates):
        keras.utils.set_random_seed(3)
        model = RecurrentSearchModel(vocab_size=30, units=8, activation="crb", seed=5,
                                     **rates)
        model.build((4, 5))
        model.compile(schedule=FixedSchedule(1), arch_optimizer=keras.optimizers.Adam(0.05),
                      search_data=BPTTStream(valid, 4, 5), jit_compile=jit)
        if weights:
            model.optimizer.build(model.weight_variables)
            model.arch_optimizer.build(model.arch_variables)
            model.load_weights(weights)
        history = model.fit(BPTTStream(train, 4, 5, p_full=0.5, seed=3), epochs=epochs,
                            initial_epoch=initial_epoch, verbose=0, callbacks=list(callbacks))
        return model, history

    csv = tmp_path / "log.csv"
    model, history = search(callbacks=[keras.callbacks.CSVLogger(str(csv))])
    assert model.trace_count == 1  # one trace for every segment length
    assert int(model.search_step.numpy()) == len(lengths) == int(model.alpha_steps.numpy())
    assert len(history.history["loss"]) == 2 and len(csv.read_text().splitlines()) == 3
    first, _ = search(callbacks=[StopAfterOneEpoch()])  # epochs=2 (the proximity clock's)
    assert int(first.search_step.numpy()) == 5
    path = str(tmp_path / "epoch1.weights.h5")
    first.save_weights(path)
    resumed, _ = search(initial_epoch=1, weights=path)
    for a, b in zip(resumed.variables, model.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    np.testing.assert_array_equal(resumed.arch_optimizer.variables[1].numpy(),
                                  model.arch_optimizer.variables[1].numpy())
    scores = model.evaluate(valid, batch_size=2, bptt=5)
    assert np.isclose(scores["perplexity"], np.exp(scores["loss"])) and scores["loss"] > 0
    # XLA against the graph step, dropout off (the masks agree under XLA:
    # test_dropout_masks_are_the_same_under_xla)
    off = dict(dropout=0.0, dropout_h=0.0, dropout_x=0.0, dropout_i=0.0)
    xla, _ = search(epochs=1, jit=True, **off)
    model, _ = search(epochs=1, **off)
    for a, b in zip(xla.variables, model.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=a.path)


def test_dropout_masks_are_the_same_under_xla():
    """The masks' uniform draws: tf.random.stateless_uniform's CPU numbers, in eager,
    graph and XLA-compiled code alike."""
    from kdarts.recurrent.dropout import locked_mask, stateless_uniform

    seed = tf.constant([5, 17], tf.int64)
    eager = stateless_uniform((3, 7), seed).numpy()
    np.testing.assert_array_equal(eager, tf.random.stateless_uniform((3, 7), seed=seed))
    np.testing.assert_array_equal(tf.function(lambda: stateless_uniform((3, 7), seed))(),
                                  eager)
    xla = tf.function(lambda: locked_mask(3, 7, 0.5, seed), jit_compile=True)()
    np.testing.assert_array_equal(xla, locked_mask(3, 7, 0.5, seed))


# -- the search's scale-out and pruned edges (kdarts.search.alternating) -------------------
def _prune_edges(model, edges):
    """Prune every op on the α rows ``edges`` (mask 0, α 0), as crb's rule leaves them."""
    mask, alpha = model.mask.numpy(), model.alpha.numpy()
    mask[list(edges)], alpha[list(edges)] = 0.0, 0.0
    model.mask.assign(mask)
    model.alpha.assign(alpha)


def _matmul_rows(fn) -> int:
    """Rows multiplied by every MatMul of the traced ``fn`` (static shapes)."""
    graph = tf.function(fn, autograph=False).get_concrete_function().graph
    return sum(int(op.inputs[0].shape[0]) for op in graph.get_operations()
               if op.type == "MatMul")


def test_a_pruned_edge_is_left_out_of_the_traced_step_and_changes_nothing():
    """An edge whose every op is pruned has its state's rows gone from its node's matmul
    (forward and backward) when the step is traced for the traced mask; the gradients,
    FI, CE and the carried state are the same as with every edge computed."""
    keras.utils.set_random_seed(0)
    model = RecurrentSearchModel(vocab_size=12, units=4, activation="crb", seed=1)
    model.build((2, 3))
    model.compile(regularizer="none")
    model.cell.trace_step_once = False  # unrolled in place: the matmuls' shapes are static
    rng = np.random.default_rng(0)
    tokens = tf.constant(rng.integers(0, 12, (3, 2)), tf.int32)
    targets = tf.constant(rng.integers(0, 12, (3, 2)), tf.int32)
    hidden = tf.constant(rng.normal(size=(2, 4)), tf.float32)
    pruned = (1, 3, 4, 10, 14, 20, 27, 30, 35)  # 9 of 36 edges (a quarter), none a node's last
    _prune_edges(model, pruned)

    def step():
        grads, ce, fi, last = model.weight_gradients(tokens, targets, hidden, masks={})
        d_alpha = model.alpha_gradient(tokens, targets, hidden, 0.5, masks={})[0]
        return grads, ce, fi, last, d_alpha

    full_rows, full = _matmul_rows(step), step()
    kept = model._update_kept()
    assert not kept[0][list(pruned)].any() and kept[0].sum() == (36 - 9) * 4
    with model._tracing_kept(kept):
        lean_rows, lean = _matmul_rows(step), step()
    # in both passes (w and α), per time step (3), each left-out edge's rows (batch 2) in
    # both halves' matmuls, forward and in the backward pass's two products of each
    assert full_rows - lean_rows == 2 * 3 * len(pruned) * 2 * 2 * 3
    for a, b in zip(tf.nest.flatten(full), tf.nest.flatten(lean)):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7)
    assert model.cell.kept_edges is None  # outside the traced step: every edge


@pytest.mark.slow
def test_search_leaves_pruned_edges_out_by_levels_and_equals_every_edge():
    """skip_pruned_ops="levels": with a quarter of the ops pruned the step is traced for
    the traced mask (checkpointed as ``kept``), and the search equals the one that
    computes every edge."""
    ids = tiny_corpus()
    train, valid = ids[:4 * 8 * 6 + 1], ids[4 * 8 * 6:]

    def search(mode):
        keras.utils.set_random_seed(3)
        model = RecurrentSearchModel(vocab_size=30, units=8, activation="crb", seed=5)
        model.build((4, 8))
        _prune_edges(model, range(0, 36, 3))  # 12 of 36 edges: a third of the ops
        model.compile(optimizer=keras.optimizers.SGD(1.0),
                      arch_optimizer=keras.optimizers.Adam(0.05), regularizer="none",
                      schedule=FixedSchedule(1), search_data=bptt_dataset(valid, 4, 8),
                      skip_pruned_ops=mode)
        model.fit(bptt_dataset(train, 4, 8), epochs=1, verbose=0)
        return model

    every, levels = search("never"), search("levels")
    assert every.pruned_ops_mode() == "never" and levels.pruned_ops_mode() == "levels"
    assert not levels.kept.numpy()[::3].any() and levels.kept.numpy()[1::3].all()
    assert every.kept.numpy().all()
    assert levels.trace_count == every.trace_count == 1
    for a, b in zip(levels.variables, every.variables):
        if a.path.endswith("kept"):
            continue
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    assert RecurrentSearchModel(vocab_size=30, units=8).pruned_ops_mode() == "never"


@pytest.mark.slow
def test_mirrored_recurrent_search_on_two_devices_equals_one_device(tmp_path):
    """MirroredStrategy on two logical CPU devices: each replica carries its streams'
    hidden states, draws its rows of the global dropout masks and normalises with the
    global batch's moments, so the search (α steps taken and skipped, crb pruning, the
    authors' variable segment lengths) follows one device's within the image search's
    bound."""
    import os
    import subprocess
    import sys

    here = pathlib.Path(__file__).parent
    out = tmp_path / "result.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(here.parent), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, str(here / "distributed_recurrent_search.py"), str(out)],
                   check=True, timeout=600, env=env, cwd=str(tmp_path))
    result = json.loads(out.read_text())
    one, two = result["one"], result["mirrored"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert two["took"] == one["took"] and 0 < sum(one["took"]) < len(one["took"])
    for step, (a1, a2) in enumerate(zip(one["alpha"], two["alpha"])):
        assert np.abs(np.array(a1) - np.array(a2)).max() <= 1e-4, f"step {step}"
    assert np.abs(np.array(one["alpha"][-1]) - np.array(one["alpha"][0])).max() > 1e-3
    np.testing.assert_allclose(two["hidden"], one["hidden"], atol=1e-5)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    assert two["genotype"] == one["genotype"]
    assert two["replica_spread"] == 0.0  # every replica holds the same α, weights, state
    assert one["trace_count"] == two["trace_count"] == 1


def _half_matmuls(fn, *specs) -> int:
    """Matrix products computed in float16 in the traced ``fn`` (nested functions included)."""
    graph = tf.function(fn).get_concrete_function(*specs).graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return sum(n.op in ("MatMul", "BatchMatMulV2", "Einsum") and n.attr["T"].type == tf.float16
               for n in nodes)


@pytest.mark.slow
def test_mixed_precision_recurrent_search_scales_the_loss_and_keeps_state_float32():
    """mixed_float16: the cell, embedding and decoder compute in float16 while α, the
    normalisation's statistics, the carried hidden states and the losses stay float32;
    both optimizers scale the loss, and a step whose float16 gradients overflow changes
    nothing but halves the scale (FI's EWMA keeps its value)."""
    ids = tiny_corpus()
    train, valid = ids[:4 * 8 * 6 + 1], ids[4 * 8 * 6:]
    keras.utils.set_random_seed(3)
    model = RecurrentSearchModel(vocab_size=30, units=8, activation="crb", seed=5,
                                 dtype="mixed_float16")
    model.build((4, 8))
    model.compile(schedule=FixedSchedule(1), arch_optimizer=keras.optimizers.Adam(0.05),
                  search_data=bptt_dataset(valid, 4, 8))
    for opt in (model.optimizer, model.arch_optimizer):
        assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
    alpha0 = model.alpha.numpy().copy()
    history = model.fit(bptt_dataset(train, 4, 8), epochs=1, verbose=0).history
    assert all(np.isfinite(history[k][0]) for k in ("loss", "search_loss", "fi"))
    assert history["alpha_steps"][0] == 5 and model.trace_count == 1
    assert np.abs(model.alpha.numpy() - alpha0).max() > 1e-3
    state = [model.alpha, model.hidden, model.search_hidden, model.cell.moving_mean,
             model.cell.moving_variance]
    assert all(v.dtype == "float32" for v in state + model.weight_variables)
    assert model(tf.zeros((2, 3), tf.int32)).dtype == tf.float32
    specs = (tf.TensorSpec((8, 4), tf.int32), tf.TensorSpec((4, 8), tf.float32))
    assert _half_matmuls(lambda x, h: model.weight_gradients(x, x, h, masks={}), *specs) > 10

    # an overflow: both steps are skipped, both scales halve, the FI EWMA is kept
    for opt in (model.optimizer, model.arch_optimizer):
        opt.dynamic_scale.assign(2.0 ** 100)
    before = [v.numpy().copy() for v in model.trainable_variables]
    ewma = float(model.fi_ewma.numpy())
    model.fit(bptt_dataset(train, 4, 8), epochs=6, initial_epoch=5, steps_per_epoch=1,
              verbose=0)
    assert int(model.search_step.numpy()) == 6
    for v, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    assert float(model.fi_ewma.numpy()) == ewma
    for opt in (model.optimizer, model.arch_optimizer):
        assert float(opt.dynamic_scale.numpy()) == 2.0 ** 99
