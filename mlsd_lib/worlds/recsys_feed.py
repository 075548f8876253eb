"""The contract between the recsys world and whatever chooses the feeds.

Introduced in ``casestudies/recommender/index.md`` (the synthetic world). The
world owns the users and their reactions; a *policy* owns the choice of items.
They meet in two small dataclasses: the world sends a :class:`FeedRequest` (a
batch of sessions: who, when, which request id) and the policy answers a
:class:`FeedResponse` (a ranked feed per session, and optionally the
probability it had of choosing each item for each slot, and the candidate
source). Any callable ``policy(request) -> FeedResponse`` will do: a built-in
policy (:mod:`mlsd_lib.worlds.recsys_policies`), a trained model, or the full
serving gateway, which is how the book closes the loop between the system it
builds and the users it serves.

A policy that also has ``observe(log)`` receives, after each batch, the
impressions and outcomes of that batch (a
:class:`~mlsd_lib.worlds.recsys_log.RecsysLog`): that is how a popularity
counter or a streaming history feature sees plays within a simulated day.
Requests come in time order, batch by batch (an hour at a time), so a policy
may use everything it observed so far and nothing later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from mlsd_lib.worlds.recsys_log import RecsysLog

__all__ = ["FeedRequest", "FeedResponse", "ObservingPolicy", "Policy"]


@dataclass(frozen=True)
class FeedRequest:
    """A batch of feed requests: parallel arrays, in time order.

    ``user`` (int64 user indices), ``time`` (float64 seconds since day 0
    started), ``request_id`` (int64, unique across the world's days); ``day``
    is the day every request of the batch falls on and ``feed_size`` the
    number of slots to fill.
    """

    user: np.ndarray
    time: np.ndarray
    request_id: np.ndarray
    day: int
    feed_size: int

    def __len__(self) -> int:
        return len(self.user)


@dataclass(frozen=True)
class FeedResponse:
    """A policy's answer: ``items`` (B, k) int64, best first, k <= feed_size.

    ``propensity`` (B, k): the probability the policy had of putting that item
    in that slot for that request (``None``: unknown, logged as NaN).
    ``source`` (B, k) small ints, codes into
    :data:`~mlsd_lib.worlds.recsys_log.SOURCES` (``None``: ``"unknown"``).
    ``version`` names the policy or model version that served the feeds.
    """

    items: np.ndarray
    propensity: np.ndarray | None = None
    source: np.ndarray | None = None
    version: str = "unknown"


@runtime_checkable
class Policy(Protocol):
    """Anything that turns a batch of requests into a batch of feeds."""

    def __call__(self, request: FeedRequest) -> FeedResponse: ...


@runtime_checkable
class ObservingPolicy(Policy, Protocol):
    """A policy that also learns from what happened to the feeds it served."""

    def observe(self, log: RecsysLog) -> None: ...
