"""Each inline ``<script>`` of a page once, as its extension meant.

Sphinx 7.4 lists twice a body-only script (``app.add_js_file(None, body=...)``)
that an extension adds after the HTML builder started: ``app.add_js_file`` puts
it in the builder's list with ``None`` as its file, and the builder's
``prepare_writing`` adds the registry's copy again with ``""``, which its
duplicate check takes for a different file. sphinx-thebe adds
``const THEBE_JS_URL = ...`` that way, so every page of the book declared it
twice and threw ``SyntaxError: Identifier 'THEBE_JS_URL' has already been
declared`` in the reader's console (found by ``.ci/check_site.py``). Here each
page keeps the first of scripts that are equal but for ``None`` against ``""``.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def script_key(script: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What makes two scripts the same: file (``None`` as ``""``) and attributes."""
    attributes = getattr(script, "attributes", {}) or {}
    filename = getattr(script, "filename", script) or ""
    return str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items()))


def drop_duplicate_scripts(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    """Keep the first of each script in the page's ``script_files``."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    kept = []
    for script in scripts:
        key = script_key(script)
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
