"""Run a gateway app under uvicorn on loopback, in this process, for as long as needed.

Introduced in ``notebooks/model_serving.ipynb``. ``python -m
mlsd_lib.serving.gateway`` runs uvicorn as its own process; a notebook or a test
that wants to *change* a running gateway (hot-swap its model, kill its Redis)
runs it here instead, on a background thread, and still talks to it over real
HTTP. The listening socket is made by :func:`loopback_listener`, which both
entry points share.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import uvicorn
from fastapi import FastAPI

from mlsd_lib.net import LOOPBACK, wait_until


def loopback_listener(host: str = LOOPBACK, port: int = 0) -> socket.socket:
    """A listening TCP socket with Nagle's algorithm off.

    ``proto=IPPROTO_TCP`` matters: asyncio turns Nagle's algorithm off
    (TCP_NODELAY) only on sockets that say they are TCP. Without it, a
    keep-alive connection's responses (headers, then body: two writes) stall
    ~40 ms on the client's delayed ACK. Accepted sockets inherit the option.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


class GatewayServer:
    """``app`` served by uvicorn on a background thread::

        with GatewayServer(app) as gateway:
            httpx.post(f"{gateway.url}/score", ...)

    Start-up waits until uvicorn accepts connections (and the app's lifespan has
    run); leaving the block shuts uvicorn down gracefully, finishing the
    requests in flight, and runs the app's shutdown.
    """

    def __init__(
        self, app: FastAPI, host: str = LOOPBACK, startup_timeout_s: float = 30.0
    ) -> None:
        self.app = app
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("GatewayServer is not running: use it in a with block.")
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    def start(self) -> GatewayServer:
        self._socket = loopback_listener(self.host)
        self.port = self._socket.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", access_log=False)
        )
        self._server.install_signal_handlers = lambda: None  # not the main thread
        self._thread = threading.Thread(
            target=self._run, name="gateway-uvicorn", daemon=True
        )
        self._thread.start()
        server = self._server
        started = wait_until(
            lambda: server.started,
            timeout_s=self.startup_timeout_s,
            interval_s=0.01,
            give_up_if=lambda: not self._thread.is_alive(),
        )
        if not started:
            error = self._error
            self.stop()
            raise RuntimeError(
                f"the gateway did not start within {self.startup_timeout_s:.0f} s"
                + (f": {type(error).__name__}: {error}" if error else "")
            ) from error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as error:  # surfaced by start()
            self._error = error

    def stop(self) -> None:
        """Graceful shutdown (idempotent): in-flight requests finish first."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=30)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
