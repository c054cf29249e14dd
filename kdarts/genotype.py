"""What every genotype kind shares: its error, its JSON file, presets or a file by name.

A space's genotype (:mod:`kdarts.image.genotype`, :mod:`kdarts.recurrent.genotype`) is a
frozen dataclass with ``to_dict`` and ``from_dict(data, source)``; :class:`GenotypeFile`
gives it ``save`` and ``load``, :func:`resolve_preset_or_file` its lookup by name. No
TensorFlow, no numpy.

Example:
    >>> from kdarts.genotype import GenotypeError, resolve_preset_or_file
    >>> from kdarts.image.genotype import PRESETS, Genotype
    >>> resolve_preset_or_file("DARTS_V2", Genotype, PRESETS) is PRESETS["DARTS_V2"]
    True
"""

from __future__ import annotations

import json
import os

from kdarts.atomic import atomic_write_text


class GenotypeError(ValueError):
    """A genotype (or genotype file) is malformed; the message names the problem."""


class GenotypeFile:
    """JSON files for a genotype class with ``to_dict`` and ``from_dict(data, source)``:
    :meth:`save` writes atomically, :meth:`load` validates and names the file in errors."""

    def save(self, path: str | os.PathLike) -> None:
        """Write the genotype as JSON, atomically (temp file + rename)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Read and validate a genotype JSON file; errors name the file and the field."""
        path = os.fspath(path)
        return cls.from_dict(read_genotype_json(path, hint=cls._file_hint()), source=path)

    @classmethod
    def _file_hint(cls) -> str:
        """What to give instead of a file that is not a genotype."""
        return "give a genotype.json"


def read_genotype_json(path: str | os.PathLike, hint: str = "give a genotype.json") -> dict:
    """The parsed JSON of a genotype file; :class:`GenotypeError` naming the file otherwise.

    ``hint`` says what to give instead when the file is not text (an image, say).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise GenotypeError(f"{path}: cannot read genotype file ({err.strerror})") from None
    except UnicodeDecodeError:  # e.g. an image: say what is expected, not the codec
        raise GenotypeError(f"{path}: not a genotype JSON file (not UTF-8 text); {hint}") \
            from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise GenotypeError(
            f"{path}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None


def resolve_preset_or_file(spec, cls: type, presets: dict):
    """``spec`` itself if it is a ``cls``, else the preset it names, else ``cls`` loaded
    from the JSON file it names; GenotypeError for a name that is neither."""
    if isinstance(spec, cls):
        return spec
    if isinstance(spec, str) and spec in presets:
        return presets[spec]
    if isinstance(spec, str) and not os.path.exists(spec) and not spec.endswith(".json"):
        raise GenotypeError(
            f"'{spec}' is neither a preset ({', '.join(presets)}) nor an existing genotype file"
        )
    return cls.load(spec)
