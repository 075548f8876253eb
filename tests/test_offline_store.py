"""Point-in-time joins: never a value from the future, never one older than the TTL."""

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd_lib.features.offline import OfflineStore, latest_join, point_in_time_join
from mlsd_lib.features.views import (
    Feature,
    FeatureRegistry,
    FeatureStoreError,
    FeatureView,
    SchemaMismatch,
)

T0 = pd.Timestamp("2026-01-01", tz="UTC")
TTL_MINUTES = 30
USER = FeatureView(
    "user_stats",
    ("user_id",),
    (Feature("ctr", default=-1.0), Feature("clicks", "int64")),
    ttl=timedelta(minutes=TTL_MINUTES),
)
AD = FeatureView("ad_stats", ("ad_id",), (Feature("quality"),), ttl=timedelta(hours=1))
REGISTRY = FeatureRegistry([USER, AD])
REFS = ["user_stats:clicks", "ad_stats:quality", "user_stats:ctr"]


def at(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def brute_force(labels, refs, tables):
    """The definition, row by row: latest row at or before t, within the TTL;
    among equal timestamps the one written last."""
    out = np.empty((len(labels), len(refs)), np.float32)
    missing = np.zeros((len(labels), len(refs)), bool)
    for i, label in enumerate(labels.itertuples(index=False)):
        t = label.event_timestamp
        for j, (view, position) in enumerate(REGISTRY.resolve(refs)):
            feature = view.features[position]
            table = tables[view.name]
            mask = (table.event_timestamp <= t) & (
                t - table.event_timestamp <= view.ttl
            )
            for entity in view.entities:
                mask &= table[entity] == getattr(label, entity)
            candidates = table[mask]
            if len(candidates):
                newest = candidates[
                    candidates.event_timestamp == candidates.event_timestamp.max()
                ]
                value = newest.iloc[-1][feature.name]
                if not np.isnan(value):
                    out[i, j] = value
                    continue
            out[i, j] = feature.default
            missing[i, j] = True
    return out, missing


minutes = st.integers(min_value=0, max_value=120)
user_rows = st.lists(
    st.tuples(
        st.integers(1, 3),
        minutes,
        st.one_of(st.none(), st.floats(0, 1, width=32)),
        st.integers(0, 50),
    ),
    max_size=25,
)
ad_rows = st.lists(
    st.tuples(st.integers(1, 2), minutes, st.floats(0, 1, width=32)), max_size=10
)
label_rows = st.lists(
    st.tuples(st.integers(1, 4), st.integers(1, 3), minutes), min_size=1, max_size=25
)


def make_tables(users, ads):
    user_table = pd.DataFrame(
        {
            "user_id": pd.Series([u for u, *_ in users], dtype="int64"),
            "event_timestamp": pd.Series(
                [at(m) for _, m, *_ in users], dtype="datetime64[ns, UTC]"
            ),
            "ctr": pd.Series(
                [np.nan if c is None else c for _, _, c, _ in users], dtype="float64"
            ),
            "clicks": pd.Series([k for *_, k in users], dtype="int64"),
        }
    )
    ad_table = pd.DataFrame(
        {
            "ad_id": pd.Series([a for a, *_ in ads], dtype="int64"),
            "event_timestamp": pd.Series(
                [at(m) for _, m, _ in ads], dtype="datetime64[ns, UTC]"
            ),
            "quality": pd.Series([q for *_, q in ads], dtype="float64"),
        }
    )
    return {"user_stats": user_table, "ad_stats": ad_table}


@pytest.mark.fuzz
@settings(max_examples=150, deadline=None)
@given(users=user_rows, ads=ad_rows, labels=label_rows)
def test_point_in_time_join_matches_the_definition(users, ads, labels):
    tables = make_tables(users, ads)
    label_frame = pd.DataFrame(
        {
            "user_id": pd.Series([u for u, _, _ in labels], dtype="int64"),
            "ad_id": pd.Series([a for _, a, _ in labels], dtype="int64"),
            "event_timestamp": pd.Series(
                [at(m) for *_, m in labels], dtype="datetime64[ns, UTC]"
            ),
        }
    )
    result = point_in_time_join(label_frame, REFS, REGISTRY, tables)
    expected, expected_missing = brute_force(label_frame, REFS, tables)
    np.testing.assert_array_equal(result.matrix(), expected)
    np.testing.assert_array_equal(result.missing, expected_missing)
    # Label rows come back in their order, untouched.
    pd.testing.assert_frame_equal(result.frame[label_frame.columns], label_frame)


def test_a_value_from_after_the_label_is_never_used_but_the_naive_join_uses_it():
    tables = make_tables([(1, 10, 0.1, 1), (1, 20, 0.9, 2)], [])
    labels = pd.DataFrame({"user_id": [1], "event_timestamp": [at(15)]})
    honest = point_in_time_join(labels, ["user_stats:clicks"], REGISTRY, tables)
    leaky = latest_join(labels, ["user_stats:clicks"], REGISTRY, tables)
    assert honest.matrix()[0, 0] == 1  # the value known at minute 15
    assert leaky.matrix()[0, 0] == 2  # written at minute 20: the future


def test_ttl_boundary_is_inclusive():
    tables = make_tables([(1, 0, 0.5, 7)], [])
    labels = pd.DataFrame({"user_id": [1, 1], "event_timestamp": [at(30), at(30.001)]})
    result = point_in_time_join(labels, ["user_stats:clicks"], REGISTRY, tables)
    assert result.matrix()[:, 0].tolist() == [7, 0]
    assert result.missing[:, 0].tolist() == [False, True]


def test_naive_timestamps_are_read_as_utc():
    tables = make_tables([(1, 0, 0.5, 7)], [])
    naive = pd.DataFrame(
        {"user_id": [1], "event_timestamp": [pd.Timestamp("2026-01-01 00:10")]}
    )
    assert (
        point_in_time_join(naive, ["user_stats:clicks"], REGISTRY, tables).matrix()[
            0, 0
        ]
        == 7
    )


def test_labels_must_carry_the_entities_and_the_timestamp():
    tables = make_tables([(1, 0, 0.5, 7)], [])
    with pytest.raises(FeatureStoreError, match=r"lack entity columns \['user_id'\]"):
        point_in_time_join(
            pd.DataFrame({"event_timestamp": [at(1)]}),
            ["user_stats:clicks"],
            REGISTRY,
            tables,
        )
    with pytest.raises(FeatureStoreError, match="timestamp column"):
        point_in_time_join(
            pd.DataFrame({"user_id": [1]}), ["user_stats:clicks"], REGISTRY, tables
        )


def test_offline_store_round_trips_and_appends(tmp_path):
    store = OfflineStore(tmp_path, REGISTRY)
    tables = make_tables([(1, 0, 0.5, 7), (2, 5, 0.25, 3)], [])
    store.write("user_stats", tables["user_stats"].iloc[:1])
    store.write("user_stats", tables["user_stats"].iloc[1:])
    back = store.read("user_stats")
    assert back["clicks"].tolist() == [7, 3]
    assert str(back["event_timestamp"].dt.tz) == "UTC"
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("clicks", [1.5], "declared int64 but the column has dtype float64"),
        ("ctr", ["high"], "declared float32"),
        ("event_timestamp", ["2026-01-01"], "must be datetimes"),
        ("user_id", [None], "missing values"),
    ],
)
def test_bad_rows_are_refused_and_nothing_is_written(tmp_path, column, values, message):
    store = OfflineStore(tmp_path, REGISTRY)
    rows = make_tables([(1, 0, 0.5, 7)], [])["user_stats"]
    rows[column] = pd.Series(
        values,
        dtype=object if isinstance(values[0], str) or values[0] is None else None,
    )
    with pytest.raises(SchemaMismatch, match=message):
        store.write("user_stats", rows)
    assert not list(tmp_path.rglob("*.parquet"))


def test_missing_columns_are_named(tmp_path):
    rows = make_tables([(1, 0, 0.5, 7)], [])["user_stats"].drop(columns=["ctr"])
    with pytest.raises(SchemaMismatch, match=r"lack columns \['ctr'\]"):
        OfflineStore(tmp_path, REGISTRY).write("user_stats", rows)


def test_reading_an_empty_view_says_what_to_do(tmp_path):
    with pytest.raises(FeatureStoreError, match="write some first"):
        OfflineStore(tmp_path, REGISTRY).read("ad_stats")
