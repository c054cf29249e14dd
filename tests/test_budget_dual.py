"""The budget's optional expected-cost term and its dual λ (docs/method.md §8,
``compile(budget_dual_lr=...)``): E(act) is the exact cost of a one-hot genotype; λ rises
while E > B and never goes below 0; the term turns α's gradient towards cheaper ops; a
resumed search equals the uninterrupted one; the step compiles with XLA; off, nothing of
it is in the step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdarts import search_defaults
from kdarts.image import SearchNetwork
from kdarts.image.budget import Budget, expected_cost, genotype_cost
from kdarts.image.costs import CostTable
from kdarts.image.genotype import CRB_PRIMITIVES, PRIMITIVES, edge_index, num_edges
from kdarts.image.projection import BudgetProjection
from kdarts.runs import RunError
from kdarts.search import DynamicSchedule, FixedSchedule
from kdarts.search.budget_dual import dual_ascent
from test_scale_out import xla_allowed  # noqa: F401  (a fixture)
from test_search_fit import PRIMS, TINY, _SaveAfterFirstEpoch, datasets

CELLS = ("normal", "reduce")
#: sep_conv costs 10, max_pool 1, skip 0, fixed 5: one sep_conv fits the budget of 16
TOY_COSTS = {t: np.tile([1.0, 0.0, 10.0], (num_edges(2), 1)) for t in CELLS}
TOY_BUDGET = Budget(CostTable("params", TOY_COSTS, 5.0, PRIMS), 16.0)


def random_onehot(rng, steps, primitives):
    """A valid genotype's one-hot matrix: per node two distinct inputs, a non-`none` op each."""
    candidates = [j for j, p in enumerate(primitives) if p != "none"]
    onehot = np.zeros((num_edges(steps), len(primitives)), np.float32)
    for node in range(steps):
        for source in rng.choice(node + 2, 2, replace=False):
            onehot[edge_index(node, source), rng.choice(candidates)] = 1.0
    return onehot


@pytest.mark.parametrize("primitives", [CRB_PRIMITIVES, PRIMITIVES], ids=["crb", "with-none"])
def test_expected_cost_of_a_one_hot_genotype_is_its_exact_cost(primitives):
    rng = np.random.default_rng(0)
    steps = 4
    shape = (num_edges(steps), len(primitives))
    for case in range(4):
        per_op = {t: rng.random(shape) * 3e4 for t in CELLS}
        table = CostTable("params", per_op, 1e5, tuple(primitives))
        project = BudgetProjection(Budget(table, 1e12), CELLS)
        graph = tf.function(lambda a, b, p=project: p.expected_cost([a, b]))
        for _ in range(10):
            onehots = {t: random_onehot(rng, steps, primitives) for t in CELLS}
            exact = genotype_cost(onehots, per_op, table.fixed)
            got = float(graph(onehots["normal"], onehots["reduce"]))
            assert got == pytest.approx(exact, rel=1e-6)
            assert expected_cost(onehots, per_op, table.fixed, primitives, steps) == \
                pytest.approx(exact, rel=1e-12)
        # relaxed weights: graph and host agree, and E lies between the cheapest and the
        # dearest genotype's cost
        w = {t: rng.random(shape).astype(np.float32) for t in CELLS}
        host = expected_cost(w, per_op, table.fixed, primitives, steps)
        assert float(graph(w["normal"], w["reduce"])) == pytest.approx(host, rel=1e-6)
        dearest = Budget(CostTable("params", {t: -c for t, c in per_op.items()}, -table.fixed,
                                   tuple(primitives)), 1e12).cheapest
        assert Budget(table, 1e12).cheapest <= host <= -dearest


def test_dual_ascent_is_projected_on_nonnegative_values():
    dual = tf.constant(0.0)
    for excess in (0.5, 0.5, -0.2):
        dual = dual_ascent(dual, tf.constant(excess), lr=2.0)
    assert float(dual) == pytest.approx(1.6)
    assert float(dual_ascent(dual, tf.constant(-10.0), lr=2.0)) == 0.0


def toy_model(budget_dual_lr=1.0, regularizer="none", seed=0, **compile_args):
    keras.utils.set_random_seed(seed)
    model = SearchNetwork(4, activation="crb", **TINY)
    model.build((8, 8, 8, 3))
    model.compile(search_data=datasets()[1], regularizer=regularizer, budget=TOY_BUDGET,
                  budget_dual_lr=budget_dual_lr, **compile_args)
    return model


def test_the_dual_rises_while_over_budget_and_falls_to_zero_below_it():
    """α steps called alone (eagerly): at crb's start E(act) (every op at 1/3, the mean
    cost of a node's options) is above the budget of 16, so λ rises at every step; with
    a budget above every genotype it falls and stays at 0."""
    model = toy_model(budget_dual_lr=2.0)
    x, y = next(iter(datasets()[0]))
    dual = 0.0
    for _ in range(3):
        model._alpha_step(((x, y), (x, y)), tf.constant(1.0))
        excess = float(model._budget_excess())  # at the α just taken
        assert excess > 0.0
        assert float(model.budget_dual.numpy()) == pytest.approx(dual + 2.0 * excess)
        dual = float(model.budget_dual.numpy())
    model.compile(search_data=datasets()[1], regularizer="none", budget_dual_lr=2.0,
                  budget=Budget(TOY_BUDGET.table, 1e3))
    duals = []
    for _ in range(6):
        model._alpha_step(((x, y), (x, y)), tf.constant(1.0))
        duals.append(float(model.budget_dual.numpy()))
    assert duals[0] < dual and np.all(np.diff(duals) <= 0)
    assert duals[-2:] == [0.0, 0.0]


def test_the_term_turns_alpha_gradient_towards_cheaper_ops():
    """With λ > 0 the term's gradient is λ/B·∇E: on every edge it is largest on sep_conv
    (10) and smallest on skip (0), and a small step against it lowers E."""
    model = toy_model()
    model.budget_dual.assign(3.0)
    _, grads = model._penalty_gradients(tf.constant(1.0))  # no regulariser: the term only
    for g in grads:
        g = g.numpy()
        assert np.all(g[:, 2] > g[:, 0]) and np.all(g[:, 0] > g[:, 1])
    before = float(model._budget_excess())
    for a, g in zip(model.arch_variables, grads):
        a.assign_sub(1e-2 * g / np.abs(g.numpy()).max())
    assert float(model._budget_excess()) < before
    model.budget_dual.assign(0.0)  # λ = 0: the term adds nothing
    _, grads = model._penalty_gradients(tf.constant(1.0))
    assert all(not np.any(g.numpy()) for g in grads)


def test_without_the_term_the_step_and_its_state_are_as_before():
    model = toy_model(budget_dual_lr=None)
    assert not hasattr(model, "budget_dual") and model.budget_dual_lr is None
    model._build_metrics()
    logs = model._step_logs(tf.constant(0.0), tf.constant(False))
    assert "budget_dual" not in logs and "expected_cost_ratio" not in logs
    with pytest.raises(ValueError, match="pass budget= as well"):
        model.compile(search_data=datasets()[1], budget_dual_lr=1.0)
    with pytest.raises(ValueError, match="must be positive"):
        model.compile(search_data=datasets()[1], budget=TOY_BUDGET, budget_dual_lr=0.0)


def test_the_command_records_the_rate_and_needs_a_budget():
    assert search_defaults(max_params="150k", budget_dual_lr=2)["budget_dual_lr"] == 2.0
    assert search_defaults()["budget_dual_lr"] is None
    with pytest.raises(RunError, match="--budget-dual-lr: the expected-cost term pulls"):
        search_defaults(budget_dual_lr=1.0)
    with pytest.raises(RunError, match="--budget-dual-lr: expected a positive number"):
        search_defaults(max_params="150k", budget_dual_lr=-1.0)


def _compile_for_resume(model):
    model.compile(search_data=datasets()[1], regularizer="proximity", budget=TOY_BUDGET,
                  budget_dual_lr=1.0, schedule=FixedSchedule(2),
                  arch_optimizer=keras.optimizers.Adam(0.05, beta_1=0.5))


@pytest.mark.slow
def test_a_resumed_search_with_the_term_equals_the_uninterrupted_one(tmp_path):
    weight_ds, _ = datasets()
    model = toy_model(budget_dual_lr=None)
    _compile_for_resume(model)
    checkpoint = str(tmp_path / "epoch1.weights.h5")
    history = model.fit(weight_ds, epochs=2, steps_per_epoch=4, verbose=0,
                        callbacks=[_SaveAfterFirstEpoch(checkpoint)]).history
    assert history["budget_dual"][0] > 0 and "expected_cost_ratio" in history
    resumed = toy_model(budget_dual_lr=None, seed=5)
    _compile_for_resume(resumed)
    resumed.build_optimizers()
    resumed.load_weights(checkpoint)
    assert float(resumed.budget_dual.numpy()) > 0  # λ is in the checkpoint
    resumed.fit(weight_ds, epochs=2, initial_epoch=1, steps_per_epoch=4, verbose=0)
    for a, b in zip(model.variables, resumed.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert float(resumed.budget_dual.numpy()) == float(model.budget_dual.numpy())


class _Duals(keras.callbacks.Callback):
    """act(α), λ and whether an α step was taken, after every step."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        acts = dict(zip(CELLS, (w.numpy() for w in self.model.activated_weights())))
        self.steps.append((acts, float(self.model.budget_dual.numpy()),
                           bool(logs["took_alpha_step"])))


@pytest.mark.slow
def test_xla_compiles_the_term_and_its_dual(xla_allowed):  # noqa: F811
    """jit_compile=True compiles E(act), the term and λ's update into the step: after
    every α step λ is max(0, λ + η·(E − B)/B) of the host's E at the α taken, and it
    does not move on the other steps."""
    weight_ds, _ = datasets()
    model = toy_model(budget_dual_lr=0.5, jit_compile=True,
                      schedule=DynamicSchedule(every=2, initial_threshold=40.0),
                      arch_optimizer=keras.optimizers.Adam(0.05, beta_1=0.5))
    assert model.jit_compile is True
    duals = _Duals()
    history = model.fit(weight_ds, epochs=1, steps_per_epoch=6, verbose=0,
                        callbacks=[duals]).history
    assert 2 <= history["alpha_steps"][-1] < 6
    dual = 0.0
    for acts, got, took in duals.steps:
        if took:
            excess = (expected_cost(acts, TOY_COSTS, 5.0, PRIMS, 2) - 16.0) / 16.0
            dual = max(0.0, dual + 0.5 * excess)
        assert got == pytest.approx(dual, rel=1e-5, abs=1e-6)
    assert dual > 0
