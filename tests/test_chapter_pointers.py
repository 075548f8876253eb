"""Every chapter the library's docstrings name exists, and every module names one.

d2l ends each function's docstring with the section that defines it, and its
build fails on a label that does not resolve; a pointer to a renamed notebook is
a broken promise to the reader who follows it. This test is that build check:
rename ``notebooks/feature_store.ipynb`` and it names the modules to fix.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mlsd_lib"
#: A chapter as the docstrings name it: a notebook or a page of the book.
CHAPTER = re.compile(r"\b((?:notebooks|casestudies|book)/[\w./-]*?\.(?:ipynb|md))\b")


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def toc_files() -> set[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    found = {toc["root"]}
    stack = list(toc.get("parts", []))
    while stack:
        entry = stack.pop()
        if "file" in entry:
            found.add(entry["file"])
        stack.extend(entry.get("chapters", []))
        stack.extend(entry.get("sections", []))
    return found


def test_every_chapter_named_in_the_library_exists_and_is_in_the_book():
    named: dict[str, list[str]] = {}
    for path in modules():
        for chapter in CHAPTER.findall(path.read_text(encoding="utf-8")):
            named.setdefault(chapter, []).append(str(path.relative_to(ROOT)))
    assert len(named) >= 10  # the pattern finds the pointers (a broken one finds none)
    missing = {c: sorted(set(m)) for c, m in named.items() if not (ROOT / c).is_file()}
    assert missing == {}, f"these chapters do not exist (named by): {missing}"
    in_book = toc_files()
    unlisted = sorted(c for c in named if str(Path(c).with_suffix("")) not in in_book)
    assert unlisted == [], f"named chapters missing from _toc.yml: {unlisted}"


def test_every_module_names_the_chapter_that_introduces_it():
    silent = []
    for path in modules():
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if not CHAPTER.search(docstring or ""):
            silent.append(str(path.relative_to(ROOT)))
    assert silent == [], (
        "add 'Introduced in ``<notebook or page>``.' to these module docstrings: "
        f"{silent}"
    )


def test_a_package_that_lists_its_modules_lists_them_all():
    incomplete = {}
    for init in sorted(PACKAGE.rglob("__init__.py")):
        package = init.parent
        dotted = ".".join(package.relative_to(ROOT).parts)
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        named = set(
            re.findall(r":mod:`~?" + re.escape(dotted) + r"\.(\w+)`", docstring or "")
        )
        if not named:
            continue  # a package that keeps no map promises none
        parts = {p.stem for p in package.glob("*.py")} - {"__init__", "__main__"}
        parts |= {p.parent.name for p in package.glob("*/__init__.py")}
        if parts - named:
            incomplete[dotted] = sorted(parts - named)
    assert incomplete == {}, f"module maps that miss modules: {incomplete}"
