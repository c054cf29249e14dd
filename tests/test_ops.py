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


# -- the stride-2 sampling grid: PyTorch's symmetric padding, checked against numpy --------

EPS = 1e-5  # BN epsilon; at inference with fresh statistics BN divides by √(1 + ε)


def np_pad(x, pad, value=0.0):
    return np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=value)


def np_windows(xp, k, stride, dilation, out):
    """The k×k taps of every output pixel: xp[:, s·i + d·u, s·j + d·v, :] for each (u, v)."""
    span = stride * (out - 1) + 1
    return [[xp[:, dilation * u: dilation * u + span: stride,
                dilation * v: dilation * v + span: stride, :] for v in range(k)]
            for u in range(k)]


def np_depthwise(x, w, stride, dilation=1):
    """Depthwise conv, w (k, k, C), zero padding d·(k−1)/2 on both sides as PyTorch pads."""
    k, n = w.shape[0], x.shape[1]
    pad = dilation * (k - 1) // 2
    out = (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    taps = np_windows(np_pad(x, pad), k, stride, dilation, out)
    return sum(taps[u][v] * w[u, v] for u in range(k) for v in range(k))


def np_pool(x, kind, stride):
    """3×3 pool, padding 1: max over −∞ padding; average excluding the padding."""
    out = (x.shape[1] - 1) // stride + 1
    if kind == "max":
        taps = np_windows(np_pad(x, 1, -np.inf), 3, stride, 1, out)
        return np.max([t for row in taps for t in row], axis=0)
    total = sum(t for row in np_windows(np_pad(x, 1), 3, stride, 1, out) for t in row)
    count = sum(t for row in np_windows(np_pad(np.ones_like(x), 1), 3, stride, 1, out)
                for t in row)
    return total / count


def np_reference_op(name, x, params):
    """DARTS's strided primitive in numpy, BN at inference with fresh statistics."""
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    bn = lambda a: a / np.sqrt(1 + EPS)  # noqa: E731
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        y = np_pool(x, name[:3], 2)
        return bn(y) if params.get("bn") else y
    if name.startswith("sep_conv"):
        y = bn(np_depthwise(relu(x), params["dw1"], 2) @ params["pw1"])
        return bn(np_depthwise(relu(y), params["dw2"], 1) @ params["pw2"])
    if name.startswith("dil_conv"):
        return bn(np_depthwise(relu(x), params["dw"], 2, dilation=2) @ params["pw"])
    if name == "skip_connect":  # FactorizedReduce: pixels 2i, and 2i+1 (zero past the edge)
        x = relu(x)
        shifted = np.pad(x[:, 1:, 1:], ((0, 0), (0, 1), (0, 1), (0, 0)))
        y = np.concatenate([x[:, ::2, ::2] @ params["fr1"], shifted[:, ::2, ::2] @ params["fr2"]],
                           axis=-1)
        return bn(y)
    raise AssertionError(name)


def keras_op_params(name, op, search):
    if name.startswith("sep_conv"):
        return {"dw1": op.sep1.depthwise_kernel.numpy()[..., 0],
                "pw1": op.sep1.pointwise_kernel.numpy()[0, 0],
                "dw2": op.sep2.depthwise_kernel.numpy()[..., 0],
                "pw2": op.sep2.pointwise_kernel.numpy()[0, 0]}
    if name.startswith("dil_conv"):
        return {"dw": op.depthwise.kernel.numpy()[..., 0], "pw": op.pointwise.kernel.numpy()[0, 0]}
    if name == "skip_connect":
        return {"fr1": op.conv1.kernel.numpy()[0, 0], "fr2": op.conv2.kernel.numpy()[0, 0]}
    return {"bn": search}


STRIDED = [p for p in OPS if p != "none"]


@pytest.mark.parametrize("size", [7, 8])
def test_strided_primitives_sample_the_reference_grid(size):
    """Every strided primitive, in evaluation form, search form (the reference MixedEdge's ops)
    and fused fan-out form, equals a numpy computation with PyTorch's symmetric padding.
    C=12 takes the fan-out through both its composed-kernel (3×3) and depthwise (5×5) paths."""
    from kdarts.genotype import CRB_PRIMITIVES
    from kdarts.search.edge import FanOut

    c = 12
    x = np.random.default_rng(size).standard_normal((2, size, size, c)).astype(np.float32)
    for name in STRIDED:
        for affine, search in ((True, False), (False, True)):
            op = make_op(name, c, 2, affine=affine, search=search)
            got = op(x, training=False).numpy()
            want = np_reference_op(name, x, keras_op_params(name, op, search))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name} size {size} search={search}")

    fan = FanOut(c, strides=2, primitives=CRB_PRIMITIVES, num_edges=2)
    for col, name in enumerate(CRB_PRIMITIVES):
        weights = np.zeros((2, len(CRB_PRIMITIVES)), np.float32)
        weights[:, col] = 1.0
        got = fan(x, weights, training=False).numpy()
        for q in range(2):
            params = {key: var.numpy()[q] for key, var in fan._params[name].items()
                      if not isinstance(var, tuple)}
            params.setdefault("bn", True)
            np.testing.assert_allclose(got[q], np_reference_op(name, x, params),
                                       rtol=1e-5, atol=1e-5,
                                       err_msg=f"fan-out {name} size {size} edge {q}")
