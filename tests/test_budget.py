"""D_B, the budget-constrained projection (docs/method.md §8): never over budget, equal to
brute force on small spaces (ties included), equal to D when D fits, refused below the
cheapest genotype. TensorFlow-free."""

import itertools

import numpy as np
import pytest

from kdarts.budget import BudgetError
from kdarts.image.budget import cheapest_cost, discretize_within_budget, genotype_cost
from kdarts.image.genotype import CRB_PRIMITIVES, discretize, edge_index, num_edges

CELLS = ("normal", "reduce")


def node_choices(steps, n_ops):
    """Per node, every (a, b, op_a, op_b) with a < b, in lexicographic order."""
    return [[(a, b, oa, ob) for a, b in itertools.combinations(range(node + 2), 2)
             for oa in range(n_ops) for ob in range(n_ops)] for node in range(steps)]


def brute_force(w, c, budget, fixed, steps, n_ops):
    """The first feasible genotype of largest score, enumerating in tie order."""
    per_node = node_choices(steps, n_ops)
    groups = [(t, node) for t in CELLS for node in range(steps)]
    best, best_score = None, -np.inf
    for combo in itertools.product(*(per_node[node] for _, node in groups)):
        cost, score = float(fixed), 0.0
        for (t, node), (a, b, oa, ob) in zip(groups, combo):
            s = edge_index(node, 0)
            cost += c[t][s + a, oa] + c[t][s + b, ob]
            score += w[t][s + a, oa] + w[t][s + b, ob]
        if cost <= budget and score > best_score:
            best, best_score = combo, score
    if best is None:
        return None
    onehots = {t: np.zeros((num_edges(steps), n_ops), np.float32) for t in CELLS}
    for (t, node), (a, b, oa, ob) in zip(groups, best):
        s = edge_index(node, 0)
        onehots[t][s + a, oa] = onehots[t][s + b, ob] = 1.0
    return onehots, best_score


def random_case(rng, steps, n_ops, integer_weights):
    shape = (num_edges(steps), n_ops)
    if integer_weights:  # many exact ties: the tie rule decides
        w = {t: rng.integers(0, 3, shape).astype(float) for t in CELLS}
    else:
        w = {t: rng.random(shape) for t in CELLS}
    c = {t: rng.integers(1, 20, shape).astype(float) for t in CELLS}
    return w, c


@pytest.mark.parametrize("integer_weights", [False, True])
def test_equals_brute_force_on_small_spaces(integer_weights):
    rng = np.random.default_rng(7 + integer_weights)
    steps, primitives = 2, ("a", "b")
    for _ in range(20):
        w, c = random_case(rng, steps, len(primitives), integer_weights)
        fixed = float(rng.integers(0, 10))
        low = cheapest_cost(c, primitives, steps, fixed)
        high = genotype_cost({t: discretize(w[t], primitives, steps)[1] for t in CELLS},
                             c, fixed)
        for budget in np.linspace(low, high + 3, 4):
            found = discretize_within_budget(w, c, budget, fixed, primitives, steps)
            expected, score = brute_force(w, c, budget, fixed, steps, len(primitives))
            assert found.cost <= budget
            assert found.score == pytest.approx(score, abs=1e-12)
            for t in CELLS:
                np.testing.assert_array_equal(found.onehots[t], expected[t], err_msg=t)


def test_equals_d_when_d_fits_and_lists_genes_as_d_does():
    rng = np.random.default_rng(3)
    for integer_weights in (False, True):
        w, c = random_case(rng, 4, len(CRB_PRIMITIVES), integer_weights)
        plain = {t: discretize(w[t], CRB_PRIMITIVES) for t in CELLS}
        cost = genotype_cost({t: plain[t][1] for t in CELLS}, c, 5.0)
        found = discretize_within_budget(w, c, cost, 5.0)
        for t in CELLS:
            assert found.genes[t] == plain[t][0]
            np.testing.assert_array_equal(found.onehots[t], plain[t][1])
        # one unit below D's cost, D itself is out and the answer still fits
        tighter = discretize_within_budget(w, c, cost - 1.0, 5.0)
        assert tighter.cost <= cost - 1.0
        assert tighter.score <= found.score


def test_never_over_budget_and_optimal_against_random_genotypes():
    """Property test over many random α and budgets at the real space's size."""
    rng = np.random.default_rng(11)
    steps, n_ops = 4, len(CRB_PRIMITIVES)
    per_node = node_choices(steps, n_ops)
    for _ in range(40):
        w, c = random_case(rng, steps, n_ops, integer_weights=False)
        low = cheapest_cost(c)
        high = genotype_cost({t: discretize(w[t], CRB_PRIMITIVES)[1] for t in CELLS}, c)
        budgets = sorted(rng.uniform(low, high, 3))
        scores = []
        for budget in budgets:
            found = discretize_within_budget(w, c, budget)
            assert found.cost <= budget
            for t in CELLS:  # valid: per node two distinct inputs, one op each
                for node in range(steps):
                    s = edge_index(node, 0)
                    rows = found.onehots[t][s:s + node + 2]
                    assert rows.sum() == 2 and rows.sum(axis=1).max() == 1
            # no random feasible genotype beats it
            for _ in range(30):
                pick = {t: [per_node[n][rng.integers(len(per_node[n]))] for n in range(steps)]
                        for t in CELLS}
                cost = score = 0.0
                for t in CELLS:
                    for node, (a, b, oa, ob) in enumerate(pick[t]):
                        s = edge_index(node, 0)
                        cost += c[t][s + a, oa] + c[t][s + b, ob]
                        score += w[t][s + a, oa] + w[t][s + b, ob]
                if cost <= budget:
                    assert score <= found.score + 1e-12
            scores.append(found.score)
        assert scores == sorted(scores)  # a larger budget never finds less


def test_a_budget_below_the_cheapest_genotype_is_refused_naming_its_cost():
    c = {t: np.full((14, 7), 2.0) for t in CELLS}
    w = {t: np.ones((14, 7)) for t in CELLS}
    assert cheapest_cost(c, fixed=10.0) == 10.0 + 2 * 4 * 2 * 2.0
    with pytest.raises(BudgetError, match=r"below the cheapest valid genotype, which costs 42"):
        discretize_within_budget(w, c, 41.0, fixed=10.0)
    assert discretize_within_budget(w, c, 42.0, fixed=10.0).cost == 42.0


def test_tables_that_do_not_fit_are_refused():
    w = {t: np.ones((14, 7)) for t in CELLS}
    with pytest.raises(BudgetError, match="cost table covers"):
        discretize_within_budget(w, {"normal": np.ones((14, 7))}, 1e9)
    with pytest.raises(BudgetError, match=r"costs\['reduce'\] has shape \(14, 8\)"):
        discretize_within_budget(w, {"normal": np.ones((14, 7)), "reduce": np.ones((14, 8))},
                                 1e9)
    bad = {t: np.ones((14, 7)) for t in CELLS}
    bad["normal"][0, 0] = np.nan
    with pytest.raises(BudgetError, match="NaN"):
        discretize_within_budget(w, bad, 1e9)
