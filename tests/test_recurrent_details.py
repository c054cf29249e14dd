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
    from kdarts.recurrent.model import RecurrentSearchModel
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
