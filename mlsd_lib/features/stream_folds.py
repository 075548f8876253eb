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

A fold whose apply must be split (on a Redis Cluster one script may only touch
keys of one slot, see :mod:`~mlsd_lib.features.stream_layout`) also has
``parts(event)``: a :class:`FoldPart` per script call, each with its own
marker. :func:`parts_of` is how the processor gets an event's calls either way, so
it never asks which kind of fold it runs.

Rules a fold's Lua body follows, so that a failed apply writes nothing: do every
read (and every type check) before the first write, because Redis does not roll
back the writes of a script that raises halfway; and do not ``return`` from the
body (the marker would not be set).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

from mlsd_lib.features.stream_keys import dedup_key
from mlsd_lib.features.stream_layout import SINGLE_NODE, StreamKeyLayout

__all__ = [
    "FoldPart",
    "PartitionedFold",
    "StreamFold",
    "apply_calls",
    "calls_of",
    "dedup_script",
    "layout_of",
    "parts_of",
]


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


class FoldPart(NamedTuple):
    """One script call of an event's apply: its dedup marker, then the fold's own
    keys and arguments (the processor puts the marker and its retention first)."""

    marker: str
    keys: list[str]
    args: list[Any]


@runtime_checkable
class PartitionedFold(StreamFold, Protocol):
    """A fold that applies an event with one or more script calls
    (:class:`FoldPart`), as its key ``layout`` places the keys."""

    @property
    def layout(self) -> StreamKeyLayout: ...

    def parts(self, event: Any) -> list[FoldPart]: ...


def layout_of(fold: StreamFold) -> StreamKeyLayout:
    """The key layout a fold writes in (a fold without one: the single node's)."""
    return fold.layout if isinstance(fold, PartitionedFold) else SINGLE_NODE


def parts_of(fold: StreamFold) -> Callable[[Any], list[FoldPart]]:
    """How ``fold`` splits an event's apply: its ``parts`` (a
    :class:`PartitionedFold`), else one part, with the marker
    ``fs:seen:<stream>:<event id>``. Resolve it once per processor: the protocol
    check costs tens of microseconds, too much per event."""
    if isinstance(fold, PartitionedFold):
        return fold.parts

    def one_part(event: Any) -> list[FoldPart]:
        keys, args = fold.keys_and_args(event)
        return [FoldPart(dedup_key(fold.stream, event.event_id), keys, args)]

    return one_part


def calls_of(
    parts: list[FoldPart], retention_s: int
) -> list[tuple[list[str], list[Any]]]:
    """Script calls (keys, arguments) from parts: per call the dedup marker as
    ``KEYS[1]`` and ``retention_s`` as ``ARGV[1]``, then the fold's own."""
    return [([part.marker, *part.keys], [retention_s, *part.args]) for part in parts]


def apply_calls(
    fold: StreamFold, event: Any, retention_s: int
) -> list[tuple[list[str], list[Any]]]:
    """The script calls that apply ``event`` (:func:`parts_of`, :func:`calls_of`):
    one unless the fold splits its apply (:class:`PartitionedFold`)."""
    return calls_of(parts_of(fold)(event), retention_s)
