"""Loopback networking helpers shared by every service the library starts.

Introduced in ``notebooks/00_environment.ipynb``.

Services in this book bind to 127.0.0.1 on ports the operating system picks, so
two notebooks (or a notebook and a test run) never fight over a fixed port.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The port is released before returning, so another process could take it in
    between; callers that start a server retry on a bind failure.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.05,
    give_up_if: Callable[[], bool] | None = None,
) -> bool:
    """Poll ``condition`` until it returns True or ``timeout_s`` passes.

    Exceptions raised by ``condition`` count as "not yet" (a server that is still
    starting refuses connections). ``give_up_if`` ends the wait early (a server
    process that already exited will never answer). Returns whether the
    condition became true.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if give_up_if is not None and give_up_if():
            return False
        try:
            if condition():
                return True
        except Exception:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
