"""Export a trained language model (``.keras``, SavedModel, ONNX), verified; and sampling.

Two forms of the inference graph (no dropout), both float32:

* **batch**: ``tokens`` int32 ``[batch, time]`` → ``log_probs`` float32
  ``[batch, time, vocab]``, the natural-log probabilities of each next word, from a
  zero hidden state;
* **step** (generation): ``token`` int32 ``[batch]`` and ``hidden`` float32
  ``[batch, units]`` → ``log_probs`` ``[batch, vocab]`` and ``new_hidden``
  ``[batch, units]``; start from ``hidden = zeros`` and feed ``new_hidden`` back.

Artifacts (:func:`export_language_model`):

* ``keras`` (``*.keras``): the whole :class:`~kdarts.recurrent.RecurrentLanguageModel`
  (``model(tokens)`` is the batch form, ``model.step(token, hidden)`` the step form);
  its config holds the vocabulary when the model has one.
* ``saved_model`` (a folder): ``loaded.serve(tokens)`` and ``loaded.step(token,
  hidden)``; signatures ``serving_default`` (``tokens`` → ``{"log_probs"}``) and
  ``step`` (``token``, ``hidden`` → ``{"log_probs", "new_hidden"}``); the contract in
  ``assets.extra/kdarts_input.json`` and ``input_contract()``.
* ``onnx`` (``*.onnx``): one form per file (``form="batch"`` or ``"step"``), the input
  and output names above, the contract in ``metadata_props`` (key ``kdarts.input``);
  verified with ONNX Runtime in a child process.

Beside every artifact goes ``<name>.vocab.json`` (``lm.onnx.vocab.json``): ``{"tokens":
[...], "unk_id": .., "eos_id": .., "contract": {...}}``; a SavedModel also holds it in
``assets.extra``.
Writing is atomic (a temp sibling, verified, then renamed); destinations are checked
as :func:`kdarts.export.export` checks them.

Generation with the ONNX step in ONNX Runtime:

    >>> import json, numpy as np, onnxruntime as ort                  # doctest: +SKIP
    >>> vocab = json.load(open("lm_step.onnx.vocab.json"))                 # doctest: +SKIP
    >>> session = ort.InferenceSession("lm_step.onnx")                # doctest: +SKIP
    >>> hidden = np.zeros([1, vocab["contract"]["units"]], np.float32)  # doctest: +SKIP
    >>> for word in ["the", "list"]:                                  # doctest: +SKIP
    ...     token = np.array([vocab["tokens"].index(word)], np.int32)
    ...     log_probs, hidden = session.run(["log_probs", "new_hidden"],
    ...                                     {"token": token, "hidden": hidden})
    >>> vocab["tokens"][int(np.argmax(log_probs[0]))]                # doctest: +SKIP

Example:
    >>> export_language_model(model, "saved_models/lm.onnx", "onnx", form="step")  # doctest: +SKIP
    >>> generate("runs/lm/best.keras", ["the", "list"], n=10, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Sequence

import numpy as np

from kdarts.export import (
    CONTRACT_FILE,
    CONTRACT_KEY,
    DEFAULT_OPSET,
    ExportError,
    ExportResult,
    check_destination,
    suffix_error,
)

FORMATS = ("keras", "saved_model", "onnx")
FORMS = ("batch", "step")
VOCAB_SUFFIX = ".vocab.json"
VOCAB_FILE = "kdarts_vocab.json"  # inside a SavedModel's assets.extra
CHILD_TIMEOUT = 600.0


# -- the two forms -------------------------------------------------------------------------
def batch_specs():
    import tensorflow as tf

    return [tf.TensorSpec([None, None], tf.int32, name="tokens")]


def step_specs(units: int):
    import tensorflow as tf

    return [tf.TensorSpec([None], tf.int32, name="token"),
            tf.TensorSpec([None, units], tf.float32, name="hidden")]


def language_model_contract(model, form: str | None = None) -> dict:
    """What the artifact takes and returns (both forms unless ``form``)."""
    ids = model.special_ids()
    forms = {
        "batch": {"inputs": {"tokens": "int32 [batch, time] word ids in [0, vocab_size)"},
                  "outputs": {"log_probs": "float32 [batch, time, vocab_size]: log "
                              "P(next word) after each position, from a zero hidden state"}},
        "step": {"inputs": {"token": "int32 [batch] word ids",
                            "hidden": f"float32 [batch, {model.units}]: zeros to start, "
                                      "then the previous new_hidden"},
                 "outputs": {"log_probs": "float32 [batch, vocab_size]: log P(next word)",
                             "new_hidden": f"float32 [batch, {model.units}]"}},
    }
    chosen = {form: forms[form]} if form else forms
    return {"kind": "recurrent_language_model", "vocab_size": model.vocab_size,
            "units": model.units, "unk_id": ids.get("<unk>"), "eos_id": ids.get("<eos>"),
            "genotype": model.genotype.to_dict(), "forms": chosen,
            "description": "word-level language model; " + "; ".join(
                f"{name}: " + ", ".join(f"{k} {v}" for k, v in f["inputs"].items())
                for name, f in chosen.items())}


def vocabulary_file(model, contract: dict) -> dict:
    """The vocabulary JSON shipped beside an artifact."""
    return {"tokens": model.vocabulary, "unk_id": contract["unk_id"],
            "eos_id": contract["eos_id"], "contract": contract}


def vocabulary_path(path: str | os.PathLike) -> str:
    """``lm.onnx`` → ``lm.onnx.vocab.json``, a SavedModel folder ``lm`` → ``lm.vocab.json``
    (the whole name kept, so ``lm.keras`` and ``lm.onnx`` side by side keep theirs)."""
    return os.fspath(path).rstrip(os.sep) + VOCAB_SUFFIX


# -- writers ------------------------------------------------------------------------------
def _write_keras(model, artifact: str, form, opset, contract) -> None:
    model.save(artifact)


def _write_saved_model(model, artifact: str, form, opset, contract) -> None:
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    serve = archive.add_endpoint("serve", lambda tokens: model(tokens, training=False),
                                 input_signature=batch_specs())
    archive.add_endpoint("serving_default", lambda tokens: {"log_probs": serve(tokens)},
                         input_signature=batch_specs())
    archive.add_endpoint("step", lambda token, hidden: dict(zip(
        ("log_probs", "new_hidden"), model.step(token, hidden))),
        input_signature=step_specs(model.units))
    text = json.dumps(contract, indent=2) + "\n"
    archive.add_endpoint("input_contract", lambda: tf.constant(text), input_signature=[])
    archive.write_out(artifact, verbose=False)
    extra = os.path.join(artifact, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, CONTRACT_FILE), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(extra, VOCAB_FILE), "w", encoding="utf-8") as f:
        json.dump(vocabulary_file(model, contract), f)


def _write_onnx(model, artifact: str, form: str, opset: int, contract: dict) -> None:
    import logging

    import onnx
    import tensorflow as tf
    import tf2onnx

    if form == "batch":
        specs = batch_specs()
        fn = tf.function(lambda tokens: {"log_probs": model(tokens, training=False)},
                         input_signature=specs)
    else:
        specs = step_specs(model.units)
        fn = tf.function(lambda token, hidden: dict(zip(
            ("log_probs", "new_hidden"), model.step(token, hidden))), input_signature=specs)
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # tf2onnx logs its progress at INFO/WARNING
    try:
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=opset)
    finally:
        logger.setLevel(level)
    for value in proto.graph.input:
        value.doc_string = contract["forms"][form]["inputs"].get(value.name, "")
    onnx.helper.set_model_props(proto, {CONTRACT_KEY: json.dumps(contract)})
    onnx.save(proto, artifact)


_WRITERS = {"keras": _write_keras, "saved_model": _write_saved_model, "onnx": _write_onnx}


# -- running an artifact as a user would ------------------------------------------------------
def sample_feeds(model, seed: int = 0) -> dict:
    """Verification inputs: token batches of two sizes for both forms."""
    rng = np.random.default_rng(seed)
    v, u = model.vocab_size, model.units
    return {"batch": [rng.integers(0, v, (n, t)).astype(np.int32) for n, t in ((1, 3), (3, 7))],
            "step": [(rng.integers(0, v, n).astype(np.int32),
                      rng.normal(0.0, 0.5, (n, u)).astype(np.float32)) for n in (1, 3)]}


def keras_outputs(model, feeds: dict) -> dict:
    """The Keras model's outputs for :func:`sample_feeds`: batch → log_probs, step → both."""
    return {"batch": [[np.asarray(model(x, training=False))] for x in feeds["batch"]],
            "step": [[np.asarray(o) for o in model.step(t, h)] for t, h in feeds["step"]]}


def run_onnx(artifact: str, form: str, feeds: dict) -> dict:
    """Outputs of an ONNX artifact in ONNX Runtime (in this process)."""
    from kdarts.inference import import_onnxruntime

    ort = import_onnxruntime()
    session = ort.InferenceSession(os.fspath(artifact), providers=["CPUExecutionProvider"])
    if form == "batch":
        return {"batch": [session.run(["log_probs"], {"tokens": x}) for x in feeds["batch"]]}
    return {"step": [session.run(["log_probs", "new_hidden"], {"token": t, "hidden": h})
                     for t, h in feeds["step"]]}


def run_onnx_isolated(artifact: str, form: str, feeds: dict,
                      timeout: float = CHILD_TIMEOUT) -> dict:
    """:func:`run_onnx` in a child process, so a native abort cannot end this one."""
    from kdarts.inference import RuntimeCrash

    with tempfile.TemporaryDirectory(prefix=".kdarts-run-") as work:
        request, reply = os.path.join(work, "in.npz"), os.path.join(work, "out.npz")
        arrays = {f"batch_{i}": x for i, x in enumerate(feeds.get("batch", []))}
        for i, (t, h) in enumerate(feeds.get("step", [])):
            arrays[f"token_{i}"], arrays[f"hidden_{i}"] = t, h
        np.savez(request, **arrays)
        job = json.dumps({"artifact": os.fspath(artifact), "form": form,
                          "request": request, "reply": reply})
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH")) if p))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            done = subprocess.run([sys.executable, "-m", "kdarts.recurrent.export", job],
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise RuntimeCrash(f"ONNX Runtime did not finish running {artifact} within "
                               f"{timeout:g} s and was stopped", "timeout") from None
        if done.returncode < 0:
            raise RuntimeCrash(f"ONNX Runtime crashed with signal {-done.returncode} while "
                               f"running {artifact}", str(-done.returncode))
        if done.returncode != 0 or not os.path.exists(reply):
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(lines[-1] if lines else
                               f"ONNX Runtime exited with status {done.returncode}")
        with np.load(reply) as out:
            n = len(feeds[form])
            width = 1 if form == "batch" else 2
            return {form: [[out[f"out_{i}_{k}"] for k in range(width)] for i in range(n)]}


def _child_main(job_text: str) -> None:
    job = json.loads(job_text)
    with np.load(job["request"]) as request:
        names = request.files
        feeds = {"batch": [request[f"batch_{i}"] for i in range(
                     sum(n.startswith("batch_") for n in names))],
                 "step": [(request[f"token_{i}"], request[f"hidden_{i}"]) for i in range(
                     sum(n.startswith("token_") for n in names))]}
    out = run_onnx(job["artifact"], job["form"], feeds)[job["form"]]
    np.savez(job["reply"], **{f"out_{i}_{k}": o for i, outs in enumerate(out)
                              for k, o in enumerate(outs)})


def run_artifact(format: str, artifact: str, form: str | None, feeds: dict) -> dict:
    """Load ``artifact`` as a user would; its outputs for the feeds of each form it has."""
    import tensorflow as tf

    if format == "keras":
        from kdarts.export import load_model

        return keras_outputs(load_model(artifact), feeds)
    if format == "saved_model":
        loaded = tf.saved_model.load(artifact)
        default, step = loaded.signatures["serving_default"], loaded.signatures["step"]
        batch = [[np.asarray(loaded.serve(x)), np.asarray(default(tokens=x)["log_probs"])]
                 for x in feeds["batch"]]
        # per feed: the endpoint's and the signature's (log_probs, new_hidden), in turn
        steps = [[np.asarray(out[k]) for out in (loaded.step(t, h), step(token=t, hidden=h))
                  for k in ("log_probs", "new_hidden")] for t, h in feeds["step"]]
        return {"batch": batch, "step": steps}
    return run_onnx_isolated(artifact, form, feeds)


def max_difference(actual: dict, expected: dict, what: str) -> float:
    """Largest |Δ| between an artifact's outputs and Keras's (NaN counts as infinite)."""
    worst = 0.0
    for form, runs in actual.items():
        for got_list, want_list in zip(runs, expected[form]):
            for k, got in enumerate(got_list):
                want = want_list[k % len(want_list)]
                if np.shape(got) != np.shape(want):
                    raise ExportError(f"export: {what} returns shape {np.shape(got)} where "
                                      f"the model returns {np.shape(want)}; nothing was "
                                      "written")
                diff = float(np.max(np.abs(np.asarray(got, np.float64) - want)))
                worst = max(worst, diff if diff == diff else float("inf"))
    return worst


# -- export ---------------------------------------------------------------------------------
def export_language_model(model, path: str | os.PathLike, format: str = "keras",
                          form: str | None = None, verify: bool = True, atol: float = 1e-5,
                          opset: int = DEFAULT_OPSET) -> ExportResult:
    """Write ``model``'s inference graph to ``path`` and check it against Keras.

    Args:
        model: a :class:`~kdarts.recurrent.RecurrentLanguageModel` or the path of its
            ``.keras`` file (which ``path`` must not be).
        path: a ``.keras`` file, a SavedModel folder or a ``.onnx`` file.
        format: ``"keras"``, ``"saved_model"`` or ``"onnx"``.
        form: ONNX only: ``"batch"`` (default) or ``"step"``; the other formats hold both.
        verify: reload the artifact and compare both forms' outputs with Keras's.
        atol: largest tolerated |Δ| of log-probabilities and hidden states.

    Returns :class:`kdarts.export.ExportResult` (``input_contract``: the contract). The
    vocabulary goes to ``<name>.vocab.json`` beside the artifact.

    Raises:
        ValueError: a bad format, form, suffix or model. ExportError: an unusable
            destination, a failed write, or outputs beyond ``atol``.
    """
    from kdarts.recurrent.language_model import RecurrentLanguageModel

    if format not in FORMATS:
        raise ValueError(f"export: unknown format {format!r}; valid formats: "
                         f"{', '.join(FORMATS)}")
    if form is not None and format != "onnx":
        raise ValueError("export: form applies to the onnx format (the others hold both)")
    form = (form or "batch") if format == "onnx" else None
    if form is not None and form not in FORMS:
        raise ValueError(f"export: form must be one of {', '.join(FORMS)}, got {form!r}")
    path = os.path.abspath(os.fspath(path))
    if isinstance(model, (str, os.PathLike)):
        if os.path.abspath(os.fspath(model)) == path:
            raise ValueError(f"export: {path} is the model being exported; give another "
                             "destination")
        model = load_language_model(model)
    if not isinstance(model, RecurrentLanguageModel):
        raise ValueError(f"export: expected a RecurrentLanguageModel, got "
                         f"{type(model).__name__}")
    problem = suffix_error(path, format)
    if problem:
        raise ValueError(f"export: {problem}")
    check_destination(path, format)
    contract = language_model_contract(model, form)
    feeds = sample_feeds(model)
    expected = keras_outputs(model, feeds)
    parent, name = os.path.split(path)
    work = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    try:
        artifact = os.path.join(work, name)
        try:
            _WRITERS[format](model, artifact, form, int(opset), contract)
        except Exception as err:  # noqa: BLE001 - any writer failure is an export failure
            raise ExportError(f"export: writing the {format} artifact for {path} failed: "
                              f"{type(err).__name__}: {' '.join(str(err).split())[:500]}") \
                from err
        diff = None
        if verify:
            try:
                actual = run_artifact(format, artifact, form, feeds)
            except Exception as err:  # noqa: BLE001 - an artifact that does not run fails
                raise ExportError(f"export: the {format} artifact for {path} could not be "
                                  f"run for verification: {type(err).__name__}: {err}") \
                    from err
            diff = max_difference(actual, expected, f"the {format} artifact for {path}")
            if not diff <= atol:
                raise ExportError(f"export: the {format} artifact for {path} differs from "
                                  f"the Keras model by up to {diff:.3g} (tolerance "
                                  f"{atol:g}); nothing was written", max_abs_diff=diff)
        vocab_tmp = os.path.join(work, "vocab.json")
        with open(vocab_tmp, "w", encoding="utf-8") as f:
            json.dump(vocabulary_file(model, contract), f)
        _replace(artifact, path, work)
        os.replace(vocab_tmp, vocabulary_path(path))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(path=path, format=format, max_abs_diff=diff, input_contract=contract)


def _replace(artifact: str, path: str, work: str) -> None:
    """Rename the verified artifact to ``path``; a folder's old copy is parked until then."""
    if os.path.isdir(artifact) and os.path.exists(path):
        backup = os.path.join(work, ".previous")
        os.rename(path, backup)
        try:
            os.rename(artifact, path)
        except OSError:
            os.rename(backup, path)
            raise
    else:
        os.replace(artifact, path)


def load_language_model(path: str | os.PathLike):
    """A ``.keras`` language model (:func:`kdarts.export.load_model`'s checks and errors)."""
    from kdarts.export import load_model
    from kdarts.recurrent import language_model  # noqa: F401  (registers the classes)
    from kdarts.recurrent.language_model import RecurrentLanguageModel

    model = load_model(path)
    if not isinstance(model, RecurrentLanguageModel):
        raise ValueError(f"{os.fspath(path)}: holds a {type(model).__name__}, not a "
                         "RecurrentLanguageModel")
    return model


# -- sampling -------------------------------------------------------------------------------
def generate(model_or_path, prompt_words: Sequence[str], n: int, temperature: float = 1.0,
             seed: int = 0) -> list[str]:
    """``n`` words sampled after ``prompt_words`` with the step form (Keras).

    The prompt is read from a zero hidden state (unknown words as ``<unk>``); each next
    word is drawn from softmax(log_probs / temperature) with numpy's generator seeded
    by ``seed`` (the same seed gives the same words); ``temperature`` 0 takes the most
    likely word.
    """
    import tensorflow as tf

    model = model_or_path if not isinstance(model_or_path, (str, os.PathLike)) \
        else load_language_model(model_or_path)
    if not prompt_words:
        raise ValueError("generate: the prompt needs at least one word")
    if temperature < 0:
        raise ValueError(f"generate: temperature must be >= 0, got {temperature}")
    step = tf.function(model.step, input_signature=step_specs(model.units))
    rng = np.random.default_rng(seed)
    hidden = tf.zeros([1, model.units])
    for word in prompt_words:
        log_probs, hidden = step(tf.constant([model.token_id(word)], tf.int32), hidden)
    words = []
    for _ in range(int(n)):
        scores = np.asarray(log_probs[0], np.float64)
        if temperature == 0:
            token = int(np.argmax(scores))
        else:
            p = np.exp((scores - scores.max()) / temperature)
            token = int(rng.choice(len(p), p=p / p.sum()))
        words.append(model.vocabulary[token])
        log_probs, hidden = step(tf.constant([token], tf.int32), hidden)
    return words


if __name__ == "__main__":
    _child_main(sys.argv[1])
