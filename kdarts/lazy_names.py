"""Package attributes imported on first use, so light imports stay free of TensorFlow.

Example:
    >>> __getattr__, __dir__ = lazy_names(__name__, globals(),
    ...                                   {"SearchNetwork": "kdarts.image"})  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_names(package: str, namespace: dict, table: dict[str, str]
               ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` serving ``table``'s names (name → module).

    A name is imported from its module the first time it is used and then kept in
    ``namespace`` (the package's ``globals()``), so later uses cost a dict lookup.
    """

    def __getattr__(name: str):
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        if "keras" in sys.modules:
            # the module is complete: what Keras needs to load a saved model is imported
            # now (kdarts.keras_registry waits while a kdarts module is being imported)
            from kdarts.keras_registry import register_all

            register_all()
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
