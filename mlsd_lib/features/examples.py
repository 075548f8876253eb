"""A small, seeded ads world: three feature views, their event tables, and labels.

Introduced in ``notebooks/feature_store.ipynb`` and reused by
``benchmarks/feature_store.py``, so the notebook's figures and the benchmark's
numbers come from the same definitions.

Users see ad impressions; some impressions are clicked a few seconds later. Each
label is one impression (``clicked`` 0/1 at the impression's time). The
counters in ``user_stats`` and ``ad_stats`` (clicks, impressions and CTR over 1,
7 and 28 days) are written as *event tables*: one row per change, stamped when
the change reached the feature pipeline (:data:`PIPELINE_LAG` after the event).

That is where leakage comes from. A label's own click arrives after the
impression, so a point-in-time join never counts it; a join on the entity alone
(``latest_join``) takes the counters at the end of the data, and the 28-day click
count then includes the very click the row is labelled with.

Sizes are chosen for the 2 GB Binder budget: the defaults make about 40,000
impressions and event tables of about 120,000 rows each (tens of MB).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from mlsd_lib.features.views import (
    TIMESTAMP_COLUMN,
    BatchSource,
    Feature,
    FeatureRegistry,
    FeatureView,
)
from mlsd_lib.validation import require_int, require_number, require_seed

#: How long an event takes to reach the feature tables (a streaming pipeline's lag).
PIPELINE_LAG = pd.Timedelta(minutes=1)
#: The counter windows, longest last; the 28-day window spans the whole default
#: simulation, which is what makes it leak under a naive join.
WINDOWS: dict[str, pd.Timedelta] = {
    "1d": pd.Timedelta(days=1),
    "7d": pd.Timedelta(days=7),
    "28d": pd.Timedelta(days=28),
}
#: Where the simulated clock starts (a Monday, UTC).
START = pd.Timestamp("2026-01-05", tz="UTC")
NUM_INTERESTS = 25


def _counter_features(entity: str) -> tuple[Feature, ...]:
    features = []
    for window in WINDOWS:
        features += [
            Feature(f"clicks_{window}", "int64", description=f"{entity} clicks"),
            Feature(f"impressions_{window}", "int64", description=f"{entity} views"),
            Feature(f"ctr_{window}", "float32", description="clicks / impressions"),
        ]
    return tuple(features)


USER_STATS = FeatureView(
    name="user_stats",
    entities=("user_id",),
    features=_counter_features("user"),
    ttl=timedelta(days=7),
    source=BatchSource("user_events"),
    description="The user's clicks, impressions and CTR over 1, 7 and 28 days.",
)
AD_STATS = FeatureView(
    name="ad_stats",
    entities=("ad_id",),
    features=(
        *_counter_features("ad"),
        Feature("bid", "float32", description="the advertiser's bid (dollars)"),
        Feature("quality_score", "float32", description="creative quality in [0, 1]"),
        Feature("category", "int64", description="the ad's category id"),
        Feature("is_video", "bool"),
    ),
    ttl=timedelta(days=7),
    source=BatchSource("ad_events"),
    description="The ad's counters plus its static attributes.",
)
USER_PROFILE = FeatureView(
    name="user_profile",
    entities=("user_id",),
    features=(
        Feature("age_bucket", "int64"),
        Feature("tenure_days", "float32"),
        Feature("is_mobile", "bool"),
        *(Feature(f"interest_{k}", "float32") for k in range(NUM_INTERESTS)),
    ),
    ttl=timedelta(days=365),
    source=BatchSource("user_profiles"),
    description="Slowly changing profile attributes (written once at sign-up).",
)
VIEWS = (USER_STATS, AD_STATS, USER_PROFILE)


def _refs(view: FeatureView, names: list[str] | None = None) -> list[str]:
    return [f"{view.name}:{name}" for name in (names or view.feature_names)]


#: Every feature of the three views (50): the benchmark's single-entity request.
SINGLE_ENTITY_REFS = _refs(USER_STATS) + _refs(AD_STATS) + _refs(USER_PROFILE)
#: One user's 9 counters plus 11 of each candidate ad's features (20 per row).
CANDIDATE_REFS = _refs(USER_STATS) + _refs(AD_STATS, AD_STATS.feature_names[:11])
#: The inputs of the notebook's click model.
MODEL_REFS = _refs(
    USER_STATS,
    ["clicks_7d", "impressions_7d", "ctr_7d", "clicks_28d", "impressions_28d"],
) + _refs(AD_STATS, ["ctr_7d", "quality_score"])


def ads_registry() -> FeatureRegistry:
    """A registry of the three example views."""
    return FeatureRegistry(VIEWS)


@dataclass(frozen=True)
class AdsExample:
    """The simulated world: what happened, and the feature tables built from it."""

    registry: FeatureRegistry
    impressions: pd.DataFrame
    """One row per impression: ``user_id``, ``ad_id``, ``event_timestamp`` (when it
    was shown), ``clicked`` (0/1, the label) and ``click_timestamp`` (NaT if none)."""
    tables: dict[str, pd.DataFrame]
    """View name -> event table (one row per change, with ``event_timestamp``)."""
    start: pd.Timestamp
    end: pd.Timestamp


def make_ads_example(
    *,
    num_users: int = 3_000,
    num_ads: int = 100,
    days: int = 28,
    impressions_per_user_day: float = 0.5,
    seed: int = 0,
) -> AdsExample:
    """Simulate ``days`` of impressions and clicks and build the three event tables.

    The click probability depends on a hidden user propensity (which the user's
    past CTR reveals over time), the ad's quality and whether the user is on
    mobile, so honest features carry real but limited signal.
    """
    require_int("num_users", num_users, at_least=1)
    require_int("num_ads", num_ads, at_least=1)
    require_int("days", days, at_least=1)
    require_number("impressions_per_user_day", impressions_per_user_day, above=0)
    require_seed("seed", seed)
    rng = np.random.default_rng(seed)
    end = START + pd.Timedelta(days=days)
    user_propensity = rng.normal(0.0, 1.0, num_users)
    is_mobile = rng.random(num_users) < 0.6
    quality = rng.uniform(0.0, 1.0, num_ads).astype(np.float32)

    counts = rng.poisson(impressions_per_user_day * days, num_users)
    user_ids = np.repeat(np.arange(num_users, dtype=np.int64), counts)
    ad_ids = rng.integers(0, num_ads, len(user_ids)).astype(np.int64)
    shown_ms = rng.integers(0, days * 86_400_000, len(user_ids))
    logit = (
        -3.2 + user_propensity[user_ids] + 1.5 * (quality[ad_ids] - 0.5)
        + 0.4 * is_mobile[user_ids]
    )  # fmt: skip
    clicked = rng.random(len(user_ids)) < 1.0 / (1.0 + np.exp(-logit))
    clicked_ms = shown_ms + rng.integers(5_000, 120_000, len(user_ids))

    order = np.argsort(shown_ms, kind="stable")
    user_ids, ad_ids = user_ids[order], ad_ids[order]
    shown_ms, clicked_ms, clicked = shown_ms[order], clicked_ms[order], clicked[order]
    impressions = pd.DataFrame(
        {
            "user_id": user_ids,
            "ad_id": ad_ids,
            TIMESTAMP_COLUMN: START + pd.to_timedelta(shown_ms, unit="ms"),
            "clicked": clicked.astype(np.int64),
            "click_timestamp": pd.Series(
                START + pd.to_timedelta(clicked_ms, unit="ms")
            ).where(clicked),
        }
    )

    horizon_ms = days * 86_400_000
    user_events = counter_event_table(
        "user_id", user_ids, shown_ms, user_ids[clicked], clicked_ms[clicked],
        horizon_ms,
    )  # fmt: skip
    ad_events = counter_event_table(
        "ad_id", ad_ids, shown_ms, ad_ids[clicked], clicked_ms[clicked], horizon_ms
    )
    ad_attributes = pd.DataFrame(
        {
            "ad_id": np.arange(num_ads, dtype=np.int64),
            "bid": rng.gamma(2.0, 0.5, num_ads).astype(np.float32),
            "quality_score": quality,
            "category": rng.integers(0, 12, num_ads).astype(np.int64),
            "is_video": rng.random(num_ads) < 0.3,
        }
    )
    ad_events = ad_events.merge(ad_attributes, on="ad_id", how="left")
    profiles = pd.DataFrame(
        {
            "user_id": np.arange(num_users, dtype=np.int64),
            TIMESTAMP_COLUMN: START - pd.Timedelta(days=30),
            "age_bucket": rng.integers(0, 6, num_users).astype(np.int64),
            "tenure_days": rng.exponential(400.0, num_users).astype(np.float32),
            "is_mobile": is_mobile,
        }
    )
    interests = rng.normal(0.0, 1.0, (num_users, NUM_INTERESTS)).astype(np.float32)
    for k in range(NUM_INTERESTS):
        profiles[f"interest_{k}"] = interests[:, k]
    return AdsExample(
        registry=ads_registry(),
        impressions=impressions,
        tables={
            USER_STATS.name: user_events,
            AD_STATS.name: ad_events,
            USER_PROFILE.name: profiles,
        },
        start=START,
        end=end,
    )


def counter_event_table(
    entity_column: str,
    impression_entities: np.ndarray,
    impression_ms: np.ndarray,
    click_entities: np.ndarray,
    click_ms: np.ndarray,
    horizon_ms: int,
) -> pd.DataFrame:
    """Windowed click/impression counters as an event table, one row per change.

    A counter changes when an event arrives (its time plus :data:`PIPELINE_LAG`)
    and when it leaves a window (arrival plus the window length), so rows are
    written at exactly those moments, up to ``horizon_ms`` after :data:`START`.
    Each count at time ``T`` covers arrivals in ``(T - window, T]``.
    """
    lag = int(PIPELINE_LAG / pd.Timedelta(milliseconds=1))
    windows = {w: int(d / pd.Timedelta(milliseconds=1)) for w, d in WINDOWS.items()}
    # Encode (entity, time) as one int64 so every count is two searchsorted calls.
    # The span leaves a day of margin past the horizon (clicks land after their
    # impression) plus the longest window, so entities never overlap.
    latest_arrival = max(np.max(impression_ms, initial=0), np.max(click_ms, initial=0))
    span = max(horizon_ms, int(latest_arrival)) + lag + 86_400_000
    span += max(windows.values())
    imp_keys = np.sort(impression_entities * span + impression_ms + lag)
    click_keys = np.sort(click_entities * span + click_ms + lag)
    arrivals = np.concatenate([imp_keys, click_keys])
    change_keys = np.unique(
        np.concatenate([arrivals, *(arrivals + w for w in windows.values())])
    )
    change_ms = change_keys % span
    change_keys = change_keys[change_ms <= horizon_ms]
    change_ms = change_ms[change_ms <= horizon_ms]

    table = pd.DataFrame(
        {
            entity_column: (change_keys // span).astype(np.int64),
            TIMESTAMP_COLUMN: START + pd.to_timedelta(change_ms, unit="ms"),
        }
    )
    for name, width in windows.items():
        clicks = _count_in_window(click_keys, change_keys, width)
        impressions = _count_in_window(imp_keys, change_keys, width)
        table[f"clicks_{name}"] = clicks
        table[f"impressions_{name}"] = impressions
        table[f"ctr_{name}"] = (clicks / np.maximum(impressions, 1)).astype(np.float32)
    return table


def _count_in_window(sorted_keys: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """How many keys lie in ``(at - width, at]`` (same entity: keys are offset)."""
    upper = np.searchsorted(sorted_keys, at, side="right")
    lower = np.searchsorted(sorted_keys, at - width, side="right")
    return (upper - lower).astype(np.int64)
