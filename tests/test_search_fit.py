"""The alternating search through compile/fit: every combination and the compiled step.
(Resuming in a new process is checked through the CLI: tests/test_cli.py.)"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdarts.image import SearchNetwork
from kdarts.image.genotype import discretize
from kdarts.search import ADMM, DynamicSchedule, FixedSchedule, Proximity
from kdarts.search.pruning import PRUNE_LEVELS

PRIMS = ("max_pool_3x3", "skip_connect", "sep_conv_3x3")
TINY = dict(channels=4, layers=3, steps=2, multiplier=2, primitives=PRIMS)
METRICS = {"loss", "accuracy", "search_loss", "reg", "fi", "fi_ewma", "threshold",
           "alpha_steps", "pruned_ops"}


def datasets(n=48, batch=8):
    """A learnable toy task (the label is the brightest quadrant), as infinite streams."""
    rng = np.random.default_rng(0)
    x = rng.random((2 * n, 8, 8, 3), dtype=np.float32)
    y = np.argmax([x[:, :4, :4].mean((1, 2, 3)), x[:, :4, 4:].mean((1, 2, 3)),
                   x[:, 4:, :4].mean((1, 2, 3)), x[:, 4:, 4:].mean((1, 2, 3))], axis=0)
    make = lambda a, b: (tf.data.Dataset.from_tensor_slices((a, b.astype(np.int32)))  # noqa
                         .batch(batch, drop_remainder=True).repeat())
    return make(x[:n], y[:n]), make(x[n:], y[n:])


def tiny_model(activation="crb", seed=0):
    keras.utils.set_random_seed(seed)
    model = SearchNetwork(4, activation=activation, **TINY)
    model.build((8, 8, 8, 3))
    return model


def host_ops(model, batch=8):
    """The op types of the search step's graph (nested functions included) that call back
    into Python or read a host-side iterator: none may, or the step could not leave the
    host, compile with XLA or run per replica under tf.distribute."""
    pair = (tf.TensorSpec((batch, 8, 8, 3), tf.float32), tf.TensorSpec((batch,), tf.int32))
    graph = tf.function(model.train_step).get_concrete_function(
        (pair, pair)).graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    assert len(nodes) > 1000  # the whole network is in there, not just a call
    return {n.op for n in nodes} & {"PyFunc", "PyFuncStateless", "EagerPyFunc",
                                    "IteratorGetNext", "IteratorGetNextSync"}


class _FirstZ(keras.callbacks.Callback):
    """Records the normal cells' ADMM Z after the first minibatch of a fit."""

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            self.z = self.model.admm_z_normal.numpy().copy()


SCHEDULES = {"fixed": FixedSchedule(1),
             "dynamic": DynamicSchedule(every=1, multiplier=2.0, initial_threshold=1e4)}
#: (schedule, regulariser) cases: the regularisers under the fixed schedule (3 α steps: the
#: authors' ADMM updates with the 3rd, every − 1), and no regulariser and ADMM (whose Z/U
#: period follows the α steps taken) under the dynamic one
CASES = {"fixed-proximity": ("fixed", Proximity(0.1)),
         "fixed-admm": ("fixed", ADMM(0.1, every=1)),
         "fixed-admm_reference": ("fixed", ADMM(0.1, every=4, variant="reference")),
         "dynamic-none": ("dynamic", "none"),
         "dynamic-admm": ("dynamic", ADMM(0.1, every=1))}


@pytest.fixture(scope="module")
def shared_models():
    """One tiny model per activation, with its initial weights: its network is traced once
    for all the cases, each compile retraces only the thin outer step."""
    models = {}

    def get(activation):
        if activation not in models:
            model = tiny_model(activation)
            models[activation] = (model, model.get_weights())
        return models[activation]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("activation", ["softmax", "crb"])
def test_every_schedule_and_regulariser_runs(shared_models, activation, case):
    """activation × (schedule, regulariser), compiled, a few steps each, with no Python in
    the step. (crb × proximity and crb × ADMM under the dynamic schedule also run in
    tests/test_scale_out.py.)"""
    sname, reg = CASES[case]
    weight_ds, search_ds = datasets()
    model, start = shared_models(activation)
    first_z = _FirstZ()
    model.set_weights(start)  # α, masks, counters and schedule state included
    alpha0 = [a.numpy().copy() for a in model.arch_variables]
    model.compile(schedule=SCHEDULES[sname], regularizer=reg, search_data=search_ds)
    history = model.fit(weight_ds, epochs=1, steps_per_epoch=3, verbose=0,
                        callbacks=[first_z]).history
    if sname == "fixed":  # D(act(α)) and Z/U in graph ops
        assert not host_ops(model)
    assert METRICS <= set(history)
    assert history["alpha_steps"][-1] >= 2
    assert all(np.isfinite(v[-1]) for v in history.values())
    assert any(np.abs(a.numpy() - a0).max() > 0 for a, a0 in zip(model.arch_variables, alpha0))
    if isinstance(reg, Proximity):
        assert history["reg"][-1] > 0
    if isinstance(reg, ADMM):
        assert model.regularizer_variables == [model.admm_z_normal, model.admm_z_reduce,
                                               model.admm_u_normal, model.admm_u_reduce]
    if isinstance(reg, ADMM) and reg.variant == "spec":  # discrete after an update
        z = model.admm_z_normal.numpy()
        assert set(np.unique(z)) <= {0.0, 1.0} and z.sum() == 4
    if isinstance(reg, ADMM) and reg.variant == "reference":
        # Z starts at the raw α₀ and the update uses the raw α (U was 0 before it)
        np.testing.assert_array_equal(first_z.z, alpha0[0])
        a, mask = model.alpha_normal.numpy(), model.mask_normal.numpy()
        act = (np.clip(a, 0, 1) if activation == "crb"
               else np.exp(a) / np.exp(a).sum(axis=1, keepdims=True))
        z = discretize(act, PRIMS, steps=2)[1]
        np.testing.assert_array_equal(model.admm_z_normal.numpy(), z)
        np.testing.assert_allclose(model.admm_u_normal.numpy(), (a - z) * mask, atol=1e-6)
    model.genotype()


@pytest.mark.slow
def test_unrolled_second_order_step():
    weight_ds, search_ds = datasets()
    model = tiny_model("softmax")
    weights0 = [w.numpy().copy() for w in model.weight_variables]
    model.compile(schedule=FixedSchedule(1), regularizer="proximity", search_data=search_ds,
                  unrolled=True)
    history = model.fit(weight_ds, epochs=1, steps_per_epoch=2, verbose=0).history
    assert history["alpha_steps"][-1] == 2 and np.isfinite(history["search_loss"][-1])
    assert any(np.abs(w.numpy() - w0).max() > 0
               for w, w0 in zip(model.weight_variables, weights0))


class _Snapshots(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.alpha, self.mask = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.alpha.append(self.model.alpha_normal.numpy().copy())
        self.mask.append(self.model.mask_normal.numpy().copy())


class _PrunedPerStep(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.counts = []

    def on_train_batch_end(self, batch, logs=None):
        self.counts.append(float(logs["pruned_ops"]))


class _SaveAfterFirstEpoch(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.model.save_weights(self.path)


def _compile_pruning_fast(model, search_ds):
    # a fast α optimiser so that ops reach 0 (and get pruned) within a few steps
    model.compile(arch_optimizer=keras.optimizers.Adam(0.5, beta_1=0.5), search_data=search_ds,
                  schedule=FixedSchedule(2), regularizer=Proximity(rho=2.0),
                  skip_pruned_ops="levels")


@pytest.mark.slow
def test_compiled_search_prunes_for_good_without_retracing(tmp_path):
    weight_ds, search_ds = datasets()  # 6 batches each: an epoch of 6 steps reads them all
    model = tiny_model("crb")
    _compile_pruning_fast(model, search_ds)
    snaps, pruned = _Snapshots(), _PrunedPerStep()
    checkpoint = str(tmp_path / "epoch1.weights.h5")
    history = model.fit(weight_ds, epochs=3, steps_per_epoch=6, verbose=0,
                        callbacks=[snaps, pruned, _SaveAfterFirstEpoch(checkpoint)]).history
    # α / no-α steps alternate inside one trace; pruning traces the step again only when
    # the pruned share first reaches a further level (25/50/75 %), before the next step
    total = 2 * np.prod(model.mask_normal.shape)
    levels = [sum(p / total >= t for t in PRUNE_LEVELS) for p in pruned.counts[:-1]]
    assert model.trace_count == 1 + len(set(levels) - {0})
    assert levels[5] >= 1  # retraced in epoch 1
    assert model.train_function.lean_graph_optimization  # the step's one big graph
    assert history["alpha_steps"] == [3.0, 6.0, 9.0]

    # resumed from epoch 1's weights in a new model: the traced mask is state, so the
    # resumed step leaves out the same ops on the same edges and rounds the same
    resumed = tiny_model("crb", seed=5)
    _compile_pruning_fast(resumed, search_ds)
    resumed.build_optimizers()
    resumed.load_weights(checkpoint)
    # pruned since the last retrace: tracing for today's mask would compute otherwise
    assert any(not np.array_equal(k.numpy(), m.numpy())
               for k, m in zip(resumed._kept_masks(), resumed._masks()))
    resumed.fit(weight_ds, epochs=3, initial_epoch=1, steps_per_epoch=6, verbose=0)
    for a, b in zip(model.variables, resumed.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    masks = np.stack(snaps.mask)
    assert masks[-1].sum() < masks.size / len(masks)  # some ops were pruned ...
    assert np.all(np.diff(masks, axis=0) <= 0)  # ... and no pruned op ever came back
    for alpha, mask in zip(snaps.alpha, snaps.mask):
        assert np.all(alpha[mask == 0] == 0)  # a pruned α is 0 and never moves again
    assert history["pruned_ops"][-1] == (1 - masks[-1]).sum() + (
        1 - model.mask_reduce.numpy()).sum()
    # cosine stepped at each epoch start, as the reference: epoch e at η(e+1), the last at η_min
    eta = [0.001 + 0.024 * (1 + np.cos(np.pi * e / 3)) / 2 for e in (1, 2, 3)]
    assert history["lr"] == pytest.approx(eta, rel=1e-5)

    # an α step changes only α; a weight step changes only the weights
    def snapshot():
        return ([v.numpy().copy() for v in model.arch_variables],
                [v.numpy().copy() for v in model.weight_variables])
    x, y = next(iter(weight_ds))
    a0, w0 = snapshot()
    model._alpha_step(((x, y), (x, y)), tf.constant(1.0))  # the step's pieces, called alone
    a1, w1 = snapshot()
    assert all(np.array_equal(u, v) for u, v in zip(w0, w1))
    assert any(not np.array_equal(u, v) for u, v in zip(a0, a1))
    model._weight_step(x, y)
    a2, w2 = snapshot()
    assert all(np.array_equal(u, v) for u, v in zip(a1, a2))
    assert any(not np.array_equal(u, v) for u, v in zip(w1, w2))


def test_fit_errors_are_clear():
    weight_ds, _ = datasets()
    model = tiny_model("softmax")
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(weight_ds, epochs=1, steps_per_epoch=1)
    with pytest.raises(ValueError, match="skip_pruned_ops='every_step'.*XLA cannot compile"):
        model.compile(skip_pruned_ops="every_step", jit_compile=True)
    with pytest.raises(ValueError, match="skip_pruned_ops='sometimes'.*levels, every_step"):
        model.compile(skip_pruned_ops="sometimes")
    # the latch is the recurrent search's rule: refused here, not silently ignored
    for schedule in ("dynamic-latched", DynamicSchedule(latch=True)):
        with pytest.raises(ValueError, match="latching schedule.*takes 'dynamic' or 'fixed'"):
            model.compile(schedule=schedule)
    model.compile()
    with pytest.raises(ValueError, match=r"compile\(search_data=...\) is required"):
        model.fit(weight_ds, epochs=1, steps_per_epoch=1)
    model.compile(search_data=weight_ds)
    with pytest.raises(TypeError, match="tf.data.Dataset of \\(images, labels\\) batches, got "
                                        "ndarray"):
        model.fit(np.zeros((8, 8, 8, 3), np.float32), epochs=1, steps_per_epoch=1)


def test_auto_leaves_pruned_ops_out_where_the_step_is_large_enough(monkeypatch):
    """``skip_pruned_ops="auto"`` (the default): levels from an input map of 16×16 px at
    C=8 (where the saved FLOPs outweigh the gathers) in a search long enough to earn the
    retraces back, every op everywhere otherwise; fit tells it the search's length."""
    def mode(size, channels, activation="crb", **compile_args):
        keras.utils.set_random_seed(0)
        model = SearchNetwork(4, activation=activation, **{**TINY, "channels": channels})
        if size:
            model.build((None, size, size, 3))
        model.compile(**compile_args)
        return model.pruned_ops_mode()

    assert mode(8, 8) == "never"  # the digits: 8×8 px at C=8
    assert mode(16, 4) == "never"
    assert mode(16, 8) == "levels"
    assert mode(32, 16) == "levels"
    assert mode(32, 16, skip_pruned_ops=False) == "never"
    assert mode(32, 16, skip_pruned_ops="every_step") == "every_step"
    assert mode(None, 16) == "never"  # not built yet: fit decides once it knows the size
    assert mode(32, 16, activation="softmax", skip_pruned_ops="levels") == "never"  # no pruning

    # fit's batch and steps (the whole search's, resumed or not) decide "auto"
    keras.utils.set_random_seed(0)
    model = SearchNetwork(4, activation="crb", **{**TINY, "channels": 8})
    model.build((None, 16, 16, 3))
    data = tf.data.Dataset.from_tensors((tf.zeros((32, 16, 16, 3)), tf.zeros(32, tf.int32)))
    model.compile(search_data=data.repeat())
    seen = []
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, **k: seen.append(
        self.pruned_ops_mode()))  # Keras's fit, which would trace the step
    model.fit(data.repeat(), epochs=8, steps_per_epoch=40)  # the digits' 320 steps
    model.fit(data.repeat(), epochs=50, steps_per_epoch=100)  # 5,000 steps
    assert seen == ["never", "levels"]
    assert model.pruned_ops_mode(32, 320) == "never"
    assert model.pruned_ops_mode(64, 10**4) == "levels"
