"""The two search spaces, each described once, and the one lookup that says which space a
dataset, a genotype, a saved model or a run folder's arguments belong to.

* ``image``: DARTS's convolutional cells (normal and reduction) on images: a TFDS name,
  a folder of images or an ``.npz`` file.
* ``recurrent``: DARTS's recurrent cell in a word-level language model, on a corpus: the
  built-in ``kdarts_text`` or a folder holding ``train.txt``, ``valid.txt``, ``test.txt``.

A :class:`Space` names what belongs to its space: its defaults per command, its jobs
(the run functions), its exporter and export formats, its genotype loader and drawing,
and the files its runs write. They are ``"module:name"`` references resolved on use,
so this module imports no TensorFlow and no layer above it: the command line, the
runs, export and the plots all ask it, and none decides the space for itself.

Example:
    >>> space_for(dataset="kdarts_text").name
    'recurrent'
    >>> space_for(dataset="kdarts_digits").name
    'image'
    >>> space_named("image").jobs["train"]
    'kdarts.runs.train:train_run'
"""

from __future__ import annotations

import importlib
import json
import os
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from kdarts.checkpoints import CHECKPOINT_STATE, CHECKPOINT_WEIGHTS
from kdarts.image.genotype import PRESETS, Genotype
from kdarts.recurrent.corpus import CORPUS_FILES, EMBEDDED_CORPUS, is_corpus
from kdarts.recurrent.genotype import RecurrentGenotype

IMAGE = "image"
RECURRENT = "recurrent"
#: The class a language model's ``.keras`` archive names in its config.
LANGUAGE_MODEL_CLASS = "RecurrentLanguageModel"
#: The file a search folder holds its genotype in.
GENOTYPE_FILE = "genotype.json"
#: The folder TensorBoard's event files go to, in any run folder.
TENSORBOARD_DIR = "tensorboard"


class SpaceError(ValueError):
    """An input that belongs to no search space (or could belong to either); one line."""


def resolve(reference: str) -> Any:
    """The object a ``"module:name"`` reference names (its module imported now)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Space:
    """What belongs to one search space; the references resolve on use (:func:`resolve`).

    Attributes:
        name: ``"image"`` or ``"recurrent"``, as run folders record it (``run.json``).
        data: what its ``--dataset`` is, for messages.
        takes_dataset, takes_genotype, takes_saved_model: whether an input is this
            space's (read without TensorFlow).
        defaults: command → its defaults table.
        jobs: command → its run function.
        genotype_loader: a genotype from a file, a search folder or a preset (RunError).
        genotype_figure: the drawing of its genotype.
        exporter: writes and verifies an artifact (:mod:`kdarts.export`'s pipeline).
        export_formats: the formats it exports to.
        run_files: command → the files its run writes in its folder.
    """

    name: str
    data: str
    takes_dataset: Callable[[str], bool]
    takes_genotype: Callable[[Any], bool]
    takes_saved_model: Callable[[str], bool]
    defaults: Mapping[str, str]
    jobs: Mapping[str, str]
    genotype_loader: str
    genotype_figure: str
    exporter: str
    export_formats: tuple[str, ...]
    run_files: Mapping[str, tuple[str, ...]]

    def defaults_for(self, command: str) -> dict:
        """The defaults ``command`` (``"search"`` or ``"train"``) starts from."""
        return resolve(self.defaults[command])

    def job(self, command: str) -> Callable:
        """The run function of ``command`` (``"search"`` or ``"train"``)."""
        return resolve(self.jobs[command])

    def load_genotype(self, spec):
        """:attr:`genotype_loader` applied to ``spec``."""
        return resolve(self.genotype_loader)(spec)


# ------------------------------------------------------------------- what is whose


def _json_of(spec) -> dict | None:
    """The JSON object in a genotype file (or a search folder's genotype.json), else None."""
    if not isinstance(spec, (str, os.PathLike)):
        return None
    spec = os.fspath(spec)
    path = os.path.join(spec, GENOTYPE_FILE) if os.path.isdir(spec) else spec
    if not (path.endswith(".json") and os.path.isfile(path)):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_recurrent_genotype(spec) -> bool:
    """Whether ``spec`` is a recurrent genotype: the object, its dict, or a JSON file (or a
    search folder holding one) with a ``"recurrent"`` key."""
    if isinstance(spec, RecurrentGenotype):
        return True
    data = spec if isinstance(spec, dict) else _json_of(spec)
    return isinstance(data, dict) and "recurrent" in data


def is_image_genotype(spec) -> bool:
    """Whether ``spec`` is an image genotype: the object, its dict, a preset name, or a
    JSON file (or a search folder holding one) with ``"normal"`` cells."""
    if isinstance(spec, Genotype):
        return True
    if isinstance(spec, str) and spec in PRESETS:
        return True
    data = spec if isinstance(spec, dict) else _json_of(spec)
    return isinstance(data, dict) and "normal" in data


def archive_config(path: str | os.PathLike) -> dict | None:
    """A ``.keras`` archive's ``config.json`` (read without TensorFlow), else None."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return config if isinstance(config, dict) else None


def archive_class(path: str | os.PathLike) -> str | None:
    """The class a ``.keras`` archive's config names (read without TensorFlow), else None."""
    name = (archive_config(path) or {}).get("class_name")
    return name if isinstance(name, str) else None


def is_language_model_file(path: str | os.PathLike) -> bool:
    """Whether a ``.keras`` archive holds a language model (its config, no TensorFlow)."""
    return archive_class(path) == LANGUAGE_MODEL_CLASS


def _is_image_model_file(path: str | os.PathLike) -> bool:
    name = archive_class(path)
    return name is not None and name != LANGUAGE_MODEL_CLASS


def check_not_partial_corpus(dataset: str) -> None:
    """SpaceError for a folder that holds some of a corpus's files but not all (neither
    a corpus nor, most likely, meant as images)."""
    if not os.path.isdir(dataset) or is_corpus(dataset):
        return
    missing = [n for n in CORPUS_FILES if not os.path.isfile(os.path.join(dataset, n))]
    if len(missing) < len(CORPUS_FILES):
        raise SpaceError(f"--dataset {dataset} holds no {', '.join(missing)}: a corpus is "
                         f"{EMBEDDED_CORPUS!r} or a folder holding {', '.join(CORPUS_FILES)}")


# ---------------------------------------------------------------------------- spaces

_RUN_FILES = ("run.json", "history.csv", TENSORBOARD_DIR)

#: What a search writes, in either space: the record of α and the schedule, the checkpoint,
#: the genotype and its plots.
_SEARCH_FILES = _RUN_FILES + (GENOTYPE_FILE, "search_record.json", CHECKPOINT_WEIGHTS,
                              CHECKPOINT_STATE, "alpha.png", "schedule.png", "genotype.png")

IMAGE_SPACE = Space(
    name=IMAGE,
    data="image data",
    takes_dataset=lambda dataset: not is_corpus(dataset),
    takes_genotype=is_image_genotype,
    takes_saved_model=_is_image_model_file,
    defaults={"search": "kdarts.runs.defaults:SEARCH_DEFAULTS",
              "train": "kdarts.runs.defaults:TRAIN_DEFAULTS"},
    jobs={"search": "kdarts.runs.search:search_run", "train": "kdarts.runs.train:train_run"},
    genotype_loader="kdarts.runs.train:load_genotype",
    genotype_figure="kdarts.plots:cells_figure",
    exporter="kdarts.image.export:export_model",
    export_formats=("keras", "saved_model", "onnx", "tflite"),
    run_files={"search": _SEARCH_FILES,
               "train": _RUN_FILES + ("model.keras", "metrics.json", CHECKPOINT_WEIGHTS,
                                      CHECKPOINT_STATE)},
)

RECURRENT_SPACE = Space(
    name=RECURRENT,
    data=(f"a corpus ({EMBEDDED_CORPUS}, built in, or a folder holding "
          f"{', '.join(CORPUS_FILES)})"),
    takes_dataset=is_corpus,
    takes_genotype=is_recurrent_genotype,
    takes_saved_model=is_language_model_file,
    defaults={"search": "kdarts.runs.recurrent:RECURRENT_SEARCH_DEFAULTS",
              "train": "kdarts.runs.recurrent:RECURRENT_TRAIN_DEFAULTS"},
    jobs={"search": "kdarts.runs.recurrent:recurrent_search_run",
          "train": "kdarts.runs.language_model:recurrent_train_run"},
    genotype_loader="kdarts.runs.recurrent:load_recurrent_genotype",
    genotype_figure="kdarts.plots:recurrent_genotype_figure",
    exporter="kdarts.recurrent.export:export_language_model",
    export_formats=("keras", "saved_model", "onnx"),
    run_files={"search": _SEARCH_FILES,
               "train": _RUN_FILES + ("model.keras", "metrics.json", "model.keras.vocab.json",
                                      "checkpoint")},
)

#: Every space by name; a lookup asks them in this order.
SPACES: dict[str, Space] = {IMAGE: IMAGE_SPACE, RECURRENT: RECURRENT_SPACE}


def space_named(name: str) -> Space:
    """The space called ``name`` (``"image"`` or ``"recurrent"``); SpaceError otherwise."""
    try:
        return SPACES[name]
    except (KeyError, TypeError):
        raise SpaceError(f"unknown search space {name!r}; the spaces are "
                         f"{', '.join(SPACES)}") from None


def space_for(*, dataset: str | None = None, genotype=None,
              saved_model: str | os.PathLike | None = None, run: Mapping | None = None,
              default: str | None = None) -> Space:
    """The space one input belongs to (give exactly one of them).

    Args:
        dataset: a ``--dataset``: a corpus is the recurrent space's, anything else the
            image space's (a folder holding only some of a corpus's files is refused).
        genotype: a genotype object, its dict, a JSON file, a search folder holding one,
            or a preset name (``DARTS_V1``, ``DARTS_V2``: the image presets unless a
            corpus says otherwise).
        saved_model: a ``.keras`` archive (its config names the model's class).
        run: a run folder's arguments (``run.json``): their ``"space"``, image if none
            (an older run.json names no space: only image runs had one).
        default: the space's name to return when the input is nobody's (then the space's
            loader names what is wrong with it); without it, SpaceError.

    Raises:
        SpaceError: the input belongs to no space (and no ``default``), a partial
            corpus folder, or an unknown space in ``run``.
        TypeError: not exactly one input given.

    Example:
        >>> space_for(genotype={"recurrent": []}).name
        'recurrent'
        >>> space_for(run={"space": "recurrent"}).name
        'recurrent'
    """
    given = {k: v for k, v in (("dataset", dataset), ("genotype", genotype),
                               ("saved_model", saved_model), ("run", run)) if v is not None}
    if len(given) != 1:
        raise TypeError(f"space_for: give exactly one of dataset, genotype, saved_model, run; "
                        f"got {', '.join(given) or 'none'}")
    (kind, value), = given.items()
    if kind == "run":
        return space_named(value.get("space", IMAGE))
    if kind == "dataset":
        check_not_partial_corpus(value)
    takes = {"dataset": lambda s: s.takes_dataset, "genotype": lambda s: s.takes_genotype,
             "saved_model": lambda s: s.takes_saved_model}[kind]
    # the recurrent space first: its marks (a corpus, a "recurrent" key, the language
    # model's class) are specific, the image space takes every other dataset name
    for space in (RECURRENT_SPACE, IMAGE_SPACE):
        if takes(space)(value):
            return space
    if default is not None:
        return space_named(default)
    what = {"genotype": "a genotype of either space (a genotype.json file, a search folder "
                        "holding one, or a preset name)",
            "saved_model": "a .keras archive of a kdarts model"}[kind]
    raise SpaceError(f"{os.fspath(value) if isinstance(value, os.PathLike) else value}: "
                     f"not {what}")


__all__ = ["IMAGE", "IMAGE_SPACE", "LANGUAGE_MODEL_CLASS", "RECURRENT", "RECURRENT_SPACE",
           "SPACES", "Space", "SpaceError", "archive_class", "archive_config",
           "check_not_partial_corpus", "is_image_genotype", "is_language_model_file",
           "is_recurrent_genotype", "resolve", "space_for", "space_named"]
