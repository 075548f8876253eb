"""Steady feed traffic in the background, every answer labelled for a timeline.

Introduced in ``casestudies/recommender/06_serving.ipynb`` (the availability
requirement: "on failure, serve a cached popular-in-region feed"). A failure drill asks
a question percentiles cannot answer: while the model server was down, did every user
still get a feed, and which kind? :class:`FeedTraffic` is the generic gateway's
:class:`~mlsd_lib.serving.gateway.traffic.PacedBodyLoad` (threads, bounded in
count and time, loopback only, one
:class:`~mlsd_lib.serving.gateway.traffic.Outcome` per request) sending
``POST /v1/recs/feed`` with one user per request, each client paced so that a
fast degraded answer does not turn the drill into a flood. Each outcome's
``body`` keeps a short summary of the answer, whose ``model_version`` is the
label :func:`~mlsd_lib.serving.gateway.traffic.plot_timeline` colours by: the
release that served it, or ``degraded: popular``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlsd_lib.serving.gateway.traffic import NoRequestBodies, PacedBodyLoad

__all__ = ["DEGRADED", "FeedTraffic", "NoFeedBodies", "label_of"]

#: The label of an answer that fell back to the popular-in-region feed.
DEGRADED = "degraded: popular"
FEED_PATH = "/v1/recs/feed"


class NoFeedBodies(NoRequestBodies):
    """Feed traffic was given no request body to send."""


def label_of(answer: Mapping[str, Any]) -> str:
    """The release that served a feed answer, or :data:`DEGRADED`."""
    if answer.get("degraded"):
        return DEGRADED
    return str(answer["versions"]["release"])


class FeedTraffic(PacedBodyLoad):
    """``clients`` threads posting ``bodies`` in turn until the block ends.

    ``pace_s``: each client waits until this long after its previous request
    was sent (0: closed loop). Bounded by ``max_requests`` and ``max_seconds``.
    """

    path = FEED_PATH
    no_bodies = NoFeedBodies
    no_bodies_advice = "pass one per user (mlsd_lib.recsys.feed_load.feed_bodies)"

    def summarize(self, answer: Mapping[str, Any]) -> dict[str, Any]:
        """The label, whether degraded and why."""
        return {
            "model_version": label_of(answer),
            "degraded": answer["degraded"],
            "reason": answer["degraded_reason"] or "",
        }
