"""The recurrent search's details against the authors' code (docs/fidelity.md): the
latching dynamic schedule, the best validation epoch's genotype and Adam's ε placement."""

import keras
import numpy as np
import pytest

from kdarts.search.schedules import DynamicSchedule, get_schedule

# an FI average that dips below the threshold now and then (the first is the rule's
# "no FI yet", 0)
FI_SEQUENCE = [0.0, 2.0, 0.5, 2.0, 2.0, 3.0, 0.6, 2.0, 2.0, 0.5]


def _authors_loop(fis, threshold, every=2, multiplier=1.05):
    """train_search_rnn.py's decisions, transcribed: ``arch_step`` is set once the rule
    holds and stays set for the epoch, while the threshold follows the rule."""
    took, arch_step = [], False
    for fi in fis:
        if 0.0 < fi < threshold:
            arch_step = True
            threshold *= multiplier ** -every
        else:
            threshold *= multiplier
        took.append(arch_step)
    return took, threshold


def _schedule_run(schedule, fis):
    threshold, latch, took = schedule.initial_threshold, False, []
    for step, fi in enumerate(fis, 1):
        rule = schedule.decide(step, fi, threshold)
        threshold = schedule.next_threshold(threshold, rule)
        latch = bool(schedule.latched(rule, latch).numpy())
        took.append(latch if schedule.latch else bool(rule.numpy()))
    return took, float(threshold.numpy())


def test_latched_schedule_takes_the_authors_alpha_steps_and_the_default_the_papers():
    latched = get_schedule("dynamic-latched")
    assert latched.latch and latched.get_config()["name"] == "dynamic-latched"
    assert "latch" not in get_schedule("dynamic").get_config()  # the paper's, as it was
    authors, authors_threshold = _authors_loop(FI_SEQUENCE, 1.0)
    paper = [0.0 < fi < t for fi, t in zip(FI_SEQUENCE, _thresholds(FI_SEQUENCE, 1.0))]
    took, threshold = _schedule_run(DynamicSchedule(every=2, latch=True), FI_SEQUENCE)
    assert took == authors and sum(took) == 8
    np.testing.assert_allclose(threshold, authors_threshold, rtol=1e-6)
    took, threshold = _schedule_run(DynamicSchedule(every=2), FI_SEQUENCE)
    assert took == paper and sum(took) == 3
    np.testing.assert_allclose(threshold, authors_threshold, rtol=1e-6)  # same threshold


def _thresholds(fis, threshold, every=2, multiplier=1.05):
    out = []
    for fi in fis:
        out.append(threshold)
        threshold *= multiplier ** -every if 0.0 < fi < threshold else multiplier
    return out


class _StepLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.took: list = []

    def on_epoch_begin(self, epoch, logs=None):
        self.took.append([])

    def on_train_batch_end(self, batch, logs=None):
        self.took[-1].append(float(logs["took_alpha_step"]))


@pytest.mark.slow
def test_latched_search_takes_an_alpha_step_on_every_step_after_an_epochs_first():
    """In the compiled step: after an epoch's first α step every step of it takes one,
    and the latch is reset at the next epoch; the paper's rule does not latch."""
    from kdarts.recurrent.data import BPTTStream
    from kdarts.recurrent.search_model import RecurrentSearchModel
    from tests.test_recurrent import tiny_corpus

    ids = tiny_corpus(2)
    train, valid = ids[:4 * 30], ids[4 * 30:4 * 40]

    def search(latch):
        keras.utils.set_random_seed(3)
        model = RecurrentSearchModel(vocab_size=30, units=8, activation="softmax", seed=5)
        model.build((4, 5))
        # a threshold that swings between 1e-20 and 1e10: the rule takes every other step
        model.compile(schedule=DynamicSchedule(every=1, multiplier=1e30, latch=latch,
                                               initial_threshold=1e-20),
                      search_data=BPTTStream(valid, 4, 5))
        logs = _StepLogs()
        model.fit(BPTTStream(train, 4, 5, seed=1), epochs=2, verbose=0, callbacks=[logs])
        return model, logs.took

    model, took = search(True)
    assert model.trace_count == 1
    for epoch in took:
        first = epoch.index(1.0)
        assert all(epoch[first:]) and not any(epoch[:first])
    assert took[0][:2] == [0.0, 1.0]  # no FI yet: no α step
    assert int(model.alpha_steps.numpy()) == sum(map(sum, took))
    _, took = search(False)
    assert took[0][:4] == [0.0, 1.0, 0.0, 1.0]


def test_torch_adam_steps_as_pytorchs_formula():
    """Two steps of TorchAdam equal torch.optim.Adam's formula in numpy (ε after the
    bias correction); Keras's Adam, ε before it, differs by far more than float32 noise
    on an entry with a small gradient."""
    import tensorflow as tf

    from kdarts.optimizers import TorchAdam

    lr, b1, b2, eps = 3e-3, 0.9, 0.999, 1e-8
    w0 = np.array([0.5, -0.2, 0.1, 0.3], np.float32)
    grads = [np.array([1e-7, 2e-6, -0.3, 0.0], np.float32),
             np.array([3e-7, -1e-6, 0.1, 1e-8], np.float32)]
    w, m, v = w0.astype(np.float64), 0.0, 0.0
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g.astype(np.float64) ** 2
        w = w - lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)
    results = {}
    for cls in (TorchAdam, keras.optimizers.Adam):
        var = tf.Variable(w0)
        opt = cls(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps)
        for g in grads:
            opt.apply_gradients([(tf.constant(g), var)])
        results[cls] = var.numpy()
    np.testing.assert_allclose(results[TorchAdam], w, rtol=0, atol=1e-7)
    assert np.abs(results[keras.optimizers.Adam] - w).max() > 1e-4
    config = TorchAdam(epsilon=eps).get_config()
    assert config["epsilon"] == eps and TorchAdam.from_config(config).epsilon == eps


TINY_RSEARCH = dict(dataset="kdarts_text", units=8, bptt=6, vocab_size=50, max_tokens=1200,
                    batch_size=8, epochs=3, threshold=1e7, arch_lr=0.2, lr=0.5, seed=0)


@pytest.mark.slow
def test_search_result_is_the_best_validation_epochs_and_resumes_exactly(tmp_path):
    """Every epoch is validated (history.csv); genotype.json is the cell of the epoch with
    the lowest validation loss, kept in the checkpoint, so a search interrupted after
    epoch 1 and resumed writes what the uninterrupted one does."""
    import csv
    import json

    from kdarts.recurrent.genotype import CRB_RECURRENT_PRIMITIVES, discretize_recurrent
    from kdarts.runs.recurrent import load_recurrent_genotype
    from kdarts.runs import recurrent_search_run
    from kdarts.search.activations import activate

    whole = recurrent_search_run(str(tmp_path / "a"), report=None, progress=False,
                                 **TINY_RSEARCH)
    assert whole.complete
    rows = list(csv.DictReader(open(tmp_path / "a" / "history.csv")))
    losses = [float(r["val_loss"]) for r in rows]
    best_epoch = int(np.nanargmin(losses)) + 1  # a NaN loss is never the best
    assert [int(float(r["best_epoch"])) for r in rows][-1] == best_epoch
    state = json.loads((tmp_path / "a" / "checkpoint.json").read_text())["best_validation"]
    assert state["epoch"] == best_epoch and state["val_loss"] == np.nanmin(losses)
    weights = activate(np.float32(state["alpha"]), "crb", np.float32(state["mask"])).numpy()
    genes, _ = discretize_recurrent(weights, CRB_RECURRENT_PRIMITIVES)
    written = load_recurrent_genotype(str(tmp_path / "a"))
    assert list(written.recurrent) == list(genes) and written == whole.genotype

    first = recurrent_search_run(str(tmp_path / "b"), stop_after_epoch=1, report=None,
                                 progress=False, **TINY_RSEARCH)
    assert not first.complete
    resumed = recurrent_search_run(str(tmp_path / "b"), resume=True, report=None,
                                   progress=False, **TINY_RSEARCH)
    assert resumed.complete and resumed.genotype == whole.genotype
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())[
        "best_validation"] == state
    np.testing.assert_array_equal(
        [float(r["val_loss"]) for r in csv.DictReader(open(tmp_path / "b" / "history.csv"))],
        losses)
    # the record of α and the schedule, as the image search's: one entry per epoch (0:
    # before training) and per step that advanced the clock; resumed, the same record
    record = json.loads((tmp_path / "a" / "search_record.json").read_text())
    assert record["cells"] == ["recurrent"] and (record["inputs"], record["keep"]) == (1, 1)
    assert [e["epoch"] for e in record["epochs"]] == [0, 1, 2, 3]
    last = record["epochs"][-1]
    assert np.asarray(last["alpha_recurrent"]).shape == (36, len(CRB_RECURRENT_PRIMITIVES))
    steps = [b["step"] for b in record["batches"]]
    assert steps == list(range(1, steps[-1] + 1))  # each step once, no epoch's padding
    checkpoint = json.loads((tmp_path / "a" / "checkpoint.json").read_text())
    assert steps[-1] == last["step"] == checkpoint["search_step"]
    assert record["batches"][-1]["alpha_steps"] == checkpoint["alpha_steps"] > 0
    assert json.loads((tmp_path / "b" / "search_record.json").read_text()) == record
    for plot in ("alpha.png", "schedule.png"):
        assert (tmp_path / "a" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_best_validation_architecture_keeps_the_lowest_finite_loss_epochs_alpha():
    """The kept α is the epoch with the lowest validation loss (a NaN one never is), put
    back after the last epoch; its state, through JSON, resumes the same choice."""
    import json
    import math

    import tensorflow as tf

    from kdarts.recurrent.callbacks import BestValidationArchitecture

    class Scripted:  # the model's part the callback uses
        def __init__(self, losses):
            self.losses, self.alpha = iter(losses), tf.Variable(np.zeros((2, 2), np.float32))
            self.mask = tf.Variable(np.ones((2, 2), np.float32))

        def evaluate(self, ids, batch_size, bptt):
            loss = next(self.losses)
            return {"loss": loss, "perplexity": math.exp(loss)}

    def epoch_end(callback, model, epoch):
        model.alpha.assign(np.full((2, 2), 0.1 * (epoch + 1), np.float32))
        logs = {}
        callback.on_epoch_end(epoch, logs)
        return logs["best_epoch"]

    model = Scripted([float("nan"), 3.0, 2.0, 2.5])
    best = BestValidationArchitecture([1, 2, 3], bptt=2, epochs=4)
    best.set_model(model)
    assert [epoch_end(best, model, e) for e in range(2)] == [0.0, 2.0]
    resumed = BestValidationArchitecture([1, 2, 3], bptt=2, epochs=4, initial_epoch=2,
                                         best=json.loads(json.dumps(best.state()))[
                                             "best_validation"])
    resumed.set_model(model)
    assert [epoch_end(resumed, model, e) for e in (2, 3)] == [3.0, 3.0]
    resumed.on_train_end()
    np.testing.assert_array_equal(model.alpha.numpy(), np.float32(0.3))
    assert resumed.state()["best_validation"]["val_loss"] == 2.0


def test_a_run_json_without_arch_epsilon_compares_as_keras_placement(tmp_path):
    """A folder written before --arch-epsilon existed resumes as a run with Keras's
    placement, and is refused for the torch one."""
    from kdarts.runs.folder import RunFolder
    from kdarts.runs.recurrent import RECURRENT_SEARCH_DEFAULTS
    from kdarts.runs.resume import previous_args

    folder = RunFolder(str(tmp_path / "s"), "search")
    today = {"space": "recurrent", **RECURRENT_SEARCH_DEFAULTS}
    older = {k: v for k, v in today.items() if k != "arch_epsilon"}
    assert previous_args(folder, {"args": older}, today) == today
    assert previous_args(folder, {"args": older}, {**today, "arch_epsilon": "torch"}) != {
        **today, "arch_epsilon": "torch"}
