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
The export goes through :mod:`kdarts.export.pipeline`, as an image network's does:
destination checked, written in a temp sibling, verified, then renamed with its vocabulary.
This module holds only what is the language model's: its contract (tokens →
log-probabilities, in two forms), its writers, feeds and the runs of its artifacts.

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
from typing import Sequence

import numpy as np

from kdarts.export import DEFAULT_OPSET, ExportResult, onnx_file, saved_model, suffix_error
from kdarts.export.pipeline import check_destination, check_tolerance, max_abs_difference, \
    run_for_verification, write_verified

FORMATS = ("keras", "saved_model", "onnx")
FORMS = ("batch", "step")
VOCAB_SUFFIX = ".vocab.json"
VOCAB_FILE = "kdarts_vocab.json"  # inside a SavedModel's assets.extra


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

    archive = keras.export.ExportArchive()
    serve = archive.add_endpoint("serve", lambda tokens: model(tokens, training=False),
                                 input_signature=batch_specs())
    archive.add_endpoint("serving_default", lambda tokens: {"log_probs": serve(tokens)},
                         input_signature=batch_specs())
    archive.add_endpoint("step", lambda token, hidden: dict(zip(
        ("log_probs", "new_hidden"), model.step(token, hidden))),
        input_signature=step_specs(model.units))
    saved_model.write_archive(archive, artifact, contract, {
        VOCAB_FILE: json.dumps(vocabulary_file(model, contract))})


def _write_onnx(model, artifact: str, form: str, opset: int, contract: dict) -> None:
    import tensorflow as tf

    if form == "batch":
        specs = batch_specs()
        fn = tf.function(lambda tokens: {"log_probs": model(tokens, training=False)},
                         input_signature=specs)
    else:
        specs = step_specs(model.units)
        fn = tf.function(lambda token, hidden: dict(zip(
            ("log_probs", "new_hidden"), model.step(token, hidden))), input_signature=specs)
    onnx_file.save(onnx_file.convert(fn, specs, opset), artifact, contract,
                   contract["forms"][form]["inputs"])


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


#: Each form's ONNX outputs, in the order its graph returns them.
ONNX_OUTPUTS = {"batch": ("log_probs",), "step": ("log_probs", "new_hidden")}


def run_onnx(artifact: str, form: str, feeds: dict) -> dict:
    """Outputs of an ONNX artifact of ``form`` in ONNX Runtime, in a child process
    (:func:`kdarts.inference.run_onnx_isolated`: a native abort cannot end this one)."""
    from kdarts.inference import run_onnx_isolated

    named = ([{"tokens": x} for x in feeds["batch"]] if form == "batch" else
             [{"token": t, "hidden": h} for t, h in feeds["step"]])
    return {form: run_onnx_isolated(artifact, named, ONNX_OUTPUTS[form])}


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
    return run_onnx(artifact, form, feeds)


def output_pairs(actual: dict, expected: dict) -> list:
    """(artifact's, Keras's) output pairs: each of an artifact's outputs for a feed against
    the model's (a SavedModel's endpoint and signature both against the same)."""
    return [(got, want_list[k % len(want_list)])
            for form, runs in actual.items() for got_list, want_list in zip(runs, expected[form])
            for k, got in enumerate(got_list)]


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
    from kdarts.recurrent.model import RecurrentLanguageModel

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
    what = f"the {format} artifact for {path}"

    def check(artifact: str) -> float:
        actual = run_for_verification(format, path, lambda: run_artifact(
            format, artifact, form, feeds))
        return check_tolerance(max_abs_difference(output_pairs(actual, expected), what),
                               atol, what)

    diff = write_verified(
        path, format, lambda artifact: _WRITERS[format](model, artifact, form, int(opset),
                                                        contract),
        check if verify else None,
        side_files={vocabulary_path(path): json.dumps(vocabulary_file(model, contract))})
    return ExportResult(path=path, format=format, max_abs_diff=diff, input_contract=contract)


def load_language_model(path: str | os.PathLike):
    """A ``.keras`` language model (:func:`kdarts.export.load_model`'s checks and errors)."""
    from kdarts.export import load_model
    from kdarts.recurrent.model import RecurrentLanguageModel  # importing it registers its classes

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
