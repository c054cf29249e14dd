"""The evaluation network's cost tables are exact: for random genotypes, c₀ plus the kept
ops' table costs equals the parameters and multiply-adds counted on the built network."""

import numpy as np
import pytest

from kdarts.image.budget import cheapest_cost, discretize_within_budget, genotype_cost
from kdarts.image.genotype import CRB_PRIMITIVES, DARTS_V2, Genotype, discretize

CONCAT = [2, 3, 4, 5]


def random_genotype(rng) -> Genotype:
    cells = []
    for _ in range(2):
        genes = []
        for node in range(4):
            for source in rng.choice(node + 2, 2, replace=False):
                genes.append((CRB_PRIMITIVES[rng.integers(len(CRB_PRIMITIVES))], int(source)))
        cells.append(genes)
    return Genotype(cells[0], CONCAT, cells[1], CONCAT)


def test_the_madds_counter_reads_convolutions_and_matmuls():
    import keras

    from kdarts.image.costs import layer_madds

    conv = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)
    conv.build((1, 6, 6, 4))
    assert layer_madds(conv, (1, 6, 6, 4)) == 6 * 6 * 8 * 3 * 3 * 4
    depthwise = keras.layers.DepthwiseConv2D(5, strides=2, padding="same", use_bias=False)
    depthwise.build((1, 6, 6, 4))
    assert layer_madds(depthwise, (1, 6, 6, 4)) == 3 * 3 * 4 * 5 * 5
    dense = keras.layers.Dense(3)
    dense.build((1, 7))
    assert layer_madds(dense, (1, 7)) == 7 * 3


@pytest.mark.slow
def test_tables_equal_counts_of_built_networks_and_d_b_holds_a_budget():
    from kdarts.image.costs import cost_tables, network_madds
    from kdarts.image.model import EvalNetwork

    tables = cost_tables(num_classes=3, image_shape=(8, 8, 3), channels=4, layers=3)
    rng = np.random.default_rng(0)
    genotypes = [DARTS_V2] + [random_genotype(rng) for _ in range(4)]
    for genotype in genotypes:
        network = EvalNetwork(genotype, 3, channels=4, layers=3)  # auxiliary head left out
        network.build((None, 8, 8, 3))
        assert tables["params"].of(genotype) == network.parameter_count(), genotype
        assert tables["madds"].of(genotype) == network_madds(network), genotype
    # a budget between the cheapest genotype and D's cost holds on the built network
    table = tables["params"]
    weights = {t: rng.random((14, len(CRB_PRIMITIVES))) for t in ("normal", "reduce")}
    plain = {t: discretize(weights[t], CRB_PRIMITIVES)[1] for t in weights}
    budget = (cheapest_cost(table.per_op, fixed=table.fixed)
              + genotype_cost(plain, table.per_op, table.fixed)) / 2
    found = discretize_within_budget(weights, table.per_op, budget, table.fixed)
    genotype = Genotype(found.genes["normal"], CONCAT, found.genes["reduce"], CONCAT)
    network = EvalNetwork(genotype, 3, channels=4, layers=3)
    network.build((None, 8, 8, 3))
    assert network.parameter_count() == found.cost <= budget
    assert found.cost < genotype_cost(plain, table.per_op, table.fixed)  # D itself did not fit
