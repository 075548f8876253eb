"""The synthetic recsys world: determinism, the documented truth, policies, events."""

from __future__ import annotations

import dataclasses
import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from mlsd_lib.capacity import Requirements
from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.worlds import recsys as recsys_module
from mlsd_lib.worlds import recsys_truth as truth
from mlsd_lib.worlds.recsys import (
    PolicyResponseError,
    RecsysQueryError,
    RecsysWorld,
    SimulationOrderError,
)
from mlsd_lib.worlds.recsys_config import (
    RecsysConfigError,
    RecsysWorldConfig,
    TruthWeights,
)
from mlsd_lib.worlds.recsys_events import (
    CatalogueLaunch,
    EventError,
    GenreShift,
    Trend,
)
from mlsd_lib.worlds.recsys_feed import FeedRequest, FeedResponse
from mlsd_lib.worlds.recsys_log import SOURCES, RecsysLog, RecsysLogError
from mlsd_lib.worlds.recsys_policies import (
    LegacyPolicy,
    PolicySettingError,
    PopularityPolicy,
    RandomPolicy,
)

QUICK = RecsysWorldConfig.quick()
DAY = 86_400.0


@pytest.fixture(scope="module")
def world() -> RecsysWorld:
    """A quick world after two simulated days of the legacy policy."""
    return RecsysWorld(QUICK)


@pytest.fixture(scope="module")
def log(world: RecsysWorld) -> RecsysLog:
    return world.simulate(LegacyPolicy(world), 0, 2)


def _same(a: RecsysLog, b: RecsysLog) -> bool:
    return a.policies == b.policies and all(
        np.array_equal(getattr(a, n), getattr(b, n), equal_nan=True)
        for n in RecsysLog.column_names()
    )


def _old_items(world: RecsysWorld, n: int) -> np.ndarray:
    """Items launched long before day 0 (no freshness left to change)."""
    return np.flatnonzero(world.items.launch_day < -200)[:n]


# -- configuration ---------------------------------------------------------------------


def test_config_rejects_bad_values_with_the_rule() -> None:
    with pytest.raises(RecsysConfigError, match="n_users must be >= 1, got 0"):
        RecsysWorldConfig(n_users=0)
    with pytest.raises(RecsysConfigError, match="at least 4 x feed_size"):
        RecsysWorldConfig(n_items=50, feed_size=20)
    with pytest.raises(RecsysConfigError, match="short_share \\+ series_share"):
        RecsysWorldConfig(short_share=0.7, series_share=0.5)
    with pytest.raises(RecsysConfigError, match="events must be a tuple"):
        RecsysWorldConfig(events=[Trend(0, 1, 1.0, genre=0)])  # type: ignore[arg-type]
    with pytest.raises(RecsysConfigError, match="rewatch must be in \\[0, 1\\]"):
        TruthWeights(rewatch=2.0)
    with pytest.raises(EventError, match="exactly one of genre= or items="):
        Trend(0, 3, 1.0)
    with pytest.raises(EventError, match="end after it starts"):
        Trend(3, 3, 1.0, genre=1)
    with pytest.raises(EventError, match="genre must be in \\[0, 12\\)"):
        RecsysWorldConfig(events=(GenreShift(genre=12, day=1, delta=1.0),))
    with pytest.raises(EventError, match="item indices in \\[0, 2010\\)"):
        RecsysWorldConfig.quick(
            events=(CatalogueLaunch(2, 10), Trend(0, 2, 1.0, items=(2010,)))
        )


def test_presets_size_the_world() -> None:
    assert (QUICK.n_users, QUICK.n_items) == (3_000, 2_000)
    small = RecsysWorldConfig.small()
    assert (small.n_users, small.n_items) == (20_000, 10_000)
    assert RecsysWorldConfig.large().n_items == 1_000_000
    assert RecsysWorldConfig.quick(seed=3).seed == 3
    launched = RecsysWorldConfig.quick(events=(CatalogueLaunch(3, 25),))
    assert launched.total_items == 2_025


# -- entities --------------------------------------------------------------------------


def test_entities_have_the_documented_shapes_and_ranges(world: RecsysWorld) -> None:
    us, it, c = world.users, world.items, QUICK
    assert us.taste0.shape == (c.n_users, c.latent_dim)
    assert np.allclose(np.linalg.norm(us.taste0, axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(it.latent, axis=1), 1.0, atol=1e-5)
    assert it.content.shape == (c.n_items, c.content_dim)
    assert it.regions.shape == (c.n_items, c.n_regions) and it.regions.any(axis=1).all()
    assert set(np.unique(it.kind)) == {0, 1, 2}
    assert it.duration.min() >= 1.0
    # Activity is heavy-tailed: the top 10% of users hold far more than 10%.
    top = np.sort(us.activity)[-c.n_users // 10 :].sum() / us.activity.sum()
    assert top > 0.3
    assert 0.01 < it.clickbait.mean() < 0.06
    assert 0.0 < np.mean(us.signup_day > 0) < 0.2  # some users sign up later
    # Users love a few genres: 1 to 3 affinities well above the rest.
    loved = (us.genre_affinity >= 1.0).sum(axis=1)
    assert loved.min() >= 1 and loved.max() <= 3
    with pytest.raises(ValueError, match="read-only"):
        it.latent[0, 0] = 1.0


def test_episodes_of_a_series_share_genre_and_are_close() -> None:
    it = RecsysWorld(QUICK).items
    series = it.series[it.series >= 0]
    first = np.unique(series)[0]
    members = np.flatnonzero(it.series == first)
    assert members.size >= 2
    assert np.unique(it.genre[members]).size == 1
    assert np.unique(it.maturity[members]).size == 1
    same = it.latent[members[0]] @ it.latent[members[1]]
    random_pair = np.mean(np.abs(it.latent[:200] @ it.latent[200:400].T))
    assert same > 0.8 > random_pair


def test_content_features_recover_the_latent_vector_imperfectly() -> None:
    it = RecsysWorld(QUICK).items
    x = np.hstack([it.content, np.ones((len(it), 1))])
    w, *_ = np.linalg.lstsq(x, it.latent, rcond=None)
    residual = ((x @ w - it.latent) ** 2).sum()
    r2 = 1 - residual / ((it.latent - it.latent.mean(0)) ** 2).sum()
    assert 0.7 < r2 < 0.9  # content_noise=0.5: informative, not exact
    exact = RecsysWorld(RecsysWorldConfig.quick(content_noise=0.0)).items
    w, *_ = np.linalg.lstsq(exact.content, exact.latent, rcond=None)
    assert np.allclose(exact.content @ w, exact.latent, atol=1e-4)


# -- simulation: determinism and shape -------------------------------------------------


def test_same_seed_same_log_other_seed_differs(log: RecsysLog) -> None:
    again = RecsysWorld(QUICK)
    first_day = log.subset(log.time < DAY)
    assert _same(first_day, again.simulate(LegacyPolicy(again), 0, 1))
    other = RecsysWorld(RecsysWorldConfig.quick(seed=1))
    assert not np.array_equal(
        other.simulate(LegacyPolicy(other), 0, 1).item, log.item[: len(log) // 2]
    )


def test_days_in_pieces_equal_days_at_once(log: RecsysLog) -> None:
    pieces = RecsysWorld(QUICK)
    policy = LegacyPolicy(pieces)
    first = pieces.simulate(policy, 0, 1)
    second = pieces.simulate(policy, 1, 1)
    assert _same(log, RecsysLog.concat([first, second]))


def test_time_only_moves_forward(world: RecsysWorld) -> None:
    with pytest.raises(SimulationOrderError, match="would go back in time"):
        world.fork().simulate(RandomPolicy(world), 0, 1)
    with pytest.raises(SimulationOrderError, match="days must be >= 1"):
        world.fork().simulate(RandomPolicy(world), 5, 0)


def test_log_columns_shapes_and_dtypes(log: RecsysLog, world: RecsysWorld) -> None:
    n = len(log)
    assert n > 100_000 and n % QUICK.feed_size == 0
    expected = {
        "request_id": np.int64,
        "user": np.int64,
        "item": np.int64,
        "position": np.int16,
        "time": np.float64,
        "source": np.int8,
        "propensity": np.float64,
        "policy": np.int16,
        "clicked": np.bool_,
        "engaged": np.bool_,
        "minutes": np.float32,
        "true_engaged_p": np.float32,
    }
    for name, dtype in expected.items():
        assert getattr(log, name).dtype == dtype, name
        assert getattr(log, name).shape == (n,), name
    assert np.all(np.diff(log.time) >= 0)
    feeds = log.position.reshape(-1, QUICK.feed_size)
    assert np.array_equal(feeds, np.broadcast_to(np.arange(20), feeds.shape))
    assert np.unique(log.request_id).size == n // QUICK.feed_size
    assert log.policies == ("legacy-v1",)
    assert not np.any(log.engaged & ~log.clicked)
    assert np.all(log.minutes[~log.clicked] == 0)
    assert np.all(log.minutes[log.engaged] >= 0.5)
    assert np.all(log.minutes[log.clicked & ~log.engaged] < 0.5)
    assert np.all(log.minutes <= world.items.duration[log.item] + 1e-4)
    # Users act only after signing up.
    assert np.all(world.users.signup_day[log.user] <= log.time // DAY)


def test_sessions_follow_activity_and_the_scale_summary(world: RecsysWorld) -> None:
    user, t = world.sessions(0)
    summary = world.scale_summary()
    assert abs(user.size - summary.sessions_per_day) < 4 * np.sqrt(
        summary.sessions_per_day
    )
    assert abs(np.unique(user).size - summary.daily_active_users) < 0.05 * (
        summary.daily_active_users
    )
    hours = np.bincount((t // 3600).astype(int), minlength=24)
    assert hours[21] > 2 * hours[5]  # evening peak, night trough
    req = summary.requirements(bytes_per_event=150.0)
    assert isinstance(req, Requirements)
    assert req.events_per_request == QUICK.feed_size
    assert summary.bytes_per_user_history == 200
    assert isinstance(summary.to_frame(), pd.DataFrame)


def test_forks_share_sessions_and_random_numbers() -> None:
    base = RecsysWorld(QUICK)
    a, b = base.fork(), base.fork()
    log_a = a.simulate(LegacyPolicy(a), 0, 1)
    log_b = b.simulate(LegacyPolicy(b), 0, 1)
    assert _same(log_a, log_b)
    popular = base.fork().simulate(PopularityPolicy(base), 0, 1)
    assert np.array_equal(popular.request_id, log_a.request_id)
    assert np.array_equal(popular.user, log_a.user)
    assert not np.array_equal(popular.item, log_a.item)
    # The forks moved on; the original did not.
    assert base.next_day == 0 and a.next_day == 1


def test_a_subset_of_users_gets_the_same_sessions(log: RecsysLog) -> None:
    part = RecsysWorld(QUICK)
    users = np.arange(0, QUICK.n_users, 3)
    sub = part.simulate(RandomPolicy(part), 0, 2, users=users)
    assert np.isin(sub.user, users).all()
    mine = np.isin(log.user, users)
    assert np.array_equal(sub.request_id, log.request_id[mine])


# -- the truth -------------------------------------------------------------------------


def test_position_bias_is_visible_in_the_log(log: RecsysLog) -> None:
    ctr = np.bincount(log.position, weights=log.clicked) / np.bincount(log.position)
    quarters = ctr.reshape(4, 5).mean(axis=1)
    assert np.all(np.diff(quarters) < 0)
    assert ctr[0] > 5 * ctr[-1]


def test_examination_falls_with_position_and_stops_at_patience(
    world: RecsysWorld,
) -> None:
    users = np.arange(200)
    items = _old_items(world, 200)
    ok = world.eligible(users, items)
    users, items = users[ok], items[ok]
    p = world.true_click_p(users[:, None], items[:, None], 0.0, np.arange(20))
    assert np.all(np.diff(p, axis=1) <= 1e-12)
    patience = world.users.patience[users]
    beyond = np.arange(20)[None, :] >= patience[:, None]
    assert np.all(p[beyond] == 0) and np.all(p[~beyond] > 0)


def test_clickbait_draws_clicks_but_not_engaged_plays(
    world: RecsysWorld, log: RecsysLog
) -> None:
    bait = world.items.clickbait[log.item]
    assert bait.sum() > 1_000
    ctr_bait, ctr_other = log.clicked[bait].mean(), log.clicked[~bait].mean()
    engaged_share = [log.engaged[m].sum() / log.clicked[m].sum() for m in (bait, ~bait)]
    minutes = [log.minutes[m & log.clicked].mean() for m in (bait, ~bait)]
    assert ctr_bait > 1.5 * ctr_other
    assert engaged_share[0] < 0.5 * engaged_share[1]
    assert minutes[0] < 0.5 * minutes[1]
    # Matched comparison in the truth: the same items with the flag switched off.
    items = np.flatnonzero(world.items.clickbait)[:50]
    users = np.arange(50)
    honest = world.fork()
    flags = np.zeros(world.n_items, dtype=bool)
    honest.state.items = dataclasses.replace(world.items, clickbait=flags)
    pairs = (users[:, None], items[None, :], 0.0)
    assert np.all(world.true_click_p(*pairs) >= honest.true_click_p(*pairs))
    assert np.nanmean(world.true_engaged_p(*pairs)) < np.nanmean(
        honest.true_engaged_p(*pairs)
    )
    assert np.all(
        world.true_expected_minutes(*pairs) < honest.true_expected_minutes(*pairs)
    )


def test_the_log_agrees_with_the_truth() -> None:
    static = RecsysWorldConfig.quick(
        taste_drift_per_day=0.0,
        taste_pull=0.0,
        weights=TruthWeights(rewatch=1.0),
    )
    w = RecsysWorld(static)
    log = w.simulate(LegacyPolicy(w), 0, 2)
    # A static world's truth after the fact equals the truth at the time.
    again = w.true_engaged_p(log.user, log.item, log.time, log.position)
    assert np.allclose(again, log.true_engaged_p, rtol=1e-5, atol=1e-7)
    # Engaged plays happen at the logged rate, overall and by decile of p.
    p = log.true_engaged_p.astype(np.float64)
    se = np.sqrt(np.sum(p * (1 - p)))
    assert abs(log.engaged.sum() - p.sum()) < 4 * se
    edges = np.quantile(p[p > 0], np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
    for b in range(5, 10):  # the deciles with enough plays to test
        m = (bins == b) & (p > 0)
        se = np.sqrt(np.sum(p[m] * (1 - p[m])))
        assert abs(log.engaged[m].sum() - p[m].sum()) < 4 * se + 1
    # Minutes of engaged plays have the closed-form mean.
    e = log.engaged
    expected = w.true_expected_minutes(log.user[e], log.item[e], log.time[e])
    sd = log.minutes[e].std() / np.sqrt(e.sum())
    assert abs(log.minutes[e].mean() - expected.mean()) < 4 * sd


def test_score_matrix_equals_the_pairwise_truth(world: RecsysWorld) -> None:
    users = np.arange(40)
    items = world.available_items(0.0)[:300]
    dense = truth.true_score_matrix(world.state, users, items, 1)
    pairwise = world.true_engaged_p(users[:, None], items[None, :], 1.2 * DAY)
    live = np.isfinite(dense)
    assert np.array_equal(live, pairwise > 0)
    assert np.allclose(dense[live], pairwise[live], rtol=1e-4, atol=1e-7)
    minutes = truth.true_score_matrix(world.state, users, items, 1, "minutes")
    expected = pairwise * world.true_expected_minutes(
        users[:, None], items[None, :], DAY
    )
    assert np.allclose(minutes[live], expected[live], rtol=1e-4, atol=1e-6)


def _check_top_k(world: RecsysWorld, users, top, t, objective) -> None:
    """``top`` holds each user's best items: sorted, and nothing better left out."""
    items = np.arange(world.n_items)
    p = world.true_engaged_p(users[:, None], items[None, :], t)
    if objective == "minutes":
        p = p * world.true_expected_minutes(users[:, None], items[None, :], t)
    p[p <= 0] = -np.inf
    chosen = np.take_along_axis(p, top, axis=1)
    assert np.all(np.diff(chosen, axis=1) <= 1e-6)
    left = p.copy()
    np.put_along_axis(left, top, -np.inf, axis=1)
    assert np.all(left.max(axis=1) <= chosen[:, -1] + 1e-6)


@pytest.mark.parametrize("objective", ["engaged", "minutes"])
def test_true_top_k_is_the_brute_force_top_k(
    world: RecsysWorld, objective: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = np.arange(25)
    top = world.true_top_k(users, 30, DAY, objective)
    assert top.shape == (25, 30) and top.dtype == np.int64
    _check_top_k(world, users, top, DAY, objective)
    # Scored in many small blocks and merged: the same answer.
    monkeypatch.setattr(recsys_module, "SCORE_BLOCK", 4_000)
    assert np.array_equal(world.true_top_k(users, 30, DAY, objective), top)


def test_true_top_k_excludes_pairs_and_checks_arguments(world: RecsysWorld) -> None:
    users = np.arange(5)
    top = world.true_top_k(users, 10, 0.0)
    gone = world.true_top_k(users, 10, 0.0, exclude=(users, top[:, 0]))
    assert not np.any(gone == top[:, :1])
    assert np.array_equal(gone[:, :9], top[:, 1:])
    with pytest.raises(RecsysQueryError, match=r"'engaged' .* or 'minutes'"):
        world.true_top_k(users, 10, 0.0, objective="clicks")
    with pytest.raises(RecsysQueryError, match="k >= 1"):
        world.true_top_k(users, 0, 0.0)


def test_watching_lowers_a_rewatch_and_pulls_the_taste() -> None:
    w = RecsysWorld(RecsysWorldConfig.quick(taste_pull=0.0))
    user, item = np.array([1]), w.true_top_k(np.array([1]), 1, 0.0)[0]
    before = w.true_click_p(user, item, 0.0)
    w.state.record_engaged(user, item)
    after = w.true_click_p(user, item, 0.0)
    assert after == pytest.approx(before * QUICK.weights.rewatch, rel=1e-6)
    w = RecsysWorld(QUICK)  # taste_pull > 0: watching moves the taste
    taste = w.state.taste[1].copy()
    w.state.record_engaged(user, item)
    latent = w.items.latent[item[0]]
    assert w.state.taste[1] @ latent > taste @ latent
    assert np.linalg.norm(w.state.taste[1]) == pytest.approx(1.0, abs=1e-5)


# -- eligibility and launches ----------------------------------------------------------


LAUNCH = RecsysWorldConfig.quick(events=(CatalogueLaunch(day=1, n_items=60, genre=4),))


@pytest.fixture(scope="module")
def launch_world() -> RecsysWorld:
    return RecsysWorld(LAUNCH)


def test_launched_items_are_hidden_until_their_day(launch_world: RecsysWorld) -> None:
    w = launch_world
    new = np.arange(QUICK.n_items, QUICK.n_items + 60)
    assert w.n_items == 2_060
    assert np.all(w.items.launch_day[new] == 1) and np.all(w.items.genre[new] == 4)
    assert not np.isin(new, w.available_items(0.5 * DAY)).any()
    assert np.isin(new, w.available_items(1.0 * DAY)).all()
    users = np.arange(300)
    assert np.all(w.true_engaged_p(users[:, None], new[None, :], 0.5 * DAY) == 0)
    assert not np.isin(w.true_top_k(users, 50, 0.5 * DAY), new).any()
    # Fresh, on-genre items make it into some users' top-K once launched.
    assert np.isin(w.true_top_k(users, 50, 1.0 * DAY), new).any()
    # The base catalogue is the same as in the world without the launch.
    plain = RecsysWorld(QUICK)
    assert np.array_equal(plain.items.latent, w.items.latent[: QUICK.n_items])
    assert np.array_equal(plain.users.taste0, w.users.taste0)


def test_top_k_never_holds_an_ineligible_item(launch_world: RecsysWorld) -> None:
    users = np.arange(0, QUICK.n_users, 10)
    top = launch_world.true_top_k(users, 100, 0.0)
    assert np.all(launch_world.eligible(users[:, None], top))
    assert np.all(launch_world.items.launch_day[top] <= 0)


@pytest.mark.parametrize("policy", ["random", "popularity", "legacy", "oracle"])
def test_built_in_feeds_show_only_what_the_user_may_see(
    launch_world: RecsysWorld, policy: str
) -> None:
    w = launch_world.fork()
    make = {
        "random": lambda: RandomPolicy(w),
        "popularity": lambda: PopularityPolicy(w),
        "legacy": lambda: LegacyPolicy(w),
        "oracle": lambda: w.oracle_policy(),
    }
    users = np.arange(0, QUICK.n_users, 4)
    log = w.simulate(make[policy](), 0, 2, users=users, on_ineligible="ignore")
    assert np.all(w.eligible(log.user, log.item))
    assert np.all(w.items.launch_day[log.item] <= log.time // DAY)
    day_one = log.time >= DAY
    assert (
        policy == "popularity"
        or np.isin(log.item[day_one], np.arange(2000, 2060)).any()
    )


def test_an_ineligible_item_in_a_feed_is_refused_or_ignored(world: RecsysWorld) -> None:
    kids = np.flatnonzero(world.users.maturity_limit == 0)
    adult_only = int(np.flatnonzero(world.items.maturity == QUICK.n_maturity - 1)[0])

    def unfiltered(request: FeedRequest) -> FeedResponse:
        return FeedResponse(np.full((len(request), 3), adult_only))

    with pytest.raises(PolicyResponseError, match=r"maturity limit .* Filter"):
        world.fork().simulate(unfiltered, 2, 1, users=kids)
    log = world.fork().simulate(unfiltered, 2, 1, users=kids, on_ineligible="ignore")
    assert len(log) > 0 and not log.clicked.any()
    assert np.all(np.isnan(log.propensity)) and np.all(log.source == 0)

    def ragged(request: FeedRequest) -> FeedResponse:
        return FeedResponse(np.zeros((len(request), 30), dtype=np.int64))

    with pytest.raises(PolicyResponseError, match="1 <= k <= feed_size=20"):
        world.fork().simulate(ragged, 2, 1)


# -- policies --------------------------------------------------------------------------


def test_legacy_propensities_are_exact() -> None:
    w = RecsysWorld(QUICK)
    eps = 0.4
    policy = LegacyPolicy(w, epsilon=eps, seed=3)
    user = np.flatnonzero(w.users.signup_day <= 0)[0]
    n = 4_000
    request = FeedRequest(
        user=np.full(n, user),
        time=np.zeros(n),
        request_id=np.arange(n),  # one request per batch would be slow: one batch
        day=0,
        feed_size=20,
    )
    # Each row gets its own exploration draws: rows are independent requests.
    response = policy(request)
    base = policy.base_ranking(request)
    assert np.all(base == base[0])
    items, prop = response.items, response.propensity
    catalogue = w.eligible_catalogue(0)
    n_eligible = catalogue.counts(w.user_cells(np.array([user])))[0]
    on_base = items == base
    # The base item keeps its slot with probability (1 - eps) + eps / N.
    kept = on_base.mean(axis=0)
    expected = (1 - eps) + eps / n_eligible
    assert np.all(np.abs(kept - expected) < 4 * np.sqrt(expected * (1 - expected) / n))
    assert np.allclose(prop[on_base], expected)
    assert np.allclose(prop[~on_base], eps / n_eligible)
    # Explored items are uniform over the user's eligible catalogue: each has
    # frequency / propensity near 1 (a chi-square check over the cell).
    explored = items[~on_base]
    cell = w.user_cells(np.array([user]))[0]
    allowed = catalogue.items[catalogue.offsets[cell] : catalogue.offsets[cell + 1]]
    assert np.isin(explored, allowed).all()
    counts = np.bincount(np.searchsorted(allowed, explored), minlength=allowed.size)
    mean = counts.mean()
    chi2 = np.sum((counts - mean) ** 2 / mean)
    assert abs(chi2 - (allowed.size - 1)) < 5 * np.sqrt(2 * (allowed.size - 1))
    sources = response.source
    assert np.all(sources[~on_base] == SOURCES.index("explore"))


def test_legacy_logs_show_variety(world: RecsysWorld, log: RecsysLog) -> None:
    shown = np.unique(log.item)
    assert shown.size > 0.9 * len(world.available_items(DAY))
    # Not only the popular items: the top 1% of items hold a small share.
    counts = np.sort(np.bincount(log.item))[::-1]
    assert counts[: world.n_items // 100].sum() < 0.1 * counts.sum()
    # A user's sessions on one day show mostly different items (impression
    # discounting), even for the heaviest users.
    first = log.time < DAY
    n = world.n_items
    distinct = np.bincount(
        np.unique(log.user[first] * n + log.item[first]) // n, minlength=world.n_users
    )
    shown = np.bincount(log.user[first], minlength=world.n_users)
    regular = shown >= 3 * QUICK.feed_size
    assert regular.sum() > 100
    assert np.mean(distinct[regular] / shown[regular]) > 0.7
    assert distinct[shown.argmax()] > 0.4 * shown.max()
    assert log.propensity.min() > 0 and np.isfinite(log.propensity).all()


def test_random_policy_is_uniform_with_exact_propensity(world: RecsysWorld) -> None:
    policy = RandomPolicy(world, seed=1)
    user = 7
    n = 3_000
    request = FeedRequest(np.full(n, user), np.zeros(n), np.arange(n), 0, 20)
    response = policy(request)
    items = response.items
    assert all(np.unique(row).size == 20 for row in items[:200])  # distinct
    cell = world.user_cells(np.array([user]))[0]
    catalogue = world.eligible_catalogue(0)
    allowed = catalogue.items[catalogue.offsets[cell] : catalogue.offsets[cell + 1]]
    assert np.allclose(response.propensity, 1.0 / allowed.size)
    first_slot = np.bincount(
        np.searchsorted(allowed, items[:, 0]), minlength=allowed.size
    )
    assert first_slot.max() < 12  # n / N ~ 1.7 per item: no item is favoured


def test_popularity_policy_follows_the_counts(
    world: RecsysWorld, log: RecsysLog
) -> None:
    policy = PopularityPolicy(world, warm_start=log)
    users = np.flatnonzero(
        (world.users.region == 0) & (world.users.maturity_limit == 2)
    )[:30]
    request = FeedRequest(users, np.full(30, 2 * DAY), np.arange(30), 2, 20)
    feeds = policy(request).items
    engaged = log.engaged & (world.users.region[log.user] == 0)
    counts = np.bincount(log.item[engaged], minlength=world.n_items)
    watched = set(zip(log.user[log.engaged], log.item[log.engaged], strict=True))
    for row, user in zip(feeds, users, strict=True):
        assert not any((user, item) in watched for item in row)
        assert np.all(np.diff(counts[row]) <= 0)  # most played first
    assert counts[feeds].mean() > 5 * counts[counts > 0].mean()


def test_oracle_beats_legacy_beats_random() -> None:
    base = RecsysWorld(QUICK)
    rates = {}
    for name, make in {
        "oracle": lambda w: w.oracle_policy(),
        "legacy": lambda w: LegacyPolicy(w),
        "random": lambda w: RandomPolicy(w),
    }.items():
        w = base.fork()
        rates[name] = w.simulate(make(w), 0, 1).engaged_rate
    assert rates["oracle"] > 1.5 * rates["legacy"] > 3 * rates["random"]
    assert 0.02 < rates["legacy"] < 0.06  # ~3% of impressions are engaged plays


def test_legacy_settings_are_checked(world: RecsysWorld) -> None:
    with pytest.raises(PolicySettingError, match=r"epsilon .* must be in \[0, 1\]"):
        LegacyPolicy(world, epsilon=1.5)
    with pytest.raises(PolicySettingError, match="pool_size \\(5\\) must be at least"):
        LegacyPolicy(world, pool_size=5)


# -- events ----------------------------------------------------------------------------


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def test_trend_and_genre_shift_move_the_logit_as_documented() -> None:
    genre = 2
    cfg = RecsysWorldConfig.quick(
        events=(
            Trend(start_day=3, end_day=5, boost=1.5, genre=genre),
            GenreShift(genre=genre, day=4, delta=-0.7),
        ),
        weights=TruthWeights(clickbait_click=0.0),
    )
    w = RecsysWorld(cfg)
    items = _old_items(w, 2_000)
    items = items[(w.items.genre[items] == genre) & ~w.items.clickbait[items]][:20]
    others = _old_items(w, 2_000)
    others = others[w.items.genre[others] != genre][:20]
    users = np.flatnonzero(w.users.maturity_limit == 2)[:20]

    def z(on_items: np.ndarray, day: float) -> np.ndarray:
        p = w.true_click_p(users[:, None], on_items[None, :], day * DAY)
        return _logit(np.where(p > 0, p, np.nan))

    base = z(items, 2)
    seen = np.isfinite(base)  # pairs the user may see (the others have p = 0)
    assert seen.sum() > 50
    assert np.allclose((z(items, 3) - base)[seen], 1.5)
    assert np.allclose((z(items, 4) - base)[seen], 1.5 - 0.7)
    assert np.allclose((z(items, 5) - base)[seen], -0.7)
    unmoved = z(others, 4) - z(others, 2)
    assert np.allclose(unmoved[np.isfinite(unmoved)], 0.0)


def test_trend_on_listed_items() -> None:
    w0 = RecsysWorld(QUICK)
    items = tuple(int(i) for i in _old_items(w0, 5))
    w = RecsysWorld(RecsysWorldConfig.quick(events=(Trend(1, 2, 2.0, items=items),)))
    users = np.arange(10)
    on = w.true_click_p(users[:, None], np.array(items)[None, :], 1.5 * DAY)
    off = w.true_click_p(users[:, None], np.array(items)[None, :], 2.5 * DAY)
    assert np.all(on[on > 0] > off[on > 0])


# -- the log as data -------------------------------------------------------------------


def test_to_interactions_round_trips(log: RecsysLog, world: RecsysWorld) -> None:
    inter = log.to_interactions()
    assert isinstance(inter, Interactions)
    assert len(inter) == len(log)
    assert (inter.n_users, inter.n_items) == (world.n_users, world.n_items)
    for name in ("user", "item", "time", "engaged"):
        assert np.array_equal(getattr(inter, name), getattr(log, name))
    assert np.array_equal(inter.minutes, log.minutes)
    assert np.array_equal(inter.position, log.position)
    assert (
        inter.positives().engaged.all() and len(inter.positives()) == log.engaged.sum()
    )


def test_parquet_and_frame_round_trip(log: RecsysLog, tmp_path) -> None:
    path = log.write_parquet(tmp_path / "log.parquet")
    back = RecsysLog.read_parquet(path)
    assert _same(log, back)
    assert (back.n_users, back.n_items) == (log.n_users, log.n_items)
    frame = log.to_frame()
    assert list(frame.columns) == list(RecsysLog.column_names())
    assert set(frame["policy"].unique()) == {"legacy-v1"}
    assert set(frame["source"].unique()) == {"personalized", "explore"}
    other = pd.DataFrame({"a": [1]})
    other.to_parquet(tmp_path / "other.parquet")
    with pytest.raises(RecsysLogError, match="not written by RecsysLog"):
        RecsysLog.read_parquet(tmp_path / "other.parquet")


def test_concat_merges_policy_names(world: RecsysWorld) -> None:
    w = world.fork()
    a = w.simulate(RandomPolicy(w), 2, 1)
    b = w.simulate(w.oracle_policy("minutes"), 3, 1)
    both = RecsysLog.concat([a, b])
    assert both.policies == ("random", "oracle-minutes")
    assert set(both.policy[: len(a)]) == {0} and set(both.policy[len(a) :]) == {1}
    with pytest.raises(RecsysLogError, match="out of time order"):
        RecsysLog.concat([b, a])
    with pytest.raises(RecsysLogError, match="has 3 rows but request_id has"):
        dataclasses.replace(a, user=a.user[:3])


# -- scale -----------------------------------------------------------------------------


@pytest.mark.quality
def test_a_million_items_build_and_answer_top_k_in_bounded_memory() -> None:
    tracemalloc.start()
    start = time.perf_counter()
    w = RecsysWorld(RecsysWorldConfig.large())
    users = np.arange(4)
    top = w.true_top_k(users, 100, 0.0)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert w.n_items == 1_000_000 and top.shape == (4, 100)
    assert np.all(w.eligible(users[:, None], top))
    assert elapsed < 60
    assert peak < 1.5e9
    _check_top_k_sample(w, users, top)


def _check_top_k_sample(w: RecsysWorld, users: np.ndarray, top: np.ndarray) -> None:
    """No item of a random 20,000-item sample left out of the top-K beats the K-th."""
    sample = np.random.default_rng(0).choice(w.n_items, 20_000, replace=False)
    p = w.true_engaged_p(users[:, None], sample[None, :], 0.0)
    p[(sample[None, :, None] == top[:, None, :]).any(axis=2)] = -np.inf
    kth = w.true_engaged_p(users, top[:, -1], 0.0)
    assert np.all(p.max(axis=1) <= kth + 1e-6)


@pytest.mark.quality
def test_small_world_week_is_fast_and_has_reachable_headroom() -> None:
    """A week of legacy logs in seconds; the oracle well above popularity; a
    content-based proxy of a two-tower model within reach of the oracle."""
    w = RecsysWorld(RecsysWorldConfig.small())
    policy = LegacyPolicy(w)
    start = time.perf_counter()
    train = w.simulate(policy, 0, 5)
    split = w.fork()
    test = w.simulate(policy, 5, 2)
    assert time.perf_counter() - start < 60  # ~15 s on 2 busy cores
    recall = _headroom_recalls(split, train, test, day=5)
    assert recall["oracle"] > 1.8 * recall["popularity"]
    assert recall["proxy"] > 0.85 * recall["oracle"]
    assert recall["popularity"] > 5 * recall["random"]


def _headroom_recalls(world: RecsysWorld, train: RecsysLog, test: RecsysLog, day: int):
    """Recall@100 on held-out engaged plays of items new to the user."""
    n = world.n_items
    seen = np.unique(train.user[train.engaged] * n + train.item[train.engaged])
    users, items = test.user[test.engaged], test.item[test.engaged]
    new = ~np.isin(users * n + items, seen)
    users, items = users[new], items[new]
    it = world.items
    x = np.hstack([it.content, np.ones((n, 1), np.float32)])
    w, *_ = np.linalg.lstsq(x, it.latent, rcond=None)
    from_content = world.fork()
    from_content.state.items = dataclasses.replace(
        it, latent=(x @ w).astype(np.float32)
    )
    popularity = np.bincount(train.item[train.engaged], minlength=n).astype(float)
    noise = np.random.default_rng(0).random(n)
    available = world.available_items(day * DAY)
    state, proxy_state = world.state, from_content.state
    scorers = {
        "oracle": lambda u: truth.true_score_matrix(state, u, available, day),
        "proxy": lambda u: truth.true_score_matrix(proxy_state, u, available, day),
        "popularity": lambda u: np.tile(
            popularity[available] + 1e-3 * noise[available], (len(u), 1)
        ),
        "random": lambda u: np.tile(noise[available], (len(u), 1)),
    }
    wanted = np.unique(users)
    row = np.searchsorted(wanted, users)
    result = {}
    for name, score in scorers.items():
        hits = np.zeros(len(users), dtype=bool)
        for lo in range(0, wanted.size, 1_000):
            block = wanted[lo : lo + 1_000]
            s = score(block).astype(np.float32)
            s[~world.eligible(block[:, None], available[None, :])] = -np.inf
            r, c = truth.pair_cells(seen, n, block, available)
            s[r, c] = -np.inf
            top = available[truth.top_k_rows(s, 100)[1]]
            mine = (row >= lo) & (row < lo + block.size)
            hits[mine] = (top[row[mine] - lo] == items[mine, None]).any(axis=1)
        result[name] = hits.mean()
    return result
