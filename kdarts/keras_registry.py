"""Keras finds kdarts's layers and models by their registered names after ``import kdarts``.

Keras 3 rebuilds a saved object from its ``registered_name`` (``kdarts>EvalNetwork``,
``kdarts>RecurrentLanguageModel``, ...), which it finds only if the class's module has
been imported (its ``register_keras_serializable`` decorator has run); it imports a
module named in the config only for Keras's own packages. ``import kdarts`` does not
import TensorFlow, so it cannot import those modules itself: :func:`register_on_keras_import`
imports them right after Keras is, so that

    >>> import kdarts, keras                                  # doctest: +SKIP
    >>> keras.models.load_model("runs/lm-train/model.keras")  # doctest: +SKIP

loads an image network or a language model alike.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys

#: The modules whose classes a saved kdarts model may name, dependencies first.
SERIALIZABLE_MODULES = (
    "kdarts.ops", "kdarts.optimizers", "kdarts.preprocessing", "kdarts.search.activations",
    "kdarts.image.operations", "kdarts.image.edge", "kdarts.image.search_cell",
    "kdarts.image.search_model", "kdarts.image.cell", "kdarts.image.model",
    "kdarts.image.training", "kdarts.recurrent.search_cell", "kdarts.recurrent.cell",
    "kdarts.recurrent.search_model", "kdarts.recurrent.model",
)

_pending = list(SERIALIZABLE_MODULES)
_registering = False  # register_all's own imports pass through the finder


def _initializing_kdarts() -> bool:
    """Whether a kdarts module is part way through its own import (it imported Keras)."""
    return any(getattr(getattr(module, "__spec__", None), "_initializing", False)
               for name, module in list(sys.modules.items())
               if name == "kdarts" or name.startswith("kdarts."))


def register_all() -> bool:
    """Import every module of :data:`SERIALIZABLE_MODULES` not imported yet; returns
    whether all are. Nothing is imported while a kdarts module is still being imported
    (its half-defined names would break the others' imports): a later call does it."""
    global _registering
    if not _pending:
        return True
    if _registering or _initializing_kdarts():
        return False
    _registering = True
    try:
        while _pending:
            importlib.import_module(_pending[0])
            _pending.pop(0)
    finally:
        _registering = False
    return True


class _AfterKerasImport:
    """A ``sys.meta_path`` finder: at the first import of ``keras`` it lets Keras load as
    Python would, then imports kdarts's serializable modules. If a kdarts module
    imported Keras, they are imported at the first import after that module is
    complete; then the finder leaves ``sys.meta_path``."""

    keras_loaded = False

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if cls.keras_loaded:
            if name == "kdarts" or name.startswith("kdarts."):
                # not while Python looks for a kdarts module: register_all could import it
                # first, and Python would then run it a second time (two copies of its
                # classes); the next import after it does it
                return None
            if register_all():
                with contextlib.suppress(ValueError):
                    sys.meta_path.remove(cls)
            return None
        if name != "keras":
            return None
        sys.meta_path.remove(cls)
        spec = importlib.util.find_spec(name)  # the other finders' answer
        if spec is None or spec.loader is None:
            return spec
        loader, exec_module = spec.loader, spec.loader.exec_module

        def exec_then_register(module):
            try:
                exec_module(module)
            finally:
                with contextlib.suppress(AttributeError):
                    del loader.exec_module  # the loader's own method again
            cls.keras_loaded = True
            if not register_all():
                sys.meta_path.insert(0, cls)  # again at a later import

        loader.exec_module = exec_then_register
        return spec


def register_on_keras_import() -> None:
    """Make kdarts's saved models loadable by ``keras.models.load_model``: now if Keras is
    imported, else right after the process first imports it (TensorFlow is not imported
    here)."""
    if "keras" in sys.modules:
        if not register_all() and _AfterKerasImport not in sys.meta_path:
            _AfterKerasImport.keras_loaded = True
            sys.meta_path.insert(0, _AfterKerasImport)
        return
    if _AfterKerasImport not in sys.meta_path:
        sys.meta_path.insert(0, _AfterKerasImport)
