"""Steady visual search traffic in the background, every answer labelled.

Introduced in ``casestudies/visual_search/index.md`` (requirement
"Availability: degrade to category-level results if the index is
unavailable"). A failure drill asks what percentiles cannot answer: while the
model server was down, did every shopper still get a page, and which kind?
:class:`SearchTraffic` is the generic gateway's
:class:`~mlsd_lib.serving.gateway.traffic.BackgroundLoad` (threads, bounded in
count and time, loopback only, one
:class:`~mlsd_lib.serving.gateway.traffic.Outcome` per request) sending
``POST /v1/visual/search`` with the given bodies in turn (photos and
precomputed regions mixed, if the caller mixes them), each client paced. Each
outcome's ``body`` keeps a summary whose ``model_version`` is the label
:func:`~mlsd_lib.serving.gateway.traffic.plot_timeline` colours by: the
release and the path that served it (``visual-v1 photo``), or ``degraded
photo`` / ``degraded region``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.gateway.traffic import BackgroundLoad, Outcome

__all__ = ["NoSearchBodies", "SearchTraffic", "label_of"]

SEARCH_PATH = "/v1/visual/search"
PATH_NAMES = {"image": "photo", "region": "region"}


class NoSearchBodies(MlsdError, ValueError):
    """Search traffic was given no request body to send."""


def label_of(answer: Mapping[str, Any]) -> str:
    """``<release> <path>`` of a served answer, ``degraded <path>`` otherwise."""
    path = PATH_NAMES.get(answer.get("path", ""), str(answer.get("path")))
    if answer.get("degraded"):
        return f"degraded {path}"
    return f"{answer['versions']['release']} {path}"


class SearchTraffic(BackgroundLoad):
    """``clients`` threads posting ``bodies`` in turn until the block ends.

    ``pace_s``: each client waits until this long after its previous request
    was sent (0: closed loop). Bounded by ``max_requests`` and ``max_seconds``.
    """

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
        if not bodies:
            raise NoSearchBodies(
                "SearchTraffic needs at least one request body; pass photos or "
                "regions (mlsd_lib.visual.search_load.photo_bodies)."
            )
        super().__init__(
            url, headers, clients=clients, timeout_s=timeout_s,
            max_requests=max_requests, max_seconds=max_seconds,
        )  # fmt: skip
        self.bodies = list(bodies)
        self.pace_s = pace_s

    def _worker(self, index: int) -> None:
        deadline = time.perf_counter() + self.max_seconds
        with httpx.Client(timeout=self.timeout_s, trust_env=False) as client:
            n = index
            while (
                not self._stop.is_set()
                and len(self.outcomes) < self.max_requests
                and time.perf_counter() < deadline
            ):
                start = time.perf_counter()
                try:
                    answer = client.post(
                        f"{self.url}{SEARCH_PATH}",
                        json=self.bodies[n % len(self.bodies)],
                        headers=self.headers,
                    )
                    body: dict[str, Any] = {}
                    if answer.status_code == 200:
                        page = answer.json()
                        body = {
                            "model_version": label_of(page),
                            "path": page["path"],
                            "degraded": page["degraded"],
                            "reason": page["degraded_reason"] or "",
                        }
                    outcome = Outcome(
                        start, time.perf_counter() - start, answer.status_code, body
                    )
                except Exception as error:  # a failed request is data here
                    outcome = Outcome(
                        start, time.perf_counter() - start, 0, error=repr(error)
                    )
                with self._lock:
                    self.outcomes.append(outcome)
                n += self.clients
                pause = start + self.pace_s - time.perf_counter()
                if pause > 0:
                    self._stop.wait(pause)

    def labels(self, outcomes: Sequence[Outcome] | None = None) -> dict[str, int]:
        """How many of ``outcomes`` (default: all) had each label; failures as
        ``failed (<status>)``."""
        if outcomes is None:
            with self._lock:
                outcomes = list(self.outcomes)
        counts: dict[str, int] = {}
        for o in outcomes:
            label = (
                o.body.get("model_version", f"HTTP {o.status}")
                if o.status == 200
                else f"failed ({o.status})"
            )
            counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))
