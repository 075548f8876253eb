"""``send`` callables for HTTP: one keep-alive connection per thread, loopback only.

Part of :mod:`mlsd_lib.serving.loadgen`, introduced in
``notebooks/model_serving.ipynb``.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.loadgen.limits import MAX_SECONDS, check_range
from mlsd_lib.serving.loadgen.targets import check_loopback
from mlsd_lib.serving.per_thread import PerThread


class RequestFailed(MlsdError, RuntimeError):
    """An HTTP request got a non-2xx answer; the message has status and body."""


class HttpSender:
    """A thread-safe ``send`` for one URL: one ``httpx.Client`` per thread.

    Each calling thread gets its own client (and so its own keep-alive
    connection), which keeps a closed loop's N workers from queueing on a
    shared connection pool, a wait that would be counted as server latency.
    Clients of threads that have finished are closed as new ones are made, and
    :meth:`close` closes the rest. Proxy variables are ignored and redirects are
    not followed, so requests cannot leave loopback.
    """

    def __init__(
        self,
        url: str,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = check_loopback(url)
        check_range("timeout_s", timeout_s, 0, MAX_SECONDS)
        self.method = "GET" if json_body is None else "POST"
        self._content = None if json_body is None else json.dumps(json_body).encode()
        self._headers = dict(headers or {})
        if json_body is not None:
            self._headers.setdefault("content-type", "application/json")
        self._timeout_s = timeout_s
        self._clients: PerThread[httpx.Client] = PerThread(
            lambda: httpx.Client(
                timeout=self._timeout_s, trust_env=False, follow_redirects=False
            ),
            lambda client: client.close(),
            f"this sender for {self.url}",
        )

    def _exchange(self) -> httpx.Response:
        return self._clients.get().request(
            self.method, self.url, content=self._content, headers=self._headers
        )

    def __call__(self) -> Any:
        """Send one request; raise RequestFailed on any non-2xx answer."""
        response = self._exchange()
        if not response.is_success:
            raise RequestFailed(
                f"{self.method} {self.url} answered {response.status_code}: "
                f"{response.text[:200]!r}"
            )
        return response

    def close(self) -> None:
        self._clients.close_all()

    def __enter__(self) -> HttpSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class LeanResponse:
    """What :class:`LeanHttpSender` returns: status, headers and the whole body."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class LeanHttpSender(HttpSender):
    """:class:`HttpSender` on the standard library's ``http.client``.

    Same contract (one keep-alive connection per thread, loopback only, no
    proxies, no redirects, a timeout on every request, RequestFailed on any
    non-2xx answer, the whole body read) at a fraction of httpx's CPU per
    request. On a small machine the load generator shares the cores with the
    service it measures, so a heavy client lowers the throughput it reports; a
    dropped connection is reopened once, as httpx's pool would.
    """

    def __init__(
        self,
        url: str,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        super().__init__(url, json_body, headers, timeout_s)
        parts = urlsplit(self.url)
        if parts.scheme != "http":
            raise ValueError(f"the lean sender speaks plain http only, not {url!r}")
        self._host = parts.hostname or ""
        self._port = parts.port or 80
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._connections: PerThread[http.client.HTTPConnection] = PerThread(
            self._connect,
            lambda connection: connection.close(),
            f"this sender for {self.url}",
        )

    def _connect(self) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(
            self._host, self._port, timeout=self._timeout_s
        )
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def _exchange_once(self) -> LeanResponse:
        connection = self._connections.get()
        try:
            connection.request(
                self.method, self._target, body=self._content, headers=self._headers
            )
            answer = connection.getresponse()
            content = answer.read()
        except (http.client.HTTPException, OSError):
            connection.close()  # reconnects on the next call
            self._connections.forget_mine()
            raise
        if answer.will_close:
            connection.close()
            self._connections.forget_mine()
        return LeanResponse(answer.status, dict(answer.getheaders()), content)

    def _exchange(self) -> LeanResponse:  # type: ignore[override]
        try:
            return self._exchange_once()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return self._exchange_once()  # a keep-alive connection the server closed

    def close(self) -> None:
        self._connections.close_all()
        super().close()


def http_sender(
    url: str,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 5.0,
    *,
    client: Literal["httpx", "stdlib"] = "httpx",
) -> HttpSender:
    """Build a ``send`` callable that POSTs ``json_body`` to ``url`` (GET if None).

    The body is encoded once, here, so the generator's own JSON work is not
    timed as server latency. Use it as a context manager so its connections
    are closed: ``with http_sender(url, body) as send: sweep(send, ...)``.
    ``client="stdlib"`` sends with :class:`LeanHttpSender` (``http.client``),
    which costs the generator several times less CPU per request than httpx.
    """
    if client == "stdlib":
        return LeanHttpSender(url, json_body, headers, timeout_s)
    if client != "httpx":
        raise ValueError(f"client={client!r}: use 'httpx' or 'stdlib'")
    return HttpSender(url, json_body, headers, timeout_s)
