"""Recurrent cell search for language modelling (DARTS's recurrent space, DARTS-PRIME's search).

Modules, by the image half's file names (:mod:`kdarts.image`): :mod:`.genotype` (the
discrete cell, presets; no TensorFlow), :mod:`.operations` (the highway step, the tied
embedding and the losses the search and the evaluation share); the search:
:mod:`.search_cell`, :mod:`.search_model` (``RecurrentSearchModel``: its gradients and BPTT
pairing; the step is the method core's, :mod:`kdarts.search`), :mod:`.callbacks` (its
result: the best validation epoch's architecture); for a found genotype: :mod:`.cell`,
:mod:`.model` (the evaluation cell and language model), :mod:`.training` (SGD → ASGD
training, perplexity) with :mod:`.asgd`; :mod:`.export` (the language model's contract:
``.keras``/SavedModel/ONNX exports, and sampling). Its own: :mod:`.data` (BPTT segments),
:mod:`.dropout` (locked and embedding dropout masks), :mod:`.corpus` (a PTB-style corpus
from the Python documentation every install carries).

Example:
    >>> from kdarts.recurrent import DARTS_V2, RecurrentSearchModel   # doctest: +SKIP
    >>> model = RecurrentSearchModel(vocab_size=10000, units=300)      # doctest: +SKIP

The TensorFlow-backed names load on first use, so the genotypes stay light.
"""

from kdarts.lazy_names import lazy_names as _lazy_names

from kdarts.recurrent.genotype import (  # noqa: F401
    CRB_RECURRENT_PRIMITIVES,
    DARTS_V1,
    DARTS_V2,
    RECURRENT_PRIMITIVES,
    RecurrentGenotype,
    discretize_recurrent,
    resolve_recurrent_genotype,
)

_LAZY = {
    "RecurrentSearchCell": "kdarts.recurrent.search_cell",
    "RecurrentSearchModel": "kdarts.recurrent.search_model",
    "count_weights": "kdarts.recurrent.search_model",
    "BestValidationArchitecture": "kdarts.recurrent.callbacks",
    "batchify": "kdarts.recurrent.data",
    "bptt_dataset": "kdarts.recurrent.data",
    "BPTTStream": "kdarts.recurrent.data",
    "stdlib_corpus": "kdarts.recurrent.corpus",
    "RecurrentCell": "kdarts.recurrent.cell",
    "RecurrentLanguageModel": "kdarts.recurrent.model",
    "AveragedSGD": "kdarts.recurrent.asgd",
    "LanguageModelTrainer": "kdarts.recurrent.training",
    "evaluate_perplexity": "kdarts.recurrent.training",
    "export_language_model": "kdarts.recurrent.export",
    "load_language_model": "kdarts.recurrent.export",
    "generate": "kdarts.recurrent.export",
}


__getattr__, __dir__ = _lazy_names("kdarts.recurrent", globals(), _LAZY)

__all__ = ["CRB_RECURRENT_PRIMITIVES", "DARTS_V1", "DARTS_V2", "RECURRENT_PRIMITIVES",
           "RecurrentGenotype", "discretize_recurrent", "resolve_recurrent_genotype",
           *_LAZY]
