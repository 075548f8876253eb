"""The Redis online store, on fakeredis and on a real redis-server."""

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
