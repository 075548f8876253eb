"""The Redis online store, on fakeredis and on a real redis-server."""

import threading
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from mlsd_lib.features import online as online_module
from mlsd_lib.features.offline import point_in_time_join
from mlsd_lib.features.online import (
    OnlineStore,
    OnlineStoreUnavailable,
    OversizedRequest,
)
from mlsd_lib.features.views import (
    Feature,
    FeatureRegistry,
    FeatureStoreError,
    FeatureView,
    SchemaMismatch,
    UnknownFeature,
    UnknownView,
)
from mlsd_lib.net import free_loopback_port

T0 = pd.Timestamp("2026-01-01", tz="UTC")
USER = FeatureView(
    "user_stats",
    ("user_id",),
    (Feature("ctr", default=-1.0), Feature("clicks", "int64")),
    ttl=timedelta(minutes=30),
)
AD = FeatureView(
    "ad_stats", ("ad_id",), (Feature("quality", default=0.5),), ttl=timedelta(hours=1)
)
PAIR = FeatureView(
    "user_ad", ("user_id", "ad_id"), (Feature("seen", "int64"),), ttl=timedelta(hours=1)
)
REGISTRY = FeatureRegistry([USER, AD, PAIR])
REFS = ["user_stats:clicks", "ad_stats:quality", "user_ad:seen", "user_stats:ctr"]


def at(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def user_rows(*rows: tuple[int, float, float, int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "event_timestamp": [at(r[1]) for r in rows],
            "ctr": np.array([r[2] for r in rows], dtype=np.float64),
            "clicks": np.array([r[3] for r in rows], dtype=np.int64),
        }
    )


@pytest.fixture
def store(redis_client):
    return OnlineStore(redis_client, REGISTRY)


def test_read_serves_latest_values_in_schema_order(store):
    store.materialize(
        "user_stats", user_rows((1, 0, 0.1, 1), (1, 5, 0.2, 2), (2, 1, 0.3, 3))
    )
    ads = pd.DataFrame({"ad_id": [10], "event_timestamp": [at(0)], "quality": [0.9]})
    store.materialize("ad_stats", ads)
    got = store.read(
        [
            {"user_id": 1, "ad_id": 10},
            {"user_id": 2, "ad_id": 11},
            {"user_id": 9, "ad_id": 10},
        ],
        REFS,
        now=at(10),
    )
    assert got.feature_names == REFS
    np.testing.assert_array_equal(
        got.values,
        np.array([[2, 0.9, 0, 0.2], [3, 0.5, 0, 0.3], [0, 0.9, 0, -1]], np.float32),
    )
    np.testing.assert_array_equal(
        got.missing,
        [
            [False, False, True, False],
            [False, True, True, False],
            [True, False, True, True],
        ],
    )
    assert got.values.dtype == np.float32 and not got.stale.any()


def test_expired_values_are_served_as_defaults_and_flagged_stale(store):
    store.materialize("user_stats", user_rows((1, 0, 0.1, 1)))
    fresh = store.read([{"user_id": 1}], ["user_stats:ctr"], now=at(30))
    expired = store.read([{"user_id": 1}], ["user_stats:ctr"], now=at(30.5))
    assert fresh.values[0, 0] == np.float32(0.1) and not fresh.stale.any()
    assert expired.values[0, 0] == -1.0
    assert expired.stale[0, 0] and expired.missing[0, 0]


def test_materialize_as_of_ignores_later_rows(store):
    store.materialize(
        "user_stats", user_rows((1, 0, 0.1, 1), (1, 20, 0.2, 2)), as_of=at(10)
    )
    assert (
        store.read([{"user_id": 1}], ["user_stats:clicks"], now=at(10)).values[0, 0]
        == 1
    )


def test_each_materialization_is_a_new_generation_and_the_old_one_is_dropped(store):
    first = store.materialize("user_stats", user_rows((1, 0, 0.1, 1), (2, 0, 0.1, 1)))
    second = store.materialize("user_stats", user_rows((1, 1, 0.2, 2)))
    assert (first.generation, second.generation, second.previous_generation) == (
        "1",
        "2",
        "1",
    )
    keys = sorted(k.decode() for k in store.client.scan_iter("fs:user_stats@v1:g*"))
    assert keys == ["fs:user_stats@v1:g2:1"]  # user 2 vanished with generation 1
    assert store.read([{"user_id": 2}], ["user_stats:clicks"], now=at(1)).missing[0, 0]


class FailingPipelines:
    """Make the n-th pipeline of a materialization fail, after reading the store
    the way a concurrent reader would at that moment."""

    def __init__(self, store: OnlineStore, fail_at: int):
        self.store, self.fail_at, self.count, self.reads = store, fail_at, 0, []
        self._pipeline = store.client.pipeline

    def __call__(self, *args, **kwargs):
        self.count += 1
        pipe = self._pipeline(*args, **kwargs)
        if self.count == self.fail_at:
            self.reads.append(
                self.store.read([{"user_id": u} for u in range(4)], REFS[:1], now=at(9))
            )

            def boom():
                raise ConnectionError("network cable cut mid-materialization")

            pipe.execute = boom
        return pipe


def test_an_interrupted_materialization_leaves_readers_on_the_previous_version(store):
    store.write_chunk_size = 1
    old = user_rows((0, 0, 0.1, 10), (1, 0, 0.1, 11), (2, 0, 0.1, 12), (3, 0, 0.1, 13))
    store.materialize("user_stats", old)
    keys_before = sorted(store.client.keys("*"))
    failing = FailingPipelines(store, fail_at=3)
    store.client.pipeline = failing
    new = user_rows((0, 8, 0.9, 90), (1, 8, 0.9, 91), (2, 8, 0.9, 92), (3, 8, 0.9, 93))
    with pytest.raises(ConnectionError, match="cable cut"):
        store.materialize("user_stats", new)
    del store.client.pipeline
    # Mid-write, and after the failure, readers saw only the old generation.
    np.testing.assert_array_equal(failing.reads[0].values[:, 0], [10, 11, 12, 13])
    after = store.read([{"user_id": u} for u in range(4)], REFS[:1], now=at(9))
    np.testing.assert_array_equal(after.values[:, 0], [10, 11, 12, 13])
    assert store.current_generation("user_stats") == "1"
    # The partial generation was removed; only the generation counter moved.
    keys_after = sorted(store.client.keys("*"))
    assert [k for k in keys_after if b":g2:" in k] == []
    assert [k for k in keys_after if k not in keys_before] == []


def test_a_dtype_mismatch_is_refused_before_anything_is_written(store):
    rows = user_rows((1, 0, 0.1, 1))
    rows["clicks"] = rows["clicks"].astype(np.float64) + 0.5
    with pytest.raises(SchemaMismatch, match="declared int64"):
        store.materialize("user_stats", rows)
    assert store.client.keys("*") == []


def test_unknown_names_are_clear_errors(store):
    with pytest.raises(UnknownView, match="not registered"):
        store.read([{"user_id": 1}], ["user_profile:age"])
    with pytest.raises(UnknownFeature, match=r"'age' is not in view 'user_stats'"):
        store.read([{"user_id": 1}], ["user_stats:age"])
    with pytest.raises(FeatureStoreError, match=r"lack columns \['ad_id'\]"):
        store.read([{"user_id": 1}], ["ad_stats:quality"])


def test_an_oversized_read_is_refused_before_reaching_redis(store, monkeypatch):
    monkeypatch.setattr(online_module, "MAX_RECORDS_PER_READ", 5)
    with pytest.raises(OversizedRequest, match="Split the entity rows"):
        store.read([{"user_id": u} for u in range(6)], ["user_stats:ctr"])


def test_records_written_under_another_definition_are_detected(store):
    store.materialize("user_stats", user_rows((1, 0, 0.1, 1)))
    wider = FeatureView(
        "user_stats", ("user_id",), (*USER.features, Feature("extra")), ttl=USER.ttl
    )
    reader = OnlineStore(store.client, FeatureRegistry([wider]))
    with pytest.raises(FeatureStoreError, match="bump the view's version"):
        reader.read([{"user_id": 1}], ["user_stats:ctr"], now=at(1))


def test_unreachable_redis_names_redis_url():
    client = redis.Redis(
        port=free_loopback_port(),
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), retries=0),  # fail at once, not after backoffs
    )
    store = OnlineStore(client, REGISTRY, describe_location="redis://127.0.0.1 (test)")
    with pytest.raises(OnlineStoreUnavailable, match="REDIS_URL"):
        store.read([{"user_id": 1}], ["user_stats:ctr"])
    with pytest.raises(OnlineStoreUnavailable, match="REDIS_URL"):
        store.materialize("user_stats", user_rows((1, 0, 0.1, 1)))


@pytest.mark.redis
def test_one_network_round_trip_per_read_whatever_the_views_and_entities(
    real_redis_url,
):
    client = redis.Redis.from_url(real_redis_url)
    client.flushdb()
    store = OnlineStore(client, REGISTRY)
    store.materialize("user_stats", user_rows(*[(u, 0, 0.1, u) for u in range(50)]))
    rows = [{"user_id": 7, "ad_id": a} for a in range(100)]
    store.read(rows, REFS, now=at(1))  # loads the script once
    sent = []
    connection = client.connection_pool.get_connection()
    client.connection_pool.release(connection)
    original = type(connection).send_packed_command

    def counting(self, *args, **kwargs):
        sent.append(1)
        return original(self, *args, **kwargs)

    type(connection).send_packed_command = counting
    try:
        store.read(rows, REFS, now=at(1))
        store.read([{"user_id": u, "ad_id": 1} for u in range(50)], REFS, now=at(1))
    finally:
        type(connection).send_packed_command = original
        client.flushdb()
    assert len(sent) == 2


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(1, 4),
            st.integers(0, 90),
            st.floats(0, 1, width=32),
            st.integers(0, 9),
        ),
        max_size=30,
    ),
    t=st.integers(0, 100),
)
def test_online_serves_what_the_point_in_time_join_computes(store, rows, t):
    """Materialize as of t, read at t: the same vector the training data had at t."""
    store.client.flushdb()
    table = user_rows(*rows) if rows else user_rows((1, 0, 0.0, 0)).iloc[:0]
    store.materialize("user_stats", table, as_of=at(t))
    entities = pd.DataFrame({"user_id": [1, 2, 3, 4], "event_timestamp": [at(t)] * 4})
    online = store.read(entities, ["user_stats:ctr", "user_stats:clicks"], now=at(t))
    offline = point_in_time_join(
        entities,
        ["user_stats:ctr", "user_stats:clicks"],
        REGISTRY,
        {"user_stats": table},
    )
    np.testing.assert_array_equal(online.values, offline.matrix())
    np.testing.assert_array_equal(online.missing, offline.missing)


# -- the one-gather decode against the per-view decode it replaced ------------------
WIDE = FeatureView(
    "wide",
    ("user_id",),
    tuple(Feature(f"f{i}", default=float(i)) for i in range(7)),
    ttl=timedelta(minutes=10),
)
NEVER_WRITTEN = FeatureView(
    "never_written", ("ad_id",), (Feature("x", default=3.0),), ttl=timedelta(hours=1)
)
MIXED = FeatureRegistry([USER, AD, PAIR, WIDE, NEVER_WRITTEN])
MIXED_REFS = [
    "wide:f3",
    "user_stats:clicks",
    "ad_stats:quality",
    "never_written:x",
    "wide:f0",
    "user_ad:seen",
    "wide:f6",
    "user_stats:ctr",
]


def per_view_read(store: OnlineStore, rows, refs, now) -> online_module.OnlineFeatures:
    """The read as it was before the one-gather decode: the same request through
    redis-py's script path, decoded view by view."""
    plan = store._plan(tuple(refs))
    columns, _ = online_module.entity_columns(rows, [p.view for p in plan.views])
    argv, inverses, counts = store._request(plan, columns)
    raw = store._read_script(keys=list(plan.current_keys), args=argv)
    now_s = online_module.moment_seconds(now)
    return store._decode_per_view(plan, raw, inverses, counts, now_s)


def load_mixed(store: OnlineStore) -> None:
    """Users 0-5 (user 4's ctr NaN), ads 0-2 (ad 2 written at minute 0, so stale
    after an hour), pairs for user 1; nothing for user 9, ad 7 or never_written."""
    users = [(u, u, np.nan if u == 4 else 0.1 * u, u) for u in range(6)]
    store.materialize("user_stats", user_rows(*users))
    store.materialize(
        "ad_stats",
        pd.DataFrame(
            {
                "ad_id": [0, 1, 2],
                "event_timestamp": [at(50), at(55), at(0)],
                "quality": np.array([0.25, np.nan, 0.75]),
            }
        ),
    )
    store.materialize(
        "user_ad",
        pd.DataFrame(
            {
                "user_id": [1, 1],
                "ad_id": [0, 2],
                "event_timestamp": [at(1), at(2)],
                "seen": np.array([3, 4], dtype=np.int64),
            }
        ),
    )
    wide = {f"f{i}": np.arange(6, dtype=np.float64) * 10 + i for i in range(7)}
    wide["f3"][2] = np.nan
    store.materialize(
        "wide",
        pd.DataFrame({"user_id": range(6), "event_timestamp": [at(55)] * 6, **wide}),
    )


READ_CASES = {
    "one row, every record present": [{"user_id": 1, "ad_id": 0}],
    "one row, NaN values": [{"user_id": 4, "ad_id": 1}],
    "one row, an unknown user": [{"user_id": 9, "ad_id": 2}],
    "one row, nothing known": [{"user_id": 9, "ad_id": 7}],
    "rows repeating one entity pair": [{"user_id": 2, "ad_id": 1}] * 3,
    "candidates, some unknown": [{"user_id": 1, "ad_id": a} for a in (0, 1, 2, 7, 0)],
    "many users": [{"user_id": u, "ad_id": u % 3} for u in range(10)],
}


@pytest.mark.redis
@pytest.mark.parametrize("case", READ_CASES, ids=list(READ_CASES))
@pytest.mark.parametrize("minutes", [20, 40, 100])
def test_the_one_gather_decode_returns_exactly_what_the_per_view_decode_did(
    real_redis_url, case, minutes
):
    """Same values, masks, dtypes and shapes, bit for bit, on a real Redis: several
    views (record sizes 12, 16, 36 bytes, so fields start off 8-byte boundaries),
    unknown entities, a view never materialized, NaN values, stale values."""
    client = redis.Redis.from_url(real_redis_url)
    client.flushdb()
    try:
        store = OnlineStore(client, MIXED)
        load_mixed(store)
        rows = READ_CASES[case]
        for refs in (MIXED_REFS, MIXED_REFS[:3], ["wide:f6"]):
            fast = store.read(rows, refs, now=at(minutes))
            reference = per_view_read(store, rows, refs, at(minutes))
            assert fast.feature_names == reference.feature_names
            for field in ("values", "missing", "stale"):
                got, want = getattr(fast, field), getattr(reference, field)
                assert (got.dtype, got.shape) == (want.dtype, want.shape), field
                assert got.tobytes() == want.tobytes(), field
    finally:
        client.flushdb()
        store.close()
        client.close()


@pytest.mark.redis
def test_reads_during_materializations_see_one_whole_generation(real_redis_url):
    """A reader hammering the store while each view is rewritten generation after
    generation, in many small pipelines, never sees two generations of a view in
    one read: every value of a view carries the same generation number."""
    client = redis.Redis.from_url(real_redis_url)
    client.flushdb()
    store = OnlineStore(client, MIXED, write_chunk_size=7)
    users = list(range(60))

    def generation_rows(k: int) -> pd.DataFrame:
        wide = {f"f{i}": np.full(len(users), float(k)) for i in range(7)}
        return pd.DataFrame(
            {"user_id": users, "event_timestamp": [at(k)] * len(users), **wide}
        )

    def user_generation(k: int) -> pd.DataFrame:
        return user_rows(*[(u, k, float(k), k) for u in users])

    store.materialize("wide", generation_rows(0))
    store.materialize("user_stats", user_generation(0))
    refs = ["wide:f0", "user_stats:clicks", "wide:f6", "user_stats:ctr", "wide:f3"]
    rows_sets = ([{"user_id": 17}], [{"user_id": u} for u in users])
    seen: list[online_module.OnlineFeatures] = []
    done = threading.Event()

    def reader() -> None:
        reading = OnlineStore(redis.Redis.from_url(real_redis_url), MIXED)
        try:
            while not done.is_set():
                for rows in rows_sets:
                    seen.append(reading.read(rows, refs, now=at(0)))
        finally:
            reading.close()
            reading.client.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for k in range(1, 16):
            store.materialize("wide", generation_rows(k))
            store.materialize("user_stats", user_generation(k))
    finally:
        done.set()
        thread.join(timeout=30)
        client.flushdb()
        client.close()
    assert not thread.is_alive()
    assert len(seen) > 20, "the reader hardly ran: the test proved nothing"
    wide_columns, user_columns = [0, 2, 4], [1, 3]
    generations = set()
    for result in seen:
        assert not result.missing.any()
        for columns in (wide_columns, user_columns):
            values = result.values[:, columns]
            assert (values == values.flat[0]).all(), values
            generations.add(float(values.flat[0]))
    assert len(generations) > 2, "no read fell between two materializations"
