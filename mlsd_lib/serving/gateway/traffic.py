"""Steady background traffic against a gateway, every request recorded.

Introduced in ``notebooks/model_serving.ipynb`` (the hot swap) and used by the
fault tests. :mod:`~mlsd_lib.serving.loadgen` answers "how fast?" with
percentiles; operations questions need the *timeline* instead: which requests
were in flight when the model was swapped or Redis was killed, which version
answered each, and whether any failed. :class:`BackgroundLoad` keeps one
:class:`Outcome` per request for that, for as long as the ``with`` block runs
(bounded in count and time, loopback only, like every load in this book).
:class:`PacedBodyLoad` is the same load for any route: given request bodies
posted in turn, each client paced, each answer kept as the short summary a case
study's subclass chooses (the recommender's feed traffic, visual search's).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.loadgen import check_loopback
from mlsd_lib.validation import require_int, require_number


@dataclass
class Outcome:
    """One request as its client saw it (``status`` 0: no HTTP answer at all)."""

    sent_at: float
    latency_s: float
    status: int
    body: dict = field(default_factory=dict)
    error: str = ""

    @property
    def done_at(self) -> float:
        return self.sent_at + self.latency_s


def outcome_label(outcome: Outcome) -> str:
    """What a timeline colours ``outcome`` by: its answer's ``model_version``
    (``HTTP 200`` without one), or ``failed (<status>)`` for any other status."""
    if outcome.status == 200:
        return outcome.body.get("model_version", f"HTTP {outcome.status}")
    return f"failed ({outcome.status})"


def count_labels(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """How many of ``outcomes`` had each :func:`outcome_label`, in the order
    the labels first appear."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        label = outcome_label(outcome)
        counts[label] = counts.get(label, 0) + 1
    return counts


class BackgroundLoad:
    """``clients`` threads posting scoring requests until the block ends.

    Each request scores ``candidates`` ads for one of ``num_users`` users, users
    taken in turn. Times are :func:`time.perf_counter` values, so they line up
    with marks the caller takes with the same clock.
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        clients: int = 4,
        candidates: int = 20,
        num_users: int = 200,
        num_ads: int = 30,
        timeout_s: float = 5.0,
        max_requests: int = 20_000,
        max_seconds: float = 120.0,
    ) -> None:
        self.url = check_loopback(url)
        self.headers = headers
        self.clients = require_int("clients", clients, at_least=1)
        self.candidates = candidates
        self.num_users = num_users
        self.num_ads = num_ads
        self.timeout_s = timeout_s
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _worker(self, index: int) -> None:
        deadline = time.perf_counter() + self.max_seconds
        with httpx.Client(timeout=self.timeout_s, trust_env=False) as client:
            n = 0
            while (
                not self._stop.is_set()
                and len(self.outcomes) < self.max_requests
                and time.perf_counter() < deadline
            ):
                user = (index * 7919 + n) % self.num_users
                ads = [(user + k) % self.num_ads for k in range(self.candidates)]
                start = time.perf_counter()
                try:
                    answer = client.post(
                        f"{self.url}/score",
                        json={"user_id": user, "candidate_ids": ads},
                        headers=self.headers,
                    )
                    outcome = Outcome(
                        start,
                        time.perf_counter() - start,
                        answer.status_code,
                        answer.json(),
                    )
                except Exception as error:  # a failed request is data here
                    outcome = Outcome(
                        start, time.perf_counter() - start, 0, error=repr(error)
                    )
                with self._lock:
                    self.outcomes.append(outcome)
                n += 1

    def __enter__(self) -> BackgroundLoad:
        for index in range(self.clients):
            thread = threading.Thread(
                target=self._worker, args=(index,), name=f"traffic-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 5)

    def since(self, moment: float) -> list[Outcome]:
        """The requests sent at or after ``moment``."""
        with self._lock:
            return [o for o in self.outcomes if o.sent_at >= moment]

    def failures(self) -> list[Outcome]:
        """Requests that got no answer or a non-2xx one."""
        with self._lock:
            return [o for o in self.outcomes if not 200 <= o.status < 300]

    def wait_for(
        self, count: int, timeout_s: float = 30.0, *, sent_after: float | None = None
    ) -> None:
        """Block until at least ``count`` more requests have completed.

        With ``sent_after`` (a :func:`time.perf_counter` value), count only
        requests sent at or after that moment: requests already in flight, or a
        fast burst right after a mark, then cannot satisfy the wait on their own.
        """

        def completed() -> int:
            if sent_after is None:
                return len(self.outcomes)
            return len(self.since(sent_after))

        target = count if sent_after is not None else completed() + count
        deadline = time.monotonic() + timeout_s
        while completed() < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"load stalled at {len(self.outcomes)} requests")
            time.sleep(0.01)


class NoRequestBodies(MlsdError, ValueError):
    """A paced load was given no request body to send."""


class PacedBodyLoad(BackgroundLoad):
    """``clients`` threads posting ``bodies`` to :attr:`path` in turn until the
    block ends.

    Client ``i`` sends bodies ``i``, ``i + clients``, ... (wrapping around).
    ``pace_s``: each client waits until this long after its previous request
    was sent (0: closed loop), so that a fast degraded answer does not turn a
    drill into a flood. Bounded by ``max_requests`` and ``max_seconds``. A
    subclass names the route in :attr:`path` and keeps what a timeline needs
    of each 200 answer in :meth:`summarize` (its ``model_version`` is the
    label).
    """

    #: The route every request is posted to.
    path: str = "/score"
    #: The error raised for no bodies, and what its message advises.
    no_bodies: type[NoRequestBodies] = NoRequestBodies
    no_bodies_advice: str = "pass a non-empty list"

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        bodies: Sequence[Mapping[str, Any]],
        *,
        clients: int = 3,
        pace_s: float = 0.0,
        timeout_s: float = 5.0,
        max_requests: int = 20_000,
        max_seconds: float = 120.0,
    ) -> None:
        require_int("clients", clients, at_least=1)
        require_number("pace_s", pace_s, at_least=0)
        if not bodies:
            raise self.no_bodies(
                f"{type(self).__name__} needs at least one request body; "
                f"{self.no_bodies_advice}."
            )
        super().__init__(
            url, headers, clients=clients, timeout_s=timeout_s,
            max_requests=max_requests, max_seconds=max_seconds,
        )  # fmt: skip
        self.bodies = list(bodies)
        self.pace_s = pace_s

    def summarize(self, answer: Mapping[str, Any]) -> dict[str, Any]:
        """What an outcome keeps of a 200 answer's JSON (default: all of it)."""
        return dict(answer)

    def outcome(
        self,
        position: int,
        sent_at: float,
        answer: httpx.Response | None,
        error: str = "",
    ) -> Outcome:
        """The record kept of the request that sent body ``position`` at
        ``sent_at`` (``answer`` None: none came back, ``error`` says why).

        A subclass that needs more of each request (which body it sent, a
        header) overrides this, not the loop.
        """
        if answer is None:
            return Outcome(sent_at, time.perf_counter() - sent_at, 0, error=error)
        body: dict[str, Any] = {}
        if answer.status_code == 200:
            body = self.summarize(answer.json())
        return Outcome(sent_at, time.perf_counter() - sent_at, answer.status_code, body)

    def _worker(self, index: int) -> None:
        deadline = time.perf_counter() + self.max_seconds
        with httpx.Client(timeout=self.timeout_s, trust_env=False) as client:
            n = index
            while (
                not self._stop.is_set()
                and len(self.outcomes) < self.max_requests
                and time.perf_counter() < deadline
            ):
                position = n % len(self.bodies)
                start = time.perf_counter()
                try:
                    answer = client.post(
                        f"{self.url}{self.path}",
                        json=self.bodies[position],
                        headers=self.headers,
                    )
                    outcome = self.outcome(position, start, answer)
                except Exception as error:  # a failed request is data here
                    outcome = self.outcome(position, start, None, repr(error))
                with self._lock:
                    self.outcomes.append(outcome)
                n += self.clients
                pause = start + self.pace_s - time.perf_counter()
                if pause > 0:
                    self._stop.wait(pause)

    def labels(self, outcomes: Sequence[Outcome] | None = None) -> dict[str, int]:
        """How many of ``outcomes`` (default: all) had each label
        (:func:`outcome_label`); failures as ``failed (<status>)``."""
        if outcomes is None:
            with self._lock:
                outcomes = list(self.outcomes)
        return count_labels(outcomes)


def plot_timeline(
    outcomes: Sequence[Outcome],
    marks: dict[str, float] | None = None,
    *,
    origin: float | None = None,
) -> Figure:
    """Latency of every request against its send time, coloured by the version
    (or status) that answered it; ``marks`` draws labelled vertical lines."""
    figure = Figure(figsize=(7, 3.5), layout="constrained")
    axes = figure.add_subplot()
    if outcomes:
        start = min(o.sent_at for o in outcomes) if origin is None else origin
        labels = [outcome_label(o) for o in outcomes]
        for label in sorted(set(labels)):
            chosen = [
                o for o, lab in zip(outcomes, labels, strict=True) if lab == label
            ]
            axes.plot(
                np.array([o.sent_at for o in chosen]) - start,
                np.array([o.latency_s for o in chosen]) * 1000,
                ".",
                markersize=3,
                label=label,
            )
        for index, (name, moment) in enumerate((marks or {}).items()):
            axes.axvline(moment - start, color="k", linestyle="--", linewidth=1)
            axes.annotate(
                name,
                (moment - start, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12 - 11 * index),
                textcoords="offset points",
                fontsize=8,
            )
    axes.set_xlabel("time since the first request (s)")
    axes.set_ylabel("latency (ms)")
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(ScalarFormatter())
    axes.grid(alpha=0.3)
    axes.legend(markerscale=3, fontsize=8)
    return figure
