"""Record tiny searches and a training, to hold later code to the same numbers.

``tests/test_stored_runs.py`` runs the same commands and compares: the genotypes, every
step's loss, FI, threshold and α-step decision, act(α) and the masks after each epoch, and
the trained network's weights; of the recurrent search (``kdarts search --dataset
kdarts_text``) also each epoch's validation loss, which chooses its genotype. The numbers
hold only on the kind of CPU (and kernels) that wrote them: a search amplifies last-bit
differences until a decision flips. So there is one record per kind,
``tests/data/stored_runs/<kind>.json`` (:func:`kdarts.runtime.machine_kind`). Add the
record of a new kind from code that passes on a recorded kind; regenerate them only when
a change is *meant* to alter the numbers (and say so in the commit):

    python tools/record_runs.py            # writes this machine's kind's record
    python tools/record_runs.py --add      # adds the runs its record lacks, keeps the rest

``--add`` is how a run added here reaches a kind's record: the entries already recorded
stay as the code that wrote them left them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile

from kdarts.runtime import machine_kind

#: The runs: crb, dynamic schedule and ADMM (Z/U updates, pruning); softmax, fixed
#: schedule, proximity and the unrolled α step. Tiny: 8 px digits, C=4, 3 layers.
COMMON = dict(dataset="kdarts_digits", channels=4, layers=3, steps=2, batch_size=8,
              max_examples=96, epochs=2, seed=3,
              primitives="max_pool_3x3,skip_connect,sep_conv_3x3,dil_conv_3x3")
SEARCHES = {
    "crb_dynamic_admm": dict(COMMON, activation="crb", schedule="dynamic", every=2,
                             threshold=50.0, reg="admm", rho=0.1, admm_every=2,
                             arch_lr=0.3),
    "softmax_fixed_proximity_unrolled": dict(COMMON, activation="softmax", schedule="fixed",
                                             every=2, reg="proximity", rho=0.1,
                                             arch_lr=0.05, unrolled=True),
}
#: The recurrent search, as ``kdarts search --dataset kdarts_text`` runs it: crb, dynamic
#: schedule from a threshold in the range of its FI (some steps take an α step, some do
#: not) and ADMM (Z/U updates, pruning). Tiny: 8 units, 50 words, 600 tokens, 2 epochs.
RECURRENT_SEARCHES = {
    "crb_dynamic_admm": dict(dataset="kdarts_text", units=8, bptt=6, vocab_size=50,
                             max_tokens=600, batch_size=8, epochs=2, seed=3, activation="crb",
                             schedule="dynamic", every=2, threshold=3.0, reg="admm",
                             rho=0.1, admm_every=2, arch_lr=0.1, lr=0.5),
}
TRAIN = dict(dataset="kdarts_digits", channels=4, layers=3, epochs=1, batch_size=32,
             max_examples=128, seed=0, drop_path=0.1)


def weight_summary(w) -> dict:
    """A tensor's shape, sum, absolute sum and first values: enough to tell two apart."""
    import numpy as np

    w = np.asarray(w, np.float64)
    return {"shape": list(w.shape), "sum": float(w.sum()), "abs_sum": float(abs(w).sum()),
            "first": w.ravel()[:6].tolist()}


RECORDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests",
                       "data", "stored_runs")


def record_path(kind: str) -> str:
    return os.path.normpath(os.path.join(RECORDS, f"{kind}.json"))


def run_image(folder: str) -> dict:
    """The record of the image searches and the training, each in its own sub-folder of
    ``folder``."""
    import keras

    from kdarts.runs import search_run, train_run

    record: dict = {"searches": {}, "train": {}}
    for name, options in SEARCHES.items():
        out = os.path.join(folder, name)
        result = search_run(out, report=None, progress=False, **options)
        with open(os.path.join(out, "search_record.json")) as f:
            search_record = json.load(f)
        record["searches"][name] = {
            "genotype": result.genotype.with_cost(None).to_dict(),  # the cells
            "epochs": [{k: e[k] for k in ("alpha_normal", "alpha_reduce", "mask_normal",
                                          "mask_reduce")} for e in search_record["epochs"]],
            "batches": search_record["batches"],
        }
    genotype = os.path.join(folder, "crb_dynamic_admm", "genotype.json")
    trained = train_run(genotype, os.path.join(folder, "train"), report=None, progress=False,
                        **TRAIN)
    model = keras.models.load_model(trained.model_path)
    record["train"] = {"test_accuracy": trained.test_accuracy,
                       "weights": [weight_summary(w) for w in model.get_weights()]}
    return record


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def recurrent_recorder():
    """A callback keeping what the image search's ``search_record.json`` holds, for the
    recurrent search, which writes no such file: each step's schedule logs
    (``kdarts.search.callbacks.BATCH_KEYS``; a non-finite value as None) and, before
    training and after each epoch, act(α), the mask and the validation loss."""
    import keras

    from kdarts.search.callbacks import BATCH_KEYS

    class RecurrentRecorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs: list = []
            self.batches: list = []

        def _state(self, logs: dict) -> dict:
            return {"alpha": self.model.activated_weights().numpy().tolist(),
                    "mask": self.model.mask.numpy().tolist(),
                    "val_loss": _finite(logs["val_loss"]) if "val_loss" in logs else None}

        def on_train_begin(self, logs=None):
            self.epochs.append(self._state({}))

        def on_train_batch_end(self, batch, logs=None):
            self.batches.append({"step": len(self.batches) + 1,
                                 **{k: _finite(logs[k]) for k in BATCH_KEYS if k in logs}})

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(self._state(logs or {}))

    return RecurrentRecorder()


@contextlib.contextmanager
def observed_recurrent_search(callback):
    """Recurrent searches run in this block also call ``callback``, after the run's own
    callbacks (the validation that fills ``val_loss`` among them): the run function
    takes no callbacks, and the record must come from the run as the command makes it."""
    from kdarts.runs.recurrent import RecurrentSearchFit

    writers = RecurrentSearchFit.writer_callbacks
    RecurrentSearchFit.writer_callbacks = lambda fit: writers(fit) + [callback]
    try:
        yield
    finally:
        RecurrentSearchFit.writer_callbacks = writers


def run_recurrent(folder: str) -> dict:
    """The record of the recurrent searches, each in its own sub-folder of ``folder``, run
    by the function ``kdarts search`` runs for a corpus."""
    from kdarts.spaces import space_for

    record: dict = {"recurrent_searches": {}}
    for name, options in RECURRENT_SEARCHES.items():
        recorder = recurrent_recorder()
        with observed_recurrent_search(recorder):
            result = space_for(dataset=options["dataset"]).job("search")(
                os.path.join(folder, name), report=None, progress=False, **options)
        record["recurrent_searches"][name] = {"genotype": result.genotype.to_dict(),
                                              "epochs": recorder.epochs,
                                              "batches": recorder.batches}
    return record


#: A record's parts: the keys each writes, and the function running it in a folder.
PARTS = ((("searches", "train"), run_image), (("recurrent_searches",), run_recurrent))


def main(argv: list[str] | None = None) -> None:
    import kdarts
    from kdarts.atomic import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", help="the record to write (default: this "
                        "machine's kind's, tests/data/stored_runs/<kind>.json)")
    parser.add_argument("--add", action="store_true", help="run only the parts the record "
                        "lacks; keep its other entries as they are")
    args = parser.parse_args(argv)
    # The suite's threads (tests/conftest.py): float32 sums split over other thread counts
    # round differently (FI by 3e-5 relative), and the record is compared bit-near.
    kdarts.set_cpu_threads(intra_op=1)
    kind = machine_kind()
    path = args.path or record_path(kind)
    record = {"machine": kind}
    if args.add and os.path.exists(path):
        with open(path) as f:
            record = json.load(f)
        if record.get("machine") != kind:
            sys.exit(f"{path} is the record of {record.get('machine')!r}, not of this "
                     f"machine's kind {kind!r}")
    with tempfile.TemporaryDirectory() as folder:
        for i, (keys, run) in enumerate(PARTS):
            if not all(key in record for key in keys):
                record.update(run(os.path.join(folder, str(i))))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, json.dumps(record))
    print(f"wrote {path} ({kind})")


if __name__ == "__main__":
    main()
