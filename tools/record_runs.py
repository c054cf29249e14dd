"""Record tiny searches and a training, to hold later code to the same numbers.

``tests/test_stored_runs.py`` runs the same commands and compares: the genotypes, every
step's loss, FI, threshold and α-step decision, act(α) and the masks after each epoch, and
the trained network's weights. The numbers hold only on the kind of CPU (and kernels) that
wrote them: a search amplifies last-bit differences until a decision flips. So there is
one record per kind, ``tests/data/stored_runs/<kind>.json``
(:func:`kdarts.runtime.machine_kind`). Add the record of a new kind from code that passes
on a recorded kind; regenerate them only when a change is *meant* to alter the numbers
(and say so in the commit):

    python tools/record_runs.py            # writes this machine's kind's record
"""

from __future__ import annotations

import json
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


def run_all(folder: str) -> dict:
    """The record of every run, each in its own sub-folder of ``folder``."""
    import keras

    from kdarts.runs import search_run, train_run

    record: dict = {"searches": {}, "train": {}}
    for name, options in SEARCHES.items():
        out = os.path.join(folder, name)
        result = search_run(out, report=None, progress=False, **options)
        with open(os.path.join(out, "search_record.json")) as f:
            search_record = json.load(f)
        record["searches"][name] = {
            "genotype": result.genotype.to_dict(),
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


def main(path: str | None = None) -> None:
    import kdarts
    from kdarts.atomic import atomic_write_text

    # The suite's threads (tests/conftest.py): float32 sums split over other thread counts
    # round differently (FI by 3e-5 relative), and the record is compared bit-near.
    kdarts.set_cpu_threads(intra_op=1)
    kind = machine_kind()
    path = path or record_path(kind)
    with tempfile.TemporaryDirectory() as folder:
        record = {"machine": kind, **run_all(folder)}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, json.dumps(record))
    print(f"wrote {path} ({kind})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
