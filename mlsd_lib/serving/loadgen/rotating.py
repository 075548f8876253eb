"""A ``send`` that posts a different body each time: one user per request.

Part of :mod:`mlsd_lib.serving.loadgen`, introduced in
``notebooks/model_serving.ipynb`` and used by the recommender's serving
benchmark (``casestudies/recommender/index.md``). A fixed body measures one
user's request over and over: the same Redis key, the same cached history,
the same candidates. A feed's cost depends on the user (the length of their
history, how many candidates survive the filters), so the benchmark sends a
different user each time. :class:`RotatingBodySender` is the standard-library
sender (:class:`~mlsd_lib.serving.loadgen.senders.LeanHttpSender`) with a list
of bodies, encoded once up front so that no JSON work is timed, taken in turn
by whichever thread sends next. :class:`RecordingSender` wraps such a sender
and keeps every answer, so that a benchmark can read what the server said it
did (its stages' timings, whether it degraded) after the run.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.loadgen.senders import LeanHttpSender, LeanResponse

__all__ = ["NoBodies", "RecordingSender", "RotatingBodySender"]


class NoBodies(MlsdError, ValueError):
    """A rotating sender was given no body to send."""


class RotatingBodySender(LeanHttpSender):
    """POST ``bodies[0]``, ``bodies[1]``, ... in turn (then from the start again).

    Same contract as :class:`~mlsd_lib.serving.loadgen.senders.LeanHttpSender`:
    loopback only, one keep-alive connection per thread, a timeout on every
    request, :class:`~mlsd_lib.serving.loadgen.senders.RequestFailed` on any
    non-2xx answer. Thread-safe: each call takes the next body from a shared
    counter, and a retry on a dropped connection resends the same body.
    """

    def __init__(
        self,
        url: str,
        bodies: Sequence[Any],
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        if not bodies:
            raise NoBodies(
                "RotatingBodySender needs at least one body; pass a list of "
                "request bodies, e.g. one per user."
            )
        self._local = threading.local()
        super().__init__(url, bodies[0], headers, timeout_s)
        self._bodies = [json.dumps(body).encode() for body in bodies]
        self._turn = itertools.count()

    # The parent sends ``self._content``; here it is the body this thread took.
    @property
    def _content(self) -> bytes | None:
        return getattr(self._local, "body", self._first)

    @_content.setter
    def _content(self, value: bytes | None) -> None:
        self._first = value

    def _exchange(self) -> LeanResponse:  # type: ignore[override]
        self._local.body = self._bodies[next(self._turn) % len(self._bodies)]
        return super()._exchange()


class RecordingSender:
    """Wraps a ``send`` (a :class:`RotatingBodySender`) and keeps each
    answer's raw body; :meth:`take` parses and hands them over.

    Thread-safe: the load loops call it from several threads at once.
    """

    def __init__(self, send: Callable[[], Any]) -> None:
        self.send = send
        self._bodies: list[bytes] = []
        self._lock = threading.Lock()

    def __call__(self) -> None:
        response = self.send()
        with self._lock:
            self._bodies.append(response.content)

    def take(self) -> list[dict[str, Any]]:
        """The answers since the last call, parsed (and forgotten here)."""
        with self._lock:
            bodies, self._bodies = self._bodies, []
        return [json.loads(body) for body in bodies]
