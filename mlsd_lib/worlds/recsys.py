"""The synthetic recsys world: users open a video app, see a feed, maybe watch.

Introduced in ``casestudies/recommender/index.md`` (the synthetic world). Real
logs never say how good a recommender *could* be, which items a user would
have loved but was never shown, or what a different policy would have
achieved on the same users. This world does, because its users' behaviour is a
documented formula (:mod:`mlsd_lib.worlds.recsys_truth`):

* :meth:`RecsysWorld.simulate` runs days of sessions: users arrive (Poisson,
  heavy-tailed activity), ask a *policy* for a feed (any callable, see
  :mod:`mlsd_lib.worlds.recsys_feed`), look down it as far as their patience
  goes, click, play, watch; their tastes drift daily and move toward what
  they watched. It returns the impression log
  (:class:`~mlsd_lib.worlds.recsys_log.RecsysLog`).
* :meth:`RecsysWorld.true_engaged_p` and friends give the true probabilities
  for any user, item, time and slot; :meth:`RecsysWorld.true_top_k` each
  user's true best items over the whole catalogue, in chunks, so a million
  items fit in bounded memory; :meth:`RecsysWorld.oracle_policy` serves them
  (the ceiling any policy can reach).
* :meth:`RecsysWorld.item_features` and :meth:`RecsysWorld.user_features`
  give what a model may observe; tastes, quality and clickbait stay hidden.

Determinism: entities come from the config's seed; day ``t``'s sessions and
every outcome's random numbers from ``(seed, t)``, drawn for every user
whether simulated or not. Two policies run on two forks of a world
(:meth:`RecsysWorld.fork`) therefore face the same sessions and the same
uniforms slot by slot (common random numbers): the difference between the
arms is the policies', not luck's. A world only moves forward in time; fork
it to replay.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlsd_lib.capacity import Requirements
from mlsd_lib.errors import MlsdError
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_feed import FeedRequest, FeedResponse, Policy
from mlsd_lib.worlds.recsys_log import RecsysLog
from mlsd_lib.worlds.recsys_truth import (
    ENGAGED_MINUTES,
    ITEM_KINDS,
    SECONDS_PER_DAY,
    RecsysItems,
    RecsysQueryError,
    RecsysState,
    RecsysUsers,
    build_state,
    day_of,
    eligible,
    impression_probabilities,
    pair_cells,
    seeded_rng,
    top_k_rows,
    true_click_p,
    true_engaged_p,
    true_expected_minutes,
    true_score_matrix,
)

if TYPE_CHECKING:
    from mlsd_lib.worlds.recsys_policies import OraclePolicy

__all__ = [
    "REQUEST_ID_STRIDE",
    "EligibleCatalogue",
    "PolicyResponseError",
    "RecsysQueryError",
    "RecsysScale",
    "RecsysWorld",
    "SimulationOrderError",
    "session_hour_shares",
]

#: Day ``t``'s k-th session has request id ``t * REQUEST_ID_STRIDE + k``.
REQUEST_ID_STRIDE = 1_000_000_000
#: Scores held at once by a top-K (users x items block), about 64 MB of float32.
SCORE_BLOCK = 1 << 24
_SESSIONS, _OUTCOMES = 100, 101


class SimulationOrderError(MlsdError, ValueError):
    """A simulation asked to go back in time, or for an impossible span."""


class PolicyResponseError(MlsdError, ValueError):
    """A policy's feed is malformed or shows an item the user may not see."""


def session_hour_shares() -> np.ndarray:
    """Share of a day's sessions in each hour: a trough at 5 am, a peak at 9 pm."""
    hours = np.arange(24)
    weight = 1.0 + 0.8 * np.cos(2 * np.pi * (hours - 21) / 24)
    return weight / weight.sum()


@dataclass(frozen=True)
class EligibleCatalogue:
    """The items available on ``day``, grouped by who may see them.

    Users in one *cell* (region, maturity limit) see the same items; cell
    ``c`` holds ``items[offsets[c]:offsets[c + 1]]`` (sorted). This is what
    uniform exploration draws from and what an exact propensity divides by.
    ``mask`` is (n_cells, len(available)) bool over ``available`` (sorted).
    """

    day: int
    available: np.ndarray
    items: np.ndarray
    offsets: np.ndarray
    mask: np.ndarray
    n_maturity: int

    def cell_of(self, region: np.ndarray, maturity_limit: np.ndarray) -> np.ndarray:
        """The cell index of users with these regions and limits."""
        return region.astype(np.int64) * self.n_maturity + maturity_limit

    def counts(self, cells: np.ndarray) -> np.ndarray:
        """How many items each cell may see."""
        return (self.offsets[1:] - self.offsets[:-1])[cells]

    def sample(self, rng: np.random.Generator, cells: np.ndarray) -> np.ndarray:
        """One item per entry of ``cells``, uniform over that cell's items."""
        n = self.counts(cells)
        pick = np.minimum((rng.random(cells.shape) * n).astype(np.int64), n - 1)
        return self.items[self.offsets[cells] + pick]


@dataclass(frozen=True)
class RecsysScale:
    """The world's sizes and traffic, as the requirements page recomputes them.

    Daily figures are expectations on day 0: ``daily_active_users`` is the
    expected number of users with at least one session (``sum 1 - exp(-a)``
    over signed-up users), ``sessions_per_day`` the expected feed requests,
    ``impressions_per_day`` that times ``feed_size``. ``bytes_per_user_history``
    assumes the last ``history_length`` item ids as int32, and
    ``bytes_per_item_features`` the description embedding plus 8 scalar
    features as float32.
    """

    n_users: int
    n_items: int
    items_available_day0: int
    users_signed_up_day0: int
    daily_active_users: float
    sessions_per_day: float
    feed_size: int
    impressions_per_day: float
    new_items_per_day: float
    new_users_per_day: float
    history_length: int
    bytes_per_user_history: int
    bytes_per_item_features: int

    @property
    def requests_per_active_user(self) -> float:
        """Feed requests per daily active user."""
        return self.sessions_per_day / self.daily_active_users

    def to_frame(self) -> pd.DataFrame:
        """One row per figure, for display."""
        values = dataclasses.asdict(self)
        values["requests_per_active_user"] = self.requests_per_active_user
        return pd.DataFrame({"quantity": list(values), "value": list(values.values())})

    def requirements(self, **overrides: Any) -> Requirements:
        """The world's traffic as :class:`~mlsd_lib.capacity.Requirements`.

        Defaults: 500 candidates ranked per request (or the whole catalogue if
        smaller), one logged impression per slot; ``overrides`` replace any
        field (bytes per event, replication, ...).
        """
        fields = {
            "daily_active_users": self.daily_active_users,
            "requests_per_user_per_day": self.requests_per_active_user,
            "candidates_per_request": float(min(500, self.n_items)),
            "feature_entities": float(self.n_users + self.n_items),
            "events_per_request": float(self.feed_size),
            "catalog_items": float(self.n_items),
        }
        fields.update(overrides)
        return Requirements(**fields)


class RecsysWorld:
    """A seeded video-streaming world with a known true engagement model."""

    def __init__(self, config: RecsysWorldConfig | None = None) -> None:
        self.config = config or RecsysWorldConfig.small()
        self.state: RecsysState = build_state(self.config)
        self._next_day = 0
        self._catalogues: dict[int, EligibleCatalogue] = {}

    # -- entities -------------------------------------------------------------------

    @property
    def users(self) -> RecsysUsers:
        """The population (hidden and observable attributes)."""
        return self.state.users

    @property
    def items(self) -> RecsysItems:
        """The catalogue, launched or not (hidden and observable attributes)."""
        return self.state.items

    @property
    def n_users(self) -> int:
        return self.config.n_users

    @property
    def n_items(self) -> int:
        """Every item in the tables, including ones launching later."""
        return len(self.state.items)

    @property
    def next_day(self) -> int:
        """The first day :meth:`simulate` may start on (time only moves forward)."""
        return self._next_day

    def fork(self) -> RecsysWorld:
        """An independent copy of the world as it is now (tastes, watch history).

        Entities are shared (they are read-only); run two policies on two
        forks to compare them on the same users with the same random numbers.
        """
        twin = object.__new__(RecsysWorld)
        twin.config = self.config
        twin.state = self.state.copy()
        twin._next_day = self._next_day
        twin._catalogues = self._catalogues
        return twin

    def item_features(self) -> pd.DataFrame:
        """What a model may know about items: one row per item index.

        Genre, series (-1: none), kind, duration (minutes), maturity rating,
        launch day, availability per region (``region_<r>``) and the
        description embedding (``content_<k>``). Not: latent vector, quality,
        appeal, clickbait.
        """
        it = self.items
        columns: dict[str, np.ndarray] = {
            "genre": it.genre,
            "series": it.series,
            "kind": pd.Categorical.from_codes(it.kind, categories=list(ITEM_KINDS)),
            "duration": it.duration,
            "maturity": it.maturity,
            "launch_day": it.launch_day,
        }
        for r in range(self.config.n_regions):
            columns[f"region_{r}"] = it.regions[:, r]
        for k in range(it.content.shape[1]):
            columns[f"content_{k}"] = it.content[:, k]
        return pd.DataFrame(columns)

    def user_features(self) -> pd.DataFrame:
        """What a model may know about users without history: region, maturity
        limit and signup day. Tastes, affinities and patience are hidden."""
        us = self.users
        return pd.DataFrame(
            {
                "region": us.region,
                "maturity_limit": us.maturity_limit,
                "signup_day": us.signup_day,
            }
        )

    # -- who may see what -----------------------------------------------------------

    def available_items(self, t: float) -> np.ndarray:
        """Sorted indices of the items launched by time ``t`` (seconds)."""
        return self.eligible_catalogue(int(day_of(t))).available

    def eligible(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each item may be shown to each user (region and maturity),
        broadcast; launch dates are :meth:`available_items`' business."""
        return eligible(self.state, users, items)

    def eligible_catalogue(self, day: int) -> EligibleCatalogue:
        """The available items of ``day`` grouped by (region, maturity) cell."""
        cached = self._catalogues.get(day)
        if cached is not None:
            return cached
        c, it = self.config, self.items
        available = np.flatnonzero(it.launch_day <= day)
        cells = np.arange(c.n_cells)
        region, limit = cells // c.n_maturity, cells % c.n_maturity
        mask = it.regions[available][:, region].T & (
            it.maturity[available][None, :] <= limit[:, None]
        )
        per_cell = [available[row] for row in mask]
        catalogue = EligibleCatalogue(
            day=day,
            available=available,
            items=np.concatenate(per_cell).astype(np.int64),
            offsets=np.concatenate([[0], np.cumsum([len(p) for p in per_cell])]),
            mask=mask,
            n_maturity=c.n_maturity,
        )
        if len(self._catalogues) > 64:
            self._catalogues.clear()
        self._catalogues[day] = catalogue
        return catalogue

    def user_cells(self, users: np.ndarray) -> np.ndarray:
        """The (region, maturity) cell of each user (see :class:`EligibleCatalogue`)."""
        us = self.users
        users = np.asarray(users)
        return (
            us.region[users].astype(np.int64) * self.config.n_maturity
            + (us.maturity_limit[users])
        )

    # -- the truth --------------------------------------------------------------------

    def true_click_p(
        self,
        users: np.ndarray,
        items: np.ndarray,
        t: np.ndarray | float,
        position: np.ndarray | int = 0,
    ) -> np.ndarray:
        """P(click) now (current tastes), at time ``t`` and ``position``; broadcast.

        See :func:`mlsd_lib.worlds.recsys_truth.true_click_p`.
        """
        return true_click_p(self.state, users, items, t, position)

    def true_engaged_p(
        self,
        users: np.ndarray,
        items: np.ndarray,
        t: np.ndarray | float,
        position: np.ndarray | int = 0,
    ) -> np.ndarray:
        """P(engaged play) now, at time ``t`` and ``position``; broadcast.

        See :func:`mlsd_lib.worlds.recsys_truth.true_engaged_p`.
        """
        return true_engaged_p(self.state, users, items, t, position)

    def true_expected_minutes(
        self, users: np.ndarray, items: np.ndarray, t: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """E[minutes | engaged play] now; broadcast."""
        return true_expected_minutes(self.state, users, items, t)

    def true_top_k(
        self,
        users: np.ndarray,
        k: int,
        t: float,
        objective: str = "engaged",
        exclude: Any = None,
        *,
        return_scores: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Each user's ``k`` truly best items at time ``t``, best first: (users, k).

        ``objective="engaged"`` ranks by P(engaged play) at the top slot;
        ``"minutes"`` by P(engaged play) x E[minutes | engaged] (expected
        minutes per impression). Items not yet launched or not eligible for the
        user never appear; where fewer than ``k`` remain, the row is padded
        with -1 (score ``-inf``). ``exclude`` removes (user, item) pairs: a
        ``(users, items)`` pair of arrays, or anything with ``.user`` and
        ``.item`` (an :class:`~mlsd_lib.datasets.interactions.Interactions`,
        a :class:`~mlsd_lib.worlds.recsys_log.RecsysLog`), e.g. what a user
        already watched. Already-watched items are down-weighted by the truth
        itself (the re-watch factor).

        The catalogue is scored in blocks of at most :data:`SCORE_BLOCK`
        scores, merging each block's top-K into a running one, so memory stays
        bounded at a million items.
        """
        if k < 1:
            raise RecsysQueryError(f"true_top_k needs k >= 1, got {k}.")
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        day = int(day_of(t))
        items = self.available_items(t)
        keys = _pair_keys(exclude, self.n_items)
        rows_per_block = max(1, min(len(users), 4096))
        cols_per_block = max(k, SCORE_BLOCK // rows_per_block)
        top_items = np.full((len(users), k), -1, dtype=np.int64)
        top_scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        for r0 in range(0, len(users), rows_per_block):
            block_users = users[r0 : r0 + rows_per_block]
            best_s = np.full((len(block_users), 0), -np.inf, dtype=np.float32)
            best_i = np.empty((len(block_users), 0), dtype=np.int64)
            for c0 in range(0, len(items), cols_per_block):
                block_items = items[c0 : c0 + cols_per_block]
                scores = true_score_matrix(
                    self.state, block_users, block_items, day, objective
                )
                if keys is not None:
                    rows, cols = pair_cells(
                        keys, self.n_items, block_users, block_items
                    )
                    scores[rows, cols] = -np.inf
                s, j = top_k_rows(scores, k)
                merged_s = np.concatenate([best_s, s], axis=1)
                merged_i = np.concatenate([best_i, block_items[j]], axis=1)
                s, j = top_k_rows(merged_s, k)
                best_s = s
                best_i = np.take_along_axis(merged_i, j, axis=1)
            width = best_s.shape[1]
            rows = slice(r0, r0 + len(block_users))
            top_scores[rows, :width] = best_s
            top_items[rows, :width] = np.where(np.isfinite(best_s), best_i, -1)
        if return_scores:
            return top_items, top_scores
        return top_items

    def oracle_policy(self, objective: str = "engaged") -> OraclePolicy:
        """The policy that shows every user their true top feed: the ceiling."""
        from mlsd_lib.worlds.recsys_policies import OraclePolicy

        return OraclePolicy(self, objective)

    # -- traffic ------------------------------------------------------------------

    def sessions(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """Every session of ``day`` in time order: (user, time in seconds).

        Each signed-up user has a Poisson(activity) number of sessions, at
        hours drawn from :func:`session_hour_shares`; drawn from ``(seed,
        day)`` alone.
        """
        c, us = self.config, self.users
        rng = seeded_rng(c.seed, _SESSIONS, day)
        counts = rng.poisson(us.activity)
        counts[us.signup_day > day] = 0
        user = np.repeat(np.arange(c.n_users, dtype=np.int64), counts)
        n = user.size
        hour = rng.choice(24, n, p=session_hour_shares())
        seconds = (hour + rng.random(n)) * 3600.0
        order = np.argsort(seconds, kind="stable")
        return user[order], day * SECONDS_PER_DAY + seconds[order]

    def simulate(
        self,
        policy: Policy,
        start_day: int,
        days: int = 1,
        *,
        users: np.ndarray | None = None,
        on_ineligible: str = "raise",
    ) -> RecsysLog:
        """Run ``days`` days from ``start_day`` with ``policy`` choosing the feeds.

        Sessions are served an hour at a time, in time order: the policy gets
        a :class:`~mlsd_lib.worlds.recsys_feed.FeedRequest` for the hour's
        sessions, the world draws what each user does with the feed, tastes
        and watch histories update, and a policy with ``observe`` is shown the
        hour's log before the next hour. ``users`` restricts the simulation to
        those users (the others' sessions are drawn and dropped, so a user's
        sessions do not depend on who else is simulated).

        ``on_ineligible``: ``"raise"`` (default) stops with
        :class:`PolicyResponseError` when a feed shows an item the user may not
        see (wrong region, above their maturity limit, not launched);
        ``"ignore"`` logs such impressions with no chance of a play, to study
        a policy without filters.
        """
        if days < 1:
            raise SimulationOrderError(f"days must be >= 1, got {days}.")
        if start_day < self._next_day:
            raise SimulationOrderError(
                f"this world has already simulated up to day {self._next_day - 1}; "
                f"start_day={start_day} would go back in time (tastes and watch "
                "histories moved on). Start at day >= "
                f"{self._next_day}, or fork() the world before simulating to "
                "replay a period with another policy."
            )
        if on_ineligible not in ("raise", "ignore"):
            raise RecsysQueryError(
                f"on_ineligible must be 'raise' or 'ignore', got {on_ineligible!r}."
            )
        subset = None
        if users is not None:
            subset = np.zeros(self.n_users, dtype=bool)
            subset[np.asarray(users, dtype=np.int64)] = True
        logs = []
        for day in range(start_day, start_day + days):
            logs.extend(self._simulate_day(policy, day, subset, on_ineligible))
            self._next_day = day + 1
        if not logs:
            return RecsysLog.empty(self.n_users, self.n_items)
        return RecsysLog.concat(logs)

    def _simulate_day(
        self,
        policy: Policy,
        day: int,
        subset: np.ndarray | None,
        on_ineligible: str,
    ) -> list[RecsysLog]:
        c = self.config
        f = c.feed_size
        self.state.drift_to(day)
        user, time = self.sessions(day)
        request_id = day * REQUEST_ID_STRIDE + np.arange(user.size, dtype=np.int64)
        # Three uniforms per slot of every session of the day (click, engaged,
        # minutes), drawn for all sessions: common random numbers for any
        # policy and any subset of users.
        uniforms = seeded_rng(c.seed, _OUTCOMES, day).random((user.size, f, 3))
        keep = np.flatnonzero(subset[user]) if subset is not None else None
        if keep is not None:
            user, time, request_id = user[keep], time[keep], request_id[keep]
            uniforms = uniforms[keep]
        hour_edges = np.searchsorted(
            time, day * SECONDS_PER_DAY + np.arange(25) * 3600.0
        )
        logs = []
        for h in range(24):
            rows = slice(hour_edges[h], hour_edges[h + 1])
            if rows.start == rows.stop:
                continue
            request = FeedRequest(
                user=user[rows],
                time=time[rows],
                request_id=request_id[rows],
                day=day,
                feed_size=f,
            )
            response = policy(request)
            log = self._play(request, response, uniforms[rows], on_ineligible)
            engaged = log.engaged
            self.state.record_engaged(log.user[engaged], log.item[engaged])
            observe = getattr(policy, "observe", None)
            if observe is not None:
                observe(log)
            logs.append(log)
        return logs

    def _play(
        self,
        request: FeedRequest,
        response: FeedResponse,
        uniforms: np.ndarray,
        on_ineligible: str,
    ) -> RecsysLog:
        """What the users of ``request`` do with the feeds of ``response``."""
        items, propensity, source = self._check_response(request, response)
        b, k = items.shape
        user = np.repeat(request.user, k)
        item = items.reshape(-1)
        position = np.tile(np.arange(k, dtype=np.int64), b)
        if on_ineligible == "raise":
            self._check_visible(user, item, request.day)
        p_click, p_engage, completion = impression_probabilities(
            self.state, user, item, request.day, position
        )
        u = uniforms[:, :k, :].reshape(-1, 3)
        clicked = u[:, 0] < p_click
        engaged = clicked & (u[:, 1] < p_engage)
        duration = self.items.duration[item].astype(np.float64)
        with np.errstate(divide="ignore"):
            share = u[:, 2] ** ((1.0 - completion) / completion)
        minutes = np.where(
            engaged,
            ENGAGED_MINUTES + (duration - ENGAGED_MINUTES) * share,
            np.where(clicked, ENGAGED_MINUTES * u[:, 2], 0.0),
        )
        return RecsysLog(
            request_id=np.repeat(request.request_id, k),
            user=user,
            item=item,
            position=position.astype(np.int16),
            time=np.repeat(request.time, k),
            source=source.reshape(-1),
            propensity=propensity.reshape(-1),
            policy=np.zeros(b * k, dtype=np.int16),
            clicked=clicked,
            engaged=engaged,
            minutes=minutes.astype(np.float32),
            true_engaged_p=(p_click * p_engage).astype(np.float32),
            policies=(response.version,),
            n_users=self.n_users,
            n_items=self.n_items,
        )

    def _check_response(
        self, request: FeedRequest, response: FeedResponse
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        items = np.asarray(response.items)
        b, f = len(request), request.feed_size
        if items.ndim != 2 or items.shape[0] != b or not 1 <= items.shape[1] <= f:
            raise PolicyResponseError(
                f"the policy returned items of shape {items.shape} for {b} "
                f"requests: it must be (requests, k) with 1 <= k <= feed_size={f}."
            )
        if not np.issubdtype(items.dtype, np.integer):
            raise PolicyResponseError(
                f"feed items must be integer item indices, got dtype {items.dtype}."
            )
        if items.size and (items.min() < 0 or items.max() >= self.n_items):
            raise PolicyResponseError(
                f"feed items must be item indices in [0, {self.n_items}); got "
                f"{items.min()}..{items.max()} (-1 padding is not allowed: return "
                "fewer columns instead)."
            )
        propensity = (
            np.full(items.shape, np.nan)
            if response.propensity is None
            else np.asarray(response.propensity, dtype=np.float64)
        )
        source = (
            np.zeros(items.shape, dtype=np.int8)
            if response.source is None
            else np.asarray(response.source).astype(np.int8)
        )
        for name, array in (("propensity", propensity), ("source", source)):
            if array.shape != items.shape:
                raise PolicyResponseError(
                    f"the policy's {name} has shape {array.shape} but its items "
                    f"{items.shape}: give one value per item, or None."
                )
        return items.astype(np.int64, copy=False), propensity, source

    def _check_visible(self, user: np.ndarray, item: np.ndarray, day: int) -> None:
        launched = self.items.launch_day[item] <= day
        allowed = eligible(self.state, user, item)
        bad = np.flatnonzero(~(launched & allowed))
        if bad.size:
            j = bad[0]
            reason = (
                f"it launches on day {self.items.launch_day[item[j]]}"
                if not launched[j]
                else "it is not available in the user's region or is above "
                "their maturity limit"
            )
            raise PolicyResponseError(
                f"the policy showed item {item[j]} to user {user[j]} on day {day}, "
                f"but {reason} ({bad.size} such impressions in this batch). Filter "
                "feeds with world.eligible_catalogue(day) (or world.eligible and "
                "world.available_items), or simulate(..., on_ineligible='ignore') "
                "to study an unfiltered policy."
            )

    # -- scale --------------------------------------------------------------------

    def scale_summary(self, history_length: int = 50) -> RecsysScale:
        """The world's size and expected day-0 traffic (see :class:`RecsysScale`)."""
        c, us, it = self.config, self.users, self.items
        signed_up = us.signup_day <= 0
        activity = us.activity[signed_up]
        return RecsysScale(
            n_users=c.n_users,
            n_items=self.n_items,
            items_available_day0=int(np.sum(it.launch_day <= 0)),
            users_signed_up_day0=int(signed_up.sum()),
            daily_active_users=float(np.sum(-np.expm1(-activity))),
            sessions_per_day=float(activity.sum()),
            feed_size=c.feed_size,
            impressions_per_day=float(activity.sum() * c.feed_size),
            new_items_per_day=c.new_item_share * c.n_items / c.horizon_days,
            new_users_per_day=c.new_user_share * c.n_users / c.horizon_days,
            history_length=history_length,
            bytes_per_user_history=4 * history_length,
            bytes_per_item_features=4 * (c.content_dim + 8),
        )


def _pair_keys(exclude: Any, n_items: int) -> np.ndarray | None:
    """Sorted unique keys ``user * n_items + item`` of the pairs to exclude."""
    if exclude is None:
        return None
    if hasattr(exclude, "user") and hasattr(exclude, "item"):
        users, items = exclude.user, exclude.item
    else:
        users, items = exclude
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if users.shape != items.shape:
        raise RecsysQueryError(
            f"exclude needs as many users as items (pairs), got shapes "
            f"{users.shape} and {items.shape}."
        )
    return np.unique(users * n_items + items)
