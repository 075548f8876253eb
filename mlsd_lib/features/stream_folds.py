"""What an event does to the online store: the fold a stream processor applies.

Introduced in ``notebooks/streaming_features.ipynb``. The stream processor
(:mod:`~mlsd_lib.features.stream_processor`) owns *delivery*: reading a consumer
group, claiming idle messages, dead letters, acknowledgements, crash injection.
A :class:`StreamFold` owns *meaning*: how a message parses into an event, and
which one Lua script, with which keys and arguments, applies that event to Redis.
Two folds exist: windowed counts
(:class:`~mlsd_lib.features.windowed_fold.WindowedCountFold`, the ads case
study's) and a per-entity history
(:class:`~mlsd_lib.features.history_fold.HistoryFold`, the recommender's).

The split keeps the contract that makes a redelivery harmless in ONE place. The
processor calls the fold's script with ``KEYS[1]`` = the event's dedup marker
and ``ARGV[1]`` = the marker's retention in seconds, followed by the fold's own
keys and arguments. Every fold builds its script with :func:`dedup_script`,
which checks the marker first (return 0: a duplicate, nothing written) and sets
it last (return 1: applied), all inside the one atomic script. A fold cannot
forget the marker, and the processor never needs to know what the fold writes.

Rules a fold's Lua body follows, so that a failed apply writes nothing: do every
read (and every type check) before the first write, because Redis does not roll
back the writes of a script that raises halfway; and do not ``return`` from the
body (the marker would not be set).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["StreamFold", "dedup_script"]


@runtime_checkable
class StreamFold(Protocol):
    """How one stream's events are folded into the online store.

    ``stream`` is the stream whose events it understands; ``script`` is the Lua
    source (built with :func:`dedup_script`); :meth:`parse` turns a message's
    fields into an event with an ``event_id``, raising
    :class:`~mlsd_lib.features.event_stream.InvalidEvent` (the processor
    dead-letters the message); :meth:`keys_and_args` gives the keys and arguments
    that follow the dedup marker and its retention.
    """

    @property
    def stream(self) -> str: ...

    @property
    def script(self) -> str: ...

    def parse(self, fields: Mapping[bytes | str, bytes | str]) -> Any: ...

    def keys_and_args(self, event: Any) -> tuple[list[str], list[Any]]: ...


def dedup_script(body: str, *, prelude: str = "") -> str:
    """A fold's Lua ``body`` wrapped in the dedup contract.

    ``prelude`` holds Lua function definitions the body calls. The result
    returns 0 when ``KEYS[1]`` (the marker) exists, and otherwise runs the body,
    sets the marker for ``ARGV[1]`` seconds and returns 1. The body's own keys
    start at ``KEYS[2]`` and its arguments at ``ARGV[2]``.
    """
    return (
        prelude
        + "\nif redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
        + body
        + "\nredis.call('SET', KEYS[1], '1', 'EX', ARGV[1])\nreturn 1\n"
    )
