"""The search's rules as pure functions, checked against docs/method.md §2, §5 and §6."""

import numpy as np
import pytest
import tensorflow as tf

from kdarts.image.genotype import CRB_PRIMITIVES, PRIMITIVES, discretize, num_edges
from kdarts.search.activations import activate, prune
from kdarts.search.regularizers import (
    ADMM,
    Proximity,
    admm_update,
    admm_update_reference,
    discrete_onehot,
    get_regularizer,
    l2,
)
from kdarts.search.schedules import (
    DynamicSchedule,
    FixedSchedule,
    dynamic_split_fraction,
    get_schedule,
    update_fi_ewma,
)


def run_dynamic(schedule, fis):
    """Drive the schedule over a FI sequence as train_step does; return decisions, thresholds."""
    threshold, ewma, took, thresholds = schedule.initial_threshold, 0.0, [], []
    for step, fi in enumerate(fis, start=1):
        decision = bool(schedule.decide(step, ewma, threshold))
        threshold = float(schedule.next_threshold(threshold, decision))
        ewma = float(update_fi_ewma(ewma, fi, step == 1, schedule.ewma))
        took.append(decision)
        thresholds.append(threshold)
    return took, thresholds


def test_dynamic_schedule_decisions_and_threshold():
    s = DynamicSchedule(every=10, multiplier=1.05, ewma=0.2, initial_threshold=1.0)
    took, thresholds = run_dynamic(s, [0.5] * 9)
    # step 1 has no EWMA yet; 0.5 < 1.05 and < 1.05^-9; then the threshold regrows by 1.05
    # per step until it passes 0.5 again at step 9 (1.05^-14 = 0.505)
    assert took == [False, True, True, False, False, False, False, False, True]
    expected = [1.05, 1.05 ** -9, 1.05 ** -19, 1.05 ** -18, 1.05 ** -17, 1.05 ** -16,
                1.05 ** -15, 1.05 ** -14, 1.05 ** -24]
    np.testing.assert_allclose(thresholds, expected, rtol=1e-5)


def test_dynamic_schedule_waits_for_settled_weights():
    s = DynamicSchedule(every=10)
    took, _ = run_dynamic(s, [100.0] * 20 + [0.01] * 30)
    assert not any(took[:20])  # FI far above the threshold: no α step
    # then the EWMA (≈100·0.8^n) must fall under the growing threshold (1.05^(20+n)):
    # after 14 low-FI steps, 100·0.8^14 ≈ 4.4 < 1.05^34 ≈ 5.3: the weights have settled
    assert took.index(True) == 20 + 14
    # on a stationary FI the long-run rate approaches one α step per `every` steps
    took, _ = run_dynamic(s, [0.3] * 2000)
    assert abs(sum(took) / 2000 - 1 / 11) < 0.01


def test_fi_ewma_rule():
    assert float(update_fi_ewma(0.0, 4.0, True, 0.2)) == 4.0
    assert float(update_fi_ewma(4.0, 2.0, False, 0.2)) == pytest.approx(0.2 * 2 + 0.8 * 4)


def test_fixed_schedule_and_split():
    s = FixedSchedule(every=3)
    assert [bool(s.decide(step)) for step in range(1, 10)] == [
        False, False, True, False, False, True, False, False, True]
    assert all(bool(FixedSchedule(1).decide(k)) for k in range(1, 5))
    assert dynamic_split_fraction(10) == pytest.approx(1 / 11)
    assert get_schedule({"name": "dynamic", "every": 4}) == DynamicSchedule(every=4)
    with pytest.raises(ValueError, match="unknown schedule 'weekly'"):
        get_schedule("weekly")
    with pytest.raises(ValueError, match="every must be >= 1"):
        FixedSchedule(0)


def test_admm_update_on_small_matrices():
    prims = ["max_pool_3x3", "skip_connect", "sep_conv_3x3"]
    act = np.array([[0.2, 0.5, 0.1],   # node 0 ← 0
                    [0.6, 0.3, 0.0],   # node 0 ← 1
                    [0.1, 0.1, 0.2],   # node 1 ← 0
                    [0.0, 0.0, 0.0],   # node 1 ← 1 (fully pruned)
                    [0.4, 0.3, 0.3]], np.float32)  # node 1 ← 2
    u = np.zeros_like(act)
    u[2, 2] = 0.3  # the dual pushes edge (1←0) up: 0.5 beats edge (1←2)'s 0.4
    mask = np.ones_like(act)
    mask[1, 2] = mask[3] = 0.0
    z, u_new = (t.numpy() for t in admm_update(act, np.zeros_like(act), u, mask, prims, steps=2))
    z_expected = np.zeros_like(act)
    z_expected[0, 1] = z_expected[1, 0] = z_expected[2, 2] = z_expected[4, 0] = 1.0
    np.testing.assert_array_equal(z, z_expected)
    np.testing.assert_allclose(u_new, (u + act - z_expected) * mask, atol=1e-7)
    assert u_new[3].sum() == 0 and u_new[1, 2] == 0  # masked entries stay 0
    # γ < 1 decays the old dual
    _, u_decay = admm_update(act, z, u, mask, prims, steps=2, dual_decay=0.5)
    assert float(u_decay[2, 2]) == pytest.approx((0.5 * 0.3 + 0.2 - 1.0))


def test_admm_reference_update_on_small_matrices():
    """The authors' rules: Z = D(clip(α + U, 0, 1)) unmasked, U from raw α. Worked by hand."""
    prims = ["max_pool_3x3", "skip_connect", "sep_conv_3x3"]
    alpha = np.array([[0.3, 1.2, 0.5],    # node 0 ← 0: raw α past 1
                      [0.0, 0.0, 0.0],    # node 0 ← 1: fully pruned
                      [0.4, 0.0, 0.9],    # node 1 ← 0 (op 1 pruned)
                      [0.6, 0.1, 0.2],    # node 1 ← 1
                      [0.5, 0.95, 0.1]],  # node 1 ← 2
                     np.float32)
    u = np.array([[0.0, 0.0, 0.6],
                  [0.0, 0.0, 0.0],
                  [0.0, 0.0, 0.2],
                  [0.5, 0.0, 0.0],
                  [0.0, 0.3, 0.0]], np.float32)
    mask = np.ones_like(alpha)
    mask[1] = mask[2, 1] = 0.0
    z, u_new = (t.numpy() for t in admm_update_reference(alpha, u, mask, prims, steps=2))
    # α + U = [.3 1.2 1.1] [0 0 0] [.4 0 1.1] [1.1 .1 .2] [.5 1.25 .1], clipped to [0, 1]:
    # node 0 keeps both its edges; edge 0←0 ties ops 1 and 2 at 1 → op 1 (lowest index);
    # the pruned edge 0←1 is all 0 → op 0, kept in Z although masked (Z is unmasked);
    # node 1's three edges all peak at 1 → the two lowest inputs (0 and 1), edge 1←2 dropped
    z_expected = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]], np.float32)
    np.testing.assert_array_equal(z, z_expected)
    # U ← (U + α − Z) ⊙ mask with the raw α: edge 0←0, op 1 gets 1.2 − 1 (act would give 0)
    u_expected = np.array([[0.3, 0.2, 1.1],
                           [0.0, 0.0, 0.0],
                           [0.4, 0.0, 0.1],
                           [0.1, 0.1, 0.2],
                           [0.5, 1.25, 0.1]], np.float32)
    np.testing.assert_allclose(u_new, u_expected, atol=1e-6)
    # the method's rule on the same state differs: D(act(α) + U) masked, so no tie at 1 —
    # edge 0←0 takes op 2 (1.1), node 1 keeps edge 1←2 (1.25) and 1←0 (1.1, lower than 1←1)
    act = np.clip(alpha, 0, 1) * mask
    z_spec = admm_update(act, np.zeros_like(act), u, mask, prims, steps=2)[0].numpy()
    z_spec_expected = np.array([[0, 0, 1], [0, 0, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0]],
                               np.float32)
    np.testing.assert_array_equal(z_spec, z_spec_expected)
    # the ADMM object dispatches on its variant; Z starts at raw α₀ in the reference
    reference = get_regularizer({"name": "admm", "variant": "reference"})
    z_via, u_via = reference.update(alpha, act, np.zeros_like(act), u, mask, prims, steps=2)
    np.testing.assert_array_equal(z_via, z_expected)
    np.testing.assert_array_equal(u_via, u_new)
    assert reference.initial_z("alpha", "act") == "alpha"
    assert ADMM().initial_z("alpha", "act") == "act"
    with pytest.raises(ValueError, match="unknown ADMM variant 'paper'; valid: spec, reference"):
        ADMM(variant="paper")


def random_weights(rng, shape, kind):
    """Activated weights with the structure a search produces: continuous values, many
    ties, pruned zeros, or whole rows (edges) pruned."""
    if kind == 0:
        w = rng.random(shape)
    elif kind == 1:  # a few levels: ties between ops and between edges everywhere
        w = rng.choice([0.0, 0.25, 0.5, 1.0], size=shape)
    else:  # crb: pruned ops are 0, and so is every op of a fully pruned edge
        w = rng.choice([0.1, 0.5, 1.0], size=shape) * (rng.random(shape) > 0.5)
        w[rng.random(shape[0]) < 0.3] = 0.0
    return w.astype(np.float32)


def test_graph_discretisation_equals_numpy_discretize():
    """D(act) as graph ops is numpy's `discretize`, ties included (lower input index, then
    first op), on 240 random matrices over several op sets, `none` among them or not; and
    both ADMM updates built on it are their numpy definitions."""
    rng = np.random.default_rng(0)
    configs = [(CRB_PRIMITIVES, 4), (PRIMITIVES, 4), (("max_pool_3x3", "skip_connect",
               "sep_conv_3x3"), 2), (("skip_connect", "none", "sep_conv_3x3"), 3)]
    graphs = {c: tf.function(lambda w, c=c: discrete_onehot(w, *c)) for c in configs}
    ties = 0
    for trial in range(240):
        prims, steps = config = configs[trial % len(configs)]
        w = random_weights(rng, (num_edges(steps), len(prims)), trial % 3)
        if "none" in prims and trial % 2:
            w[:, prims.index("none")] = 2.0  # the largest weight, never chosen
        expected = discretize(w, prims, steps)[1]
        np.testing.assert_array_equal(graphs[config](w).numpy(), expected, err_msg=str(w))
        strength = np.delete(w, [prims.index("none")] if "none" in prims else [], 1).max(1)
        ties += len(strength) - len(np.unique(strength))
    assert ties > 200  # the tie-breaking rules were exercised, not just continuous values

    prims = configs[2][0]
    for trial in range(12):
        act, u = (random_weights(rng, (5, 3), trial % 3) for _ in range(2))
        mask = (rng.random((5, 3)) > 0.2).astype(np.float32)
        z, u_new = admm_update(act, None, u, mask, prims, steps=2)
        z_np = discretize(act + u, prims, 2)[1] * mask
        np.testing.assert_array_equal(z.numpy(), z_np)
        np.testing.assert_allclose(u_new.numpy(), (u + act - z_np) * mask, atol=1e-6)
        z, u_new = admm_update_reference(act, u, mask, prims, steps=2)
        z_np = discretize(np.clip(act + u, 0, 1), prims, 2)[1]
        np.testing.assert_array_equal(z.numpy(), z_np)
        np.testing.assert_allclose(u_new.numpy(), (u + act - z_np) * mask, atol=1e-6)


def authors_update_minibatches(took, admm_freq):
    """The authors' loop, literally: count α steps, test (counter + 1) % admm_freq == 0 at the
    end of every minibatch, reset the counter on update. Returns the updating minibatches."""
    counter, updates = 0, []
    for minibatch, alpha_step in enumerate(took):
        counter += alpha_step
        if (counter + 1) % admm_freq == 0:
            updates.append(minibatch)
            counter = 0
    return updates


def test_admm_update_periods():
    def due(reg, took):
        alpha_steps = np.cumsum(took)
        return [m for m, (n, t) in enumerate(zip(alpha_steps, took)) if bool(reg.due(n, t))]

    every_step = [True] * 40
    # the reference updates after α steps 9, 18, 27, 36: every 9, not 10
    assert due(ADMM(every=10, variant="reference"), every_step) == [8, 17, 26, 35]
    assert due(ADMM(every=10), every_step) == [9, 19, 29, 39]  # docs/method.md: every 10th α step
    # an irregular schedule (α steps on minibatches 0, 2, 3, 5, ...): the counter counts α
    # steps, and the update lands on the minibatch of the 9th and 18th
    rng = np.random.default_rng(0)
    took = list(rng.random(60) < 0.4)
    ninth = [m for m, n in enumerate(np.cumsum(took)) if took[m] and n % 9 == 0]
    assert due(ADMM(every=10, variant="reference"), took) == ninth
    assert ninth == authors_update_minibatches(took, 10) and len(ninth) >= 2
    for every in (1, 2, 3):  # every=1: every minibatch, α step or not
        assert due(ADMM(every=every, variant="reference"), took) == \
            authors_update_minibatches(took, every)


def test_admm_penalty_is_masked_l2():
    reg = ADMM(rho=0.1)
    act = tf.constant([[0.5, 0.2]])
    z = tf.constant([[1.0, 0.0]])
    u = tf.constant([[0.1, 0.0]])
    mask = tf.constant([[1.0, 0.0]])
    expected = 0.1 / 2 * abs(0.5 - 1.0 + 0.1)
    assert float(reg.penalty([act], [z], [u], [mask])) == pytest.approx(expected)
    squared = ADMM(rho=0.1, squared=True)
    assert float(squared.penalty([act], [z], [u], [mask])) == pytest.approx(0.05 * 0.4 ** 2)


def test_proximity_weight_grows_with_t():
    reg = Proximity(rho=0.1)
    act = np.full((14, 7), 0.3, np.float32)
    onehot = discrete_onehot(tf.constant(act), CRB_PRIMITIVES)
    assert float(tf.reduce_sum(onehot)) == 8
    values = [float(reg.penalty([act], [onehot], t, 10.0)) for t in (0.0, 2.5, 5.0, 10.0)]
    assert values[0] == 0.0 and values[1] < values[2] < values[3]
    full = 0.1 / 2 * float(l2(act - onehot.numpy()))
    assert values[3] == pytest.approx(full) and values[2] == pytest.approx(full / 2)
    # the plain norm has a finite gradient even when α is already discrete
    a = tf.Variable(onehot)
    with tf.GradientTape() as tape:
        p = reg.penalty([a], [onehot], 1.0, 1.0)
    assert np.isfinite(tape.gradient(p, a).numpy()).all()


def test_crb_activation_and_permanent_prune():
    alpha = tf.constant([[-0.1, 0.5, 1.7, 0.0]])
    np.testing.assert_allclose(activate(alpha, "crb").numpy(), [[0, 0.5, 1, 0]])
    a, m = prune(alpha, tf.ones((1, 4)))
    np.testing.assert_array_equal(m.numpy(), [[0, 1, 1, 0]])
    np.testing.assert_allclose(a.numpy(), [[0, 0.5, 1.7, 0]], rtol=1e-6)
    # a pruned op stays pruned even if α becomes positive again
    a2, m2 = prune(tf.constant([[0.3, 0.5, 1.7, 0.2]]), m)
    np.testing.assert_array_equal(m2.numpy(), [[0, 1, 1, 0]])
    assert a2.numpy()[0, 0] == 0 and a2.numpy()[0, 3] == 0
    soft = activate(tf.zeros((2, 8)), "softmax").numpy()
    np.testing.assert_allclose(soft.sum(axis=1), [1, 1], rtol=1e-6)


def test_search_learning_rate_follows_the_reference_call_order():
    """Weight step k of a 50-epoch search trains at η(e+1), e its 0-based epoch, as
    CosineAnnealingLR stepped at the start of every epoch gives (η_max 0.025, η_min 0.001).
    The rate is a function of the step counter only, which checkpoints restore."""
    from kdarts.image import SearchNetwork

    model = SearchNetwork(10, channels=4, layers=3, activation="crb")
    model.compile(search_data=None)
    epochs, steps = 50, 3
    model.total_epochs.assign(float(epochs))
    model.steps_per_epoch.assign(float(steps))
    lrs = [float(model.weight_learning_rate(k)) for k in range(1, epochs * steps + 1)]
    last_epoch, reference = 0, []
    for _ in range(epochs):
        last_epoch += 1  # scheduler.step() at the top of the epoch loop
        reference += [0.001 + 0.024 * (1 + np.cos(np.pi * last_epoch / epochs)) / 2] * steps
    np.testing.assert_allclose(lrs, reference, rtol=1e-5)
    assert lrs[0] == pytest.approx(0.024976, abs=1e-6)
    assert lrs[-1] == pytest.approx(0.001, rel=1e-6)


# ------------------------------------------------------------- pruned ops left out by levels

def test_the_traced_mask_moves_only_at_levels_and_never_leaves_out_a_live_op():
    """crb prunes one entry after another (a seeded order over a 14×7 α mask): the traced
    mask is all ones until 25 % are pruned, then the prune mask of the moment each level
    is first reached, and always holds every live entry."""
    from kdarts.search.pruning import PRUNE_LEVELS, next_traced_mask, prune_level

    shape = (14, 7)
    order = np.random.default_rng(0).permutation(np.prod(shape))
    alive, traced = np.ones(shape, bool), np.ones(shape, bool)
    moves = []
    for count, entry in enumerate(order[:-1], start=1):  # never the last op
        alive.flat[entry] = False
        moved = next_traced_mask(alive, traced)
        assert not np.any(alive & ~moved)  # no live op is left out
        if moved is not traced:
            np.testing.assert_array_equal(moved, alive)
            moves.append(count)
        traced = moved
        assert prune_level(traced) == prune_level(alive)
    total = np.prod(shape)
    assert moves == [int(np.ceil(level * total)) for level in PRUNE_LEVELS]  # 25, 49, 74


def test_the_traced_mask_resets_for_a_live_op_it_left_out_and_checks_shapes():
    from kdarts.search.pruning import next_traced_mask, prune_level

    traced = np.ones((14, 7), bool)
    traced[:6] = False  # 43 % pruned: level 1
    assert prune_level(traced) == 1
    alive = traced.copy()
    alive[0, 0] = True  # alive but not traced (masks assigned from outside)
    np.testing.assert_array_equal(next_traced_mask(alive, traced), alive)
    alive = np.ones((14, 7), bool)
    alive[0, :3] = False  # a few pruned: below the first level, so all ones
    np.testing.assert_array_equal(next_traced_mask(alive, traced), np.ones((14, 7), bool))
    with pytest.raises(ValueError, match=r"\(14, 7\).*\(2, 14, 7\)"):
        next_traced_mask(alive, np.ones((2, 14, 7), bool))


def test_kept_edges_and_the_automatic_choice():
    from kdarts.search.pruning import LEVELS_MIN_MAP, auto_mode, kept_edges

    mask = np.array([[1, 0], [1, 1], [0, 0], [1, 0]], bool)  # 4 α rows, 2 ops
    # a fan-out whose edges are α rows 3, 1 and 2, in that order
    assert kept_edges(mask, [3, 1, 2]) == ((0, 1), (1,))
    assert LEVELS_MIN_MAP == 16 * 16 * 8
    assert auto_mode(16, 16, 8) == "levels" and auto_mode(32, 32, 16) == "levels"
    assert auto_mode(8, 8, 8) == "never" and auto_mode(16, 16, 4) == "never"
    assert auto_mode(None, None, 64) == "never"  # unknown size: one trace
    # a search long enough to earn the retraces back: map × batch × steps ≥ LEVELS_MIN_WORK
    assert auto_mode(16, 16, 8, 32, 320) == "never"  # an 8-epoch search of 40 steps each
    assert auto_mode(16, 16, 8, 32, 50 * 391) == "levels"  # DARTS's 50 epochs
    assert auto_mode(32, 32, 16, 64, 100) == "levels" and auto_mode(32, 32, 16, 64, 20) == "never"
    assert auto_mode(8, 8, 8, 64, 10**6) == "never"  # below the map: never, however long
