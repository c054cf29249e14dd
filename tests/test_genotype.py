"""discretize (docs/method.md §3) on hand-worked cases, and genotype JSON with validation."""

import json

import numpy as np
import pytest

from kdarts.image.genotype import (
    CRB_PRIMITIVES,
    DARTS_V1,
    DARTS_V2,
    PRIMITIVES,
    Genotype,
    discretize,
    resolve_genotype,
)
from kdarts.genotype import GenotypeError


def test_discretize_hand_worked_two_nodes():
    prims = ["none", "max_pool_3x3", "sep_conv_3x3"]
    w = np.array([
        # node 0: inputs 0, 1
        [0.9, 0.1, 0.2],   # edge (0←0): 'none' is ignored: strength 0.2 (sep_conv)
        [0.0, 0.3, 0.1],   # edge (0←1): strength 0.3 (max_pool)
        # node 1: inputs 0, 1, 2
        [0.0, 0.5, 0.5],   # tie inside the edge: first index wins → max_pool
        [0.0, 0.2, 0.7],   # strongest edge → ranked first
        [0.0, 0.5, 0.1],   # ties with input 0 at 0.5: the lower input index wins
    ])
    genes, onehot = discretize(w, prims, steps=2)
    assert genes == [("max_pool_3x3", 1), ("sep_conv_3x3", 0),
                     ("sep_conv_3x3", 1), ("max_pool_3x3", 0)]
    expected = np.zeros_like(w)
    expected[1, 1] = expected[0, 2] = expected[3, 2] = expected[2, 1] = 1
    np.testing.assert_array_equal(onehot, expected)


def test_discretize_fully_pruned_edges_and_all_zero_node():
    w = np.zeros((14, 7))
    w[0, 3] = 0.4  # node 0: only edge 0 alive; edge 1 fully pruned (all zeros)
    genes, onehot = discretize(w, CRB_PRIMITIVES)
    assert genes[0] == ("sep_conv_3x3", 0)
    # the fully pruned edge still fills the second slot: first op, by the tie rules
    assert genes[1] == ("max_pool_3x3", 1)
    # nodes with every edge pruned: inputs 0 and 1, first op (stable ties)
    assert genes[2:4] == [("max_pool_3x3", 0), ("max_pool_3x3", 1)]
    assert onehot.sum() == 8 and onehot[0, 3] == 1


def test_discretize_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"shape \(14, 8\), expected \(14, 7\)"):
        discretize(np.zeros((14, 8)), CRB_PRIMITIVES)


def test_presets_match_spec():
    assert DARTS_V2.normal[-1] == ("dil_conv_3x3", 2)
    assert DARTS_V1.reduce[-1] == ("avg_pool_3x3", 0)
    assert DARTS_V2.normal_concat == (2, 3, 4, 5) and DARTS_V2.steps == 4
    assert resolve_genotype("DARTS_V2") is DARTS_V2


def test_json_round_trip(tmp_path):
    path = tmp_path / "g.json"
    DARTS_V1.save(path)
    assert Genotype.load(path) == DARTS_V1
    assert json.loads(path.read_text())["normal"][0] == ["sep_conv_3x3", 1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["normal"].__setitem__(0, ["conv_9x9", 0]),
     r"normal\[0\] has unknown op 'conv_9x9'; valid ops: max_pool_3x3"),
    (lambda d: d["reduce"].__setitem__(2, ["skip_connect", 3]),
     r"reduce\[2\] = \('skip_connect', 3\): input index 3 is out of range for node 3 "
     r"\(expected 0..2\)"),
    (lambda d: d["normal"].pop(),
     r"'normal' has 7 \(op, input\) pairs; expected two per intermediate node"),
    (lambda d: d["normal"].__setitem__(1, ["skip_connect"]),
     r"normal\[1\] = \['skip_connect'\] is not an \[op_name, input_index\] pair"),
    (lambda d: d.pop("reduce"), "missing field"),
    (lambda d: d.__setitem__("colour", 1), r"unknown field\(s\) colour"),
    (lambda d: d["normal"].__setitem__(0, ["none", 0]), "unknown op 'none'"),
])
def test_validation_errors_name_the_problem(tmp_path, mutate, message):
    data = DARTS_V2.to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GenotypeError, match=message) as err:
        Genotype.load(path)
    assert str(path) in str(err.value)


def test_malformed_and_missing_files(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"normal": [["sep_conv_3x3", 0],')
    with pytest.raises(GenotypeError, match=r"broken.json: malformed JSON at line 1"):
        Genotype.load(path)
    with pytest.raises(GenotypeError, match="cannot read genotype file"):
        Genotype.load(tmp_path / "missing.json")
    with pytest.raises(GenotypeError, match="neither a preset"):
        resolve_genotype("DARTS_V9")
    assert PRIMITIVES[0] == "none" and "none" not in CRB_PRIMITIVES
