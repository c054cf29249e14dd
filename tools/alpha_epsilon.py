"""α after the first α step of a tiny recurrent search, with Keras's Adam (ε before the
bias correction, kdarts's default) and with TorchAdam (ε after it, the authors'
PyTorch): the largest difference, absolute and relative to the step itself.

    python tools/alpha_epsilon.py
"""

import keras
import numpy as np

from kdarts.optimizers import TorchAdam
from kdarts.recurrent.corpus import stdlib_corpus
from kdarts.recurrent.data import bptt_dataset
from kdarts.recurrent.search_model import RecurrentSearchModel
from kdarts.search.schedules import FixedSchedule


def first_alpha_step(adam, activation):
    ids = np.asarray(stdlib_corpus(vocab_size=200).train[:4 * 21 * 2 + 1])
    keras.utils.set_random_seed(0)
    model = RecurrentSearchModel(vocab_size=200, units=16, activation=activation, seed=0)
    model.build((4, 20))
    before = model.alpha.numpy().copy()
    model.compile(arch_optimizer=adam(learning_rate=3e-3, beta_1=0.9, beta_2=0.999,
                                      epsilon=1e-8),
                  schedule=FixedSchedule(1), search_data=bptt_dataset(ids, 4, 20))
    model.fit(bptt_dataset(ids, 4, 20), epochs=1, steps_per_epoch=1, verbose=0)
    return before, model.alpha.numpy()


for activation in ("crb", "softmax"):
    before, keras_alpha = first_alpha_step(keras.optimizers.Adam, activation)
    _, torch_alpha = first_alpha_step(TorchAdam, activation)
    diff = np.abs(keras_alpha - torch_alpha)
    step = np.abs(torch_alpha - before)
    share = diff / np.maximum(step, 1e-30)
    print(f"{activation}: max |Δα| {diff.max():.2e} (the step's largest entry "
          f"{step.max():.2e}; up to {100 * share.max():.1f} % of an entry's step)")
