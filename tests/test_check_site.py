"""The site check (``.ci/check_site.py``) flags exactly the pages a reader would.

A tiny fake site holds one page for each thing the check must catch (a link
that points nowhere, a missing anchor, a missing image, an image that does not
decode, a traceback, an error on stderr, a console error, an uncaught
exception, a notebook page missing a figure) beside pages that must pass (one
with an external script, which is blocked and counted, not an error). The
script runs in a real headless Chromium, as CI runs it.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsd_lib.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "check_site.py"
# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9"
    "awAAAABJRU5ErkJggg=="
)
GOOD = {
    "good.html",
    "external.html",
    "notebook_ok.html",
    "sub/index.html",
    "redirect.html",
}
BAD = {
    "broken_link.html": "nowhere.html not found",
    "broken_anchor.html": "no #no-such-id in good.html",
    "missing_image.html": "_images/missing.png not found",
    "corrupt_image.html": "did not render",
    "traceback.html": "traceback output",
    "stderr_error.html": "stderr: 'RuntimeError",
    "console_error.html": "console.error: boom",
    "uncaught.html": "uncaught Error: thrown on load",
    "notebook_missing_figure.html": "figures 1 shown of 2 in the notebook",
    "redirect_nowhere.html": "redirect",
}


def _chromium_or_skip() -> None:
    if any(shutil.which(name) for name in ("chromium", "chromium-browser")):
        return
    reason = "no chromium on PATH (apt-get install chromium; .ci/run installs it)"
    if load_settings().require_real_backends:
        pytest.fail(f"MLSD_REQUIRE_REAL_BACKENDS is set but {reason}")
    pytest.skip(reason)


def _page(body: str, head: str = "") -> str:
    return f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>"


def _output(inner: str) -> str:
    return f'<div class="cell_output docutils container">{inner}</div>'


def _notebook(images: int) -> str:
    png = {"image/png": "iVBORw0KGgo=", "text/plain": ["<Figure>"]}
    outputs = [
        {"output_type": "display_data", "data": png, "metadata": {}}
        for _ in range(images)
    ]
    # a hidden figure (remove-output) and an HTML table are not counted
    hidden = {"tags": ["remove-output"]}
    html = {"text/html": ["<table></table>"], "image/png": "x"}
    cells = [
        {"cell_type": "code", "metadata": {}, "outputs": outputs, "source": ""},
        {
            "cell_type": "code",
            "metadata": hidden,
            "outputs": outputs[:1],
            "source": "",
        },
        {
            "cell_type": "code",
            "metadata": {},
            "outputs": [{"output_type": "execute_result", "data": html}],
            "source": "",
        },
    ]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4})


def build_site(root: Path) -> Path:
    """The fake site: every page of GOOD and BAD, and an asset folder."""
    (root / "_images").mkdir(parents=True)
    (root / "_images" / "dot.png").write_bytes(PNG)
    (root / "_images" / "corrupt.png").write_bytes(b"not a png")
    (root / "_static").mkdir()
    # not a page: a template fragment with a dead link, never opened
    (root / "_static" / "fragment.html").write_text('<a href="nowhere.html">x</a>')
    (root / "_sources").mkdir()
    (root / "sub").mkdir()
    img = '<img src="_images/dot.png" alt="dot">'
    to_good = 'content="0; url=good.html"'
    pages = {
        "good.html": _page(
            f'<h1 id="top">Good</h1>{img}<a href="#top">top</a>'
            '<a href="sub/">sub</a><a href="sub/index.html#intro">intro</a>'
            '<a href="https://example.com/">out</a>'
            + _output('<div class="output stderr"><pre>UserWarning: x</pre></div>')
        ),
        "external.html": _page(
            "<p>math</p>",
            head='<script src="https://cdn.example.invalid/mathjax.js"></script>'
            '<link rel="stylesheet" href="https://fonts.example.invalid/a.css">',
        ),
        "sub/index.html": _page(
            '<h2 id="intro">Intro</h2><a href="../good.html">back</a>'
            '<img src="../_images/dot.png" alt="dot">'
        ),
        "notebook_ok.html": _page(_output(img) + _output(img)),
        "broken_link.html": _page('<a href="nowhere.html">dead</a>'),
        "broken_anchor.html": _page('<a href="good.html#no-such-id">dead</a>'),
        "missing_image.html": _page('<img src="_images/missing.png" alt="x">'),
        "corrupt_image.html": _page('<img src="_images/corrupt.png" alt="x">'),
        "traceback.html": _page(
            _output(
                '<div class="output traceback highlight-ipythontb"><pre>'
                "Traceback (most recent call last):\nValueError: bad</pre></div>"
            )
        ),
        "stderr_error.html": _page(
            _output('<div class="output stderr"><pre>RuntimeError: x</pre></div>')
        ),
        "console_error.html": _page("<script>console.error('boom')</script>"),
        "uncaught.html": _page("<script>throw new Error('thrown on load')</script>"),
        "notebook_missing_figure.html": _page(_output(img)),
        # as the site's index.html sends the reader to the first chapter
        "redirect.html": _page("", head=f'<meta http-equiv="refresh" {to_good}>'),
        "redirect_nowhere.html": _page(
            "", head='<meta http-equiv="refresh" content="0; url=missing.html">'
        ),
    }
    for name, html in pages.items():
        (root / name).write_text(html)
    (root / "_sources" / "notebook_ok.ipynb").write_text(_notebook(2))
    error = {"output_type": "error", "ename": "ValueError", "evalue": "bad"}
    error["traceback"] = ["Traceback (most recent call last):", "ValueError: bad"]
    cell = {"cell_type": "code", "metadata": {}, "outputs": [error], "source": ""}
    (root / "_sources" / "traceback.ipynb").write_text(
        json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4})
    )
    (root / "_sources" / "notebook_missing_figure.ipynb").write_text(_notebook(2))
    return root


def run_check(site: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(tmp)}  # the browser's profile goes here
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(site), *extra],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def page_lines(stdout: str) -> dict[str, str]:
    """``{page: its line}`` from the script's output."""
    lines = {}
    for line in stdout.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("OK", "FAIL"):
            lines[rest.split()[0]] = line
    return lines


def browser_processes(marker: str) -> list[int]:
    """Live processes whose command line names ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(proc.name))
    return found


@pytest.fixture(scope="module")
def short_tmp() -> Iterator[Path]:
    """The script's $TMPDIR: short, as Chromium's socket path must be, and
    watched: the browser's processes and files must be gone from it."""
    folder = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory, short_tmp: Path) -> tuple:
    _chromium_or_skip()
    site = build_site(tmp_path_factory.mktemp("check_site") / "site")
    result = run_check(site, short_tmp)
    return result, page_lines(result.stdout), short_tmp


def test_flags_exactly_the_bad_pages(checked: tuple) -> None:
    result, lines, _ = checked
    assert result.returncode == 1, result.stdout + result.stderr
    failed = {page for page, line in lines.items() if line.startswith("FAIL")}
    passed = {page for page, line in lines.items() if line.startswith("OK")}
    assert failed == set(BAD), result.stdout
    assert passed == GOOD, result.stdout


@pytest.mark.parametrize("page", sorted(BAD))
def test_says_what_failed(checked: tuple, page: str) -> None:
    _, lines, _ = checked
    assert BAD[page] in lines[page]


def test_line_counts_images_links_and_external_requests(checked: tuple) -> None:
    result, lines, _ = checked
    assert "images 1/1 loaded  links 3  console 0" in lines["good.html"]
    assert "images 0/1 loaded" in lines["corrupt_image.html"]
    # blocked, counted, and not an error
    assert "console 0  external 2" in lines["external.html"]
    assert "console 1" in lines["uncaught.html"]
    assert "links 1  console 0" in lines["redirect.html"]
    # the source notebook's error output, named as ename: evalue
    assert "error output in cell 1: ValueError: bad" in lines["traceback.html"]
    assert "_static/fragment.html" not in result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"check-site: {len(GOOD) + len(BAD)} pages, ")
    assert f"{len(GOOD)} OK, {len(BAD)} FAIL" in summary


def test_browser_is_stopped_and_its_profile_removed(checked: tuple) -> None:
    _, _, tmp = checked
    assert browser_processes(str(tmp)) == []
    assert list(tmp.iterdir()) == []


def _two_good_pages(site: Path) -> Path:
    site.mkdir()
    (site / "a.html").write_text(_page('<a href="b.html">b</a>'))
    (site / "b.html").write_text(_page('<a href="a.html">a</a>'))
    return site


def test_a_good_site_passes(tmp_path: Path, short_tmp: Path) -> None:
    _chromium_or_skip()
    result = run_check(_two_good_pages(tmp_path / "site"), short_tmp)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 pages, 2 OK, 0 FAIL" in result.stdout


@pytest.mark.faults  # waits out a page that never loads
def test_a_hung_page_is_bounded_and_the_browser_stopped(
    tmp_path: Path, short_tmp: Path
) -> None:
    _chromium_or_skip()
    site = _two_good_pages(tmp_path / "site")
    tmp = short_tmp
    (site / "hang.html").write_text(_page("<script>for (;;) {}</script>"))
    result = run_check(site, tmp, "--page-timeout", "3")
    assert result.returncode == 1
    assert "did not finish loading in 3 s" in page_lines(result.stdout)["hang.html"]
    assert page_lines(result.stdout)["a.html"].startswith("OK")
    assert browser_processes(str(tmp)) == []
    assert list(tmp.iterdir()) == []


def test_cannot_run_without_a_site(tmp_path: Path) -> None:
    result = run_check(tmp_path / "absent", tmp_path)
    assert result.returncode == 2
    assert "is not a directory: run make book" in result.stderr


def _script_module():
    spec = importlib.util.spec_from_file_location("check_site", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_site"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["check_site"]
    return module


def test_a_page_that_navigates_while_read_is_read_where_it_lands() -> None:
    class Navigating:
        """Chromium's answers when the page redirects during Runtime.evaluate."""

        def __init__(self) -> None:
            self.events = [{"method": "Page.loadEventFired", "sessionId": "s"}]
            self.calls = 0

        def call(self, method: str, params: dict, session: str, timeout_s: float):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError(f"{method}: Inspected target navigated or closed")
            return {"result": {"value": {"href": "file:///landed.html"}}}

        def wait_for(self, method: str, session: str, deadline: float) -> bool:
            # the first page's load event was dropped: this waits for the next
            assert self.events == []
            return True

    devtools = Navigating()
    shown = _script_module()._read_page(devtools, "s", deadline=1e12)
    assert shown == {"href": "file:///landed.html"}
    assert devtools.calls == 2


def test_image_outputs_counted_as_myst_nb_shows_them(tmp_path: Path) -> None:
    module = _script_module()
    notebook = tmp_path / "n.ipynb"
    notebook.write_text(_notebook(3))
    assert module.notebook_outputs(notebook) == (3, [])


def test_each_inline_script_once_on_a_page() -> None:
    """The fix for what the check found on every page of the book: Sphinx 7.4
    listed sphinx-thebe's ``const THEBE_JS_URL`` script twice (``None`` and
    ``""`` as its file), a SyntaxError in every reader's console."""
    from sphinx.builders.html._assets import _JavaScript

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from dedupe_inline_scripts import drop_duplicate_scripts
    finally:
        sys.path.remove(str(ROOT / "book" / "_ext"))
    thebe = "const THEBE_JS_URL = 'x'"
    scripts = [
        _JavaScript("_static/doctools.js", priority=200),
        _JavaScript(None, body=thebe),
        _JavaScript("_static/sphinx-thebe.js", **{"async": "async"}),
        _JavaScript("", body=thebe),
        _JavaScript("", body="var other = 1"),
    ]
    context = {"script_files": list(scripts)}
    drop_duplicate_scripts(None, "page", "page.html", context, None)
    assert context["script_files"] == [scripts[0], scripts[1], scripts[2], scripts[4]]
