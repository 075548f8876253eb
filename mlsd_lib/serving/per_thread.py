"""One client or connection per calling thread, all closed together.

Introduced in ``notebooks/model_serving.ipynb``. Both the load generator's HTTP
senders and the Triton servers' clients need it: a client shared by threads
either is not thread-safe (``tritonclient.http`` runs on gevent) or makes the
threads queue on one connection, a wait that would be measured as server
latency and that would hide concurrent requests from Triton's dynamic batcher.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from mlsd_lib.errors import MlsdError

#: The type of what each thread gets: a client, a connection.
T = TypeVar("T")


class ResourceClosed(MlsdError, RuntimeError):
    """A per-thread cache was asked for a new item after :meth:`PerThread.close_all`."""


class PerThread(Generic[T]):
    """One ``T`` (a client, a connection) per calling thread, made on first use.

    Items of threads that have finished are closed as new ones are made;
    :meth:`close_all` closes the rest and refuses to make more. ``owner`` names
    what the items belong to, for that refusal's message.
    """

    def __init__(
        self, make: Callable[[], T], close: Callable[[T], None], owner: str
    ) -> None:
        self._make, self._close, self._owner = make, close, owner
        self._lock = threading.Lock()
        self._items: dict[threading.Thread, T] = {}
        self._closed = False

    def get(self) -> T:
        """This thread's item, made if it has none."""
        me = threading.current_thread()
        item = self._items.get(me)
        if item is not None:
            return item
        with self._lock:
            if self._closed:
                raise ResourceClosed(f"{self._owner} has been closed")
            for thread in [t for t in self._items if not t.is_alive()]:
                self._close(self._items.pop(thread))
            item = self._items[me] = self._make()
            return item

    def forget_mine(self) -> None:
        """Drop this thread's item (already closed): the next get() makes one."""
        with self._lock:
            self._items.pop(threading.current_thread(), None)

    def close_all(self) -> None:
        """Close every item and make no more."""
        with self._lock:
            self._closed = True
            items, self._items = list(self._items.values()), {}
        for item in items:
            self._close(item)
