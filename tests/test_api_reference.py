"""The book's API reference renders every module of ``mlsd_lib``, without warnings.

The docstrings hold hundreds of Sphinx cross-references (``:class:``, ``:func:``,
``:mod:``); a reference that nothing renders is a promise nobody checks. The
pages in ``book/api/`` render them: each names one package
(``.. mlsd-package:: mlsd_lib.x``) and the extension in ``book/api/_ext/``
renders every module in that package's folder. The fast tests check that every
package has a page and that the page is in the table of contents; the build
test renders just the API pages, nitpicky, and fails on any warning, which is
what ``make book`` would fail on minutes later.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "book" / "api"
PACKAGE_DIRECTIVE = re.compile(r"^\.\. mlsd-package:: (\S+)\s*$", re.MULTILINE)

sys.path.insert(0, str(API / "_ext"))
import mlsd_apidoc  # noqa: E402  (the book's extension, not an installed module)


def packages_on_disk() -> set[str]:
    """Every folder of ``mlsd_lib`` that holds Python files (``__init__`` or not)."""
    return {
        ".".join(module.parent.relative_to(ROOT).parts)
        for module in (ROOT / "mlsd_lib").rglob("*.py")
    }


def pages() -> dict[str, str]:
    """The package each API page renders, by page (``book/api/serving``)."""
    found = {}
    for page in sorted(API.glob("*.md")):
        for package in PACKAGE_DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            found[str(page.relative_to(ROOT).with_suffix(""))] = package
    return found


def api_chapter() -> dict:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    chapters = [c for part in toc["parts"] for c in part.get("chapters", [])]
    (chapter,) = [c for c in chapters if c.get("file") == "book/api/index"]
    return chapter


def test_every_package_has_a_page_and_every_page_a_package():
    rendered = list(pages().values())
    assert len(rendered) == len(set(rendered)), f"a package on two pages: {rendered}"
    assert set(rendered) == packages_on_disk(), (
        f"packages without a page: {sorted(packages_on_disk() - set(rendered))}; "
        f"pages for no package: {sorted(set(rendered) - packages_on_disk())}"
    )


def test_every_api_page_is_in_the_table_of_contents():
    listed = {s["file"] for s in api_chapter().get("sections", [])}
    assert listed == set(pages()), (
        f"API pages missing from _toc.yml: {sorted(set(pages()) - listed)}; "
        f"_toc.yml entries with no package: {sorted(listed - set(pages()))}"
    )


def test_the_pages_cover_every_module_the_package_holds():
    """What the extension walks is what is on disk: every .py file, once."""
    on_disk = {
        ".".join(p.with_suffix("").relative_to(ROOT).parts).removesuffix(".__init__")
        for p in (ROOT / "mlsd_lib").rglob("*.py")
    }
    walked = mlsd_apidoc.every_module("mlsd_lib", ROOT)
    assert walked == on_disk
    rendered = set()
    for package in pages().values():
        rendered |= {package, *mlsd_apidoc.modules_of(package, ROOT)}
    assert rendered == on_disk


def test_a_page_whose_package_gained_a_module_is_read_again():
    """An incremental build re-reads the page of a package with a new module."""
    env = SimpleNamespace(mlsd_api_documented={})
    for page, package in pages().items():
        for module in {package, *mlsd_apidoc.modules_of(package, ROOT)}:
            env.mlsd_api_documented[module] = page
    assert mlsd_apidoc.pages_with_new_modules(None, env, set(), set(), set()) == []
    del env.mlsd_api_documented["mlsd_lib.serving.export"]  # as if just added
    stale = mlsd_apidoc.pages_with_new_modules(None, env, set(), set(), set())
    assert stale == ["book/api/serving"]


def api_only_book(tmp: Path) -> Path:
    """A book of just the API pages, with the real settings and execution off."""
    src = tmp / "src"
    shutil.copytree(API, src / "book" / "api", ignore=shutil.ignore_patterns("_*"))
    shutil.copy(ROOT / "book" / "references.bib", src / "book" / "references.bib")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    config["sphinx"]["local_extensions"] = {"mlsd_apidoc": str(API / "_ext")}
    (src / "_config.yml").write_text(yaml.safe_dump(config))
    toc = {"format": "jb-book", "root": "book/api/index"}
    toc["chapters"] = [{"file": s["file"]} for s in api_chapter()["sections"]]
    (src / "_toc.yml").write_text(yaml.safe_dump(toc))
    return src


@pytest.mark.quality
def test_the_api_pages_build_without_a_warning(tmp_path: Path):
    src = api_only_book(tmp_path)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    out = tmp_path / "out"
    build = subprocess.run(
        [jupyter_book, "build", src, "-n", "--keep-going", "--path-output", out],
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = build.stdout + build.stderr
    warnings = [
        re.sub(r"\x1b\[[0-9;]*m", "", line)
        for line in log.splitlines()
        if "WARNING" in line or "ERROR" in line
    ]
    assert build.returncode == 0, log[-3000:]
    assert warnings == [], "\n".join(warnings)
    assert (out / "_build" / "html" / "book" / "api" / "serving.html").is_file()
