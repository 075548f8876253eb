"""The ad-click features: batch history, real-time counts, profiles, context.

Introduced in ``casestudies/ad_click/02_data_and_features.ipynb``. The world's
impression log (:class:`~mlsd_lib.worlds.ads_log.ImpressionLog`) becomes four kinds
of features, each through the feature store so that training and serving read
the same definitions:

* **hashed ids and profiles** (``adclick_user_profile``, ``adclick_ad_profile``):
  the user's and the ad's hashed ids and attributes, for embeddings;
* **batch history** (``adclick_user_history``, ``adclick_ad_history``):
  impressions and clicks over the last 7 days, recomputed by a daily job that
  publishes at 01:00 (:data:`BATCH_LAG` after midnight) from what had arrived by
  midnight: a click still in flight at midnight is not counted yet;
* **real-time counts** (``adclick_user_1h``, ``adclick_ad_1h``): impressions
  and clicks in the last hour, from the event stream through the stream
  processor's windowed counts (:mod:`mlsd_lib.features.windows`);
* **context** (hour, device, slot): known only when the request arrives, so it
  comes from the request, not the store.

Training rows are point-in-time joins at the *request* time, one millisecond
before the impression is logged (:data:`REQUEST_LEAD`): the impression's own
event must not count in its features, because at serving time it has not
happened yet.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import torch

from mlsd_lib.datasets.ctr import CTRData, hash_ids
from mlsd_lib.features.offline import point_in_time_join
from mlsd_lib.features.views import (
    TIMESTAMP_COLUMN,
    BatchSource,
    Feature,
    FeatureRegistry,
    FeatureView,
    StreamSource,
)
from mlsd_lib.features.windows import (
    EVENT_ID_COLUMN,
    EVENT_TYPE_COLUMN,
    StreamAggregation,
    WindowedCount,
    windowed_counts_in_order,
)
from mlsd_lib.worlds.ads import CTR_CATEGORICAL, HASHED_FIELDS, AdsWorld, ImpressionLog

#: World time 0 on the calendar (a Monday, UTC): the store needs real timestamps.
WORLD_EPOCH = pd.Timestamp("2026-03-02", tz="UTC")
#: The daily batch job publishes its counters this long after midnight.
BATCH_LAG = pd.Timedelta(hours=1)
#: How far back the batch counters look.
HISTORY_DAYS = 7
#: The stream the case study's impression and click events go to.
ADCLICK_STREAM = "adclick_events"
#: Training rows are joined this long before the impression is logged.
REQUEST_LEAD = pd.Timedelta(milliseconds=1)
#: Smoothing for CTRs from counts: (clicks + a) / (impressions + a / prior).
CTR_PRIOR, CTR_PRIOR_STRENGTH = 0.04, 1.0

_DAY_S = 86_400.0


def world_time(seconds: np.ndarray) -> pd.Series:
    """World seconds as UTC timestamps (``datetime64[ns, UTC]``)."""
    return WORLD_EPOCH + pd.to_timedelta(np.asarray(seconds, dtype=np.float64), "s")


# -- views ---------------------------------------------------------------------------


def _history_view(entity: str) -> FeatureView:
    who = entity.removesuffix("_id")
    return FeatureView(
        name=f"adclick_{who}_history",
        entities=(entity,),
        features=(
            Feature("impressions_7d", "float32", 0.0, f"{who} impressions, 7 days"),
            Feature("clicks_7d", "float32", 0.0, f"{who} clicks, 7 days"),
        ),
        ttl=timedelta(days=2),
        source=BatchSource(f"adclick_{who}_daily"),
        description=f"the {who}'s last 7 days, by the daily batch job",
    )


_REALTIME_COUNTS = (
    WindowedCount("impressions_1h", "impression", timedelta(hours=1)),
    WindowedCount("clicks_1h", "click", timedelta(hours=1)),
)


def _realtime_aggregation(entity: str) -> StreamAggregation:
    who = entity.removesuffix("_id")
    view = FeatureView(
        name=f"adclick_{who}_1h",
        entities=(entity,),
        features=tuple(
            Feature(c.feature, "float32", 0.0, f"{who} {c.event_type}s, last hour")
            for c in _REALTIME_COUNTS
        ),
        ttl=timedelta(days=1),
        source=StreamSource(ADCLICK_STREAM),
        description=f"the {who}'s last hour, by the stream processor",
    )
    return StreamAggregation(view, entity, _REALTIME_COUNTS)


USER_HISTORY = _history_view("user_id")
AD_HISTORY = _history_view("ad_id")
REALTIME_AGGREGATIONS = (
    _realtime_aggregation("user_id"),
    _realtime_aggregation("ad_id"),
)
USER_REALTIME, AD_REALTIME = (a.view for a in REALTIME_AGGREGATIONS)

#: Categorical fields that come from each profile view (the rest: the request).
USER_PROFILE_FIELDS = ("user_id", "age_bucket", "gender", "country", "interest")
AD_PROFILE_FIELDS = ("ad_id", "advertiser_id", "campaign_id", "ad_category")
CONTEXT_FIELDS = ("hour", "device", "position")


def _profile_view(
    entity: str, fields: tuple[str, ...], table: str, description: str
) -> FeatureView:
    """One ``<field>_code`` feature per field: hashed ids and small attributes."""
    return FeatureView(
        name=f"adclick_{entity.removesuffix('_id')}_profile",
        entities=(entity,),
        features=tuple(
            Feature(
                f"{f}_code",
                "float32",
                0.0,
                f"{f} (hashed)" if f in HASHED_FIELDS else f,
            )
            for f in fields
        ),
        ttl=timedelta(days=3650),
        source=BatchSource(table),
        description=description,
    )


USER_PROFILE = _profile_view(
    "user_id",
    USER_PROFILE_FIELDS,
    "adclick_users",
    "the user's hashed id and attributes (slowly changing)",
)
AD_PROFILE = _profile_view(
    "ad_id",
    AD_PROFILE_FIELDS,
    "adclick_ads",
    "the ad's hashed ids and category (from the ad catalog)",
)
VIEWS = (USER_PROFILE, AD_PROFILE, USER_HISTORY, AD_HISTORY, USER_REALTIME, AD_REALTIME)

#: The counters, in the order the models' dense input uses them.
COUNTER_REFS = (
    "adclick_user_history:impressions_7d",
    "adclick_user_history:clicks_7d",
    "adclick_ad_history:impressions_7d",
    "adclick_ad_history:clicks_7d",
    "adclick_user_1h:impressions_1h",
    "adclick_user_1h:clicks_1h",
    "adclick_ad_1h:impressions_1h",
    "adclick_ad_1h:clicks_1h",
)
#: Dense columns the counters become (:class:`CounterTransform`).
COUNTER_DENSE = (
    "log_user_impressions_7d",
    "user_ctr_7d",
    "log_ad_impressions_7d",
    "ad_ctr_7d",
    "log_user_impressions_1h",
    "log_user_clicks_1h",
    "log_ad_impressions_1h",
    "log_ad_clicks_1h",
)
#: Everything a served model reads from the store, in its input column order.
PROFILE_REFS = tuple(
    f"adclick_user_profile:{f}_code" for f in USER_PROFILE_FIELDS
) + tuple(f"adclick_ad_profile:{f}_code" for f in AD_PROFILE_FIELDS)
SERVING_STORE_REFS = PROFILE_REFS + COUNTER_REFS


def feature_registry() -> FeatureRegistry:
    """The case study's six views."""
    return FeatureRegistry(VIEWS)


class CounterTransform(torch.nn.Module):
    """Raw counters (in :data:`COUNTER_REFS` order) -> model-ready dense columns.

    Counts span 0 to thousands, so they enter as ``log1p``; 7-day click counts
    become smoothed CTRs, ``(clicks + a) / (impressions + a / prior)``, which
    shrink a new user's or ad's CTR towards the prior instead of dividing by
    zero. One module for both paths: training calls it on numpy arrays
    (:func:`transform_counters`), the served model has it inside its graph, so
    the two cannot drift apart.
    """

    def forward(self, counters: torch.Tensor) -> torch.Tensor:
        c = counters.clamp(min=0.0)
        strength = CTR_PRIOR_STRENGTH
        user_ctr = (c[:, 1] + strength) / (c[:, 0] + strength / CTR_PRIOR)
        ad_ctr = (c[:, 3] + strength) / (c[:, 2] + strength / CTR_PRIOR)
        return torch.stack(
            [
                torch.log1p(c[:, 0]),
                user_ctr,
                torch.log1p(c[:, 2]),
                ad_ctr,
                torch.log1p(c[:, 4]),
                torch.log1p(c[:, 5]),
                torch.log1p(c[:, 6]),
                torch.log1p(c[:, 7]),
            ],
            dim=1,
        )


def transform_counters(counters: np.ndarray) -> np.ndarray:
    """:class:`CounterTransform` on a numpy matrix (float32)."""
    with torch.inference_mode():
        out = CounterTransform()(torch.from_numpy(np.asarray(counters, np.float32)))
    return out.numpy()


# -- event tables -------------------------------------------------------------------


def history_tables(
    log: ImpressionLog, *, window_days: int = HISTORY_DAYS
) -> dict[str, pd.DataFrame]:
    """The daily batch job's output for every midnight the log covers.

    At midnight ``d`` the job counts, per user and per ad, the impressions of
    days ``[d - window_days, d)`` and those of their clicks that had *arrived*
    by ``d``; the row is published at ``d + BATCH_LAG``. Entities with no
    impression in the window get no row (the view's default, 0, is served).
    """
    click_arrival = log.ts + np.nan_to_num(log.click_delay_s, nan=np.inf)
    first, last = int(log.day.min()), int(log.day.max())
    tables: dict[str, list[pd.DataFrame]] = {"user_id": [], "ad_id": []}
    for midnight_day in range(first + 1, last + 2):
        end = midnight_day * _DAY_S
        in_window = (log.ts < end) & (log.ts >= end - window_days * _DAY_S)
        arrived = in_window & (click_arrival < end)
        published = WORLD_EPOCH + pd.Timedelta(days=midnight_day) + BATCH_LAG
        for entity in tables:
            ids = getattr(log, entity)
            seen, inverse = np.unique(ids[in_window], return_inverse=True)
            impressions = np.bincount(inverse, minlength=len(seen))
            clicked = arrived[in_window]
            clicks = np.bincount(inverse, weights=clicked, minlength=len(seen))
            tables[entity].append(
                pd.DataFrame(
                    {
                        entity: seen.astype(np.int64),
                        TIMESTAMP_COLUMN: published,
                        "impressions_7d": impressions.astype(np.float32),
                        "clicks_7d": clicks.astype(np.float32),
                    }
                )
            )
    return {
        USER_HISTORY.name: pd.concat(tables["user_id"], ignore_index=True),
        AD_HISTORY.name: pd.concat(tables["ad_id"], ignore_index=True),
    }


def event_log(log: ImpressionLog) -> pd.DataFrame:
    """Impression and click events in time order, as producers publish them.

    A click is an event at the time it *arrives* (impression time + delay); ids
    are ``i<impression id>`` and ``c<impression id>``, stable across retries.
    """
    clicked = np.flatnonzero(log.clicked.astype(bool))
    times = np.concatenate([log.ts, log.ts[clicked] + log.click_delay_s[clicked]])
    ids = np.concatenate([log.impression_id, log.impression_id[clicked]])
    kinds = np.concatenate(
        [np.zeros(len(log), np.int8), np.ones(len(clicked), np.int8)]
    )
    order = np.lexsort((kinds, times))  # by time; an impression before its click
    prefix = np.where(kinds[order] == 0, "i", "c")
    seconds = np.round(times[order], 6)
    return pd.DataFrame(
        {
            EVENT_ID_COLUMN: pd.Series(prefix, dtype=object)
            + pd.Series(ids[order]).astype(str),
            EVENT_TYPE_COLUMN: np.where(kinds[order] == 0, "impression", "click"),
            "user_id": np.concatenate([log.user_id, log.user_id[clicked]])[order],
            "ad_id": np.concatenate([log.ad_id, log.ad_id[clicked]])[order],
            TIMESTAMP_COLUMN: world_time(seconds),
        }
    )


def realtime_tables(events: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """What the stream processor serves after each event, per view (vectorized)."""
    return {
        aggregation.view.name: windowed_counts_in_order(events, aggregation)
        for aggregation in REALTIME_AGGREGATIONS
    }


def profile_tables(
    world: AdsWorld, *, num_buckets: int = 2**17
) -> dict[str, pd.DataFrame]:
    """Every user's and ad's hashed ids and attributes, known before day 0.

    Hashing uses the same salts as
    :meth:`~mlsd_lib.worlds.ads.AdsWorld.to_ctr_data` (the field's column index),
    so a profile read from Redis equals the training row's ids.
    """
    entities = world.entities
    salts = {name: j for j, name in enumerate(CTR_CATEGORICAL)}
    known = WORLD_EPOCH - pd.Timedelta(days=1)

    def code(field: str, values: np.ndarray) -> np.ndarray:
        if field in HASHED_FIELDS:
            values = hash_ids(values, num_buckets, salt=salts[field])
        return np.asarray(values, dtype=np.float32)

    users = np.arange(world.config.num_users)
    ads = np.arange(world.config.num_ads)
    user_columns = {
        "user_id": users,
        "age_bucket": entities.user_age,
        "gender": entities.user_gender,
        "country": entities.user_country,
        "interest": entities.user_interest,
    }
    ad_columns = {
        "ad_id": ads,
        "advertiser_id": entities.ad_advertiser,
        "campaign_id": entities.ad_campaign,
        "ad_category": entities.ad_category,
    }
    user_frame = pd.DataFrame({"user_id": users, TIMESTAMP_COLUMN: known})
    for field, values in user_columns.items():
        user_frame[f"{field}_code"] = code(field, values)
    ad_frame = pd.DataFrame({"ad_id": ads, TIMESTAMP_COLUMN: known})
    for field, values in ad_columns.items():
        ad_frame[f"{field}_code"] = code(field, values)
    return {USER_PROFILE.name: user_frame, AD_PROFILE.name: ad_frame}


def feature_tables(
    world: AdsWorld, log: ImpressionLog, *, num_buckets: int = 2**17
) -> dict[str, pd.DataFrame]:
    """All six views' event tables for ``log``."""
    return {
        **profile_tables(world, num_buckets=num_buckets),
        **history_tables(log),
        **realtime_tables(event_log(log)),
    }


# -- training data -------------------------------------------------------------------


def request_frame(log: ImpressionLog) -> pd.DataFrame:
    """One label row per impression, timed at its request (before it is logged)."""
    return pd.DataFrame(
        {
            "user_id": log.user_id,
            "ad_id": log.ad_id,
            TIMESTAMP_COLUMN: world_time(log.ts) - REQUEST_LEAD,
        }
    )


def training_data(
    world: AdsWorld,
    log: ImpressionLog,
    tables: dict[str, pd.DataFrame],
    *,
    num_buckets: int = 2**17,
    label_window_s: float | None = None,
) -> CTRData:
    """The world's ids and context plus point-in-time counters, as CTRData.

    Categorical columns and context dense columns are those of
    :meth:`~mlsd_lib.worlds.ads.AdsWorld.to_ctr_data`; the counters are joined as
    of each request and transformed by :class:`CounterTransform`.
    """
    base = world.to_ctr_data(
        log, num_buckets=num_buckets, label_window_s=label_window_s
    )
    joined = point_in_time_join(
        request_frame(log), COUNTER_REFS, feature_registry(), tables
    )
    dense = np.hstack([base.dense, transform_counters(joined.matrix())])
    return CTRData(
        dense=dense.astype(np.float32),
        categorical=base.categorical,
        labels=base.labels,
        dense_names=base.dense_names + COUNTER_DENSE,
        categorical_names=base.categorical_names,
        cardinalities=base.cardinalities,
        timestamps=base.timestamps,
        true_prob=base.true_prob,
        meta={**base.meta, "counters": COUNTER_REFS},
    )
