"""The budget inside the search (docs/method.md §8): the in-step projection never exceeds
the budget, equals D where D fits and the exact D_B on small integer slack; a budgeted
search's ADMM's Z and final genotype are within it; bad budgets are refused in one line.
(Distribution: tests/distributed_search.py carries a budget; XLA through a whole search:
tests/test_scale_out.py.)"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdarts.budget import BudgetError, describe_cost, parse_amount
from kdarts.image import SearchNetwork
from kdarts.image.budget import Budget, discretize_within_budget, genotype_cost
from kdarts.image.costs import CostTable
from kdarts.image.genotype import CRB_PRIMITIVES, Genotype, discretize, num_edges
from kdarts.image.projection import BudgetProjection
from kdarts.search import ADMM, DynamicSchedule
from test_search_fit import PRIMS, TINY, datasets

CELLS = ("normal", "reduce")


def random_table(rng, steps, primitives, integer):
    shape = (num_edges(steps), len(primitives))
    per_op = {t: (rng.integers(0, 40, shape).astype(float) if integer
                  else rng.random(shape) * 40.0) for t in CELLS}
    return CostTable("params", per_op, 7.0, tuple(primitives))


def test_the_in_step_projection_stays_within_budget_and_is_d_where_d_fits():
    """Property test over many random α, tables and budgets (one trace serves all)."""
    rng = np.random.default_rng(0)
    steps, prims = 4, CRB_PRIMITIVES
    shape = (num_edges(steps), len(prims))
    spec = [tf.TensorSpec(shape, tf.float32)] * 2
    checked = binding = 0
    for case in range(6):
        table = random_table(rng, steps, prims, integer=case % 2 == 0)
        probe = {t: rng.random(shape) for t in CELLS}
        plain = {t: discretize(probe[t], prims, steps)[1] for t in CELLS}
        cheapest = Budget(table, 1e12).cheapest
        full = genotype_cost(plain, table.per_op, table.fixed)
        budget = Budget(table, cheapest + (full - cheapest) * rng.uniform(0.1, 0.9))
        project = BudgetProjection(budget)
        fn = tf.function(lambda a, b, p=project: p([a, b]), input_signature=spec)
        for _ in range(30):
            w = {t: rng.random(shape).astype(np.float32) for t in CELLS}
            got = [h.numpy() for h in fn(w["normal"], w["reduce"])]
            onehots = dict(zip(CELLS, got))
            cost = genotype_cost(onehots, table.per_op, table.fixed)
            assert cost <= budget.limit + 1e-9
            for h in got:  # a valid genotype: two distinct inputs per node, one op each
                assert set(np.unique(h)) <= {0.0, 1.0} and h.sum() == 2 * steps
                assert (h.sum(axis=1) <= 1).all()
            exact = discretize_within_budget(w, table.per_op, budget.limit, table.fixed,
                                             prims, steps)
            d = {t: discretize(w[t], prims, steps)[1] for t in CELLS}
            if genotype_cost(d, table.per_op, table.fixed) <= budget.limit:
                for t in CELLS:
                    np.testing.assert_array_equal(onehots[t], d[t])
            else:
                binding += 1
                score = sum(float((onehots[t] * w[t]).sum()) for t in CELLS)
                assert score <= exact.score + 1e-5  # never beats the exact optimum
                assert score >= exact.score - 0.25  # and the grid loses little
            checked += 1
    assert checked == 180 and binding > 100


def test_the_in_step_projection_is_exact_on_small_integer_slack():
    rng = np.random.default_rng(1)
    steps, prims = 2, PRIMS
    shape = (num_edges(steps), len(prims))
    table = random_table(rng, steps, prims, integer=True)
    cheapest = Budget(table, 1e12).cheapest
    budget = Budget(table, cheapest + 30)  # slack 30 < resolution: whole units
    project = BudgetProjection(budget)
    assert project.grid == 30
    spec = [tf.TensorSpec(shape, tf.float32)] * 2
    graph = tf.function(lambda a, b: project([a, b]), input_signature=spec)
    for _ in range(25):
        w = {t: rng.random(shape).astype(np.float32) for t in CELLS}
        exact = discretize_within_budget(w, table.per_op, budget.limit, table.fixed, prims,
                                         steps)
        got = graph(w["normal"], w["reduce"])
        for t, h in zip(CELLS, got):
            np.testing.assert_array_equal(h.numpy(), exact.onehots[t])


def test_budgets_are_refused_in_one_line():
    rng = np.random.default_rng(2)
    table = random_table(rng, 2, PRIMS, integer=True)
    cheapest = Budget(table, 1e12).cheapest
    with pytest.raises(BudgetError, match=f"below the cheapest valid genotype, which costs "
                                          f"{cheapest:g}"):
        Budget(table, cheapest - 1)
    assert parse_amount("120k") == 120_000 and parse_amount("1.5M") == 1.5e6
    for bad in ("", "-3", "12q", "0", "nan"):
        with pytest.raises(BudgetError, match="expected a positive number"):
            parse_amount(bad, "--max-params")
    # a table of other ops than the search's
    model = SearchNetwork(4, activation="crb", **TINY)
    other = CostTable("params", {t: np.zeros((5, len(CRB_PRIMITIVES))) for t in CELLS}, 0.0,
                      CRB_PRIMITIVES)
    with pytest.raises(BudgetError, match="this search has 2-node cells of max_pool_3x3"):
        model.compile(budget=Budget(other, 1.0), search_data=datasets()[1])


@pytest.mark.slow
def test_a_budgeted_search_keeps_its_targets_and_genotype_within_budget():
    """ADMM's Z (updated every α step) and the final genotype stay within a budget that
    binds: the unbudgeted search's genotype costs more."""
    weight_ds, search_ds = datasets()
    # sep_conv costs 10, max_pool 1, skip 0, fixed 5: the budget allows one sep_conv
    per_op = {t: np.tile([1.0, 0.0, 10.0], (num_edges(2), 1)) for t in CELLS}
    table = CostTable("params", per_op, 5.0, PRIMS)
    budget = Budget(table, 16.0)
    found = {}
    for name, b in (("free", None), ("budget", budget)):
        keras.utils.set_random_seed(0)
        model = SearchNetwork(4, activation="crb", **TINY)
        model.build((8, 8, 8, 3))
        model.compile(schedule=DynamicSchedule(every=1, initial_threshold=1e6),
                      regularizer=ADMM(0.1, every=1), search_data=search_ds, budget=b,
                      arch_optimizer=keras.optimizers.Adam(0.05, beta_1=0.5))
        model.fit(weight_ds, epochs=1, steps_per_epoch=6, verbose=0)
        assert int(model.alpha_steps.numpy()) >= 5
        found[name] = model.genotype()
        zs = {t: z.numpy() for t, z in zip(CELLS, model.regularizer_state["z"])}
        if b is not None:  # Z (a D_B, masked) prices within the budget
            assert genotype_cost(zs, per_op, table.fixed) <= budget.limit
    assert budget.cost(found["free"]) > budget.limit  # the budget binds
    assert budget.cost(found["budget"]) <= budget.limit
    target = model.architecture.discretized(model.activated_weights())
    assert genotype_cost(dict(zip(CELLS, [h.numpy() for h in target])), per_op,
                         table.fixed) <= budget.limit


def test_genotype_json_records_the_cost_and_checks_it(tmp_path):
    genes = [("sep_conv_3x3", 0), ("skip_connect", 1)] * 2
    geno = Genotype(genes, [2, 3], genes, [2, 3]).with_cost(
        {"network": {"channels": 16, "layers": 8}, "params": 140_000, "madds": 1_590_000,
         "budget": {"kind": "params", "limit": 150_000.0}})
    path = tmp_path / "genotype.json"
    geno.save(path)
    back = Genotype.load(path)
    assert back == geno and back.cost == geno.cost
    assert describe_cost(back.cost) == ("evaluation network C=16, 8 layers: 140.0k parameters, "
                                    "1.59M multiply-adds (budget params ≤ 150.0k parameters)")
    data = json.loads(path.read_text())
    data["cost"]["params"] = "many"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="genotype.json: cost.params must be a number"):
        Genotype.load(path)
