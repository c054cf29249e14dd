"""A regulariser defined outside kdarts runs the search once it is registered by name.

The example keeps state of its own, so it goes through every call of the interface:
``create_state`` (its variables on the model), ``initialize`` (at step 0), the penalty in
every α step and ``after_step`` at the end of every step."""

from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdarts import options
from kdarts.search import FixedSchedule
from kdarts.search.regularizers import Regularizer, cell_state, get_regularizer

from test_search_fit import datasets, tiny_model


@dataclass(frozen=True)
class TrailingPull(Regularizer):
    """``R = ρ/2·Σ_cells ‖act(α) − A‖²``: a pull towards A, a trailing average of act(α)
    (A = act(α₀) at the start, then ``A ← (A + act(α))/2`` after every α step)."""

    name: ClassVar[str] = "trailing_pull"
    rho: float = 1.0

    @classmethod
    def from_options(cls, opts):
        return cls(rho=opts["rho"])

    def create_state(self, model, arch):
        return {"anchor": cell_state(model, arch, "trailing_anchor")}

    def initialize(self, arch, state):
        for anchor, act in zip(state["anchor"], arch.activated()):
            anchor.assign(act)

    def __call__(self, arch, state, t, total_epochs):
        return self.rho / 2.0 * tf.add_n([tf.reduce_sum(tf.square(act - anchor))
                                          for act, anchor in zip(arch.activated(),
                                                                 state["anchor"])])

    def after_step(self, arch, state, alpha_steps, took_alpha_step):
        for anchor, act in zip(state["anchor"], arch.activated()):
            anchor.assign(tf.where(took_alpha_step, (anchor + act) / 2.0, anchor))


class _Acts(keras.callbacks.Callback):
    """act(α) of the normal cells before the first step and after every step."""

    def on_train_begin(self, logs=None):
        self.acts = [self.model.architecture.activated()[0].numpy()]

    def on_train_batch_end(self, batch, logs=None):
        self.acts.append(self.model.architecture.activated()[0].numpy())


def trailing_anchor(acts):
    """The anchor TrailingPull should hold after steps whose act(α) were ``acts`` (each
    step took an α step): act(α₀) at initialize, then halfway towards each later one."""
    anchor = acts[0]
    for act in acts[1:]:
        anchor = (anchor + act) / 2.0
    return anchor


def _search(reg):
    weight_ds, search_ds = datasets()
    model = tiny_model("crb")
    model.compile(schedule=FixedSchedule(1), regularizer=reg, search_data=search_ds,
                  arch_optimizer=keras.optimizers.Adam(0.05, beta_1=0.5))
    acts = _Acts()
    history = model.fit(weight_ds, epochs=1, steps_per_epoch=4, verbose=0,
                        callbacks=[acts]).history
    return model, history, acts.acts


@pytest.mark.slow
def test_a_registered_regulariser_runs_the_search(monkeypatch):
    monkeypatch.setitem(options.REGULARIZERS, "trailing_pull", f"{__name__}:TrailingPull")
    reg = options.make_regularizer("trailing_pull", {"rho": 50.0, "admm_every": 10})
    assert reg == TrailingPull(rho=50.0)
    assert get_regularizer({"name": "trailing_pull", "rho": 2.0}) == TrailingPull(rho=2.0)

    model, history, acts = _search(reg)
    # its variables are the model's (checkpointed with it), made at compile
    assert model.regularizer_variables == [model.trailing_anchor_normal,
                                           model.trailing_anchor_reduce]
    assert any(v is model.trailing_anchor_normal for v in model.non_trainable_variables)
    # initialize, then after_step after every step (every step took an α step)
    anchor = trailing_anchor(acts)
    np.testing.assert_allclose(model.trailing_anchor_normal.numpy(), anchor, atol=1e-6)
    assert history["alpha_steps"][-1] == 4 and history["reg"][-1] > 0

    plain, _, plain_acts = _search("none")
    np.testing.assert_array_equal(plain_acts[0], acts[0])  # the same start
    assert not hasattr(plain, "trailing_anchor_normal")
    assert np.abs(acts[-1] - plain_acts[-1]).max() > 1e-3  # the pull moved α otherwise


def test_names_are_registered_once():
    from kdarts.search import activations, regularizers

    assert activations.ACTIVATIONS is options.ACTIVATIONS
    assert regularizers.ADMM_VARIANTS is options.ADMM_VARIANTS
    for name in options.REGULARIZERS:
        assert options.regularizer_class(name).name == name


def test_unregistered_names_are_refused():
    with pytest.raises(ValueError, match="unknown regulariser 'trailing_pull'; valid: "):
        options.make_regularizer("trailing_pull", {})
    with pytest.raises(ValueError, match="unknown regulariser 'l0'"):
        get_regularizer("l0")


def _recurrent_search(reg, steps=2):
    """``steps`` search steps of a tiny recurrent model (an α step every step)."""
    from kdarts.recurrent import RecurrentSearchModel
    from kdarts.recurrent.data import bptt_dataset

    ids = np.arange(2 * 5 * steps + 1) * 7 % 20
    keras.utils.set_random_seed(0)
    model = RecurrentSearchModel(vocab_size=20, units=4, activation="crb", seed=1)
    model.compile(schedule=FixedSchedule(1), regularizer=reg,
                  search_data=bptt_dataset(ids, 2, 5),
                  arch_optimizer=keras.optimizers.Adam(0.05, beta_1=0.5))
    acts = _Acts()
    history = model.fit(bptt_dataset(ids, 2, 5), epochs=1, steps_per_epoch=steps, verbose=0,
                        callbacks=[acts]).history
    return model, history, acts.acts


@pytest.mark.slow
def test_a_registered_regulariser_runs_the_recurrent_search(monkeypatch):
    """The same registration runs the recurrent search: its state is made when ``fit``
    builds the model, initialised at step 0, its penalty moves α, ``after_step`` runs."""
    monkeypatch.setitem(options.REGULARIZERS, "trailing_pull", f"{__name__}:TrailingPull")
    reg = options.make_regularizer("trailing_pull", {"rho": 50.0})
    model, history, acts = _recurrent_search(reg)
    assert model.regularizer_variables == [model.trailing_anchor]  # the one unnamed cell
    anchor = trailing_anchor(acts)
    np.testing.assert_allclose(model.trailing_anchor.numpy(), anchor, atol=1e-6)
    assert history["alpha_steps"][-1] == 2 and history["reg"][-1] > 0

    plain, _, plain_acts = _recurrent_search("none")
    assert not hasattr(plain, "trailing_anchor")
    # step 1: A = act(α₀), no pull yet, the same α; step 2: the pull moved α
    np.testing.assert_array_equal(plain_acts[1], acts[1])
    assert np.abs(acts[2] - plain_acts[2]).max() > 1e-3
