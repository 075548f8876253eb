"""Open every page of the built book in headless Chromium, as a reader would.

Run as ``.venv/bin/python .ci/check_site.py _build/html`` (``make check-site``;
``.ci/run`` runs it after ``make book``). It prints one line per page and a
summary, and exits 1 when any page fails, 2 when it cannot run at all.

Why a browser and not an HTML parser: a figure that did not render, a script
that throws, a console error are only seen by loading the page. The checks:

* **error outputs**: a cell output rendered as a traceback (myst-nb's
  ``output traceback``), ``Traceback (most recent call last)`` in any cell
  output, an ``error`` output (``ename: evalue``) in the page's source notebook
  (``_sources/<page>.ipynb``), or a stderr output that says ``Error``;
* **links that point nowhere**: every relative ``href``/``src`` (``<a>``,
  ``<link>``, ``<img>``, ``<script>``, ``<iframe>``, ``<source>``) must name a
  file under the site root, and a ``#fragment`` on an internal page must be an
  ``id`` (or ``<a name>``) in that page;
* **figures**: every image loaded (``naturalWidth > 0``), and a notebook page
  shows at least as many images in its cell outputs as its source notebook has
  image outputs;
* **console errors**: uncaught exceptions (``Runtime.exceptionThrown``),
  ``console.error``/``console.assert`` (``Runtime.consoleAPICalled``), browser
  log entries at level error (``Log.entryAdded``), and local (``file://``)
  requests that failed.

External requests are blocked, not counted as errors. The theme loads fonts,
MathJax, Thebe and Binder from the internet, which CI does not have; rather
than wait on a network that may hang, every ``http(s)://``/``ws(s)://``
request is refused (``Network.setBlockedURLs``), so the result is the same with
or without internet. Each line still counts them (``external N``) so a reader
sees what a page would have fetched; the console messages those refusals cause
are not errors. Pages under ``_static/``, ``_sources/``, ``_images/`` and
``_downloads/`` are assets (template fragments, copies of sources), not pages.

One browser serves every page, each in a fresh tab, driven over the Chrome
DevTools Protocol with ``websocket-client`` (already a Jupyter dependency, so
nothing heavier like Playwright, which would also want to download a browser).
Time is bounded per page (``--page-timeout``) and overall (``--total-timeout``);
the browser is stopped on every exit path, including SIGTERM, and dies with
this process if it is killed (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import websocket

ASSET_DIRS = ("_static", "_sources", "_images", "_downloads")
EXTERNAL_SCHEMES = ("http", "https", "ws", "wss")
BLOCKED_PATTERNS = ["http://*", "https://*", "ws://*", "wss://*"]
# What myst-nb shows for an output, best first (its html priority): an output
# whose best type is an image is rendered as an <img>.
RENDER_PRIORITY = (
    "application/vnd.jupyter.widget-view+json",
    "application/javascript",
    "text/html",
    "image/svg+xml",
    "image/png",
    "image/jpeg",
    "image/gif",
    "text/markdown",
    "text/latex",
    "text/plain",
)
IMAGE_TYPES = {"image/svg+xml", "image/png", "image/jpeg", "image/gif"}
MAX_REASONS = 4
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

# Evaluated in each page once it has loaded: what the reader's browser shows.
COLLECT_JS = r"""
(() => {
  const refs = [];
  const add = (el, attr) => {
    const raw = el.getAttribute(attr);
    if (raw !== null) refs.push({tag: el.tagName.toLowerCase(), raw, url: el[attr]});
  };
  document.querySelectorAll("a[href], link[href]").forEach(el => add(el, "href"));
  document.querySelectorAll("script[src], iframe[src], source[src]")
    .forEach(el => add(el, "src"));
  document.querySelectorAll('meta[http-equiv="refresh" i]').forEach(el => {
    const match = /url\s*=\s*['"]?([^'"]+)/i.exec(el.getAttribute("content") || "");
    if (match) {
      const url = new URL(match[1], location.href).href;
      refs.push({tag: "redirect", raw: match[1], url});
    }
  });
  const images = Array.from(document.images).map(img => ({
    raw: img.getAttribute("src") || "",
    url: img.currentSrc || img.src,
    loaded: img.complete && img.naturalWidth > 0,
    in_output: img.closest(".cell_output") !== null,
  }));
  const ids = new Set();
  document.querySelectorAll("[id]").forEach(el => ids.add(el.id));
  document.querySelectorAll("a[name]").forEach(el => ids.add(el.getAttribute("name")));
  const outputs = Array.from(document.querySelectorAll(".cell_output, .output"));
  const text = el => (el.textContent || "").trim();
  return {
    href: location.href,
    refs,
    images,
    ids: Array.from(ids),
    tracebacks: document.querySelectorAll(".output.traceback").length,
    traceback_text: outputs.some(el => text(el).includes(
      "Traceback (most recent call last)")),
    stderr_errors: Array.from(document.querySelectorAll(".output.stderr"))
      .map(text).filter(t => t.includes("Error")).map(t => t.slice(0, 80)),
  };
})()
"""


class CheckSiteError(Exception):
    """The check could not run (no browser, no site): exit status 2."""


@dataclass
class PageReport:
    """What one page showed: the counts of its line and what failed."""

    path: str
    images: int = 0
    images_loaded: int = 0
    links: int = 0
    console_errors: int = 0
    external: int = 0
    reasons: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.reasons

    def line(self) -> str:
        status = "OK  " if self.ok else "FAIL"
        counts = (
            f"images {self.images_loaded}/{self.images} loaded  links {self.links}  "
            f"console {self.console_errors}  external {self.external}"
        )
        text = f"{status} {self.path}  {counts}"
        if self.note:
            text += f"  ({self.note})"
        if self.reasons:
            shown = self.reasons[:MAX_REASONS]
            more = len(self.reasons) - len(shown)
            text += "  -- " + "; ".join(shown) + (f"; +{more} more" if more else "")
        return text


# ---------------------------------------------------------------- the browser


class DevTools:
    """A minimal Chrome DevTools Protocol client over one websocket.

    Commands wait for their reply; events that arrive meanwhile are kept in
    ``events`` (with their ``sessionId``) for the page being checked.
    """

    def __init__(self, ws_url: str) -> None:
        self._ws = websocket.create_connection(ws_url, suppress_origin=True)
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        self._ws.close()

    def _receive(self, deadline: float) -> dict[str, Any] | None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self._ws.settimeout(remaining)
        try:
            return json.loads(self._ws.recv())
        except websocket.WebSocketTimeoutException:
            return None

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout_s: float = 10.0,
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method}
        message["params"] = params or {}
        if session:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._receive(deadline)
            if reply is None:
                raise TimeoutError(f"{method} got no reply in {timeout_s:.0f} s")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, session: str, deadline: float) -> bool:
        """Keep events until ``method`` arrives for ``session``, or the deadline."""
        if any(
            e["method"] == method and e.get("sessionId") == session for e in self.events
        ):
            return True
        while True:
            event = self._receive(deadline)
            if event is None:
                return False
            if "method" in event:
                self.events.append(event)
                if event["method"] == method and event.get("sessionId") == session:
                    return True

    def pump(self, seconds: float) -> None:
        """Keep the events of the next ``seconds`` (late errors of a page)."""
        deadline = time.monotonic() + seconds
        while (event := self._receive(deadline)) is not None:
            if "method" in event:
                self.events.append(event)


def find_chromium(explicit: str | None) -> str:
    """The browser to run: ``--chromium``, ``$CHROMIUM``, else one on PATH."""
    for candidate in (explicit, os.environ.get("CHROMIUM")):
        if candidate:
            return candidate
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise CheckSiteError(
        "no chromium on PATH (looked for " + ", ".join(CHROMIUM_NAMES) + "): "
        "install Debian's chromium (apt-get install chromium) or pass --chromium"
    )


def _die_with_parent() -> None:
    """In the child: ask Linux to kill the browser if this script dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _private_dir() -> Path:
    """A fresh folder for the browser, in $TMPDIR unless that path is so long
    that Chromium's socket path (108 bytes at most) would not fit under it."""
    folder = Path(tempfile.mkdtemp(prefix="check-site-"))
    if len(str(folder)) <= 40 or not Path("/tmp").is_dir():
        return folder
    folder.rmdir()
    return Path(tempfile.mkdtemp(prefix="check-site-", dir="/tmp"))


class Browser:
    """Headless Chromium on a private profile, stopped on every way out."""

    def __init__(self, binary: str, start_timeout_s: float = 30.0) -> None:
        self._profile = _private_dir()
        # Chromium's own temporary files (its singleton socket) go in there too,
        # so that stop() leaves nothing behind.
        (self._profile / "tmp").mkdir()
        self._log = open(self._profile / "chromium.log", "wb")  # noqa: SIM115
        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
            "--remote-debugging-port=0",
            f"--user-data-dir={self._profile / 'profile'}",
            "about:blank",
        ]
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(self._profile / "tmp")},
            start_new_session=True,  # its own group: stop() ends all its children
            preexec_fn=_die_with_parent,
        )
        try:
            self.devtools = DevTools(self._wait_for_endpoint(start_timeout_s))
        except BaseException:
            self.stop()
            raise

    def _wait_for_endpoint(self, timeout_s: float) -> str:
        port_file = self._profile / "profile" / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise CheckSiteError(
                    f"chromium exited with status {self._process.returncode} "
                    f"before it listened:\n{self._log_tail()}"
                )
            lines = port_file.read_text().split() if port_file.exists() else []
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.05)
        raise CheckSiteError(
            f"chromium did not open its DevTools port in {timeout_s:.0f} s:\n"
            f"{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        self._log.flush()
        text = Path(self._log.name).read_text(errors="replace")
        return "\n".join("    " + line for line in text.splitlines()[-15:])

    def stop(self) -> None:
        devtools = getattr(self, "devtools", None)
        if devtools is not None:
            with contextlib.suppress(Exception):  # the browser is going anyway
                devtools.close()
        if self._process.poll() is None:
            try:
                os.killpg(self._process.pid, signal.SIGTERM)
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=5)
            except ProcessLookupError:
                pass
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------ what is checked


class _IdParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (name == "id" or (tag == "a" and name == "name")):
                self.ids.add(value)


def html_ids(path: Path, cache: dict[Path, set[str]]) -> set[str]:
    """The anchors a page defines (read from its file, as a link target)."""
    if path not in cache:
        parser = _IdParser()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = parser.ids
    return cache[path]


def _shown_type(data: dict[str, Any]) -> str | None:
    return next((mime for mime in RENDER_PRIORITY if mime in data), None)


def notebook_outputs(notebook: Path) -> tuple[int, list[str]]:
    """The image outputs a notebook shows, and its error outputs (cell: ename)."""
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    images, errors = 0, []
    for number, cell in enumerate(cells, start=1):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.get("cell_type") != "code" or {"remove-cell", "remove-output"} & set(
            tags
        ):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                errors.append(
                    f"cell {number}: {output.get('ename')}: "
                    f"{str(output.get('evalue', ''))[:60]}"
                )
            elif _shown_type(output.get("data", {})) in IMAGE_TYPES:
                images += 1
    return images, errors


def _local_path(url: str) -> Path | None:
    parts = urlsplit(url)
    return Path(unquote(parts.path)) if parts.scheme == "file" else None


def check_reference(
    raw: str,
    url: str,
    page: Path,
    root: Path,
    page_ids: set[str],
    id_cache: dict[Path, set[str]],
) -> str | None:
    """Why an internal reference points nowhere, or None if it resolves."""
    target = _local_path(url)
    if target is None:
        return None
    shown = raw if len(raw) <= 60 else raw[:57] + "..."
    try:
        relative = target.resolve().relative_to(root)
    except ValueError:
        return f"{shown} points outside the site"
    target = root / relative
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return f"{shown} not found"
    fragment = unquote(urlsplit(url).fragment)
    if fragment and target.suffix == ".html":
        ids = page_ids if target == page else html_ids(target, id_cache)
        if fragment not in ids:
            return f"{shown}: no #{fragment} in {relative.as_posix()}"
    return None


def is_external(url: str) -> bool:
    return urlsplit(url).scheme in EXTERNAL_SCHEMES


def console_problems(
    events: list[dict[str, Any]], session: str
) -> tuple[list[str], list[str], int]:
    """A page's console errors, its failed local requests, its external count."""
    errors, failed, urls, external = [], [], {}, set()
    for event in events:
        if event.get("sessionId") != session:
            continue
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get(
                "text", "exception"
            )
            errors.append("uncaught " + text.splitlines()[0][:100])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in (
            "error",
            "assert",
        ):
            args = params.get("args", [])
            text = " ".join(
                str(arg.get("value", arg.get("description", ""))) for arg in args
            )
            errors.append(f"console.{params['type']}: {text[:100]}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            # failed requests are counted from the Network events below
            if entry.get("level") == "error" and entry.get("source") != "network":
                errors.append(f"log: {entry.get('text', '')[:100]}")
        elif method == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
            if is_external(params["request"]["url"]):
                external.add(params["requestId"])
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            url = urls.get(params["requestId"], "")
            if url.startswith("file:"):
                failed.append(f"{url.rsplit('/', 1)[-1]}: {params.get('errorText')}")
    return errors, failed, len(external)


def check_page(
    browser: Browser,
    page: Path,
    root: Path,
    page_timeout_s: float,
    settle_s: float,
    id_cache: dict[Path, set[str]],
) -> PageReport:
    """Load one page in a fresh tab and report what a reader would see."""
    report = PageReport(page.relative_to(root).as_posix())
    devtools = browser.devtools
    devtools.events.clear()
    target = devtools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    try:
        session = devtools.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            devtools.call(f"{domain}.enable", session=session)
        devtools.call(
            "Network.setBlockedURLs", {"urls": BLOCKED_PATTERNS}, session=session
        )
        deadline = time.monotonic() + page_timeout_s
        navigated = devtools.call(
            "Page.navigate", {"url": page.as_uri()}, session=session
        )
        if navigated.get("errorText"):
            report.reasons.append(f"did not open: {navigated['errorText']}")
            return report
        if not devtools.wait_for("Page.loadEventFired", session, deadline):
            report.reasons.append(f"did not finish loading in {page_timeout_s:.0f} s")
            return report
        shown = _read_page(devtools, session, deadline)
        if shown is None:
            report.reasons.append(f"did not settle on a page in {page_timeout_s:.0f} s")
            return report
        devtools.pump(settle_s)
        _judge(report, shown, page, root, id_cache)
        errors, failed, report.external = console_problems(devtools.events, session)
        report.console_errors = len(errors)
        report.reasons += errors + [f"request failed: {text}" for text in failed]
    except TimeoutError as error:
        report.reasons.append(f"browser did not answer: {error}")
    except RuntimeError as error:
        report.reasons.append(f"browser refused: {error}")
    finally:
        with contextlib.suppress(TimeoutError, RuntimeError):
            devtools.call("Target.closeTarget", {"targetId": target})
    return report


def _read_page(
    devtools: DevTools, session: str, deadline: float
) -> dict[str, Any] | None:
    """What the loaded page shows (COLLECT_JS). A page that redirects (the
    site's index.html) may navigate while it is read: then read the page it
    lands on, once it has loaded. None if that does not happen in time."""
    for attempt in range(2):
        try:
            reply = devtools.call(
                "Runtime.evaluate",
                {"expression": COLLECT_JS, "returnByValue": True},
                session=session,
                timeout_s=max(1.0, deadline - time.monotonic()),
            )
        except RuntimeError as error:
            if attempt or "navigated" not in str(error):
                raise
            devtools.events = [
                event
                for event in devtools.events
                if not (
                    event["method"] == "Page.loadEventFired"
                    and event.get("sessionId") == session
                )
            ]
            if not devtools.wait_for("Page.loadEventFired", session, deadline):
                return None
            continue
        if "exceptionDetails" in reply:
            text = reply["exceptionDetails"].get("text", "exception")
            raise RuntimeError(f"reading the page failed: {text}")
        return reply["result"]["value"]
    return None


def _judge(
    report: PageReport,
    shown: dict[str, Any],
    page: Path,
    root: Path,
    id_cache: dict[Path, set[str]],
) -> None:
    """Fill ``report`` from what the page's DOM showed."""
    page_ids = set(shown["ids"])
    landed = _local_path(shown["href"])
    if landed != page:
        # A redirect (the site's index.html): it must land on a page of the site,
        # which is checked in its own right; what the DOM shows is that page's,
        # read at a moment that depends on timing, so it is not counted here.
        why = check_reference(shown["href"], shown["href"], page, root, set(), {})
        if landed is None or why:
            report.reasons.append(f"redirected to {shown['href'][:80]}")
        else:
            report.links = 1
            report.note = f"redirects to {landed.relative_to(root).as_posix()}"
        return
    broken: list[str] = []
    for ref in shown["refs"]:
        if _local_path(ref["url"]) is None:
            continue
        report.links += 1
        why = check_reference(ref["raw"], ref["url"], page, root, page_ids, id_cache)
        if why:
            broken.append(f"{ref['tag']} {why}")
    images = [img for img in shown["images"] if not is_external(img["url"])]
    report.images = len(images)
    report.images_loaded = sum(img["loaded"] for img in images)
    for img in images:
        why = check_reference(img["raw"], img["url"], page, root, page_ids, id_cache)
        if why:
            broken.append(f"img {why}")
        elif not img["loaded"]:
            broken.append(f"img {img['raw'][:60]} did not render")
    report.reasons += sorted(set(broken), key=broken.index)
    if shown["tracebacks"]:
        report.reasons.append(f"{shown['tracebacks']} traceback output(s)")
    elif shown["traceback_text"]:
        report.reasons.append("a cell output shows a Traceback")
    report.reasons += [f"stderr: {text!r}" for text in shown["stderr_errors"]]
    notebook = root / "_sources" / page.relative_to(root).with_suffix(".ipynb")
    if notebook.is_file():
        figures, errors = notebook_outputs(notebook)
        in_outputs = sum(img["loaded"] and img["in_output"] for img in images)
        if in_outputs < figures:
            report.reasons.append(
                f"figures {in_outputs} shown of {figures} in the notebook"
            )
        report.reasons += [f"error output in {text}" for text in errors]


# ------------------------------------------------------------------ the run


def site_pages(root: Path) -> list[Path]:
    """Every html page of the site, in path order (assets left out)."""
    return sorted(
        path
        for path in root.rglob("*.html")
        if path.relative_to(root).parts[0] not in ASSET_DIRS
    )


def check_site(
    root: Path,
    chromium: str,
    page_timeout_s: float,
    total_timeout_s: float,
    settle_s: float,
) -> Iterator[PageReport]:
    """One report per page, as each page is checked."""
    pages = site_pages(root)
    if not pages:
        raise CheckSiteError(f"no html pages under {root}: build the book first")
    id_cache: dict[Path, set[str]] = {}
    deadline = time.monotonic() + total_timeout_s
    with Browser(chromium) as browser:
        for page in pages:
            if time.monotonic() > deadline:
                report = PageReport(page.relative_to(root).as_posix())
                report.reasons.append(
                    f"not checked: the whole check passed {total_timeout_s:.0f} s"
                )
                yield report
                continue
            yield check_page(browser, page, root, page_timeout_s, settle_s, id_cache)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the built site, e.g. _build/html")
    parser.add_argument("--chromium", help="browser binary (default: from PATH)")
    parser.add_argument("--page-timeout", type=float, default=20.0, metavar="S")
    parser.add_argument("--total-timeout", type=float, default=900.0, metavar="S")
    parser.add_argument(
        "--settle",
        type=float,
        default=0.3,
        metavar="S",
        help="seconds to keep listening for console errors after load",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    root = args.site.resolve()
    started = time.monotonic()
    reports: list[PageReport] = []
    try:
        if not root.is_dir():
            raise CheckSiteError(f"{args.site} is not a directory: run make book")
        chromium = find_chromium(args.chromium)
        for report in check_site(
            root, chromium, args.page_timeout, args.total_timeout, args.settle
        ):
            reports.append(report)
            print(report.line(), flush=True)
    except CheckSiteError as error:
        print(f"check-site: cannot run: {error}", file=sys.stderr)
        return 2
    failed = [report for report in reports if not report.ok]
    print(
        f"check-site: {len(reports)} pages, {len(reports) - len(failed)} OK, "
        f"{len(failed)} FAIL in {time.monotonic() - started:.1f} s; images "
        f"{sum(r.images_loaded for r in reports)}/{sum(r.images for r in reports)} "
        f"loaded, {sum(r.links for r in reports)} internal links, "
        f"{sum(r.console_errors for r in reports)} console errors, "
        f"{sum(r.external for r in reports)} external requests blocked"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
