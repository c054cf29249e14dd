"""The recurrent search's result: the architecture of its best validation epoch.

The authors' ``train_search_rnn.py`` evaluates the search model on the validation text
after every epoch and writes the genotype of the epoch with the lowest validation loss,
not the last epoch's. :class:`BestValidationArchitecture` does the same for a
:class:`~kdarts.recurrent.RecurrentSearchModel`'s ``fit``.

Example:
    >>> best = BestValidationArchitecture(valid_ids, bptt=35, epochs=50)  # doctest: +SKIP
    >>> model.fit(stream, epochs=50, callbacks=[best])                    # doctest: +SKIP
    >>> best.best["epoch"], model.genotype()                              # doctest: +SKIP
"""

from __future__ import annotations

import math

import keras
import numpy as np


class BestValidationArchitecture(keras.callbacks.Callback):
    """After every epoch, the validation loss (:meth:`RecurrentSearchModel.evaluate
    <kdarts.recurrent.RecurrentSearchModel.evaluate>`, the authors' evaluation); the α
    and mask of the epoch with the lowest one are kept, and put back into the model
    when the search has run all its ``epochs``, so that α, ``model.genotype()`` and the
    pruned count are the best epoch's. Each epoch's logs get ``val_loss``,
    ``val_perplexity`` and ``best_epoch`` (1-based; 0 while no epoch had a finite loss,
    and then the model keeps its last α).

    Args:
        valid_ids: the validation text's token ids.
        bptt: the evaluation's segment length.
        epochs: the search's epochs (the result is put back after the last).
        batch_size: the evaluation's streams (the authors' 10).
        best: the kept state of a resumed search (:meth:`state`'s ``best_validation``),
            so that a resumed search keeps what the uninterrupted one would.
        initial_epoch: the epochs already completed (a resumed search's).
    """

    def __init__(self, valid_ids, bptt: int, epochs: int, batch_size: int = 10,
                 best: dict | None = None, initial_epoch: int = 0):
        super().__init__()
        self.valid_ids = np.asarray(valid_ids)
        self.bptt, self.epochs, self.batch_size = int(bptt), int(epochs), int(batch_size)
        self.best = best
        self.completed = int(initial_epoch)

    def on_epoch_end(self, epoch, logs=None):
        scores = self.model.evaluate(self.valid_ids, batch_size=self.batch_size,
                                     bptt=self.bptt)
        # the authors keep an epoch only if it is strictly better (a NaN loss never is)
        if scores["loss"] < (math.inf if self.best is None else self.best["val_loss"]):
            self.best = {"epoch": int(epoch) + 1, "val_loss": float(scores["loss"]),
                         "alpha": self.model.alpha.numpy().tolist(),
                         "mask": self.model.mask.numpy().tolist()}
        self.completed = int(epoch) + 1
        if logs is not None:
            logs.update(val_loss=scores["loss"], val_perplexity=scores["perplexity"],
                        best_epoch=float(0 if self.best is None else self.best["epoch"]))

    def on_train_end(self, logs=None):
        if self.best is not None and self.completed >= self.epochs:
            self.model.alpha.assign(np.asarray(self.best["alpha"], np.float32))
            self.model.mask.assign(np.asarray(self.best["mask"], np.float32))

    def state(self) -> dict:
        """What a checkpoint keeps of it (α and mask as float32 values, exact in JSON)."""
        return {} if self.best is None else {"best_validation": self.best}


__all__ = ["BestValidationArchitecture"]
