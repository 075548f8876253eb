"""The knobs of the synthetic recsys world, in two frozen dataclasses.

Introduced in ``casestudies/recommender/index.md`` (the synthetic world). Every
number that shapes the world lives here, so a chapter can say "the ``small``
world with ``taste_drift_per_day=0``" and a reader reproduces it exactly.
:class:`RecsysWorldConfig` holds sizes, the population's make-up and its
dynamics; :class:`TruthWeights` holds the coefficients of the true engagement
model (the formulas are in :mod:`mlsd_lib.worlds.recsys_truth`), kept apart
because a chapter that switches one effect off should not have to read past
forty unrelated fields.

Three presets size the world for its uses: :meth:`RecsysWorldConfig.quick`
(tests and CI), :meth:`RecsysWorldConfig.small` (the notebooks: a week of
traffic in seconds) and :meth:`RecsysWorldConfig.large` (a million items, to
show why exhaustive scoring stops working; only the entities and the true
top-K are meant to run there).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mlsd_lib.errors import MlsdError
from mlsd_lib.worlds.recsys_events import CatalogueLaunch, RecsysEvent

__all__ = ["RecsysConfigError", "RecsysWorldConfig", "TruthWeights"]


class RecsysConfigError(MlsdError, ValueError):
    """A recsys world setting is out of range; the message names it and the range."""


@dataclass(frozen=True)
class TruthWeights:
    """Coefficients of the true engagement model (symbols of :mod:`.recsys_truth`).

    Click logit ``z`` (logit units): ``taste`` multiplies the cosine between a
    user's taste and an item's latent vector, ``genre`` the user's affinity for
    the item's genre, ``quality`` and ``appeal`` the item's quality and mass
    appeal, ``freshness`` the bonus of a just-launched item, which decays with
    time scale ``freshness_days``; ``duration`` is the height of the Gaussian
    kernel on log duration around the user's preferred length, of width
    ``duration_bandwidth`` (log units). ``clickbait_click`` is the extra click
    logit of a clickbait title.

    Engaged play given a click: logit ``engage_base + engage_quality * quality
    - clickbait_engage * clickbait``. Mean completion of an engaged play: logit
    ``completion_base + completion_taste * cosine + completion_quality * quality
    - completion_length * (log duration - log 10 min) - clickbait_completion *
    clickbait``.

    ``position_decay`` is the exponent of the position bias ``(1 + pos) **
    -position_decay``. ``rewatch`` multiplies the click probability of an item
    the user already had an engaged play of (people rarely re-watch).
    ``random_click_rate`` calibrates the intercept: it is the mean p(click |
    examined) of a uniformly random eligible item for a random user on day 0.
    """

    taste: float = 4.0
    genre: float = 1.0
    quality: float = 0.4
    appeal: float = 0.6
    freshness: float = 1.0
    freshness_days: float = 7.0
    duration: float = 1.5
    duration_bandwidth: float = 0.8
    clickbait_click: float = 1.5
    engage_base: float = 1.5
    engage_quality: float = 0.5
    clickbait_engage: float = 3.0
    completion_base: float = 0.3
    completion_taste: float = 1.5
    completion_quality: float = 0.5
    completion_length: float = 0.3
    clickbait_completion: float = 2.0
    position_decay: float = 0.5
    rewatch: float = 0.05
    random_click_rate: float = 0.02

    def __post_init__(self) -> None:
        for name in ("freshness_days", "duration_bandwidth"):
            if getattr(self, name) <= 0:
                raise RecsysConfigError(
                    f"TruthWeights.{name} must be > 0, got {getattr(self, name)}."
                )
        if self.position_decay < 0:
            raise RecsysConfigError(
                "TruthWeights.position_decay must be >= 0 (0: no position bias), "
                f"got {self.position_decay}."
            )
        if not 0.0 <= self.rewatch <= 1.0:
            raise RecsysConfigError(
                f"TruthWeights.rewatch must be in [0, 1], got {self.rewatch}."
            )
        if not 0.0 < self.random_click_rate < 0.5:
            raise RecsysConfigError(
                "TruthWeights.random_click_rate must be in (0, 0.5): it is the "
                "click rate of a random item, which a feed should beat; got "
                f"{self.random_click_rate}."
            )


@dataclass(frozen=True)
class RecsysWorldConfig:
    """Sizes, population, catalogue, dynamics and events of the recsys world.

    Sizes: ``n_users`` users and ``n_items`` base items (more arrive with
    :class:`~mlsd_lib.worlds.recsys_events.CatalogueLaunch` events), in
    ``n_genres`` genres; hidden vectors have ``latent_dim`` dimensions and the
    observable description embedding ``content_dim``; users live in one of
    ``n_regions`` regions and have one of ``n_maturity`` maturity limits (0:
    kids only ... ``n_maturity - 1``: everything). A feed has ``feed_size``
    slots.

    Time: days are integers; day 0 is the first simulated day. ``horizon_days``
    is the window over which the ``new_user_share`` of users sign up and the
    ``new_item_share`` of base items launch (uniformly); the others exist
    before day 0.

    Users: ``sessions_per_day`` is the mean number of feed requests per
    signed-up user per day, spread over users by a lognormal activity of
    log-scale ``activity_sigma`` (a few heavy users, many light ones). Each
    loves 1 to ``max_loved_genres`` genres; ``taste_coherence`` (0..1) is how
    much a taste vector leans toward the loved genres' centroids.
    ``patience_median`` is the median deepest slot a user ever looks at.

    Items: ``short_share`` of the base catalogue is short-form, ``series_share``
    episodes of series with ``episodes_per_series`` episodes on average (same
    genre, close latent vectors, similar length), the rest films.
    ``genre_coherence`` is how much an item's latent vector leans toward its
    genre's centroid; ``clickbait_share`` of items are clickbait.
    ``content_noise`` is the noise-to-signal ratio of the description
    embedding: 0 makes the latent vector exactly recoverable from content.

    Dynamics: every day each taste takes a random step of length
    ``taste_drift_per_day`` (relative to its norm, which is kept), and every
    engaged play pulls the taste toward the item's latent vector by
    ``taste_pull``. ``events`` inject trends, genre shifts and launches.

    ``weights`` are the coefficients of the true engagement model; ``seed``
    fixes everything drawn.
    """

    n_users: int = 20_000
    n_items: int = 10_000
    n_genres: int = 12
    latent_dim: int = 16
    content_dim: int = 16
    n_regions: int = 4
    n_maturity: int = 3
    feed_size: int = 20
    horizon_days: int = 28
    sessions_per_day: float = 1.0
    activity_sigma: float = 1.0
    new_user_share: float = 0.1
    new_item_share: float = 0.05
    max_loved_genres: int = 3
    taste_coherence: float = 0.6
    patience_median: float = 15.0
    short_share: float = 0.35
    series_share: float = 0.35
    episodes_per_series: float = 8.0
    genre_coherence: float = 0.6
    clickbait_share: float = 0.03
    content_noise: float = 0.5
    taste_drift_per_day: float = 0.02
    taste_pull: float = 0.02
    weights: TruthWeights = dataclasses.field(default_factory=TruthWeights)
    seed: int = 0
    events: tuple[RecsysEvent, ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "n_users",
            "n_items",
            "n_genres",
            "latent_dim",
            "content_dim",
            "n_regions",
            "n_maturity",
            "feed_size",
            "horizon_days",
            "max_loved_genres",
        ):
            if getattr(self, name) < 1:
                raise RecsysConfigError(
                    f"{name} must be >= 1, got {getattr(self, name)}."
                )
        if self.max_loved_genres > self.n_genres:
            raise RecsysConfigError(
                f"max_loved_genres ({self.max_loved_genres}) cannot exceed "
                f"n_genres ({self.n_genres})."
            )
        if self.n_items < 4 * self.feed_size:
            raise RecsysConfigError(
                f"n_items ({self.n_items}) must be at least 4 x feed_size "
                f"({4 * self.feed_size}) so every user has a feed's worth of "
                "eligible items."
            )
        for name in (
            "new_user_share",
            "new_item_share",
            "short_share",
            "series_share",
            "clickbait_share",
            "taste_coherence",
            "genre_coherence",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise RecsysConfigError(
                    f"{name} must be in [0, 1], got {getattr(self, name)}."
                )
        if self.short_share + self.series_share > 1.0:
            raise RecsysConfigError(
                f"short_share + series_share must be <= 1 (the rest are films), "
                f"got {self.short_share} + {self.series_share}."
            )
        for name in (
            "sessions_per_day",
            "patience_median",
            "episodes_per_series",
        ):
            if getattr(self, name) <= 0:
                raise RecsysConfigError(
                    f"{name} must be > 0, got {getattr(self, name)}."
                )
        for name in (
            "activity_sigma",
            "content_noise",
            "taste_drift_per_day",
            "taste_pull",
        ):
            if getattr(self, name) < 0:
                raise RecsysConfigError(
                    f"{name} must be >= 0, got {getattr(self, name)}."
                )
        if self.taste_pull >= 1.0:
            raise RecsysConfigError(
                f"taste_pull must be < 1 (a fraction of the way to the watched "
                f"item), got {self.taste_pull}."
            )
        if self.seed < 0:
            raise RecsysConfigError(f"seed must be >= 0, got {self.seed}.")
        if not isinstance(self.events, tuple):
            raise RecsysConfigError(
                f"events must be a tuple of events (frozen, so the config stays "
                f"hashable), got {type(self.events).__name__}."
            )
        for event in self.events:
            event.check(self.n_genres, self.total_items)

    # -- derived sizes ----------------------------------------------------------

    @property
    def launches(self) -> tuple[CatalogueLaunch, ...]:
        """The catalogue launch events, in the order their items are numbered."""
        return tuple(e for e in self.events if isinstance(e, CatalogueLaunch))

    @property
    def total_items(self) -> int:
        """Base items plus every launched item: the size of the item tables."""
        return self.n_items + sum(e.n_items for e in self.launches)

    @property
    def n_cells(self) -> int:
        """(region, maturity limit) combinations: users in one see the same items."""
        return self.n_regions * self.n_maturity

    # -- presets ----------------------------------------------------------------

    @classmethod
    def quick(cls, **changes: object) -> RecsysWorldConfig:
        """3,000 users and 2,000 items: for tests and CI (a day in well under 1 s)."""
        return cls(n_users=3_000, n_items=2_000, **changes)  # type: ignore[arg-type]

    @classmethod
    def small(cls, **changes: object) -> RecsysWorldConfig:
        """20,000 users and 10,000 items: the notebooks' world (a week in seconds)."""
        return cls(n_users=20_000, n_items=10_000, **changes)  # type: ignore[arg-type]

    @classmethod
    def large(cls, n_items: int = 1_000_000, **changes: object) -> RecsysWorldConfig:
        """A million items (and 100,000 users): entities and the true top-K only.

        Scoring every item for every request is what this preset makes too
        slow on purpose; the world's top-K and eligibility work in chunks of
        the catalogue, so memory stays bounded.
        """
        changes.setdefault("n_users", 100_000)
        return cls(n_items=n_items, **changes)  # type: ignore[arg-type]
