"""One thread draining a bounded queue, for work that must never slow a request.

Introduced in ``notebooks/model_serving.ipynb``. The impression log and the shadow
scorer both take work from request handlers and do it off the request path. Both
need the same guarantees: a handler's ``offer`` never waits (a full queue drops
the item and counts it), one thread owns the work, ``wait_idle`` blocks until
everything offered so far is done, and ``close`` finishes the queue before it
stops. :class:`BoundedWorker` gives them exactly that; each subclass writes
only ``_run``, which must call ``task_done`` once per item taken and return on
:data:`STOP`.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Self

#: Put on the queue by :meth:`BoundedWorker.close`; ``_run`` returns when it sees it.
STOP = object()


class BoundedWorker:
    """A daemon thread named ``name`` over a queue of ``max_queued`` items."""

    def __init__(self, name: str, max_queued: int) -> None:
        self.dropped = 0
        self._name = name
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None

    def _prepare(self) -> None:
        """Set-up before the thread starts (e.g. create a folder)."""

    def start(self) -> Self:
        """Start the thread (idempotent; again after :meth:`close`)."""
        if self._thread is None:
            self._prepare()
            self._thread = threading.Thread(
                target=self._run, name=self._name, daemon=True
            )
            self._thread.start()
        return self

    def _offer(self, item: Any) -> bool:
        """Queue ``item`` without waiting; False (and counted) when full."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def _wait_idle(self) -> None:
        """Block until every item offered so far has been handled."""
        self._queue.join()

    def close(self) -> None:
        """Handle what is queued, then stop the thread (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(STOP)
            thread.join()

    def _run(self) -> None:
        raise NotImplementedError
