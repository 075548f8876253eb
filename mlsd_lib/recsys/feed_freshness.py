"""Freshness of the feed itself: from a play on the stream to a feed that shows it.

Introduced in ``casestudies/recommender/06_serving.ipynb`` (the requirement "plays must
reach the online store within 60 s", and the question behind it: "if a user finishes two
cooking videos, the next refresh should reflect it").
:func:`~mlsd_lib.features.stream_freshness.measure_freshness` times a play
until it is in the user's history in Redis; what the user notices is later
still: the next feed must be *different*. This module times that whole path,
publish, processor, Redis, gateway, with one observable change: a title the
user just watched is no longer recommended (the "watched" filter reads the
history the processor wrote).

The play is dated by the caller, on the feed's clock (a simulated world's
"now" is not the wall clock), and must concern an item the feed shows before
it is published: otherwise there is no change to wait for.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.interaction_events import InteractionEvent, publish

__all__ = [
    "FeedFreshness",
    "FeedFreshnessError",
    "FeedStayedStale",
    "engaged_play",
    "time_until_feed_drops",
]


class FeedFreshnessError(MlsdError, ValueError):
    """A freshness measurement that cannot tell anything; says what to change."""


class FeedStayedStale(MlsdError, TimeoutError):
    """The feed still showed the watched item when the wait ran out."""


@dataclass(frozen=True)
class FeedFreshness:
    """One measurement: seconds from ``XADD`` to the first feed without the
    item, how many feeds were fetched meanwhile, and the pages before and after."""

    seconds: float
    polls: int
    before: tuple[int, ...]
    after: tuple[int, ...]


def engaged_play(
    user_id: int, item_id: int, category: int, timestamp: float
) -> InteractionEvent:
    """An engaged play of ``item_id`` by ``user_id`` at ``timestamp`` (seconds
    since the epoch on the feed's clock), with a fresh event id."""
    return InteractionEvent(
        event_id=f"play-{uuid.uuid4().hex}",
        type="engaged_play",
        user_id=user_id,
        item_id=item_id,
        category=category,
        timestamp=timestamp,
    )


def time_until_feed_drops(
    client: redis.Redis,
    stream: str,
    event: InteractionEvent,
    fetch_items: Callable[[], Sequence[int]],
    *,
    timeout_s: float = 60.0,
    interval_s: float = 0.0,
) -> FeedFreshness:
    """Publish ``event`` on ``stream`` and fetch the user's feed (``fetch_items``:
    the item ids of one fresh feed) until ``event.item_id`` has left it.

    Bounded by ``timeout_s`` (the requirement's 60 s by default), after which
    :class:`FeedStayedStale` is raised; ``interval_s`` is a pause between two
    fetches (none by default: one fetch is a whole feed request already).
    """
    before = tuple(int(i) for i in fetch_items())
    if event.item_id not in before:
        raise FeedFreshnessError(
            f"item {event.item_id} is not in user {event.user_id}'s feed {before}: "
            "its absence afterwards would prove nothing; play an item the feed "
            "shows now."
        )
    publish(client, stream, [event])
    sent = time.perf_counter()
    polls = 0
    while True:
        after = tuple(int(i) for i in fetch_items())
        polls += 1
        elapsed = time.perf_counter() - sent
        if event.item_id not in after:
            return FeedFreshness(elapsed, polls, before, after)
        if elapsed > timeout_s:
            raise FeedStayedStale(
                f"user {event.user_id}'s feed still shows item {event.item_id} "
                f"{elapsed:.1f} s after the play was published on {stream!r} "
                f"({polls} feeds fetched): is a processor consuming that stream, "
                "into the Redis the gateway reads?"
            )
        if interval_s > 0:
            time.sleep(interval_s)
