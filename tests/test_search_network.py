"""The search network's structure: DARTS's, exactly, in both edge implementations."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kdarts
from kdarts.image import FanOut, MixedEdge, SearchCell, SearchNetwork
from kdarts.image.edge import normalize
from kdarts.image.genotype import CRB_PRIMITIVES, PRIMITIVES
from kdarts.image.search_cell import fanout_rows
from kdarts.search import count_parameters

# its module fixtures are built once: keep the file on one test worker
pytestmark = pytest.mark.xdist_group("search_network")



def darts_search_param_count(c=16, layers=8, num_classes=10, steps=4, multiplier=4,
                             stem_multiplier=3, primitives=PRIMITIVES):
    """Trainable parameters of DARTS's model_search.Network, op by op (docs/method.md §1)."""
    def edge(ch, stride):
        n = 0
        for p in primitives:
            if p.startswith("sep_conv"):
                k = int(p[-1])
                n += 2 * (k * k * ch + ch * ch)  # twice depthwise + pointwise; BN affine=False
            elif p.startswith("dil_conv"):
                k = int(p[-1])
                n += k * k * ch + ch * ch
            elif p == "skip_connect" and stride == 2:
                n += 2 * ch * (ch // 2)  # FactorizedReduce
        return n

    c_stem = stem_multiplier * c
    total = 3 * 3 * 3 * c_stem + 2 * c_stem  # stem conv + affine BN (nn.BatchNorm2d default)
    c_pp, c_p, c_curr, red_prev = c_stem, c_stem, c, False
    for i in range(layers):
        red = i in (layers // 3, 2 * layers // 3)
        if red:
            c_curr *= 2
        total += c_pp * c_curr + c_p * c_curr  # preprocess0 (ReLUConvBN or FR) + preprocess1
        for node in range(steps):
            for src in range(node + 2):
                total += edge(c_curr, 2 if red and src < 2 else 1)
        c_pp, c_p, red_prev = c_p, multiplier * c_curr, red
    return total + c_p * num_classes + num_classes


@pytest.fixture(scope="module")
def reference_size_network():
    model = SearchNetwork(10)  # C=16, 8 layers: DARTS's search network
    model.build((None, 32, 32, 3))
    return model


def test_parameter_count_is_darts(reference_size_network):
    model = reference_size_network
    n = count_parameters(model, exclude=model.arch_variables)
    assert n == darts_search_param_count()
    assert n == 1_930_618  # DARTS's train_search log: "param size = 1.930618MB"
    assert [tuple(a.shape) for a in model.arch_variables] == [(14, 8), (14, 8)]
    assert len(model.weight_variables) + 2 == len(model.trainable_variables)


def test_structure_channels_and_strides(reference_size_network):
    model = reference_size_network
    reductions = [cell.reduction for cell in model.cells]
    assert reductions == [False, False, True, False, False, True, False, False]
    assert [cell.channels for cell in model.cells] == [16, 16, 32, 32, 32, 64, 64, 64]
    assert [cell.reduction_prev for cell in model.cells][3] is True
    # only the stem BN has scale/offset; every other BN in the search network is affine=False
    affine = [v.path for v in model.weight_variables if "gamma" in v.path or "beta" in v.path]
    assert affine and all("stem" in p for p in affine)
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    assert model(x).shape == (2, 10)


def test_crb_network_defaults():
    model = SearchNetwork(10, channels=4, layers=3, activation="crb")
    model.build((None, 8, 8, 3))
    assert model.primitives == CRB_PRIMITIVES
    alpha = model.alpha_normal.numpy()
    assert alpha.shape == (14, 7)
    assert np.all(np.abs(alpha - 1 / 7) < 1e-3)  # 1/num_ops + 1e-4·N(0,1)
    assert all(cell.node_bn for cell in model.cells)
    assert count_parameters(model, model.arch_variables) == darts_search_param_count(
        c=4, layers=3, primitives=CRB_PRIMITIVES)
    with pytest.raises(ValueError, match=r"unknown primitive\(s\) 'conv_7x7'; valid primitives: none, max_pool_3x3"):
        SearchNetwork(10, primitives=["conv_7x7", "skip_connect"])
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        SearchNetwork(10, activation="relu")


def _copy_edges_into_fanouts(ref: SearchCell, fused: SearchCell):
    """Give the fused cell exactly the reference cell's weights."""
    for dst, src in ((fused.preprocess0, ref.preprocess0), (fused.preprocess1, ref.preprocess1)):
        for a, b in zip(dst.weights, src.weights):
            a.assign(b)
    for source, fan in enumerate(fused.fanouts):
        for q, node in enumerate(range(max(0, source - 1), fused.steps)):
            edge = ref.edges[kdarts.image.genotype.edge_index(node, source)]
            for op_name, op in zip(edge.primitives, edge.candidate_ops):
                p = fan._params[op_name]
                if op_name.startswith("sep_conv"):
                    pairs = [("dw1", op.sep1.depthwise_kernel[..., 0]),
                             ("pw1", op.sep1.pointwise_kernel[0, 0]),
                             ("dw2", op.sep2.depthwise_kernel[..., 0]),
                             ("pw2", op.sep2.pointwise_kernel[0, 0])]
                elif op_name.startswith("dil_conv"):
                    pairs = [("dw", op.depthwise.kernel[..., 0]), ("pw", op.pointwise.kernel[0, 0])]
                elif "fr1" in p:
                    pairs = [("fr1", op.conv1.kernel[0, 0]), ("fr2", op.conv2.kernel[0, 0])]
                else:
                    pairs = []
                for key, value in pairs:
                    var = p[key]
                    var.assign(tf.tensor_scatter_nd_update(var, [[q]], value[None]))


# C=20: 3×3 kernels compose into dense ones (180 taps), 5×5 stay depthwise (500 > 400)
@pytest.mark.parametrize("reduction,activation,channels,skip", [
    (False, "softmax", 4, False), (True, "crb", 4, True),
    (True, "crb", 20, False),
    (False, "crb", 4, "kept"), pytest.param(True, "crb", 20, "kept", marks=pytest.mark.slow)])
def test_fused_cell_equals_reference_cell(reduction, activation, channels, skip):
    """FanOut computes exactly DARTS's MixedEdges, pruned ops included, train and inference,
    whether pruned ops run with zero kernels, only unpruned edges reach the kernels
    (``skip``), or the edges of a step traced for an earlier mask do (``"kept"``: the
    edges pruned since with zero kernels, those pruned before not at all)."""
    # Keras's initialisers draw from the process's seed generator, not TF's: without this
    # the weights (and the float32 rounding compared below) hung on the tests before
    keras.utils.set_random_seed(1)
    primitives = PRIMITIVES if activation == "softmax" else CRB_PRIMITIVES
    kwargs = dict(channels=channels, reduction=reduction, reduction_prev=reduction,
                  primitives=primitives, node_bn=activation == "crb")
    ref = SearchCell(fused=False, **kwargs)
    fused = SearchCell(fused=True, **kwargs)
    rng = np.random.default_rng(0)
    # after a reduction, s0 (two cells back) is twice s1's size and is FactorizedReduce'd
    s0 = rng.standard_normal((3, 8, 8, 6)).astype(np.float32)
    s1 = rng.standard_normal((3, 4, 4, 6) if reduction else (3, 8, 8, 6)).astype(np.float32)
    weights = tf.constant(rng.random((14, len(primitives))), tf.float32)
    active = None
    if activation == "crb":
        active_np = rng.random((14, len(primitives))) > 0.4
        active_np[:, primitives.index("max_pool_3x3")] = False  # a fully pruned shared op
        active_np[:, primitives.index("skip_connect")] = False  # identity and FactorizedReduce
        active_np[3] = False  # a fully pruned edge
        active = tf.constant(active_np)
        weights = weights * tf.cast(active, tf.float32)
    ref(s0, s1, weights, active, training=False)
    fused(s0, s1, weights, active, training=False)
    _copy_edges_into_fanouts(ref, fused)
    for source, fan in enumerate(fused.fanouts):
        fan.skip_pruned = skip is True
        if skip == "kept":  # traced when fewer ops were pruned: a superset of the active ones
            traced = active_np | (rng.random(active_np.shape) > 0.7)
            rows = fanout_rows(source, fused.steps)
            fan.kept = tuple(tuple(q for q, r in enumerate(rows) if traced[r, col])
                             for col in range(len(primitives)))
    upstream = None
    for training in (True, True, False):  # two training calls move the BN statistics
        grads = []
        for cell in (ref, fused):
            inputs = [tf.constant(s0), tf.constant(s1), weights]
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                out = cell(*inputs[:2], inputs[2], active, training=training)
                if upstream is None:
                    upstream = tf.constant(rng.standard_normal(out.shape), tf.float32)
                loss = tf.reduce_sum(out * upstream)
            grads.append([out] + [tf.convert_to_tensor(g) for g in tape.gradient(loss, inputs)])
        # outputs, then ∂/∂s0, ∂/∂s1 and ∂/∂act(α): what the weight and α steps use.
        # ∂/∂act(α) only counts at unpruned ops: act(α) = clip(α)·mask stops the rest.
        keep = 1.0 if active is None else tf.cast(active, tf.float32)
        grads = [g[:3] + [tf.convert_to_tensor(g[3]) * keep] for g in grads]
        for a, b in zip(*grads):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    a = grads[0][0].numpy()
    expected_hw = 2 if reduction else 8
    assert a.shape == (3, expected_hw, expected_hw, 4 * channels)


def test_normalize_gradient_is_batch_norms():
    """The fan-out BN (fused kernels, or the two-pass formula XLA gets) equals autodiff of
    the plain formula: normalised with the biased variance, the unbiased one returned for
    the moving average. Both keep the variance exact when the mean dwarfs the spread,
    where E[y²] − E[y]² (XLA's own fused BN) loses it."""
    rng = np.random.default_rng(3)
    y = tf.constant(rng.standard_normal((50, 6)) * 3 + 1, tf.float32)
    upstream = tf.constant(rng.standard_normal((50, 6)), tf.float32)

    def plain(y):
        mean, var = tf.nn.moments(y, axes=[0])
        return (y - mean) / tf.sqrt(var + kdarts.ops.BN_EPSILON), mean, var * 50 / 49

    two_pass = lambda y: normalize(y, fused=False)  # noqa: E731
    results = []
    for fn in (plain, normalize, two_pass):
        with tf.GradientTape() as tape:
            tape.watch(y)
            out, mean, var = fn(y)
            loss = tf.reduce_sum(out * upstream)
        results.append([out, mean, var, tape.gradient(loss, y)])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-5)
    far = rng.standard_normal((4096, 4)) + 100.0
    exact = far.var(axis=0, ddof=1)
    for fn in (normalize, two_pass):
        np.testing.assert_allclose(fn(tf.constant(far, tf.float32))[2].numpy(), exact,
                                   rtol=1e-4)


def _poison(var):
    var.assign(tf.fill(var.shape, np.nan))


def test_pruned_op_never_reaches_the_output():
    """NaN weights in a pruned op leave the output finite: a select on its kernels, not a
    product (NaN·0 is NaN), drops it (with ``skip_pruned`` it runs on one edge, see
    below)."""
    x = np.random.default_rng(0).random((2, 8, 8, 4)).astype(np.float32)
    fan = FanOut(4, 1, CRB_PRIMITIVES, num_edges=3)
    col = CRB_PRIMITIVES.index("sep_conv_5x5")
    weights = tf.fill((3, 7), 0.5)
    fan(x, weights, tf.ones((3, 7), tf.bool), training=True)
    for var in fan._params["sep_conv_5x5"].values():
        if not isinstance(var, tuple):
            _poison(var)
    all_active = np.ones((3, 7), bool)
    assert np.isnan(fan(x, weights, tf.constant(all_active), training=True).numpy()).any()
    pruned = all_active.copy()
    pruned[:, col] = False
    w = weights * tf.cast(pruned, tf.float32)
    for skip in (False, True):  # zero kernels on every edge, or on the one it runs on
        fan.skip_pruned = skip
        assert np.isfinite(fan(x, w, tf.constant(pruned), training=True).numpy()).all()
    fan.skip_pruned = False
    for kept in ((0, 2), ()):  # traced before it was pruned on edges 0 and 2, or after
        fan.kept = tuple(kept if c == col else (0, 1, 2) for c in range(7))
        assert np.isfinite(fan(x, w, tf.constant(pruned), training=True).numpy()).all()
    fan.kept = None
    # the reference edge skips it too (behind a tf.cond)
    edge = MixedEdge(4, 1, CRB_PRIMITIVES)
    edge(x, weights[0], training=True)
    for v in edge.candidate_ops[col].trainable_weights:
        _poison(v)
    assert np.isfinite(edge(x, w[0], tf.constant(pruned[0]), training=True).numpy()).all()


def _record_sep_conv_edges(fan, seen: list, static_edges: int | None = None) -> None:
    """Wrap ``fan``'s sep_conv so each run appends the edge indices it ran on to ``seen``
    (at run time, through a stateful numpy_function); with ``static_edges`` it also
    asserts, when traced, that the indices have that static length."""
    original = fan._sep_conv

    def spy(x, p, idx, training, spatial, alive, scale=None):
        if static_edges is not None:
            assert idx.shape == (static_edges,)

        def record(i):
            seen.append(i.tolist())
            return np.int32(0)

        token = tf.numpy_function(record, [idx], tf.int32, stateful=True)
        with tf.control_dependencies([token]):
            return original(tf.identity(x), p, idx, training, spatial, alive, scale)

    fan._sep_conv = spy


def _sep_conv_variables(fan) -> tuple[list, list]:
    """``(kernels, stats)`` of ``fan``'s sep_conv: its kernels and its BN statistics
    (each (edges, C), a row per edge)."""
    params = fan._params["sep_conv_3x3"]
    kernels = [v for v in params.values() if not isinstance(v, tuple)]
    stats = [v for pair in params.values() if isinstance(pair, tuple) for v in pair]
    return kernels, stats


def _traced_run_with_gradients(fan, x, variables: list):
    """A ``tf.function`` of the alive mask ``active`` (edges, ops) → ``(out, grads)``: one
    training pass of ``fan`` on ``x`` (weights ``active``) and the gradients of Σout² with
    respect to ``[x] + variables``."""

    @tf.function
    def run(active):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = fan(x, tf.cast(active, tf.float32), active, training=True)
            loss = tf.reduce_sum(out * out)
        return out, tape.gradient(loss, [x] + variables)

    return run


@pytest.mark.parametrize("skip", [False, True], ids=["zero-kernels", "skip-pruned"])
def test_pruned_edges_stay_out_of_kernels_and_statistics(skip):
    """In one traced function a pruned edge's sep_conv kernels get no gradient and its BN
    statistics rows stay, as in the reference (whose pruned ops never run); outputs and
    gradients stay finite. With ``skip_pruned`` the kernels receive exactly the edges that
    keep the op, and edge 0 alone for an op pruned on every edge (oneDNN, TensorFlow's
    kernels on Intel CPUs, refuses zero-size filters)."""
    fan = FanOut(4, 1, ("skip_connect", "sep_conv_3x3"), num_edges=3)
    fan.skip_pruned = skip
    x = tf.random.normal((2, 8, 8, 4))
    fan(x, tf.ones((3, 2)), tf.ones((3, 2), tf.bool), training=True)
    seen = []  # the edge indices sep_conv ran on, recorded at run time
    if skip:
        _record_sep_conv_edges(fan, seen)
    kernels, stats = _sep_conv_variables(fan)
    run = _traced_run_with_gradients(fan, x, kernels)

    for keep in ([True, False, True], [False, False, False], [True, True, True]):
        seen.clear()
        before = [v.numpy() for v in stats]
        out, grads = run(tf.constant([[True, k] for k in keep]))
        if skip:
            assert seen == [[i for i, k in enumerate(keep) if k] or [0]]
        for b, v in zip(before, stats):  # (edges, C): a row per edge
            moved = np.any(b != v.numpy(), axis=1)
            assert moved.tolist() == keep
        for g in grads[1:]:
            rows = np.abs(tf.convert_to_tensor(g).numpy()).reshape(3, -1).max(axis=1)
            assert (rows > 0).tolist() == keep
        assert np.isfinite(out.numpy()).all()
        assert all(np.isfinite(tf.convert_to_tensor(g).numpy()).all() for g in grads)
    assert run.experimental_get_tracing_count() == 1  # pruning changes data, not the graph


def test_kept_edges_are_the_only_ones_computed():
    """A fan-out traced for the mask of an earlier step (``kept``): its conv op runs on
    exactly those edges, gathered by constant indices (static shapes, one trace), those
    pruned since with zero kernels and their statistics rows kept; an op pruned on every
    edge then is not computed at all (no gradient)."""
    fan = FanOut(4, 1, ("skip_connect", "sep_conv_3x3", "dil_conv_3x3"), num_edges=3)
    x = tf.random.normal((2, 8, 8, 4))
    fan(x, tf.ones((3, 3)), tf.ones((3, 3), tf.bool), training=True)
    fan.kept = ((0, 1, 2), (0, 2), ())  # the identity everywhere, sep_conv on 0 and 2, no dil
    seen = []
    _record_sep_conv_edges(fan, seen, static_edges=2)  # static: XLA can compile it
    kernels, stats = _sep_conv_variables(fan)
    dil = [v for v in fan._params["dil_conv_3x3"].values() if not isinstance(v, tuple)]
    run = _traced_run_with_gradients(fan, x, kernels + dil)

    for keep in ([True, False, True], [False, False, True], [False, False, False]):
        seen.clear()
        before = [v.numpy() for v in stats]
        out, grads = run(tf.constant([[True, k, False] for k in keep]))
        assert seen == [[0, 2]]
        for b, v in zip(before, stats):
            assert np.any(b != v.numpy(), axis=1).tolist() == keep
        for g in grads[1:1 + len(kernels)]:
            rows = np.abs(tf.convert_to_tensor(g).numpy()).reshape(3, -1).max(axis=1)
            assert (rows > 0).tolist() == keep
        assert all(g is None for g in grads[1 + len(kernels):])  # never computed
        assert np.isfinite(out.numpy()).all()
    assert run.experimental_get_tracing_count() == 1
    fan.kept = None


def test_keras_round_trip(tmp_path):
    model = SearchNetwork(10, channels=4, layers=3, activation="crb")
    model.build((None, 8, 8, 3))
    mask = np.ones((14, 7), np.float32)
    mask[0, 2] = mask[5, 6] = 0.0
    model.mask_normal.assign(mask)
    model.alpha_normal.assign(model.alpha_normal.numpy() * mask)
    x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    expected = model(x).numpy()
    path = tmp_path / "search.keras"
    model.save(path)
    import keras

    loaded = keras.models.load_model(path)
    assert isinstance(loaded, SearchNetwork) and loaded.activation == "crb"
    np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(loaded.mask_normal.numpy(), mask)
    np.testing.assert_array_equal(loaded.alpha_normal.numpy(), model.alpha_normal.numpy())
    assert loaded.genotype() == model.genotype()


def test_fanout_rows_cover_every_edge_once():
    rows = sorted(r for s in range(5) for r in fanout_rows(s, 4))
    assert rows == list(range(14))
