"""Every DARTS primitive (SPEC §1) at stride 1 and 2, in search and evaluation form."""

import numpy as np
import pytest

from kdarts.ops import OPS, make_op

PARAMS_PER_OP = {  # C=8, affine BN adds 2·C; pools and identity have none
    "sep_conv_3x3": 2 * (9 * 8 + 8 * 8), "sep_conv_5x5": 2 * (25 * 8 + 8 * 8),
    "dil_conv_3x3": 9 * 8 + 8 * 8, "dil_conv_5x5": 25 * 8 + 8 * 8,
}


@pytest.mark.parametrize("name", list(OPS))
def test_primitive_shapes_and_parameters(name):
    rng = np.random.default_rng(0)
    for size in (8, 7):  # even and odd inputs
        x = rng.standard_normal((2, size, size, 8)).astype(np.float32)
        for stride in (1, 2):
            for affine, search in ((False, True), (True, False)):
                op = make_op(name, 8, stride, affine=affine, search=search)
                y = op(x, training=True)
                out = -(-size // stride)
                assert tuple(y.shape) == (2, out, out, 8), (name, stride, size)
                n = sum(int(np.prod(w.shape)) for w in op.trainable_weights)
                expected = PARAMS_PER_OP.get(name, 0)
                if name == "skip_connect" and stride == 2:
                    expected = 8 * 4 * 2  # FactorizedReduce: two 1×1 convs to C/2
                bns = {"sep_conv_3x3": 2, "sep_conv_5x5": 2}.get(name, 1)
                has_bn = name not in ("none", "max_pool_3x3", "avg_pool_3x3") and not (
                    name == "skip_connect" and stride == 1)
                if affine and has_bn:
                    expected += bns * 2 * 8
                assert n == expected, (name, stride, affine)
    if name == "none":
        assert not np.any(make_op(name, 8, 2)(x).numpy())


def test_unknown_primitive_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown primitive 'conv_7x7'; valid primitives: none"):
        make_op("conv_7x7", 8)
    with pytest.raises(ValueError, match="strides must be 1 or 2, got 3"):
        make_op("sep_conv_3x3", 8, 3)
