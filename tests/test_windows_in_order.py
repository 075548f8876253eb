"""The vectorized windowed counts equal the event-at-a-time reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd_lib.features.event_stream import events_frame, synthetic_events
from mlsd_lib.features.views import FeatureStoreError
from mlsd_lib.features.windows import (
    ADS_AGGREGATIONS,
    windowed_counts_in_order,
    windowed_counts_offline,
)


def assert_same(log: pd.DataFrame) -> None:
    for aggregation in ADS_AGGREGATIONS:
        reference = windowed_counts_offline(log, aggregation)
        fast = windowed_counts_in_order(log, aggregation)
        pd.testing.assert_frame_equal(fast, reference)


def test_equals_the_reference_on_a_long_log():
    log = events_frame(synthetic_events(3_000, impressions_per_s=0.05, seed=1))
    assert_same(log)
    counts = windowed_counts_in_order(log, ADS_AGGREGATIONS[0])
    assert counts["impressions_1d"].max() > counts["impressions_1h"].max() > 0


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    rate=st.sampled_from([0.001, 0.02, 1.0]),
    users=st.integers(1, 8),
    seed=st.integers(0, 10_000),
)
def test_equals_the_reference_for_any_in_order_log(n, rate, users, seed):
    log = events_frame(
        synthetic_events(
            n, num_users=users, num_ads=3, impressions_per_s=rate, seed=seed
        )
    )
    assert_same(log)


def test_refuses_out_of_order_or_duplicated_logs():
    log = events_frame(synthetic_events(50, seed=0))
    with pytest.raises(FeatureStoreError, match="not in time order"):
        windowed_counts_in_order(log.iloc[::-1], ADS_AGGREGATIONS[0])
    with pytest.raises(FeatureStoreError, match="repeats event ids"):
        windowed_counts_in_order(
            pd.concat([log, log.iloc[-1:]], ignore_index=True), ADS_AGGREGATIONS[0]
        )
    assert np.isfinite(
        windowed_counts_in_order(log, ADS_AGGREGATIONS[1])["clicks_1h"]
    ).all()


def test_events_round_trip_through_a_frame():
    from mlsd_lib.features.event_stream import events_from_frame

    events = synthetic_events(40, seed=2)
    assert events_from_frame(events_frame(events)) == events
