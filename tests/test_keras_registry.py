"""kdarts's serializable modules are imported after Keras, and never load a module twice."""

import sys

from kdarts import keras_registry


def test_registration_follows_a_modules_loading_and_never_loads_it_twice(tmp_path, monkeypatch):
    """The registration waiting for a later import runs after that import's module has
    loaded: if it ran inside the lookup, a serializable module importing the very module
    being looked up would load it once, and the lookup would load it again (two copies
    of its classes: a search model then refused its own data stream)."""
    package = tmp_path / "regpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "data.py").write_text("LOADS = []\nLOADS.append(1)\nclass Stream:\n    pass\n")
    (package / "model.py").write_text("from regpkg.data import Stream\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("regpkg", "regpkg.data", "regpkg.model"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    # Keras is loaded and a registration waits (as after a kdarts module imported Keras)
    finder = keras_registry._AfterKerasImport
    monkeypatch.setattr(keras_registry, "_pending", ["regpkg.model"])
    monkeypatch.setattr(finder, "keras_loaded", True)
    monkeypatch.setattr(sys, "meta_path", [finder] + [f for f in sys.meta_path
                                                       if f is not finder])
    import regpkg  # noqa: F401  (the parent: registration runs after it, importing both)
    import regpkg.data as data

    model = sys.modules["regpkg.model"]
    assert keras_registry._pending == [] and finder not in sys.meta_path
    assert data.LOADS == [1] and model.Stream is data.Stream

    # the case that loaded twice: the looked-up module is the one registration imports
    for name in ("regpkg.data", "regpkg.model"):
        del sys.modules[name]
    monkeypatch.setattr(keras_registry, "_pending", ["regpkg.model"])
    sys.meta_path.insert(0, finder)
    import regpkg.data as data

    model = sys.modules["regpkg.model"]
    assert data.LOADS == [1] and model.Stream is data.Stream
    for name in ("regpkg", "regpkg.data", "regpkg.model"):
        sys.modules.pop(name, None)
