"""The package's layers, read from the source with ``ast`` (no module is imported).

Every ``import`` counts, at module level or inside a function, except those under
``if TYPE_CHECKING:``. Rules (docs/design.md, "Layout and data flow"):

* no import cycle between kdarts modules;
* ``kdarts.data`` reaches none of the method core (``kdarts.search``), the two halves
  (``kdarts.image``, ``kdarts.recurrent``), ``kdarts.runs``, ``kdarts.cli``, not even
  through another module;
* the method core reaches neither half (both build on it); the halves never reach each
  other; none of the three imports ``kdarts.runs`` or ``kdarts.cli``;
* the modules below the core and the halves (layers, genotype files, budgets' amounts,
  checkpoints, ...) reach neither half nor the core;
* the two halves have the same file names for the same things (:data:`SAME_NAMES`), and in
  each the search side and the evaluation side never import each other;
* no import points upward: ``kdarts.options`` (names → implementations, registered as
  ``"module:Class"``) imports none of the layers it names; ``kdarts.export`` and
  ``kdarts.inference`` import neither half nor the runs or the command line;
  ``kdarts.spaces`` names the runs, export and plots of each space but imports none of
  them, and of a half only its light modules (genotype, corpus).

``kdarts.runs`` may be a module (``runs.py``) or a package (``runs/``): a rule about
``kdarts.runs`` covers it and everything under it.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "kdarts"


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name → source file, for every ``.py`` under ``root``.

    A package (``x/__init__.py``) wins over a module of the same name (``x.py``), as in
    Python's own import system.
    """
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if package else parts)
        if package or name not in files:
            files[name] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST, module: str, is_package: bool):
    """The dotted names ``node`` imports (each candidate: ``from a import b`` gives a.b and a)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:  # the else branch runs
                yield from _imports(other, module, is_package)
            continue
        if isinstance(child, ast.Import):
            for alias in child.names:
                yield (alias.name,)
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (child.level - 1)]
                base = ".".join(package + ([child.module] if child.module else []))
            else:
                base = child.module or ""
            for alias in child.names:
                yield (f"{base}.{alias.name}", base)
        yield from _imports(child, module, is_package)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module → the kdarts modules it imports (each name resolved to its module)."""
    files = module_files(root)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = set()
        for candidates in _imports(tree, name, path.name == "__init__.py"):
            for candidate in candidates:
                # `import kdarts.a.b` or a name from a module: the longest existing module
                parts = candidate.split(".")
                while parts and ".".join(parts) not in files:
                    parts.pop()
                if parts:
                    targets.add(".".join(parts))
                    break
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every module ``start`` imports, directly or not → one import chain leading to it."""
    chains = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph.get(v, ())):
            if w not in chains:
                chains[w] = chains[v] + [w]
                todo.append(w)
    return chains


@pytest.fixture(scope="module")
def graph():
    return import_graph()


#: The method core and the two halves built on it.
CORE, HALVES = "kdarts.search", ("kdarts.image", "kdarts.recurrent")
#: What both halves hold under the same names.
SAME_NAMES = ("genotype", "operations", "search_cell", "search_model", "cell", "model",
              "training", "export")
#: A half's search side and its evaluation side (of a found genotype).
SEARCH_SIDE, EVAL_SIDE = ("search_cell", "search_model"), ("cell", "model", "training")
#: Modules below the core and the halves: both halves (and the core) use them.
SHARED = ("kdarts.ops", "kdarts.genotype", "kdarts.budget", "kdarts.preprocessing",
          "kdarts.optimizers", "kdarts.learning_rate", "kdarts.callbacks", "kdarts.checkpoints",
          "kdarts.parameters", "kdarts.compat", "kdarts.runtime", "kdarts.atomic",
          "kdarts.geometry", "kdarts.options", "kdarts.lazy_names", "kdarts.keras_registry",
          "kdarts.inference")


def test_the_graph_sees_the_imports(graph):
    """The parser finds imports of every form (else the rules below would pass vacuously)."""
    assert "kdarts.genotype" in graph["kdarts"]               # from kdarts.genotype import …
    assert "kdarts.image.cell" in graph["kdarts.image.model"]  # from kdarts.image.cell import …
    assert "kdarts.search.alternating" in graph["kdarts.recurrent.search_model"]
    assert "kdarts.data.catalog" in graph["kdarts.data.files"]
    assert "kdarts.search.activations" in graph["kdarts.search.alternating"]
    assert any(_under(m, "kdarts.runs") for m in graph)


def test_no_import_cycle(graph):
    cycles = find_cycles(graph)
    assert not cycles, "import cycles between kdarts modules: " + "; ".join(
        " ↔ ".join(c) for c in cycles)


def reaching(graph: dict[str, set[str]], layer: str, forbidden: str) -> list[str]:
    """An import chain from each module of ``layer`` that reaches ``forbidden``."""
    return sorted(" → ".join(chain) for module in graph if _under(module, layer)
                  for target, chain in reachable(graph, module).items()
                  if _under(target, forbidden))


@pytest.mark.parametrize("forbidden", [CORE, *HALVES, "kdarts.runs", "kdarts.cli"])
def test_data_stays_below_the_core_the_halves_and_runs(graph, forbidden):
    bad = reaching(graph, "kdarts.data", forbidden)
    assert not bad, f"kdarts.data reaches {forbidden}: " + "; ".join(bad)


@pytest.mark.parametrize("layer, forbidden", [
    # both halves build on the core, never the other way, and never on each other
    *[(CORE, half) for half in HALVES],
    *[(half, other) for half in HALVES for other in HALVES if other != half],
    # the layers below reach none of them
    *[(lower, upper) for lower in SHARED for upper in (CORE, *HALVES)],
])
def test_the_core_and_the_halves_stay_apart(graph, layer, forbidden):
    bad = reaching(graph, layer, forbidden)
    assert not bad, f"{layer} reaches {forbidden}: " + "; ".join(bad)


@pytest.mark.parametrize("half", HALVES)
def test_the_halves_have_the_same_names(half):
    files = module_files()
    missing = [name for name in SAME_NAMES if f"{half}.{name}" not in files]
    assert not missing, f"{half} has no {', '.join(missing)}"


@pytest.mark.parametrize("half", HALVES)
def test_a_half_searches_and_evaluates_apart(graph, half):
    """The search cell and model and the evaluation cell, model and training share what
    they share through the half's ``operations`` and ``genotype``, not through each other."""
    bad = []
    for sides in ((SEARCH_SIDE, EVAL_SIDE), (EVAL_SIDE, SEARCH_SIDE)):
        for name in sides[0]:
            bad += [f"{half}.{name} → {t}" for t in graph[f"{half}.{name}"]
                    if t in {f"{half}.{other}" for other in sides[1]}]
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("layer, forbidden", [
    *[(layer, upper) for layer in (CORE, *HALVES) for upper in ("kdarts.runs", "kdarts.cli")],
    # nothing points upward: a registry of names, the export pipeline, the space lookup
    *[("kdarts.options", upper) for upper in (CORE, *HALVES, "kdarts.runs", "kdarts.cli")],
    *[(lower, upper) for lower in ("kdarts.export", "kdarts.inference")
      for upper in (*HALVES, "kdarts.runs", "kdarts.cli")],
    ("kdarts.inference", "kdarts.export"),
    *[("kdarts.spaces", upper) for upper in ("kdarts.runs", "kdarts.cli", "kdarts.export",
                                             "kdarts.plots", CORE)],
])
def test_layers_stay_apart(graph, layer, forbidden):
    bad = upward_imports(graph, layer, forbidden)
    assert not bad, f"{layer} imports {forbidden}: " + "; ".join(bad)


def test_spaces_imports_only_the_halves_light_modules(graph):
    light = {f"{half}.{name}" for half in HALVES for name in ("genotype", "corpus")} | set(
        HALVES)
    bad = [t for t in graph["kdarts.spaces"] if any(_under(t, h) for h in HALVES)
           and t not in light]
    assert not bad, "kdarts.spaces imports " + ", ".join(sorted(bad))


def upward_imports(graph: dict[str, set[str]], layer: str, forbidden: str) -> list[str]:
    """``module → target`` for every import from ``layer`` into ``forbidden``."""
    return sorted(f"{m} → {t}" for m, targets in graph.items() if _under(m, layer)
                  for t in targets if _under(t, forbidden))


def test_upward_rules_catch_what_they_forbid(tmp_path):
    """The two upward imports the package had: a schedule class imported by the registry
    of option names, and the language model's module imported by the archive loader (in
    a function); a name in a ``"module:Class"`` string is no import."""
    pkg = tmp_path / "kdarts"
    for folder in ("", "search", "export", "recurrent"):
        (pkg / folder).mkdir(exist_ok=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "search" / "schedules.py").write_text("class FixedSchedule: pass\n")
    (pkg / "recurrent" / "model.py").write_text("class Model: pass\n")
    (pkg / "options.py").write_text(
        "SCHEDULES = {'fixed': 'kdarts.search.schedules:FixedSchedule'}\n"
        "def make_schedule():\n    from kdarts.search.schedules import FixedSchedule\n")
    (pkg / "export" / "keras_archive.py").write_text(
        "def register():\n    import kdarts.recurrent.model\n")
    g = import_graph(pkg)
    assert upward_imports(g, "kdarts.options", "kdarts.search") == [
        "kdarts.options → kdarts.search.schedules"]
    assert upward_imports(g, "kdarts.export", "kdarts.recurrent") == [
        "kdarts.export.keras_archive → kdarts.recurrent.model"]
    (pkg / "options.py").write_text(
        "SCHEDULES = {'fixed': 'kdarts.search.schedules:FixedSchedule'}\n")
    assert upward_imports(import_graph(pkg), "kdarts.options", "kdarts.search") == []


def test_rules_catch_what_they_forbid(tmp_path):
    """On a made-up package: a function-level cycle, a data → image import through a
    helper, a relative import; and TYPE_CHECKING imports are left out."""
    pkg = tmp_path / "kdarts"
    for folder in ("", "data", "image", "runs"):
        (pkg / folder).mkdir(exist_ok=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "image" / "model.py").write_text("from kdarts.image.training import Schedule\n")
    (pkg / "image" / "training.py").write_text(
        "def compile():\n    from kdarts.image.model import Net\n")
    (pkg / "data" / "files.py").write_text("from .. import helper\n")
    (pkg / "helper.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import kdarts.runs.io\n"
        "import kdarts.image.model\n")
    (pkg / "runs" / "io.py").write_text("import kdarts.helper\n")
    g = import_graph(pkg)
    assert find_cycles(g) == [["kdarts.image.model", "kdarts.image.training"]]
    assert g["kdarts.data.files"] == {"kdarts.helper"}
    assert g["kdarts.helper"] == {"kdarts.image.model"}
    assert "kdarts.image.model" in reachable(g, "kdarts.data.files")
    assert "kdarts.data.files → kdarts.helper → kdarts.image.model" in reaching(
        g, "kdarts.data", "kdarts.image")
    os.remove(pkg / "image" / "training.py")
    assert find_cycles(import_graph(pkg)) == []


def test_every_serializable_module_is_registered():
    """``kdarts.keras_registry`` imports every module that registers a Keras class, so a
    saved model finds its classes whichever module (or half) they moved to."""
    files = module_files()
    tree = ast.parse(files["kdarts.keras_registry"].read_text(encoding="utf-8"))
    listed = next(ast.literal_eval(node.value) for node in tree.body
                  if isinstance(node, ast.Assign)
                  and [t.id for t in node.targets] == ["SERIALIZABLE_MODULES"])
    registering = sorted(name for name, path in files.items()
                         if name != "kdarts.keras_registry"
                         and "register_keras_serializable(" in path.read_text(encoding="utf-8"))
    assert registering and not set(registering) - set(listed), registering
