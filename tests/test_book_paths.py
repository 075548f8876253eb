"""Every chapter, module and script the book's prose names exists.

The framework chapter once ended three steps with "Runs in" lines naming
notebooks that did not exist; a reader who followed them found nothing. Links
written with ``{doc}`` fail the book build when they dangle, but a path typed
in backticks does not, so this test reads the prose itself: every page of the
book and every markdown cell of every notebook.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
#: A file as prose names it: a chapter, a library module, a benchmark or a test.
NAMED_PATH = re.compile(
    r"(?<![\w/.])((?:notebooks|casestudies|book|mlsd_lib|benchmarks|tests)/"
    r"[\w./-]*?\.(?:ipynb|md|py))\b"
)
#: A ``{doc}`` cross-reference: ``{doc}`target``` or ``{doc}`text <target>```.
DOC_ROLE = re.compile(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`")
CHAPTER_PREFIXES = ("notebooks/", "casestudies/", "book/")


def prose_pages() -> dict[Path, str]:
    """Each page of prose: markdown files, and the markdown cells of notebooks."""
    pages = {p: p.read_text(encoding="utf-8") for p in ROOT.glob("book/*.md")}
    pages |= {p: p.read_text(encoding="utf-8") for p in ROOT.glob("casestudies/*/*.md")}
    pages[ROOT / "README.md"] = (ROOT / "README.md").read_text(encoding="utf-8")
    for notebook in [
        *ROOT.glob("notebooks/*.ipynb"),
        *ROOT.glob("casestudies/*/*.ipynb"),
    ]:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        pages[notebook] = "\n".join(
            "".join(c["source"]) for c in cells if c["cell_type"] == "markdown"
        )
    return pages


def is_chapter(path: str) -> bool:
    return path.startswith(CHAPTER_PREFIXES) and path.endswith((".ipynb", ".md"))


def chapter_key(path: str) -> str:
    """A chapter as ``_toc.yml`` names it: its path without the suffix."""
    return str(Path(path).with_suffix(""))


def toc_files() -> set[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    found, stack = {toc["root"]}, list(toc.get("parts", []))
    while stack:
        entry = stack.pop()
        found |= {entry["file"]} if "file" in entry else set()
        stack += entry.get("chapters", []) + entry.get("sections", [])
    return found


def test_the_prose_is_read():
    pages = prose_pages()
    assert ROOT / "book" / "framework.md" in pages
    assert len(pages) >= 30  # the book's pages and notebooks (a broken glob finds none)
    named = {m for text in pages.values() for m in NAMED_PATH.findall(text)}
    assert "benchmarks/visual_quality.py" in named  # the pattern finds typed paths
    docs = {m for text in pages.values() for m in DOC_ROLE.findall(text)}
    assert "../notebooks/00_environment" in docs  # and cross-references


def test_every_path_the_prose_names_exists_and_every_chapter_is_in_the_book():
    in_book = toc_files()
    missing, unlisted = [], []
    for page, text in prose_pages().items():
        where = str(page.relative_to(ROOT))
        for named in sorted(set(NAMED_PATH.findall(text))):
            if not (ROOT / named).is_file():
                missing.append(f"{where}: {named}")
            elif is_chapter(named) and chapter_key(named) not in in_book:
                unlisted.append(f"{where}: {named}")
    assert missing == [], "the prose names files that do not exist:\n" + "\n".join(
        missing
    )
    assert unlisted == [], "chapters named in the prose but not in _toc.yml:\n" + (
        "\n".join(unlisted)
    )


def test_every_doc_cross_reference_resolves_to_a_chapter_in_the_book():
    in_book = toc_files()
    dangling = []
    for page, text in prose_pages().items():
        for target in sorted(set(DOC_ROLE.findall(text))):
            resolved = (page.parent / target).resolve().relative_to(ROOT)
            if str(resolved) not in in_book:
                dangling.append(f"{page.relative_to(ROOT)}: {target}")
    assert dangling == [], "{doc} links to pages outside the book:\n" + "\n".join(
        dangling
    )


def test_every_runs_in_line_names_a_chapter():
    """Each step of the framework ends with where it runs, and that is a chapter."""
    framework = (ROOT / "book" / "framework.md").read_text(encoding="utf-8")
    sections = re.split(r"^### Runs in\s*$", framework, flags=re.MULTILINE)[1:]
    assert len(sections) == 7  # one per step
    for number, section in enumerate(sections, start=1):
        paragraph = section.strip().split("\n\n")[0]
        chapters = NAMED_PATH.findall(paragraph) + DOC_ROLE.findall(paragraph)
        assert chapters, f"step {number}'s 'Runs in' names no chapter: {paragraph!r}"
