"""Things that happen to the recsys world on a chosen day: trends, shifts, launches.

Introduced in ``casestudies/recommender/index.md`` (the synthetic world). A
monitoring chapter needs something to detect: a model trained last week is only
visibly stale if the world changed since. Each event is a small frozen
dataclass placed in the ``events`` of a
:class:`~mlsd_lib.worlds.recsys_config.RecsysWorldConfig`, so a chapter says
"the world with ``Trend(genre=3, start_day=10, end_day=17, boost=1.5)``" and a
reader reproduces it exactly. Their effect on the truth is written in
:mod:`mlsd_lib.worlds.recsys_truth`:

* :class:`Trend` adds ``boost`` to the engagement logit of some items (one
  genre, or a list of items) for every user, on days ``start_day <= day <
  end_day``: a title everybody talks about this week.
* :class:`GenreShift` adds ``delta`` to a genre's logit for everyone from
  ``day`` on, for good: tastes moving (documentaries becoming popular).
* :class:`CatalogueLaunch` adds ``n_items`` new items (all of ``genre`` if
  given) that become available at the start of ``day``: until then they are
  hidden from ``available_items`` and from every feed. They get item indices
  after the base catalogue, in the order the launches are listed.

The alternative, callbacks that mutate the world mid-simulation, would make a
run impossible to describe in one line and impossible to replay; data can be
printed, compared and hashed.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlsd_lib.errors import MlsdError
from mlsd_lib.validation import require_int, require_number

__all__ = ["CatalogueLaunch", "EventError", "GenreShift", "RecsysEvent", "Trend"]


class EventError(MlsdError, ValueError):
    """An event is malformed or does not fit the world; the message says how."""


@dataclass(frozen=True)
class Trend:
    """``boost`` logits for ``genre``'s items (or ``items``), days ``[start, end)``.

    Exactly one of ``genre`` and ``items`` is given; ``items`` are item indices
    (a tuple, so the event stays hashable).
    """

    start_day: int
    end_day: int
    boost: float
    genre: int | None = None
    items: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if (self.genre is None) == (self.items is None):
            raise EventError(
                "Trend needs exactly one of genre= or items= (got "
                f"genre={self.genre}, items={self.items}): say what is trending."
            )
        if self.items is not None and len(self.items) == 0:
            raise EventError("Trend(items=()) trends nothing: list at least one item.")
        require_number("boost", self.boost, error=EventError)
        if self.genre is not None:
            require_int("genre", self.genre, at_least=0, error=EventError)
        if self.end_day <= self.start_day:
            raise EventError(
                f"Trend must end after it starts, got start_day={self.start_day}, "
                f"end_day={self.end_day} (end_day is exclusive)."
            )

    def check(self, n_genres: int, n_items: int) -> None:
        """Raise :class:`EventError` if the genre or an item is not in the world."""
        if self.genre is not None:
            _check_genre("Trend", self.genre, n_genres)
        if self.items is not None:
            low, high = min(self.items), max(self.items)
            if low < 0 or high >= n_items:
                raise EventError(
                    f"Trend items must be item indices in [0, {n_items}) (this "
                    f"world's catalogue, launches included), got {low}..{high}."
                )


@dataclass(frozen=True)
class GenreShift:
    """``delta`` logits for every item of ``genre``, for everyone, from ``day`` on."""

    genre: int
    day: int
    delta: float

    def check(self, n_genres: int, n_items: int) -> None:
        """Raise :class:`EventError` if the genre is not in the world."""
        _check_genre("GenreShift", self.genre, n_genres)


@dataclass(frozen=True)
class CatalogueLaunch:
    """``n_items`` new items (of ``genre`` if given) available from ``day`` on."""

    day: int
    n_items: int
    genre: int | None = None

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise EventError(f"CatalogueLaunch needs n_items >= 1, got {self.n_items}.")
        require_int("day", self.day, at_least=0, error=EventError)
        if self.genre is not None:
            require_int("genre", self.genre, at_least=0, error=EventError)

    def check(self, n_genres: int, n_items: int) -> None:
        """Raise :class:`EventError` if the genre is not in the world."""
        if self.genre is not None:
            _check_genre("CatalogueLaunch", self.genre, n_genres)


RecsysEvent = Trend | GenreShift | CatalogueLaunch


def _check_genre(kind: str, genre: int, n_genres: int) -> None:
    if not 0 <= genre < n_genres:
        raise EventError(
            f"{kind} genre must be in [0, {n_genres}) (the config's n_genres), "
            f"got {genre}."
        )
