"""Rules for every pytest session in this repository: tests and notebooks alike.

``make test`` runs the unit tests and every notebook (nbval) in one session, and
two promises hold for all of them:

1. **Warnings are read, not scrolled past.** A warning that reaches the end of
   the run fails it. Each one is either fixed or filtered in ``pyproject.toml``
   (``[tool.pytest.ini_options] filterwarnings``) with a comment saying why it is
   harmless; ``tests/test_warnings_policy.py`` checks every filter has one.
2. **The reader's Redis is left as it was found.** ``REDIS_URL`` may name the
   reader's own server. When it is set, the database's key set is taken at the
   start, and after the last test of each file (a notebook is one file) it must
   be the same again: a file that leaves keys behind, or deletes the reader's,
   fails in its last test's teardown, naming the keys. The unit tests never
   write there (their real servers are private, see ``tests/conftest.py``);
   the notebooks and the library code they call clean up after themselves.
3. **The process environment is left as it was found.** Every notebook's kernel
   is a child of this process and inherits ``os.environ``: a test file that
   leaves, say, ``OMP_NUM_THREADS=1`` behind (Dask's nanny writes it there)
   makes every later notebook train on one thread and print numbers that
   differ from the ones stored. After the last test of each file the
   environment must equal the one at the start (but for the names in
   ``EnvironmentLeftAsFound.IGNORED``); ``monkeypatch.setenv`` restores by
   itself.
"""

from __future__ import annotations

import os
import warnings

import pytest
import redis

_SHOWN = 10


def _keys(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter(count=1_000))


class RedisLeftAsFound:
    """Compares the configured Redis's key set after each file with the start."""

    def __init__(self, url: str):
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=10)
        self.start = _keys(self.client)

    def check(self, where: str) -> None:
        now = _keys(self.client)
        left, removed = now - self.start, self.start - now
        if not left and not removed:
            return
        self.start = now  # report each leak once, at the file that made it
        parts = []
        if left:
            parts.append(f"left {len(left)} keys behind (e.g. {_sample(left)})")
        if removed:
            parts.append(
                f"removed {len(removed)} keys it did not write (e.g. "
                f"{_sample(removed)}; or they expired meanwhile)"
            )
        raise AssertionError(
            f"{where} did not leave REDIS_URL={self.url} as it found it: "
            + " and ".join(parts)
            + ". Delete exactly what you write (or work under a prefix you own)."
        )


class EnvironmentLeftAsFound:
    """Compares ``os.environ`` after each file with the start of the session."""

    #: Set by others and harmless to inherit: pytest's current test name, and
    #: torch's inductor writes its default cache folder (/tmp/torchinductor_<user>)
    #: here the first time it compiles, the folder a kernel would compute anyway.
    IGNORED = frozenset({"PYTEST_CURRENT_TEST", "TORCHINDUCTOR_CACHE_DIR"})

    def __init__(self) -> None:
        # scikit-learn and joblib set KMP_DUPLICATE_LIB_OK and KMP_INIT_AT_FORK
        # when first imported (Intel OpenMP settings); import them now so those
        # are in the baseline and every kernel starts from the same environment,
        # whichever test happened to import them first.
        import sklearn  # noqa: F401

        self.start = self._now()

    def _now(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k not in self.IGNORED}

    def check(self, where: str) -> None:
        now = self._now()
        changed = sorted(
            name
            for name in set(now) | set(self.start)
            if now.get(name) != self.start.get(name)
        )
        if not changed:
            return
        shown = ", ".join(
            f"{name}: {self.start.get(name)!r} -> {now.get(name)!r}"
            for name in changed[:_SHOWN]
        )
        self.start = now  # report each change once, at the file that made it
        raise AssertionError(
            f"{where} changed the process environment ({shown}); every later "
            "notebook kernel would inherit it. Use monkeypatch.setenv, or put "
            "os.environ back when done."
        )


def _sample(keys: set[bytes]) -> str:
    return ", ".join(repr(k.decode(errors="replace")) for k in sorted(keys)[:_SHOWN])


_guard: RedisLeftAsFound | None = None
_environment: EnvironmentLeftAsFound | None = None
_warned: list[str] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    global _guard, _environment
    _environment = EnvironmentLeftAsFound()
    url = os.environ.get("REDIS_URL")
    if url:
        try:
            _guard = RedisLeftAsFound(url)
        except redis.RedisError as error:
            raise pytest.UsageError(
                f"REDIS_URL={url} does not answer ({error}): start it or unset it."
            ) from error


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is not None and nextitem.path == item.path:
        return
    where = str(item.path.relative_to(item.config.rootpath))
    failures = []
    for guard in (_environment, _guard):
        try:
            if guard is not None:
                guard.check(where)
        except AssertionError as failure:
            failures.append(str(failure))
    if failures:
        raise AssertionError("\n".join(failures))


def pytest_warning_recorded(
    warning_message: warnings.WarningMessage, when: str, nodeid: str, location: object
) -> None:
    _warned.append(
        f"{nodeid or when}: {warning_message.category.__name__}: "
        f"{warning_message.message}"
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _warned and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config) -> None:
    if _warned:
        terminalreporter.section("warnings that fail this run", sep="=", red=True)
        for line in _warned[:50]:
            terminalreporter.line(line)
        terminalreporter.line(
            f"{len(_warned)} warnings: fix each, or filter it in pyproject.toml "
            "with a comment that says why it is harmless (see conftest.py)."
        )
