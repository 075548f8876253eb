"""The recommender's event log and point-in-time training rows.

The world's impression log becomes interaction events (one per thing a user
did, with stable ids), parquet files partitioned by day and hour, and a Redis
Stream; training rows read the user as the online store served them. The
reference for "served" is the real stream processor: a day of events streamed
through it (its own process, a real redis-server) must leave in Redis exactly
what the offline computation says.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import redis

from mlsd_lib.features.histories import histories_at, read_histories
from mlsd_lib.features.history_fold import interaction_history
from mlsd_lib.features.interaction_events import (
    INTERACTION_TYPES,
    interactions_frame,
    read_interaction_log,
)
from mlsd_lib.features.stream_launcher import start_processor, summary_of
from mlsd_lib.features.windows import timestamps_to_seconds
from mlsd_lib.models.ranker import RankerData
from mlsd_lib.models.two_tower_data import EntityFeatures, two_tower_examples
from mlsd_lib.recsys.events import (
    ENGAGED_SECONDS,
    EVENT_LOG_COLUMNS,
    FEATURE_EVENT_TYPES,
    RECSYS_EPOCH,
    SCAN_SECONDS,
    EventLogError,
    epoch_seconds,
    interaction_log,
    publish_events,
    read_event_log,
    write_event_log,
)
from mlsd_lib.recsys.training_rows import (
    ITEM_STATS_DAYS,
    RANKING_DENSE,
    RANKING_SIGNALS,
    TrainingRowsError,
    check_point_in_time,
    item_engaged_rate,
    item_window_counts,
    ranking_examples,
    retrieval_examples,
    served_ranking_examples,
    states_at_end,
    states_at_requests,
)
from mlsd_lib.worlds.recsys import REQUEST_ID_STRIDE, RecsysWorld
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_log import RecsysLog
from mlsd_lib.worlds.recsys_policies import LegacyPolicy

DAY = 86_400.0
FOLD = interaction_history("recsys_events_test")
EVENT_FIELDS = ["event_id", "type", "user_id", "item_id", "category", "event_timestamp"]


@pytest.fixture(scope="module")
def world() -> RecsysWorld:
    return RecsysWorld(RecsysWorldConfig.quick())


@pytest.fixture(scope="module")
def log(world: RecsysWorld) -> RecsysLog:
    """Three days of the legacy policy on the quick world."""
    return world.simulate(LegacyPolicy(world), 0, 3)


@pytest.fixture(scope="module")
def events(world: RecsysWorld, log: RecsysLog) -> pd.DataFrame:
    return interaction_log(log, world.items.genre)


def hand_made_log() -> RecsysLog:
    """Two feeds of three slots: user 7 plays slot 1 (engaged, 12 min) and
    slot 2 (not engaged, 0.25 min); user 9 plays nothing."""
    return RecsysLog(
        request_id=np.array([5, 5, 5, 6, 6, 6]),
        user=np.array([7, 7, 7, 9, 9, 9]),
        item=np.array([0, 1, 2, 3, 1, 0]),
        position=np.array([0, 1, 2, 0, 1, 2], dtype=np.int16),
        time=np.array([100.0, 100.0, 100.0, 130.0, 130.0, 130.0]),
        source=np.full(6, 3, dtype=np.int8),
        propensity=np.array([0.9, 0.9, 0.8, 0.9, 0.9, 0.9]),
        policy=np.zeros(6, dtype=np.int16),
        clicked=np.array([False, True, True, False, False, False]),
        engaged=np.array([False, True, False, False, False, False]),
        minutes=np.array([0, 12.0, 0.25, 0, 0, 0], dtype=np.float32),
        true_engaged_p=np.zeros(6, dtype=np.float32),
        policies=("legacy-v1",),
        n_users=10,
        n_items=4,
    )


# --- the world's log as events ------------------------------------------------------


def test_each_feed_becomes_a_session_its_impressions_and_its_plays_at_set_times():
    genre = np.array([4, 2, 5, 1])
    got = interaction_log(hand_made_log(), genre)
    assert list(got.columns) == list(EVENT_LOG_COLUMNS)
    t0 = RECSYS_EPOCH.timestamp()
    seconds = timestamps_to_seconds(got["event_timestamp"]) - t0
    rows = list(
        zip(
            got["event_id"],
            got["type"],
            got["item_id"],
            got["category"],
            seconds,
            strict=True,
        )
    )
    play_1 = 100.0 + 2 * SCAN_SECONDS + ENGAGED_SECONDS  # slot 1: engaged at 30 s
    play_2 = 100.0 + 3 * SCAN_SECONDS + 15.0  # slot 2: stopped after 15 s
    assert rows == [
        ("r5s", "session_start", -1, -1, 100.0),
        ("r5.0i", "impression", 0, 4, 100.0),
        ("r5.1i", "impression", 1, 2, 100.0),
        ("r5.2i", "impression", 2, 5, 100.0),
        ("r5.2p", "play", 2, 5, pytest.approx(play_2)),  # 127 s: before feed 6
        ("r6s", "session_start", -1, -1, 130.0),
        ("r6.0i", "impression", 3, 1, 130.0),
        ("r6.1i", "impression", 1, 2, 130.0),
        ("r6.2i", "impression", 0, 4, 130.0),
        ("r5.1e", "engaged_play", 1, 2, pytest.approx(play_1)),  # 138 s
    ]
    plays = got[got["type"].isin(["play", "engaged_play"])]
    assert plays["minutes"].tolist() == [0.25, 12.0]
    assert got.loc[got["type"] == "impression", "minutes"].isna().all()
    impressions = got[got["type"] == "impression"]
    assert impressions["propensity"].tolist() == pytest.approx(
        [0.9, 0.9, 0.8] + [0.9] * 3
    )
    assert (got.loc[got["type"] != "impression", "source"] == -1).all()
    assert set(got["policy"]) == {"legacy-v1"}
    assert got["day"].tolist() == [0] * 10 and got["hour"].tolist() == [0] * 10


def test_the_event_log_accounts_for_every_row_of_the_world_log(world, log, events):
    counts = events["type"].value_counts()
    assert counts["session_start"] == log.n_requests
    assert counts["impression"] == len(log)
    assert counts["engaged_play"] == log.engaged.sum()
    assert counts["play"] == (log.clicked & ~log.engaged).sum()
    assert events["event_id"].is_unique
    seconds = timestamps_to_seconds(events["event_timestamp"])
    assert np.all(np.diff(seconds) >= 0)  # in time order
    items = events["item_id"].to_numpy()
    has_item = items >= 0
    np.testing.assert_array_equal(
        events["category"].to_numpy()[has_item], world.items.genre[items[has_item]]
    )
    # Every play comes after its feed was served, and within the feed's scan.
    plays = events[events["type"].isin(["play", "engaged_play"])]
    served = epoch_seconds(log.time[np.searchsorted(log.request_id, plays.request_id)])
    delay = timestamps_to_seconds(plays["event_timestamp"]) - served
    assert delay.min() > 0
    assert delay.max() <= SCAN_SECONDS * world.config.feed_size + ENGAGED_SECONDS + 1e-6


def test_event_ids_and_times_do_not_depend_on_where_the_log_is_cut(world, log, events):
    """A replay publishes the same ids, so the processor's dedup recognises it."""
    day_1 = (log.time >= DAY) & (log.time < 2 * DAY)
    alone = interaction_log(log.subset(day_1), world.items.genre)
    # Day 1's feeds: their last plays may fall after midnight (event day 2).
    same_day = events[events["request_id"] // REQUEST_ID_STRIDE == 1]
    same_day = same_day.reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, same_day)
    again = interaction_log(log, world.items.genre)
    pd.testing.assert_frame_equal(again, events)


def test_a_log_whose_feeds_are_scrambled_is_refused(world, log):
    genre = world.items.genre
    order = np.random.default_rng(0).permutation(len(log))
    with pytest.raises(EventLogError, match="contiguous, in slot order"):
        interaction_log(log.subset(order), genre)
    with pytest.raises(EventLogError, match=r"pass world\.items\.genre"):
        interaction_log(log, genre[:10])


# --- the offline store: parquet by day and hour ----------------------------------


def test_the_event_log_round_trips_through_parquet_by_day_and_hour(events, tmp_path):
    root = tmp_path / "events"
    files = write_event_log(events, root)
    folders = {p.parent.relative_to(root).as_posix() for p in files.files}
    assert "day=0/hour=0" in folders and "day=2/hour=23" in folders
    assert len(folders) == events.groupby(["day", "hour"]).ngroups
    assert files.rows == len(events) and files.bytes > 0
    pd.testing.assert_frame_equal(read_event_log(root), events)
    # Pruned reads: one day, one type.
    day_1 = read_event_log(root, days=[1])
    pd.testing.assert_frame_equal(
        day_1, events[events["day"] == 1].reset_index(drop=True)
    )
    plays = read_event_log(root, types=["engaged_play"])
    assert (plays["type"] == "engaged_play").all()
    assert len(plays) == (events["type"] == "engaged_play").sum()


def test_days_append_one_at_a_time_and_a_day_written_twice_is_read_once(
    log, world, tmp_path
):
    root = tmp_path / "events"
    days = [
        interaction_log(log.subset(log.request_id // REQUEST_ID_STRIDE == d),
                        world.items.genre)
        for d in range(2)
    ]  # fmt: skip
    # A day's last plays may fall after midnight, in a partition the next day
    # writes too; split day 0 inside its first hour to have that case for sure.
    middle = int(np.searchsorted(days[0]["hour"].to_numpy() > 0, True) // 2)
    write_event_log(days[0].iloc[:middle], root)
    write_event_log(days[0].iloc[middle:], root)
    for day in days[1:]:
        write_event_log(day, root)
    assert len(list((root / "day=0" / "hour=0").glob("part-*.parquet"))) == 2
    everything = pd.concat(days, ignore_index=True)
    got = read_event_log(root)
    assert len(got) == len(everything)
    assert set(got["event_id"]) == set(everything["event_id"])
    write_event_log(days[1], root)  # a retried day: stored twice, read once
    pd.testing.assert_frame_equal(read_event_log(root), got)
    with pytest.raises(EventLogError, match="only 'day' and 'hour'"):
        write_event_log(days[0], tmp_path / "other", partition_by=("user_id",))
    with pytest.raises(EventLogError, match="holds no event log"):
        read_event_log(tmp_path / "nothing")
    with pytest.raises(EventLogError, match="unknown event types"):
        read_event_log(root, types=["click"])
    with pytest.raises(EventLogError, match="lack columns"):
        write_event_log(days[0].drop(columns="minutes"), tmp_path / "x")


def test_a_column_left_out_shrinks_the_files(events, tmp_path):
    full = write_event_log(events, tmp_path / "full")
    columns = [c for c in EVENT_LOG_COLUMNS if c != "event_id"]
    lean = write_event_log(events, tmp_path / "lean", columns=columns)
    assert lean.bytes < full.bytes
    assert "event_id" not in read_event_log(tmp_path / "lean").columns


# --- the stream ----------------------------------------------------------------------


def test_publish_sends_the_feature_events_in_order(redis_client, events):
    day_0 = events[events["day"] == 0]
    sent = publish_events(redis_client, "feed_events", day_0, chunk_size=700)
    wanted = day_0[day_0["type"].isin(FEATURE_EVENT_TYPES)].reset_index(drop=True)
    assert sent == len(wanted) == redis_client.xlen("feed_events")
    back = read_interaction_log(redis_client, "feed_events").drop(columns="message_id")
    pd.testing.assert_frame_equal(back, interactions_frame_of(wanted))
    few = day_0.head(50)
    assert publish_events(redis_client, "all_events", few, types=None) == 50
    with pytest.raises(EventLogError, match="unknown event types"):
        publish_events(redis_client, "x", few, types=["click"])
    with pytest.raises(EventLogError, match="chunk_size=0"):
        publish_events(redis_client, "x", few, chunk_size=0)


def interactions_frame_of(events: pd.DataFrame) -> pd.DataFrame:
    """The six fields the stream carries, typed as the stream's log is."""
    from mlsd_lib.features.interaction_events import interactions_from_frame

    return interactions_frame(interactions_from_frame(events[EVENT_FIELDS]))


# --- point-in-time rows and the leakage test ------------------------------------------


def test_point_in_time_rows_never_use_their_own_time_or_later(log, events):
    states = states_at_requests(log, events, FOLD)
    assert len(states) == log.n_requests
    report = check_point_in_time(states, events, FOLD, sample=25, seed=1)
    assert report.ok, report
    assert report.cut_checked == 25
    # Cut the whole log at a few times: every row before the cut is unchanged.
    seconds = timestamps_to_seconds(events["event_timestamp"])
    for cut in epoch_seconds(np.array([0.7, 1.0, 1.5, 2.2]) * DAY):
        before = states.time <= cut
        again = histories_at(
            events[seconds < cut], FOLD, states.user[before], states.time[before]
        )
        for name in ("items", "item_times", "category_counts", "counts"):
            np.testing.assert_array_equal(
                getattr(again, name), getattr(states.histories, name)[before]
            )


def test_the_leakage_test_catches_the_latest_value_join(log, events):
    leaky = states_at_end(log, events, FOLD)
    report = check_point_in_time(leaky, events, FOLD, sample=10)
    assert not report.ok
    assert report.future_entries > 0 and report.future_counts > 0
    assert report.changed_by_cut > 0
    # The leak: a row's own engaged play is in its history.
    examples = retrieval_examples(log, leaky, EntityFeatures.from_arrays(n=log.n_items))
    own = (examples.history == examples.item[:, None]).any(axis=1)
    assert own.mean() > 0.5
    honest = retrieval_examples(
        log,
        states_at_requests(log, events, FOLD),
        EntityFeatures.from_arrays(n=log.n_items),
    )
    assert (honest.history == honest.item[:, None]).any(axis=1).mean() < 0.05


def test_retrieval_examples_agree_with_the_two_tower_examples(world, log, events):
    """Both are point-in-time; they differ only where a feed came so soon after
    the previous one that the previous feed's play had not fired yet."""
    items = EntityFeatures.from_arrays(world.items.content)
    states = states_at_requests(log, events, FOLD)
    ours = retrieval_examples(log, states, items)
    theirs = two_tower_examples(log.to_interactions(), items, history_len=50)
    np.testing.assert_array_equal(ours.item, theirs.item)
    np.testing.assert_array_equal(ours.user, theirs.user)
    same = (ours.history == theirs.history).all(axis=1)
    assert same.mean() > 0.98
    # Where they differ, the user's previous feed was at most a scan away.
    first = np.unique(log.request_id, return_index=True)[1]
    feeds = pd.DataFrame({"user": log.user[first], "time": log.time[first]})
    feeds["gap"] = feeds.groupby("user")["time"].diff()
    gap = feeds.set_index(["user", "time"])["gap"]
    differing = pd.MultiIndex.from_arrays([ours.user[~same], ours.time[~same]])
    window = SCAN_SECONDS * world.config.feed_size + ENGAGED_SECONDS
    assert (gap.loc[differing].to_numpy() <= window).all()
    with pytest.raises(TrainingRowsError, match="ask for 1 to 50"):
        retrieval_examples(log, states, items, history_len=51)
    with pytest.raises(TrainingRowsError, match="one row per item id"):
        retrieval_examples(log, states, EntityFeatures.from_arrays(n=3))


def test_ranking_examples_hold_the_served_state_against_each_candidate(
    world, log, events
):
    states = states_at_requests(log, events, FOLD)
    items = world.item_features()
    data = ranking_examples(log, states, items)
    assert isinstance(data, RankerData) and len(data) == len(log)
    dense = pd.DataFrame(data.features.dense, columns=RANKING_DENSE)
    assert dense.notna().all().all()
    assert dense["genre_share"].between(0, 1).all()
    assert dense["history_size"].between(0, 50).all()
    np.testing.assert_array_equal(data.engaged, log.engaged)
    np.testing.assert_array_equal(data.position, log.position)
    np.testing.assert_array_equal(data.minutes, log.minutes)
    np.testing.assert_array_equal(
        data.features.categorical[:, 0], world.items.genre[log.item]
    )
    # Spot-check against the states directly.
    rng = np.random.default_rng(0)
    for j in rng.choice(len(log), 200, replace=False):
        r = states.rows_of(log.request_id[j : j + 1])[0]
        history = states.histories.items[r]
        mix = states.histories.category_counts[r]
        assert dense["in_history"][j] == (log.item[j] in history)
        share = mix[world.items.genre[log.item[j]]] / max(mix.sum(), 1)
        assert dense["genre_share"][j] == pytest.approx(share, abs=1e-6)
    # A user's early feeds have short histories; later ones longer.
    first_day = log.time < DAY
    assert (
        dense["history_size"][first_day].mean()
        < dense["history_size"][~first_day].mean()
    )
    with pytest.raises(TrainingRowsError, match=r"world\.item_features"):
        ranking_examples(log, states, items.drop(columns="series"))
    with pytest.raises(TrainingRowsError, match="do not hold"):
        ranking_examples(
            log, states_at_requests(log.subset(first_day), events, FOLD), items
        )


def unit_rows(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_served_ranking_rows_add_the_pair_score_and_the_past_engaged_rate(
    world, log, events
):
    states = states_at_requests(log, events, FOLD)
    items = world.item_features()
    rng = np.random.default_rng(3)
    users, vectors = unit_rows(rng, len(states)), unit_rows(rng, log.n_items)
    data = served_ranking_examples(
        log, states, items, past_log=log, user_embeddings=users,
        item_embeddings=vectors,
    )  # fmt: skip
    base = ranking_examples(log, states, items)
    width = len(RANKING_DENSE)
    assert data.features.dense.shape == (len(log), width + len(RANKING_SIGNALS))
    np.testing.assert_array_equal(data.features.dense[:, :width], base.features.dense)
    np.testing.assert_array_equal(data.engaged, base.engaged)
    signals = pd.DataFrame(data.features.dense[:, width:], columns=RANKING_SIGNALS)
    rows = states.rows_of(log.request_id)
    pair = (users[rows] * vectors[log.item]).sum(axis=1)
    np.testing.assert_allclose(signals["retrieval_score"], pair, atol=1e-6)
    day = np.floor(log.time / DAY).astype(int)
    for d in (0, 1, 2):
        shown, played = item_window_counts(log, d)
        on_day = day == d
        expected = item_engaged_rate(shown[log.item[on_day]], played[log.item[on_day]])
        np.testing.assert_allclose(signals["item_engaged_rate"][on_day], expected)
    # Day 0 has no past: every item gets the prior; later days spread it.
    assert signals["item_engaged_rate"][day == 0].nunique() == 1
    assert signals["item_engaged_rate"][day == 2].nunique() > 100
    with pytest.raises(TrainingRowsError, match="one vector per request"):
        served_ranking_examples(
            log, states, items, past_log=log, user_embeddings=users[:-1],
            item_embeddings=vectors,
        )  # fmt: skip


def test_the_item_statistics_use_only_the_days_before_the_row(world, log, events):
    """The leakage test for the item side: a row's engaged rate is unchanged when
    everything from the start of its day on is deleted, and does change when
    the day before is deleted too (the test can fail)."""
    states = states_at_requests(log, events, FOLD)
    items = world.item_features()
    rng = np.random.default_rng(4)
    users, vectors = unit_rows(rng, len(states)), unit_rows(rng, log.n_items)

    def rates(past: RecsysLog) -> np.ndarray:
        data = served_ranking_examples(
            log, states, items, past_log=past, user_embeddings=users,
            item_embeddings=vectors,
        )  # fmt: skip
        return data.features.dense[:, -1]

    full = rates(log)
    day = np.floor(log.time / DAY)
    for d in (1, 2):
        cut = rates(log.subset(log.time < d * DAY))
        np.testing.assert_array_equal(cut[day <= d], full[day <= d])
        too_early = rates(log.subset(log.time < (d - 1) * DAY))
        assert (too_early[day == d] != full[day == d]).mean() > 0.5
    # A week's window: a day older than ITEM_STATS_DAYS no longer counts.
    shown, _ = item_window_counts(log, ITEM_STATS_DAYS + 1)
    assert shown.sum() == (log.time >= DAY).sum()


def test_a_leaky_history_inflates_offline_recall(world, log, events):
    """The chapter's demonstration: a content retriever (the mean description
    embedding of the history) scores far better with the latest-value join."""
    content = world.items.content / np.linalg.norm(world.items.content, axis=1)[:, None]
    held_out = np.flatnonzero(log.engaged & (log.time >= 2 * DAY))

    def recall(states) -> float:
        history = states.histories.items[states.rows_of(log.request_id[held_out])]
        present = (history >= 0)[..., None]
        users = (content[np.maximum(history, 0)] * present).sum(axis=1)
        top = np.argsort(-(users @ content.T), axis=1)[:, :100]
        return float((top == log.item[held_out, None]).any(axis=1).mean())

    honest = recall(states_at_requests(log, events, FOLD))
    leaky = recall(states_at_end(log, events, FOLD))
    assert leaky > 2 * honest > 0


# --- online == offline: the real processor, in its own process --------------------


@pytest.fixture
def real_client(real_redis_url: str):
    client = redis.Redis.from_url(real_redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.mark.redis
def test_a_day_streamed_through_the_processor_serves_the_offline_histories(
    real_redis_url: str, real_client: redis.Redis
) -> None:
    world = RecsysWorld(RecsysWorldConfig.quick())
    users = np.arange(
        0, world.n_users, 5
    )  # a fifth of the users, every event of theirs
    log = world.simulate(LegacyPolicy(world), 0, 1, users=users)
    events = interaction_log(log, world.items.genre)
    stream = "recsys_events_day0"
    # Everything, impressions too: the fold must ignore what it does not use.
    sent = publish_events(real_client, stream, events, types=None)
    assert sent == len(events) and set(events["type"]) == set(INTERACTION_TYPES)
    process = start_processor(
        real_redis_url, stream=stream, group="features", consumer="one",
        fold="history", categories=world.config.n_genres, batch_size=500,
        idle_exit_s=1.0, max_runtime_s=60,
    )  # fmt: skip
    out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err
    summary = summary_of(out)
    assert summary["applied"] == sent and summary["dead_lettered"] == 0
    fold = interaction_history(stream, n_categories=world.config.n_genres)
    end = timestamps_to_seconds(events["event_timestamp"]).max() + 1.0
    asked = np.concatenate([users, [1, 2]])  # two users who never came
    online = read_histories(real_client, fold, asked)
    offline = histories_at(events, fold, asked, np.full(len(asked), end))
    for name in ("items", "item_times", "category_counts", "counts", "counts_as_of"):
        np.testing.assert_array_equal(
            getattr(online, name), getattr(offline, name), err_msg=name
        )
    assert (online.items[:, 0] >= 0).sum() > 50  # many users have a history
