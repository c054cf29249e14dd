"""Recurrent cell search for language modelling (DARTS's recurrent space, DARTS-PRIME's search).

Modules: :mod:`.genotype` (the discrete cell, presets; no TensorFlow), :mod:`.cell` (the
search cell layer), :mod:`.dropout` (locked and embedding dropout masks), :mod:`.model`
(the search model and its step), :mod:`.callbacks` (its result: the best validation
epoch's architecture), :mod:`.data` (BPTT segments), :mod:`.corpus` (a PTB-style
corpus from the Python documentation every install carries); for a found genotype,
:mod:`.eval_cell` and :mod:`.language_model` (the evaluation cell and language model),
:mod:`.asgd` and :mod:`.training` (SGD → ASGD training, perplexity), :mod:`.export`
(``.keras``/SavedModel/ONNX exports and sampling).

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
    "RecurrentSearchCell": "kdarts.recurrent.cell",
    "RecurrentSearchModel": "kdarts.recurrent.model",
    "count_weights": "kdarts.recurrent.model",
    "BestValidationArchitecture": "kdarts.recurrent.callbacks",
    "batchify": "kdarts.recurrent.data",
    "bptt_dataset": "kdarts.recurrent.data",
    "BPTTStream": "kdarts.recurrent.data",
    "stdlib_corpus": "kdarts.recurrent.corpus",
    "RecurrentCell": "kdarts.recurrent.eval_cell",
    "RecurrentLanguageModel": "kdarts.recurrent.language_model",
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
