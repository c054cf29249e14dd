"""Build the API reference from the docstrings (pdoc), offline, and check its references.

    python tools/api_reference.py -o build/api      # then open build/api/index.html

Documents ``kdarts`` (the names in ``kdarts.__all__``) and every public module under it,
so a cross-reference to any of them becomes a link. Docstrings are reStructuredText:
``:class:`~kdarts.image.SearchNetwork``` renders as a link to the class (the ``~`` only
shortens the shown name in Sphinx; pdoc shows the name as written without it).

Exits 1, naming the object and the reference, when a ``:class:``, ``:func:``, ``:meth:``,
``:mod:``, ``:data:``, ``:attr:`` or ``:exc:`` reference to a kdarts name (a dotted
``kdarts.`` name, a relative ``.module``, or a bare name) does not resolve to a
documented object, or when pdoc warns. ``tests/test_docs.py`` runs it.
"""

from __future__ import annotations

import argparse
import os
import pkgutil
import re
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: A reStructuredText cross-reference role and its target.
ROLE = re.compile(r"(?::py)?:(mod|func|data|const|class|meth|attr|exc|obj):`([^`]+)`")


def modules() -> list[str]:
    """``kdarts`` and every public module and subpackage under it, named one by one: a
    package's ``__all__`` lists its names, not its modules, and pdoc would skip those."""
    import kdarts
    from pdoc.extract import walk_specs

    specs, covered = [], set()
    found = sorted(m.name for m in pkgutil.walk_packages(kdarts.__path__, "kdarts."))
    for name in ["kdarts"] + found:
        if name not in covered and not any(p.startswith("_") for p in name.split(".")):
            specs.append(name)
            covered.update(walk_specs([name]))  # what pdoc documents for it
    return specs


def _without_tildes(rst):
    """pdoc's reStructuredText conversion, reading ``:role:`~a.b``` as ``:role:`a.b```."""
    def convert(contents, source_file=None):
        return rst(ROLE.sub(lambda m: m.group(0).replace("`~", "`", 1), contents), source_file)
    return convert


def _is_ours(target: str) -> bool:
    """Whether a role's target names a kdarts object (not keras.Model, tf.data, numpy...)."""
    return target.startswith(("kdarts.", ".")) or target == "kdarts" or "." not in target


def broken_references(all_modules: dict) -> list[str]:
    """``object: :role:`target``` for every reference to a kdarts name that pdoc cannot link."""
    from pdoc import doc, render_helpers

    def links(module: doc.Module, target: str, namespace: str) -> bool:
        context = {"module": module, "all_modules": all_modules, "is_public": lambda d: "yes"}
        return "<a " in render_helpers.linkify(context, f"<code>{target}</code>", namespace)

    problems = []
    for module in all_modules.values():
        todo: list[doc.Doc] = [module]
        while todo:
            item = todo.pop()
            if isinstance(item, (doc.Module, doc.Class)):
                todo.extend(m for m in item.own_members if not m.name.startswith("_")
                            or m.name == "__init__")
            if isinstance(item, doc.Module) and item is not module:
                continue  # a submodule is checked as its own page
            namespace = item.qualname if isinstance(item, doc.Class) else (
                item.qualname.rpartition(".")[0] if not isinstance(item, doc.Module) else "")
            for kind, target in ROLE.findall(item.docstring):
                target = target.lstrip("~!").removesuffix("()")
                if not _is_ours(target):
                    continue
                # on this page, or in the module that defines it (a name a package
                # re-exports keeps its own module's references)
                home = all_modules.get(item.taken_from[0], module)
                if not (links(module, target, namespace) or links(home, target, namespace)):
                    problems.append(f"{item.fullname}: :{kind}:`{target}`")
    return sorted(set(problems))


def build(out: str | os.PathLike) -> list[str]:
    """Write the reference into ``out``; returns the broken references (pdoc's warnings
    raise)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import pdoc
    import pdoc.docstrings
    import pdoc.render

    pdoc.docstrings.rst = _without_tildes(pdoc.docstrings.rst)
    pdoc.render.configure(docformat="restructuredtext", search=False,
                          show_source=True)
    names = modules()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # pdoc's warnings: a module it could not
        all_modules = {}                               # import, an unparsable annotation...
        for name in pdoc.extract.walk_specs(names):
            all_modules[name] = pdoc.doc.Module.from_name(name)
        pdoc.pdoc(*names, output_directory=Path(out))
    return broken_references(all_modules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=os.path.join("build", "api"),
                        help="the folder to write (default build/api)")
    args = parser.parse_args(argv)
    broken = build(args.output)
    if broken:
        print(f"{len(broken)} references resolve to nothing documented:", file=sys.stderr)
        print("\n".join(broken), file=sys.stderr)
        return 1
    print(f"API reference: {os.path.join(args.output, 'index.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
