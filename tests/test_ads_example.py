"""Data tests for the example ads world: seeded, and leaky only under a naive join."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd_lib.features.examples import (
    CANDIDATE_REFS,
    PIPELINE_LAG,
    SINGLE_ENTITY_REFS,
    make_ads_example,
)
from mlsd_lib.features.offline import latest_join, point_in_time_join
from mlsd_lib.features.validation import epoch_seconds, validate_rows


@pytest.fixture(scope="module")
def world():
    return make_ads_example(num_users=60, num_ads=10, days=28, seed=5)


def test_same_seed_same_world(world) -> None:
    again = make_ads_example(num_users=60, num_ads=10, days=28, seed=5)
    pd.testing.assert_frame_equal(world.impressions, again.impressions)
    for name, table in world.tables.items():
        pd.testing.assert_frame_equal(table, again.tables[name])


def test_tables_fit_their_views_and_request_sizes(world) -> None:
    for view in world.registry.views:
        validate_rows(view, world.tables[view.name])  # raises on a mismatch
    assert len(SINGLE_ENTITY_REFS) == 50
    assert len(CANDIDATE_REFS) == 20


def test_point_in_time_counts_only_clicks_that_arrived_before(world) -> None:
    labels = world.impressions
    pit = point_in_time_join(labels, ["user_stats:clicks_28d"], world.registry,
                             world.tables).matrix()[:, 0]  # fmt: skip
    clicks = labels.dropna(subset=["click_timestamp"])
    arrival_s = epoch_seconds(clicks["click_timestamp"] + PIPELINE_LAG)
    arrived = pd.Series(arrival_s).groupby(clicks.user_id.to_numpy()).apply(np.sort)
    label_s = epoch_seconds(labels.event_timestamp)
    expected = [
        np.searchsorted(arrived.get(u, np.array([])), t, side="right")
        for u, t in zip(labels.user_id, label_s, strict=True)
    ]
    np.testing.assert_array_equal(pit, expected)


def test_latest_join_includes_the_labels_own_click(world) -> None:
    labels = world.impressions
    leaky = latest_join(
        labels, ["user_stats:clicks_28d"], world.registry, world.tables
    ).matrix()[:, 0]
    honest = point_in_time_join(
        labels, ["user_stats:clicks_28d"], world.registry, world.tables
    ).matrix()[:, 0]
    clicked = labels.clicked.to_numpy() == 1
    assert clicked.any()
    assert (leaky[clicked] >= 1).all()  # every clicked row sees its own click
    assert (leaky >= honest).all()
    assert (leaky > honest).mean() > 0.25  # most rows see later clicks
