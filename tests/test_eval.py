"""Tests for kdarts.image: the evaluation network, drop-path, the training recipe.

Networks are tiny (a few channels, 3-5 cells) and each traced one serves
several assertions: tracing dominates the run time on CPU.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from kdarts.image import (
    CoupledWeightDecaySGD,
    DropPath,
    DropPathSchedule,
    EpochCosineDecay,
    EvalNetwork,
    compile_eval_network,
)
from kdarts.image.genotype import DARTS_V1, DARTS_V2, Genotype

# its module fixtures are built once: keep the file on one test worker
pytestmark = pytest.mark.xdist_group("eval")

# -- an independent parameter count, from the PyTorch reference's structure --


def _relu_conv_bn(c_in, c_out):  # 1x1 conv (no bias) + affine BN
    return c_in * c_out + 2 * c_out


def _factorized_reduce(c_in, c_out):  # two 1x1 convs to c_out/2 + affine BN
    return c_in * (c_out // 2) + c_in * (c_out - c_out // 2) + 2 * c_out


def _op_params(name, c, stride):
    if name.startswith("sep_conv"):  # twice depthwise k*k, pointwise, BN
        k = int(name[-1])
        return 2 * (k * k * c + c * c + 2 * c)
    if name.startswith("dil_conv"):  # depthwise k*k (dilated), pointwise, BN
        k = int(name[-1])
        return k * k * c + c * c + 2 * c
    if name == "skip_connect":
        return 0 if stride == 1 else _factorized_reduce(c, c)
    return 0  # pools carry no parameters in the evaluation network


def reference_parameter_count(genotype, c, layers, num_classes, auxiliary=False,
                              aux_kernel=2, in_channels=3, stem_multiplier=3, imagenet=False):
    """NetworkCIFAR's (or with ``imagenet`` NetworkImageNet's) trainable parameters, op by
    op (DARTS model.py / operations.py); BN running statistics are buffers, not counted."""
    if imagenet:
        # stem0: conv3x3 s2 3 -> C//2, BN, ReLU, conv3x3 s2 C//2 -> C, BN;
        # stem1: ReLU, conv3x3 s2 C -> C, BN (all convs without bias)
        half = c // 2
        total = (9 * in_channels * half + 2 * half) + (9 * half * c + 2 * c) + (9 * c * c + 2 * c)
        c_pp, c_p, c_cur, reduction_prev = c, c, c, True  # cell 0: s0 = stem0, s1 = stem1
    else:
        c_stem = stem_multiplier * c
        total = 3 * 3 * in_channels * c_stem + 2 * c_stem  # stem conv (no bias) + BN
        c_pp, c_p, c_cur, reduction_prev = c_stem, c_stem, c, False
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        if reduction:
            c_cur *= 2
        pre0 = _factorized_reduce(c_pp, c_cur) if reduction_prev else _relu_conv_bn(c_pp, c_cur)
        genes = genotype.reduce if reduction else genotype.normal
        total += pre0 + _relu_conv_bn(c_p, c_cur) + sum(
            _op_params(op, c_cur, 2 if reduction and index < 2 else 1) for op, index in genes)
        reduction_prev = reduction
        c_pp, c_p = c_p, len(genotype.normal_concat) * c_cur
        if i == 2 * layers // 3:
            c_aux = c_p
    total += c_p * num_classes + num_classes  # classifier
    if auxiliary:
        # 1x1 conv + BN, 2x2 conv (+ BN: the CIFAR head only; AuxiliaryHeadImageNet's
        # BatchNorm2d(768) is commented out in DARTS's model.py), Linear(768, classes)
        total += (c_aux * 128 + 2 * 128 + 128 * 768 * aux_kernel ** 2
                  + (0 if imagenet else 2 * 768) + 768 * num_classes + num_classes)
    return total


@pytest.mark.slow
def test_parameter_count_matches_darts_reference():
    model = EvalNetwork(DARTS_V2, num_classes=10, channels=36, layers=20, auxiliary=True)
    model.build((None, 32, 32, 3))
    without_aux = reference_parameter_count(DARTS_V2, 36, 20, 10)
    with_aux = reference_parameter_count(DARTS_V2, 36, 20, 10, auxiliary=True)
    assert model.parameter_count() == without_aux
    assert model.parameter_count(include_auxiliary=True) == with_aux
    # the figure DARTS's train.py logs for DARTS_V2 ("param size = 3.349342MB")
    assert without_aux == 3_349_342
    # exactly DARTS's auxiliary head at 32x32 input (8x8 map -> 2x2 -> 1x1)
    assert model.auxiliary_head.pool_size == (5, 5)
    assert model.auxiliary_head.kernel_size == (2, 2)


@pytest.mark.slow
def test_imagenet_parameter_count_matches_darts_reference():  # builds, no forward pass: ~2 s
    """DARTS_V2 as DARTS's ImageNet network: C=48, 14 cells, 1000 classes, 224x224.

    The reference is ``reference_parameter_count(..., imagenet=True)``: DARTS's
    NetworkImageNet (quark0/darts cnn/model.py and operations.py; train_imagenet.py's
    defaults --init_channels 48 --layers 14) counted by hand, layer by layer, the same
    count that reproduces the 3,349,342 DARTS's train.py logs for the CIFAR network. It
    gives 4,718,752 without the auxiliary head (what ``utils.count_parameters_in_MB``
    counts: it skips parameters named "auxiliary"), the 4.7M of the paper's ImageNet
    table. The head adds 768*128 + 2*128 (1x1 conv, BN) + 128*768*2*2 (2x2 conv; its
    BN is commented out in DARTS's code) + 768*1000 + 1000 (Linear) = 1,260,776.
    """
    model = EvalNetwork(DARTS_V2, num_classes=1000, channels=48, layers=14,
                        imagenet_stem=True)
    model.build((None, 224, 224, 3))  # builds the weights; no forward pass
    without_aux = reference_parameter_count(DARTS_V2, 48, 14, 1000, imagenet=True)
    with_aux = reference_parameter_count(DARTS_V2, 48, 14, 1000, auxiliary=True, imagenet=True)
    assert model.parameter_count() == without_aux == 4_718_752
    assert model.parameter_count(include_auxiliary=True) == with_aux == 5_979_528
    assert round(without_aux / 1e6, 1) == 4.7  # the paper's figure
    # the first cell reads the stem0 (H/4) and stem1 (H/8) maps: a FactorizedReduce on s0
    assert model.cells[0].reduction_prev and not model.cells[1].reduction_prev
    assert [i for i, cell in enumerate(model.cells) if cell.reduction] == [4, 9]
    # exactly DARTS's ImageNet head at 224x224: its 7x7 map -> pool 5 stride 2 -> 2x2 -> 1x1
    assert (model.auxiliary_head.pool_size, model.auxiliary_head.kernel_size) == ((5, 5), (2, 2))
    assert model.auxiliary_head.bn2 is None


def test_parameter_count_small_config_and_adaptive_head():
    # 8x8 single-channel input: the head sees 2x2 maps, so pool 2 and a 1x1 conv
    model = EvalNetwork(DARTS_V1, num_classes=7, channels=6, layers=5)
    model.build((None, 8, 8, 1))
    assert model.auxiliary_head.pool_size == (2, 2)
    assert model.auxiliary_head.kernel_size == (1, 1)
    assert model.parameter_count() == reference_parameter_count(
        DARTS_V1, 6, 5, 7, in_channels=1)
    assert model.parameter_count(include_auxiliary=True) == reference_parameter_count(
        DARTS_V1, 6, 5, 7, auxiliary=True, aux_kernel=1, in_channels=1)


# -- forward pass, auxiliary output, drop-path --


@pytest.fixture(scope="module")
def net32():
    model = EvalNetwork(DARTS_V2, num_classes=10, channels=4, layers=5, seed=0)
    model.build((None, 32, 32, 3))
    return model


@pytest.mark.slow  # with its module fixture, net32, which no other test uses
def test_shapes_32x32_and_training_returns_aux(net32):
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    assert tuple(net32(x).shape) == (2, 10)
    assert tuple(net32(x, training=False).shape) == (2, 10)
    logits, aux_logits = net32(x, training=True)
    assert tuple(logits.shape) == (2, 10) and tuple(aux_logits.shape) == (2, 10)
    assert tuple(net32.predict(x, verbose=0).shape) == (2, 10)

    # drop-path never acts in inference, whatever the probability
    reference = np.asarray(net32(x, training=False))
    net32.drop_path_prob.assign(0.9)
    try:
        assert np.array_equal(np.asarray(net32(x, training=False)), reference)
        dropped, _ = net32(x, training=True)
    finally:
        net32.drop_path_prob.assign(0.0)
    kept, _ = net32(x, training=True)
    kept_again, _ = net32(x, training=True)
    # prob 0 in training: deterministic; prob 0.9: different
    assert np.array_equal(np.asarray(kept), np.asarray(kept_again))
    assert not np.allclose(np.asarray(dropped), np.asarray(kept))


def test_shapes_8x8_digits_without_aux():
    model = EvalNetwork(DARTS_V1, num_classes=10, channels=4, layers=3, auxiliary=False)
    x = np.zeros((3, 8, 8, 1), "float32")
    assert tuple(model(x).shape) == (3, 10)
    # no auxiliary head: training also returns the logits alone
    assert tuple(model(x, training=True).shape) == (3, 10)


def test_drop_path_layer():
    x = np.ones((64, 2, 2, 3), "float32")
    drop = DropPath(seed=3)
    assert np.array_equal(np.asarray(drop(x, rate=0.0, training=True)), x)
    assert np.array_equal(np.asarray(drop(x, rate=0.9, training=False)), x)
    y = np.asarray(drop(x, rate=0.5, training=True))
    per_sample = y.reshape(64, -1)
    # each sample is dropped whole (0) or kept and rescaled by 1 / keep (2)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    # a seed makes the sequence of masks repeatable; each call draws anew
    again = DropPath(seed=3)
    again(x, rate=0.0, training=True)  # every training call draws, even at rate 0
    assert np.array_equal(np.asarray(again(x, rate=0.5, training=True)), y)
    assert not np.array_equal(np.asarray(again(x, rate=0.5, training=True)), y)
    assert DropPath.from_config(drop.get_config()).seed == 3


def test_drop_path_schedule_ramps_linearly():
    schedule = DropPathSchedule(0.2, epochs=10)
    assert [schedule.value(e) for e in (0, 5, 9)] == pytest.approx([0.0, 0.1, 0.18])

    class Holder(keras.Model):  # anything with the variable will do
        def __init__(self):
            super().__init__()
            self.drop_path_prob = self.add_weight(shape=(), initializer="zeros",
                                                  trainable=False, name="drop_path_prob")

    holder = Holder()
    schedule.set_model(holder)
    schedule.on_epoch_begin(5)
    assert float(holder.drop_path_prob.numpy()) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="max_prob"):
        DropPathSchedule(1.5, epochs=10)


# -- the training recipe --


def torch_cosine_per_epoch(lr, eta_min, epochs):
    """The lr of each epoch in DARTS's train.py: CosineAnnealingLR(T_max=epochs) with
    ``scheduler.step()`` called at the start of every epoch (PyTorch's closed form;
    the scheduler's counter is 0 after construction)."""
    last_epoch, lrs = 0, []
    for _ in range(epochs):
        last_epoch += 1  # scheduler.step() at the top of the epoch loop
        lrs.append(eta_min + (lr - eta_min) * (1 + math.cos(math.pi * last_epoch / epochs)) / 2)
    return lrs


def test_epoch_cosine_decay_follows_the_reference_call_order():
    schedule = EpochCosineDecay(0.025, epochs=4, steps_per_epoch=10)
    reference = torch_cosine_per_epoch(0.025, 0.0, 4)
    lr = [[float(schedule(step)) for step in range(10 * e, 10 * e + 10)] for e in range(4)]
    for epoch, values in enumerate(lr):  # constant within an epoch, η(e+1) during epoch e
        assert values == pytest.approx([reference[epoch]] * 10, rel=1e-6, abs=1e-9)
    assert lr[-1][-1] == pytest.approx(0.0, abs=1e-9)  # the last epoch trains at η_min = 0
    assert float(schedule(1000)) == pytest.approx(0.0, abs=1e-9)  # past the end: η_min
    # the search's figures: 0.025 → 0.001 over 50 epochs
    search = EpochCosineDecay(0.025, epochs=50, steps_per_epoch=1, minimum=0.001)
    values = [float(search(e)) for e in range(50)]
    assert values == pytest.approx(torch_cosine_per_epoch(0.025, 0.001, 50), rel=1e-5)
    assert values[0] == pytest.approx(0.024976, abs=1e-6) and values[-1] == pytest.approx(0.001)
    restored = EpochCosineDecay.from_config(schedule.get_config())
    assert float(restored(25)) == pytest.approx(reference[2])


@pytest.mark.parametrize("nesterov", [False, True])
def test_coupled_weight_decay_sgd_matches_pytorch_semantics(nesterov):
    """clip_grad_norm(1) then torch.optim.SGD(lr, momentum, weight_decay, nesterov), by
    hand."""
    lr, momentum, l2, clip = 0.1, 0.9, 0.01, 1.0
    w0 = np.array([1.0, -2.0, 0.5], "float32")
    grads = [np.array([3.0, 4.0, 0.0], "float32"), np.array([0.1, -0.2, 0.3], "float32")]
    var = keras.Variable(w0.copy())
    opt = CoupledWeightDecaySGD(lr, momentum=momentum, l2=l2, global_clipnorm=clip,
                                nesterov=nesterov)
    w, buf = w0.astype("float64"), None
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
        g = g * min(1.0, clip / (np.linalg.norm(g) + 1e-12))  # clip first ...
        d = g + l2 * w  # ... then L2 added to the gradient ...
        buf = d if buf is None else momentum * buf + d  # ... then momentum
        w = w - lr * (d + momentum * buf if nesterov else buf)
        np.testing.assert_allclose(np.asarray(var), w, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="l2"):
        CoupledWeightDecaySGD(0.1, weight_decay=1e-4)


class _DropPathProbe(keras.callbacks.Callback):
    """The drop-path probability each epoch trains with (read at its first batch)."""

    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.values.append(float(self.model.drop_path_prob.numpy()))


def test_compile_eval_network_leaves_the_ramp_to_the_model():
    model = EvalNetwork(DARTS_V2, num_classes=3, channels=2, layers=3, drop_path_prob=0.2)
    assert float(model.drop_path_prob.numpy()) == 0.0  # the ramp starts at 0, not at 0.2
    assert compile_eval_network(model, epochs=4, steps_per_epoch=1) == []
    (override,) = compile_eval_network(model, epochs=4, steps_per_epoch=1, drop_path_prob=0.3)
    assert isinstance(override, DropPathSchedule) and override.value(2) == pytest.approx(0.15)


@pytest.mark.slow
def test_fit_with_aux_loss_and_keras_round_trip(tmp_path):
    model = EvalNetwork(DARTS_V2, num_classes=10, channels=4, layers=3, seed=1,
                        drop_path_prob=0.2)
    model.build((None, 8, 8, 3))
    callbacks = compile_eval_network(model, epochs=2, steps_per_epoch=1)  # README usage
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 10, size=4)

    # the loss is the main cross-entropy + 0.4 x the auxiliary one
    logits, aux_logits = model(x, training=True)
    total = float(model.compute_loss(x=x, y=y, y_pred=(logits, aux_logits)))
    main = float(model.compute_loss(x=x, y=y, y_pred=logits))

    def cross_entropy(z):
        z = np.asarray(z, "float64")
        log_softmax = z - z.max(1, keepdims=True)
        log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
        return -log_softmax[np.arange(len(y)), y].mean()

    assert main == pytest.approx(cross_entropy(logits), rel=1e-5)
    assert total == pytest.approx(main + 0.4 * cross_entropy(aux_logits), rel=1e-5)
    assert total > main

    probe = _DropPathProbe()
    history = model.fit(x, y, batch_size=4, epochs=2, callbacks=callbacks + [probe],
                        verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert "accuracy" in history.history
    assert int(model.optimizer.iterations.numpy()) == 2
    assert model.train_function.lean_graph_optimization  # the step's graph settings
    # the model ramps drop-path by itself, from 0: 0.2 * epoch / 2 at each epoch start
    assert probe.values == pytest.approx([0.0, 0.1])
    # a plain fit resumed at epoch 2 of 4 continues the ramp: 0.2 * 2 / 4, 0.2 * 3 / 4
    probe.values.clear()
    model.fit(x, y, batch_size=4, epochs=4, initial_epoch=2, callbacks=[probe], verbose=0)
    assert probe.values == pytest.approx([0.1, 0.15])
    assert isinstance(model.evaluate(x, y, verbose=0), list)

    # .keras round trip: same inference outputs, drop-path state, genotype, optimizer
    model.drop_path_prob.assign(0.123)
    path = tmp_path / "eval.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, EvalNetwork)
    assert loaded.genotype == DARTS_V2
    assert loaded.get_config()["genotype"] == DARTS_V2.to_dict()
    assert float(loaded.drop_path_prob.numpy()) == pytest.approx(0.123)
    assert isinstance(loaded.optimizer, CoupledWeightDecaySGD)
    assert int(loaded.optimizer.iterations.numpy()) == 4
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)),
                                  np.asarray(model(x, training=False)))


@pytest.mark.slow
def test_imagenet_stem_tiny_fit_and_round_trip(tmp_path):
    """C=4, 5 cells at 32x32 (the least size): stems 32 -> 8 (s0) -> 4 (s1), cells 4 -> 2 -> 1."""
    model = EvalNetwork(DARTS_V2, num_classes=5, channels=4, layers=5, seed=2,
                        imagenet_stem=True, mean=[0.5] * 3, std=[0.25] * 3)
    model.build((None, 32, 32, 3))
    assert [tuple(v.shape) for v in model.stem.trainable_weights[::3]] == [
        (3, 3, 3, 2), (3, 3, 2, 4), (3, 3, 4, 4)]  # the three stem kernels
    assert model.parameter_count() == reference_parameter_count(DARTS_V2, 4, 5, 5, imagenet=True)
    # the head sees a 1x1 map: pool 1, conv 1x1
    assert model.parameter_count(include_auxiliary=True) == reference_parameter_count(
        DARTS_V2, 4, 5, 5, auxiliary=True, aux_kernel=1, imagenet=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 5, size=4)
    logits, aux_logits = model(x, training=True)
    assert tuple(logits.shape) == tuple(aux_logits.shape) == (4, 5)
    s0, s1 = model.stem(x)
    assert tuple(s0.shape) == (4, 8, 8, 4) and tuple(s1.shape) == (4, 4, 4, 4)
    compile_eval_network(model, epochs=1, steps_per_epoch=1)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()

    path = tmp_path / "imagenet.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.imagenet_stem and loaded.get_config()["imagenet_stem"] is True
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)),
                                  np.asarray(model(x, training=False)))
    # (exported to ONNX by tests/test_cli.py::test_imagenet_stem_train_and_export)
    with pytest.raises(ValueError, match="at least 32x32"):
        EvalNetwork(DARTS_V2, num_classes=5, channels=4, layers=5,
                    imagenet_stem=True).build((None, 28, 28, 1))


def test_imagenet_stem_is_off_by_default():
    model = EvalNetwork(DARTS_V1, num_classes=3, channels=2, layers=3)
    assert model.get_config()["imagenet_stem"] is False and not hasattr(model, "stem")
    # configs saved before the option existed load as the CIFAR network
    config = {k: v for k, v in model.get_config().items() if k != "imagenet_stem"}
    assert EvalNetwork.from_config(config).imagenet_stem is False
    with pytest.raises(ValueError, match="channels >= 2"):
        EvalNetwork(DARTS_V1, num_classes=3, channels=1, layers=3, imagenet_stem=True)


def test_genotype_arguments_and_validation():
    from_dict = EvalNetwork(DARTS_V1.to_dict(), num_classes=3, channels=2, layers=3)
    from_name = EvalNetwork("DARTS_V1", num_classes=3, channels=2, layers=3)
    assert from_dict.genotype == from_name.genotype == DARTS_V1
    assert isinstance(from_dict.genotype, Genotype)
    with pytest.raises(ValueError, match="drop_path_prob"):
        EvalNetwork(DARTS_V2, num_classes=10, drop_path_prob=1.0)
    with pytest.raises(TypeError, match="EvalNetwork"):
        compile_eval_network(keras.Sequential([keras.layers.Dense(2)]), 1, 1)
