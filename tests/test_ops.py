"""Every DARTS primitive (docs/method.md §1) at stride 1 and 2, in search and evaluation form."""

import numpy as np
import pytest
import tensorflow as tf

from kdarts import compat
from kdarts.image.operations import OPS, make_op, pool_3x3
from kdarts.ops import FanInUniform

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


@pytest.mark.parametrize("size", [7, 8])
def test_strided_pool_forms_equal_the_reference(size):
    """Training's padded form and inference's stride-1-then-subsample form (no pad: an int8
    LiteRT model aborted on the lowest-float pad) both equal DARTS's pool, on even and odd
    sizes."""
    x = np.random.default_rng(size).standard_normal((2, size, size, 3)).astype("float32")
    for kind in ("max", "avg"):
        want = np_pool(x, kind, 2)
        for inference in (False, True):
            got = pool_3x3(tf.constant(x), kind, 2, inference=inference).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6,
                                       err_msg=f"{kind}, inference={inference}")


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
    from kdarts.image.edge import FanOut
    from kdarts.image.genotype import CRB_PRIMITIVES

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


# -- initialisers: PyTorch's defaults, U(±1/√fan_in), for every kernel in kdarts ----------


def expected_fan_in(path, shape, kernels):
    """PyTorch's fan-in (in_channels/groups × k × k; in_features) of a kdarts variable."""
    name = path.rsplit("/", 1)[-1]
    if name.endswith(("_dw", "_dw1", "_dw2")):  # fan-out depthwise (edges, k, k, C)
        return shape[1] * shape[2]
    if name.endswith(("_pw", "_pw1", "_pw2", "_fr1", "_fr2")):  # fan-out 1×1 (edges, C, C')
        return shape[1]
    if "depthwise" in path:  # Keras depthwise kernel (k, k, C, 1): groups = C
        return shape[0] * shape[1]
    if name == "bias":  # a dense layer's bias: its kernel's in_features
        return kernels[path[: -len("bias")] + "kernel"][0]
    return int(np.prod(shape[:-1]))  # conv (k, k, in, out), pointwise, dense (in, out)


def check_fan_in_init(model, skip=()):
    """Every kernel within U(±1/√fan_in) and reaching close to the bound when it is large
    (P(max < 0.9·bound) = 0.9^n); BN scale 1, offset 0. Returns the kinds seen."""
    skip = {id(v) for v in skip}
    variables = [v for v in model.trainable_variables if id(v) not in skip]
    kernels = {v.path: tuple(v.shape) for v in variables}
    kinds = set()
    for v in variables:
        w, name = v.numpy(), v.path.rsplit("/", 1)[-1]
        if name in ("gamma", "beta"):
            assert np.all(w == (1.0 if name == "gamma" else 0.0)), v.path
            continue
        bound = 1.0 / np.sqrt(expected_fan_in(v.path, w.shape, kernels))
        assert np.abs(w).max() <= bound * (1 + 1e-6), (v.path, np.abs(w).max(), bound)
        if w.size >= 100:
            assert np.abs(w).max() >= 0.9 * bound, (v.path, np.abs(w).max(), bound)
        kinds.add(name.rsplit("_", 1)[-1] if "_" in name and "kernel" not in name else name)
    return kinds


def test_every_kernel_starts_as_pytorch_initialises_it():
    import keras

    from kdarts.image import EvalNetwork, MixedEdge, SearchNetwork
    from kdarts.image.genotype import PRIMITIVES, Genotype

    keras.utils.set_random_seed(0)
    # the fused search network: stem, preprocessing, fan-outs, classifier
    search = SearchNetwork(10, channels=4, layers=3, steps=2, multiplier=2)
    search.build((None, 8, 8, 3))
    kinds = check_fan_in_init(search, skip=search.arch_variables)
    assert {"kernel", "bias", "dw1", "pw1", "dw2", "pw2", "dw", "pw", "fr1", "fr2"} <= kinds
    # the reference edge's ops (what fused=False uses), FactorizedReduce included
    edge = MixedEdge(8, strides=2, primitives=PRIMITIVES)
    edge(np.zeros((2, 8, 8, 8), np.float32), np.ones(len(PRIMITIVES), np.float32))
    assert {"kernel", "depthwise_kernel", "pointwise_kernel"} <= check_fan_in_init(edge)
    # the evaluation network: every op kind, the auxiliary head, the classifier
    genes = [("sep_conv_5x5", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("max_pool_3x3", 1)]
    genotype = Genotype(normal=genes, normal_concat=[2, 3], reduce=genes, reduce_concat=[2, 3])
    model = EvalNetwork(genotype, num_classes=10, channels=4, layers=3, auxiliary=True)
    model.build((None, 8, 8, 3))
    assert {"kernel", "bias", "depthwise_kernel", "pointwise_kernel"} <= check_fan_in_init(model)
    head = model.auxiliary_head  # its 768-channel conv: a large tensor, so a sharp check
    assert np.abs(head.conv2.kernel.numpy()).max() == pytest.approx(
        1 / np.sqrt(128 * head.kernel_size[0] * head.kernel_size[1]), rel=1e-3)
    config = FanInUniform(fan_in=9, depthwise=True, seed=3).get_config()
    assert FanInUniform.from_config(config).get_config() == config


# -- BatchNorm: PyTorch's moving variance (unbiased), normalisation with the biased one ---


@pytest.mark.parametrize("fused", [False, True], ids=["formula", "fused-kernel"])
def test_batch_norm_moving_variance_is_unbiased(fused):
    import keras

    from kdarts.ops import BatchNormalization
    from kdarts.image.operations import batch_norm

    x = np.random.default_rng(0).standard_normal((4, 3, 3, 5)).astype(np.float32) * 2 + 1
    n = 4 * 3 * 3  # values per channel
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))  # biased
    bn = batch_norm(affine=True)
    assert isinstance(bn, BatchNormalization)
    bn.fused_kernel = fused
    y = bn(x, training=True).numpy()
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + EPS), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * var * n / (n - 1),
                               rtol=1e-5)
    # inference is Keras's own BatchNormalization with the same weights
    plain = keras.layers.BatchNormalization(epsilon=EPS)
    plain.build(x.shape)
    plain.set_weights(bn.get_weights())
    np.testing.assert_allclose(bn(x).numpy(), plain(x).numpy(), rtol=1e-6)
    assert BatchNormalization.from_config(bn.get_config()).momentum == pytest.approx(0.9)

    # the fused fan-out's BN follows the same rule (here: the BN after a shared pool)
    from kdarts.image.edge import FanOut

    fan = FanOut(5, 1, ("max_pool_3x3", "skip_connect"), num_edges=2)
    fan(x, np.ones((2, 2), np.float32), training=True)
    pooled = np_pool(x, "max", 1)
    moving_var = fan._params["max_pool_3x3"]["bn"][1].numpy()[0]
    np.testing.assert_allclose(moving_var, 0.9 + 0.1 * pooled.var(axis=(0, 1, 2)) * n / (n - 1),
                               rtol=1e-5)


@pytest.mark.parametrize("shape", [(4, 3, 3, 5), (12, 5)])
def test_fused_batch_norm_equals_the_formula(shape):
    """The fused kernel's training branch (as the search network compiles it without XLA)
    gives the formula's outputs, gradients (input, scale, offset) and moving statistics."""
    import tensorflow as tf

    from kdarts.image.operations import batch_norm

    rng = np.random.default_rng(1)
    x = tf.constant(rng.standard_normal(shape).astype(np.float32) * 3 + 2)
    upstream = tf.constant(rng.standard_normal(shape).astype(np.float32))
    gamma, beta = rng.standard_normal((2, shape[-1])).astype(np.float32)
    results = []
    for fused in (False, True):
        bn = batch_norm(affine=True)
        bn.build(shape)
        bn.gamma.assign(gamma)
        bn.beta.assign(beta)
        bn.fused_kernel = fused
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = bn(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, bn.gamma, bn.beta])
        results.append([y, *grads, bn.moving_mean, bn.moving_variance])
    names = ("output", "∇x", "∇scale", "∇offset", "moving mean", "moving variance")
    for name, a, b in zip(names, *results):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=2e-5, atol=2e-5, err_msg=name)


def test_models_saved_with_plain_batch_normalization_still_load(tmp_path, monkeypatch):
    """A .keras file written when kdarts built Keras's plain BatchNormalization loads into
    kdarts's BatchNormalization layers, with the same weights and outputs."""
    import keras

    import kdarts.image.model
    import kdarts.image.operations
    from kdarts.image import EvalNetwork
    from kdarts.image.genotype import DARTS_V2
    from kdarts.ops import BN_EPSILON, BN_MOMENTUM, BatchNormalization

    def plain(affine, name=None):
        return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                               center=affine, scale=affine, name=name)

    with monkeypatch.context() as patch:
        patch.setattr(kdarts.image.operations, "batch_norm", plain)
        patch.setattr(kdarts.image.model, "batch_norm", plain)
        old = EvalNetwork(DARTS_V2, num_classes=3, channels=2, layers=3, auxiliary=True)
        old.build((None, 8, 8, 3))
    bns = [layer for layer in compat.sublayers(old)
           if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and not any(isinstance(layer, BatchNormalization) for layer in bns)
    rng = np.random.default_rng(0)
    for layer in bns:
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    old.save(tmp_path / "old.keras")
    loaded = keras.models.load_model(tmp_path / "old.keras")
    assert all(isinstance(layer, BatchNormalization) for layer in compat.sublayers(loaded)
               if isinstance(layer, keras.layers.BatchNormalization))
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), old(x).numpy())
