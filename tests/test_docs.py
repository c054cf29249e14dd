"""The docs stay true to each other and to the code.

* Every section a file cites by title exists in the file it names: a document and a
  quoted title (``docs/design.md, "Pruned ops"``, ``README: 'Your own images'``) or a
  numbered section of the method (``docs/method.md §6``, ``§4–6``). A title matches a
  heading (``## Pruned ops``) or a paragraph's bold lead (``**Resume.**``) that starts
  with it; the citing file and line are named when one does not. No TensorFlow.
* Every docs/*.md file a source or document names exists.
* Every dotted ``kdarts.`` name in docs/*.md, README.md and the package's docstrings and
  comments imports (slow: the subpackages load TensorFlow).
* The API reference (``tools/api_reference.py``, pdoc) builds with pdoc's warnings as
  errors and every cross-reference to a kdarts name resolved (slow).
"""

from __future__ import annotations

import ast
import importlib
import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The documents a citation can name, by the names citations use. The method's spec is
#: shipped as docs/method.md, with the same section numbers.
DOCUMENTS = {"README": "README.md", "README.md": "README.md", "SPEC": "docs/method.md"}
_DOC = r"(?:docs/)?[a-z_]+\.md|README(?:\.md)?|SPEC"
#: ``<document>, "Title"`` / ``<document>: 'Title'`` / ``[text](<document>), “Title”``; a
#: title may wrap onto a second line (of a comment, too).
TITLE_CITATION = re.compile(
    r"(?P<doc>" + _DOC + r")[`)]?[,:][ \t]*(?:\n[ \t]*(?:#:?)?[ \t]*)?"
    r"(?:\"(?P<t1>[^\"\n]{2,100}(?:\n[ \t]*(?:#:?)?[ \t]*[^\"\n]{1,100})?)\""
    r"|'(?P<t2>[^'\n]{2,100})'|“(?P<t3>[^”\n]{2,100})”)")
#: ``<document> §4``, ``§4.2``, ``§4–6``, ``§1, §3``.
SECTION_CITATION = re.compile(r"(?P<doc>" + _DOC + r")`?,? ?§ ?(?P<first>\d+)"
                              r"(?:\.\d+)*(?:\s*[–-]\s*§?\s*(?P<last>\d+))?")
#: A docs/ file named anywhere.
DOC_PATH = re.compile(r"\bdocs/[a-z_]+\.md\b")
#: The project's design sketch, which does not ship: docs/design.md is its record.
UNSHIPPED = re.compile(r"\bDESIGN(?:\.md)?\b")
#: Dotted names of the package, not as part of a path or a longer word.
DOTTED = re.compile(r"(?<![\w/.-])kdarts(?:\.[A-Za-z_]\w*)+")
#: Dotted strings that are not Python names: the input contract's metadata key.
NOT_NAMES = {"kdarts.input"}


def cited_files() -> list[Path]:
    """The files whose citations are checked: the package, the tests, the tools, the docs."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for folder in ("kdarts", "tests", "tools"):
        files += sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)
    return [p for p in files if p.exists()]


def _document(doc: str, citing: Path) -> Path:
    """The file a citation's document name means, from the file that cites it."""
    if doc in DOCUMENTS:
        return ROOT / DOCUMENTS[doc]
    if doc.startswith("docs/"):
        return ROOT / doc
    for base in (citing.parent, ROOT / "docs", ROOT):  # a bare "fidelity.md"
        if (base / doc).exists():
            return base / doc
    return ROOT / "docs" / doc


def _normal(text: str) -> str:
    """Lowercase, one space between words, no comment markers or trailing punctuation."""
    text = re.sub(r"\n[ \t]*#:?", " ", text)
    return " ".join(text.replace("`", "").split()).strip(" .:;,").lower()


def section_titles(path: Path) -> tuple[list[str], set[int]]:
    """The titles a citation of ``path`` may name (headings and bold paragraph leads,
    normalised, without a heading's ``§N``) and its ``§N`` section numbers."""
    titles, numbers = [], set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            title = heading.group(1)
            number = re.match(r"§\s*(\d+)\s*(.*)", title)
            if number:
                numbers.add(int(number.group(1)))
                title = number.group(2)
            titles.append(_normal(title))
        lead = re.match(r"\s*\*\*(.+?)\*\*", line)
        if lead:
            titles.append(_normal(lead.group(1)))
    return titles, numbers


def broken_citations(files: list[Path]) -> list[str]:
    """``file:line: what`` for every citation that does not resolve."""
    problems: list[str] = []
    cache: dict[Path, tuple[list[str], set[int]]] = {}

    def target(doc: str, citing: Path, line: int) -> tuple[list[str], set[int]] | None:
        path = _document(doc, citing)
        if not path.exists():
            problems.append(f"{citing.relative_to(ROOT)}:{line}: cites {doc}, which does "
                            f"not exist ({path.relative_to(ROOT)})")
            return None
        if path not in cache:
            cache[path] = section_titles(path)
        return cache[path]

    for citing in files:
        if citing == Path(__file__).resolve():
            continue  # this file's examples
        text = citing.read_text(encoding="utf-8")

        def line_of(pos: int) -> int:
            return text.count("\n", 0, pos) + 1

        for m in TITLE_CITATION.finditer(text):
            title = _normal(m.group("t1") or m.group("t2") or m.group("t3"))
            found = target(m.group("doc"), citing, line_of(m.start()))
            if found is not None and not any(t.startswith(title) for t in found[0]):
                problems.append(f"{citing.relative_to(ROOT)}:{line_of(m.start())}: "
                                f"{m.group('doc')} has no section titled {title!r}")
        for m in SECTION_CITATION.finditer(text):
            found = target(m.group("doc"), citing, line_of(m.start()))
            if found is None:
                continue
            for number in {m.group("first"), m.group("last")} - {None}:
                if int(number) not in found[1]:
                    problems.append(f"{citing.relative_to(ROOT)}:{line_of(m.start())}: "
                                    f"{m.group('doc')} has no §{number}")
        for m in UNSHIPPED.finditer(text):
            problems.append(f"{citing.relative_to(ROOT)}:{line_of(m.start())}: cites "
                            f"{m.group(0)}, which does not ship; cite docs/design.md")
        for m in DOC_PATH.finditer(text):
            if not (ROOT / m.group(0)).exists():
                problems.append(f"{citing.relative_to(ROOT)}:{line_of(m.start())}: names "
                                f"{m.group(0)}, which does not exist")
    return sorted(set(problems))


def test_cited_sections_exist():
    problems = broken_citations(cited_files())
    assert not problems, "broken citations:\n" + "\n".join(problems)


def test_the_citation_check_catches_what_it_should(tmp_path, monkeypatch):
    """On made-up files: a title, a wrapped title in a comment, a § number and a missing
    document, each resolving or not; a heading's prefix resolves, another heading's
    words do not."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "design.md").write_text(
        "# Design\n## Pruned ops and levels\n```\n## not a heading\n```\n"
        "**Small searches move α faster.** Text.\n", encoding="utf-8")
    (tmp_path / "docs" / "method.md").write_text("## §1 Space\n## §4 Update\n",
                                                 encoding="utf-8")
    good = tmp_path / "good.py"
    good.write_text('# docs/design.md, "Pruned ops"\n#: see docs/design.md, "Pruned\n'
                    '#: ops and levels"; docs/method.md §4, docs/method.md §1–4\n'
                    "x = 1  # docs/design.md: 'Small searches'\n", encoding="utf-8")
    assert broken_citations([good]) == []
    bad = tmp_path / "bad.py"
    bad.write_text('# docs/design.md, "Layout"\n# docs/design.md, "not a heading"\n'
                   "# docs/method.md §2–4\n# docs/nothing.md, 'xy'\n# (DESIGN notes)\n",
                   encoding="utf-8")
    problems = broken_citations([bad])
    assert problems == sorted([
        "bad.py:1: docs/design.md has no section titled 'layout'",
        "bad.py:2: docs/design.md has no section titled 'not a heading'",
        "bad.py:3: docs/method.md has no §2",
        "bad.py:4: cites docs/nothing.md, which does not exist (docs/nothing.md)",
        "bad.py:4: names docs/nothing.md, which does not exist",
        "bad.py:5: cites DESIGN, which does not ship; cite docs/design.md"]), problems


# ------------------------------------------------------------------- kdarts.* names

def _docstrings_and_comments(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every docstring and comment of a Python file."""
    source = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                found.append((body[0].lineno, body[0].value.value))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found.append((tok.start[0], tok.string))
    return found


def cited_names() -> dict[str, str]:
    """Every dotted ``kdarts.`` name in the docs and the package's docstrings and
    comments → where it is first cited (``file:line``)."""
    names: dict[str, str] = {}
    texts = [(p, [(1, p.read_text(encoding="utf-8"))])
             for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if p.exists()]
    texts += [(p, _docstrings_and_comments(p)) for p in sorted((ROOT / "kdarts").rglob("*.py"))
              if "__pycache__" not in p.parts]
    for path, chunks in texts:
        for start, text in chunks:
            for m in DOTTED.finditer(text):
                name = m.group(0)
                if name not in NOT_NAMES:
                    line = start + text.count("\n", 0, m.start())
                    names.setdefault(name, f"{path.relative_to(ROOT)}:{line}")
    return names


def resolve(name: str) -> str | None:
    """None if ``name`` imports (its longest module prefix, then attributes); else why not."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name and module.startswith(err.name) and err.name.startswith("kdarts"):
                continue  # not a module: an attribute of a shorter prefix
            raise
        break
    for depth, attr in enumerate(parts[i:], start=i):
        if not hasattr(obj, attr):
            return f"{'.'.join(parts[:depth])} has no {attr!r}"
        obj = getattr(obj, attr)
    return None


def test_names_helpers():
    """No TensorFlow: the metadata key is what the code writes, and the scanner finds a
    name in a docstring and a comment but not in a path."""
    from kdarts.export.artifact import CONTRACT_KEY

    assert NOT_NAMES == {CONTRACT_KEY}
    assert [m.group(0) for m in DOTTED.finditer(
        "see kdarts.runs.search_run, src/kdarts.py and `kdarts.image.genotype.Genotype`.")] == [
        "kdarts.runs.search_run", "kdarts.image.genotype.Genotype"]
    assert resolve("kdarts.image.genotype.Genotype") is None
    assert resolve("kdarts.genotype.NoSuchName") == "kdarts.genotype has no 'NoSuchName'"


@pytest.mark.slow
def test_cited_kdarts_names_exist():
    names = cited_names()
    assert "kdarts.runs.search_run" in names  # the scan sees the docs and docstrings
    broken = [f"{where}: {name}: {why}"
              for name, where in sorted(names.items(), key=lambda kv: kv[1])
              if (why := resolve(name))]
    assert not broken, "cited kdarts names that do not exist:\n" + "\n".join(broken)


# ------------------------------------------------------------------- API reference

def _api_tool():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        return importlib.import_module("api_reference")
    finally:
        sys.path.remove(str(ROOT / "tools"))


def test_api_reference_finds_broken_references(tmp_path, monkeypatch):
    """On a made-up module: a reference to a name it defines links, one to a name it
    lacks is reported with its object; references to other libraries are not checked."""
    import pdoc.doc as pdoc_doc  # pdoc is in the test extra
    (tmp_path / "fakemod.py").write_text(
        '"""Module. See :func:`real` and :class:`keras.Model`."""\n\n'
        'def real():\n    """Fine."""\n\n'
        'def other():\n    """Calls :func:`nothing_here` and :func:`~kdarts_fake.x`."""\n',
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = pdoc_doc.Module.from_name("fakemod")
    assert _api_tool().broken_references({"fakemod": module}) == [
        "fakemod.other: :func:`nothing_here`"]


@pytest.mark.slow
def test_api_reference_builds(tmp_path):
    """``tools/api_reference.py`` builds the reference offline (pdoc's warnings are
    errors) with no reference to a kdarts name left unresolved; the index and the pages
    of the package and of the subpackages users import are written."""
    out = tmp_path / "api"
    tool = str(ROOT / "tools" / "api_reference.py")
    proc = subprocess.run([sys.executable, tool, "-o", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, f"the API reference did not build:\n{proc.stderr[-4000:]}"
    assert (out / "index.html").exists()
    for module in ("kdarts", "kdarts.data", "kdarts.search", "kdarts.image", "kdarts.export",
                   "kdarts.runs", "kdarts.recurrent", "kdarts.plots", "kdarts.callbacks"):
        page = out.joinpath(*module.split(".")).with_suffix(".html")
        assert page.exists(), f"no page for {module}"
    text = (out / "kdarts.html").read_text(encoding="utf-8")
    assert all(name in text for name in ("SearchNetwork", "export_model", "EvalNetwork"))
    image = (out / "kdarts" / "image.html").read_text(encoding="utf-8")
    assert 'id="SearchNetwork"' in image  # the subpackage's page lists its names
    search = (out / "kdarts" / "search.html").read_text(encoding="utf-8")
    assert 'id="AlternatingSearch"' in search and 'id="ADMM"' in search
