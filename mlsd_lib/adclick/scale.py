"""The ad-click case study's numbers: production requirements, what the
synthetic world measures, and the small estimators the follow-ups use.

Introduced in ``casestudies/ad_click/01_requirements_and_scale.ipynb`` (the
requirements, :func:`production_requirements`, :func:`profile_world`,
:func:`ctr_by_position`, :func:`replicas_needed`) and used again in
``casestudies/ad_click/07_interview_followups.ipynb`` (:func:`shrunk_ctr`,
:func:`hierarchical_ctr`, :func:`gsp_auction`, :func:`candidate_log`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.capacity import Requirements
from mlsd_lib.errors import MlsdError
from mlsd_lib.worlds.ads import AdsWorld, ImpressionLog
from mlsd_lib.worlds.ads_log import IMPRESSION_ID_STRIDE


class ScaleInputError(MlsdError, ValueError):
    """A sizing input is out of range (a negative load, a prior strength < 0)."""


def production_requirements(**overrides: float) -> Requirements:
    """The assumptions of ``casestudies/ad_click/index.md`` as
    :class:`~mlsd_lib.capacity.Requirements`.

    100 M daily active users, 30 ad requests each per day, peak = 3 x average,
    200 candidate ads scored per request; online user features for 200 M
    monthly users at 280 bytes each (batch profile 200 B + streaming counters
    80 B), kept twice (primary + replica); 400 bytes of ad features per scored
    candidate; one 500-byte impression record per request kept 90 days;
    2 kB per request and 1.6 kB per response at the edge (200 x (ad id, pCTR)).
    Keyword arguments override any field.
    """
    values: dict[str, float] = {
        "daily_active_users": 100e6,
        "requests_per_user_per_day": 30,
        "peak_to_average": 3.0,
        "candidates_per_request": 200,
        "feature_entities": 200e6,
        "bytes_per_entity": 280,
        "replication": 2,
        "bytes_per_feature_vector": 400,
        "events_per_request": 1,
        "bytes_per_event": 500,
        "retention_days": 90,
        "bytes_per_request": 2_000,
        "bytes_per_response": 1_600,
    }
    values.update(overrides)
    return Requirements(**values)  # type: ignore[arg-type]


def replicas_needed(
    load_per_s: float, capacity_per_replica_s: float, target_utilization: float = 0.6
) -> int:
    """Replicas to serve ``load_per_s`` when each may run at ``target_utilization``.

    ``ceil(load / (capacity x utilization))``: planning at 60% of a replica's
    measured throughput leaves room for a replica failure and for queueing,
    which grows sharply as utilization nears 1.
    """
    if load_per_s < 0 or capacity_per_replica_s <= 0:
        raise ScaleInputError(
            f"load must be >= 0 and capacity > 0, got {load_per_s} and "
            f"{capacity_per_replica_s}."
        )
    if not 0.0 < target_utilization <= 1.0:
        raise ScaleInputError(
            f"target_utilization must be in (0, 1], got {target_utilization}."
        )
    return max(1, math.ceil(load_per_s / (capacity_per_replica_s * target_utilization)))


def share_arrived_after(delays_s: np.ndarray, seconds: float) -> float:
    """Share of clicks (non-NaN delays) that arrive more than ``seconds`` late."""
    d = np.asarray(delays_s, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        raise ScaleInputError("no click delays: the log has no clicks.")
    return float(np.mean(d > seconds))


@dataclass(frozen=True)
class WorldProfile:
    """The ratios a slice of the world measures (see :func:`profile_world`)."""

    impressions: int
    clicks: int
    ctr: float
    mean_true_p: float
    active_users: int
    impressions_per_active_user: float
    active_ads: int
    click_delay_median_s: float
    click_delay_p95_s: float
    share_after_5min: float
    share_after_30min: float
    share_after_1h: float
    share_after_6h: float

    def to_frame(self) -> pd.DataFrame:
        """One row per measured quantity."""
        return pd.DataFrame(
            {"quantity": list(self.__dict__), "value": list(self.__dict__.values())}
        )


def profile_world(log: ImpressionLog) -> WorldProfile:
    """Base CTR, traffic per user and ad, and the click-delay distribution."""
    delays = log.click_delay_s[~np.isnan(log.click_delay_s)]
    users = np.unique(log.user_id).size
    return WorldProfile(
        impressions=len(log),
        clicks=int(log.clicked.sum()),
        ctr=log.ctr,
        mean_true_p=float(np.mean(log.true_p)),
        active_users=users,
        impressions_per_active_user=len(log) / users,
        active_ads=int(np.unique(log.ad_id).size),
        click_delay_median_s=float(np.median(delays)),
        click_delay_p95_s=float(np.quantile(delays, 0.95)),
        share_after_5min=share_arrived_after(delays, 300),
        share_after_30min=share_arrived_after(delays, 1_800),
        share_after_1h=share_arrived_after(delays, 3_600),
        share_after_6h=share_arrived_after(delays, 6 * 3_600),
    )


def ctr_by_position(log: ImpressionLog, examination: tuple[float, ...]) -> pd.DataFrame:
    """Observed CTR per slot next to the world's examination curve.

    ``ctr_vs_slot0`` is each slot's CTR over slot 0's; when slots are assigned
    at random (as the world does) it estimates ``examination[k] /
    examination[0]``, because relevance averages out over the slot.
    """
    exam = np.asarray(examination, dtype=np.float64)
    k = exam.size
    impressions = np.bincount(log.position, minlength=k)
    clicks = np.bincount(log.position, weights=log.clicked, minlength=k)
    true_p = np.bincount(log.position, weights=log.true_p, minlength=k)
    ctr = clicks / np.maximum(impressions, 1)
    return pd.DataFrame(
        {
            "position": np.arange(k),
            "impressions": impressions,
            "ctr": ctr,
            "mean_true_p": true_p / np.maximum(impressions, 1),
            "ctr_vs_slot0": ctr / ctr[0],
            "examination": exam / exam[0],
        }
    )


def shrunk_ctr(
    clicks: np.ndarray | float,
    impressions: np.ndarray | float,
    prior_ctr: np.ndarray | float,
    prior_strength: float,
) -> np.ndarray:
    """``(clicks + m * prior) / (impressions + m)``: CTR shrunk towards a prior.

    The posterior mean of a Beta(m * prior, m * (1 - prior)) prior after the
    observed clicks: ``m`` pseudo-impressions at the prior's CTR. With no
    impressions it is the prior; with many it is the raw CTR.
    """
    if prior_strength < 0:
        raise ScaleInputError(f"prior_strength must be >= 0, got {prior_strength}.")
    c = np.asarray(clicks, dtype=np.float64)
    n = np.asarray(impressions, dtype=np.float64)
    return (c + prior_strength * np.asarray(prior_ctr, dtype=np.float64)) / (
        n + prior_strength
    )


def hierarchical_ctr(
    log: ImpressionLog,
    num_ads: int,
    ad_campaign: np.ndarray,
    ad_advertiser: np.ndarray,
    ad_category: np.ndarray,
    prior_strength: float = 200.0,
) -> np.ndarray:
    """Per-ad CTR backed off ad -> campaign -> advertiser -> category -> global.

    Each level is :func:`shrunk_ctr` towards its parent's estimate with
    ``prior_strength`` pseudo-impressions, so an ad with no history gets its
    campaign's CTR, a new campaign its advertiser's, and so on. Returns one
    estimate per ad id (``num_ads`` entries).
    """
    global_ctr = log.ctr

    def counts(ids: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.bincount(ids, weights=log.clicked, minlength=size),
            np.bincount(ids, minlength=size).astype(np.float64),
        )

    num_categories = int(ad_category.max()) + 1
    num_advertisers = int(ad_advertiser.max()) + 1
    num_campaigns = int(ad_campaign.max()) + 1
    c, n = counts(log.ad_category, num_categories)
    category = shrunk_ctr(c, n, global_ctr, prior_strength)
    # An advertiser's parent is the category of most of its ads.
    adv_category = np.zeros(num_advertisers, dtype=np.int64)
    for adv in range(num_advertisers):
        cats = ad_category[ad_advertiser == adv]
        adv_category[adv] = np.bincount(cats).argmax() if cats.size else 0
    c, n = counts(log.advertiser_id, num_advertisers)
    advertiser = shrunk_ctr(c, n, category[adv_category], prior_strength)
    campaign_advertiser = np.zeros(num_campaigns, dtype=np.int64)
    campaign_advertiser[ad_campaign] = ad_advertiser
    c, n = counts(log.campaign_id, num_campaigns)
    campaign = shrunk_ctr(c, n, advertiser[campaign_advertiser], prior_strength)
    c, n = counts(log.ad_id, num_ads)
    return shrunk_ctr(c, n, campaign[ad_campaign], prior_strength)


@dataclass(frozen=True)
class AuctionOutcome:
    """Per auction: the winner's column, its price per click, and its score."""

    winner: np.ndarray
    price_per_click: np.ndarray
    score: np.ndarray


def gsp_auction(bids: np.ndarray, pctr: np.ndarray) -> AuctionOutcome:
    """Generalized second-price auctions, one per row of ``(auctions, ads)``.

    Rank by ``bid x pCTR``; the winner pays, per click, the smallest bid that
    still beats the runner-up: ``bid_2 x pCTR_2 / pCTR_1``. A miscalibrated
    pCTR that changes the order or the ratio changes who wins and what is paid.
    """
    bids = np.asarray(bids, dtype=np.float64)
    pctr = np.asarray(pctr, dtype=np.float64)
    if bids.shape != pctr.shape or bids.ndim != 2 or bids.shape[1] < 2:
        raise ScaleInputError(
            f"bids and pctr must both be (auctions, ads >= 2), got {bids.shape} "
            f"and {pctr.shape}."
        )
    score = bids * pctr
    order = np.argsort(-score, axis=1, kind="stable")
    winner, second = order[:, 0], order[:, 1]
    rows = np.arange(len(bids))
    price = score[rows, second] / pctr[rows, winner]
    return AuctionOutcome(
        winner=winner, price_per_click=price, score=score[rows, winner]
    )


def candidate_log(
    world: AdsWorld,
    user_id: np.ndarray,
    ad_id: np.ndarray,
    hour: np.ndarray,
    device: np.ndarray,
    position: np.ndarray,
    day: int,
) -> ImpressionLog:
    """An :class:`~mlsd_lib.worlds.ads_log.ImpressionLog` for chosen candidates.

    The candidates are (user, ad, context) triples. What a ranker scores before
    the auction: every column filled from the world's entities, ``true_p`` from
    :meth:`~mlsd_lib.worlds.ads.AdsWorld.click_probability`, and no clicks
    (nothing has been shown yet). Feed it to ``world.to_ctr_data``.
    """
    e = world.entities
    user_id = np.asarray(user_id, dtype=np.int64)
    ad_id = np.asarray(ad_id, dtype=np.int64)
    n = user_id.size
    hour = np.broadcast_to(np.asarray(hour, dtype=np.int64), (n,)).copy()
    device = np.broadcast_to(np.asarray(device, dtype=np.int64), (n,)).copy()
    position = np.broadcast_to(np.asarray(position, dtype=np.int64), (n,)).copy()
    return ImpressionLog(
        impression_id=day * IMPRESSION_ID_STRIDE + np.arange(n, dtype=np.int64),
        ts=day * 86_400.0 + hour * 3_600.0,
        day=np.full(n, day, dtype=np.int64),
        hour=hour,
        user_id=user_id,
        ad_id=ad_id,
        campaign_id=e.ad_campaign[ad_id].astype(np.int64),
        advertiser_id=e.ad_advertiser[ad_id].astype(np.int64),
        ad_category=e.ad_category[ad_id].astype(np.int64),
        age_bucket=e.user_age[user_id].astype(np.int64),
        gender=e.user_gender[user_id].astype(np.int64),
        country=e.user_country[user_id].astype(np.int64),
        interest=e.user_interest[user_id].astype(np.int64),
        device=device,
        position=position,
        true_p=world.click_probability(user_id, ad_id, hour, device, position, day),
        clicked=np.zeros(n, dtype=np.int8),
        click_delay_s=np.full(n, np.nan),
    )
