"""The synthetic ads world: users see ads, some click, and the truth is known.

Introduced in ``casestudies/ad_click/01_requirements_and_scale.ipynb`` (the world and
its ground truth). Real click logs never tell you how good a model *could* be; this
world does. It holds

* users (age bucket, gender, country, interest category, a preferred device),
  advertisers, campaigns and ads (category, advertiser, campaign, quality);
* contexts: hour of day (traffic follows a daily curve), device, slot position;
* a documented true p(click) (:mod:`mlsd_lib.worlds.ads_truth`): main effects,
  2nd-order interactions (interest x category, age x category, gender x category,
  device x category), 3rd-order ones (category x hour x device, age x gender x
  category), position bias ``p = examination[slot] * sigmoid(z)``, and drift of
  the interest x category affinities across days;
* delayed clicks: a click arrives a lognormal delay after its impression
  (median ``click_delay_median_s``, tail to hours).

Because ``true_p`` is logged next to every label, the Bayes-optimal log loss and
normalized entropy (NE) of any evaluation set are one function call away
(:func:`bayes_normalized_entropy`), and a model's NE can be reported as a ratio
to it.

Generation is vectorized and seeded: day ``t`` of a world is always the same
whatever else was simulated, so ``simulate(days=2)`` equals ``simulate(1)``
followed by ``simulate(1, start_day=1)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mlsd_lib.datasets.ctr import CTRData, hash_ids
from mlsd_lib.evaluation.metrics import log_loss
from mlsd_lib.validation import require_int, require_number, require_seed
from mlsd_lib.worlds.ads_config import DEVICES, AdsWorldConfig
from mlsd_lib.worlds.ads_log import IMPRESSION_ID_STRIDE, ImpressionLog
from mlsd_lib.worlds.ads_truth import (
    AdsEntities,
    AdsTruth,
    LogitTables,
    draw_entities,
    draw_truth,
    true_logit,
)

__all__ = [
    "DEVICES",
    "AdsWorld",
    "AdsWorldConfig",
    "ImpressionLog",
    "bayes_normalized_entropy",
    "normalized_entropy",
    "traffic_by_hour",
]

SECONDS_PER_DAY = 86_400.0

#: Categorical fields of :meth:`AdsWorld.to_ctr_data`, in column order.
CTR_CATEGORICAL = (
    "user_id",
    "ad_id",
    "advertiser_id",
    "campaign_id",
    "ad_category",
    "age_bucket",
    "gender",
    "country",
    "interest",
    "hour",
    "device",
    "position",
)
#: The id fields hashed into ``num_buckets``; the others keep their raw value.
HASHED_FIELDS = ("user_id", "ad_id", "advertiser_id", "campaign_id")
#: Dense fields of :meth:`AdsWorld.to_ctr_data`.
CTR_DENSE = ("hour_sin", "hour_cos", "position")


def traffic_by_hour() -> np.ndarray:
    """Share of a day's impressions in each hour: low at 4 am, peak at 8 pm."""
    hours = np.arange(24)
    weight = 1.0 + 0.6 * np.cos(2 * np.pi * (hours - 20) / 24)
    return weight / weight.sum()


def _entropy(p: float) -> float:
    if not 0.0 < p < 1.0:
        raise ValueError(
            f"NE needs a click rate strictly between 0 and 1, got {p}: the set "
            "has no clicks or only clicks, so its base-rate entropy is 0."
        )
    return float(-(p * np.log(p) + (1 - p) * np.log1p(-p)))


def normalized_entropy(labels: np.ndarray, p: np.ndarray) -> float:
    """Normalized entropy (He et al. 2014): log loss over the base-rate entropy.

    ``NE = logloss(labels, p) / H(ctr)`` with ``H(c) = -(c log c + (1-c)
    log(1-c))`` and ``ctr`` the empirical click rate of the evaluated set. A
    model that predicts the set's own CTR for everyone scores exactly 1; lower
    is better. Dividing by ``H`` makes days with different CTRs comparable.
    """
    labels = np.asarray(labels)
    return log_loss(labels, p) / _entropy(float(np.mean(labels)))


def bayes_normalized_entropy(true_p: np.ndarray, labels: np.ndarray) -> float:
    """The NE of the true probabilities: the best any model can do on this set."""
    return normalized_entropy(labels, true_p)


class AdsWorld:
    """A seeded ads world: static entities, a true p(click), daily traffic.

    Everything static (users, ads, effect tables, the drift path) is drawn from
    ``seed`` when the world is built; traffic for day ``t`` is drawn from
    ``(seed, t)`` (and the optional ``simulate`` seed), so days can be simulated
    in any order or in pieces and agree.
    """

    def __init__(self, config: AdsWorldConfig | None = None, seed: int = 0) -> None:
        self.config = config or AdsWorldConfig()
        self.seed = require_seed("seed", seed)
        entity_rng, truth_rng, drift_rng, calib_rng = (
            np.random.default_rng(s)
            for s in np.random.SeedSequence([self.seed, 0xAD5]).spawn(4)
        )
        self.entities: AdsEntities = draw_entities(self.config, entity_rng)
        truth = draw_truth(self.config, truth_rng, drift_rng)
        self._tables = LogitTables(truth, self.entities)
        intercept = self._calibrate_intercept(calib_rng)
        self.truth: AdsTruth = dataclasses.replace(truth, intercept=intercept)
        self._tables = LogitTables(self.truth, self.entities)
        self._traffic = traffic_by_hour()

    # -- the true probability -------------------------------------------------

    def _calibrate_intercept(self, rng: np.random.Generator) -> float:
        """The intercept b that makes day 0's mean p(click) equal ``base_ctr``."""
        n = 200_000
        cols = self._draw_impressions(rng, n, day=0, hour=None)
        z = self._tables(
            cols["user_id"], cols["ad_id"], cols["hour"], cols["device"], 0
        )
        exam = np.asarray(self.config.examination)[cols["position"]]
        lo, hi = -20.0, 20.0
        for _ in range(60):  # bisection: mean p is increasing in b
            mid = 0.5 * (lo + hi)
            if np.mean(exam / (1.0 + np.exp(-(z + mid)))) < self.config.base_ctr:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    def true_logit(
        self,
        user_id: np.ndarray,
        ad_id: np.ndarray,
        hour: np.ndarray,
        device: np.ndarray,
        day: np.ndarray | int,
    ) -> np.ndarray:
        """The logit of p(click | examined): the formula in :mod:`.ads_truth`.

        ``z = b + main effects + A[i,k] + D[t,i,k] + B[a,k] + G[g,k] + E[d,k]
        + T[k,h,d] + S[a,g,k]`` (see :func:`mlsd_lib.worlds.ads_truth.true_logit`
        for every symbol). Position is not in ``z``: it enters through the
        examination probability in :meth:`click_probability`.
        """
        return self._tables(
            np.asarray(user_id),
            np.asarray(ad_id),
            np.asarray(hour),
            np.asarray(device),
            day,
        )

    def reference_logit(
        self,
        user_id: np.ndarray,
        ad_id: np.ndarray,
        hour: np.ndarray,
        device: np.ndarray,
        day: np.ndarray | int,
    ) -> np.ndarray:
        """:meth:`true_logit` computed term by term (slower; for checking)."""
        return true_logit(self.truth, self.entities, user_id, ad_id, hour, device, day)

    def click_probability(
        self,
        user_id: np.ndarray,
        ad_id: np.ndarray,
        hour: np.ndarray,
        device: np.ndarray,
        position: np.ndarray,
        day: np.ndarray | int,
    ) -> np.ndarray:
        """True p(click) = ``examination[position] * sigmoid(true_logit(...))``.

        For any (user, ad, context, day) arrays, broadcast together: this is how
        a serving experiment samples clicks for the slate its ranker chose.
        """
        z = self.true_logit(user_id, ad_id, hour, device, day)
        exam = self.truth.examination[np.asarray(position)]
        return exam / (1.0 + np.exp(-z))

    true_probability = click_probability

    @staticmethod
    def sample_clicks(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Bernoulli draws with probabilities ``p``, as int8 0/1."""
        return (rng.random(np.shape(p)) < p).astype(np.int8)

    def sample_click_delays(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` click delays (seconds): lognormal, median ``click_delay_median_s``."""
        c = self.config
        return rng.lognormal(np.log(c.click_delay_median_s), c.click_delay_sigma, n)

    # -- traffic --------------------------------------------------------------

    def _draw_impressions(
        self,
        rng: np.random.Generator,
        n: int,
        day: int,
        hour: np.ndarray | None,
    ) -> dict[str, np.ndarray]:
        """Who sees which ad where: users by activity, ads by popularity or
        targeting, device mostly the user's own, slot uniform (a randomized
        layout, so position is not confounded with ad quality)."""
        c, e = self.config, self.entities
        if hour is None:
            hour = rng.choice(24, n, p=traffic_by_hour())
        user = e.user_activity.sample(rng, n)
        ad = e.ad_popularity.sample(rng, n)
        targeted = np.flatnonzero(rng.random(n) < c.targeting)
        wanted = e.user_interest[user[targeted]]
        size = e.category_size[wanted]
        has_ads = size > 0  # a category may have no ads: keep the popular draw
        targeted, wanted, size = targeted[has_ads], wanted[has_ads], size[has_ads]
        column = e.category_offset[wanted] + (rng.random(targeted.size) * size).astype(
            np.int64
        )
        column = np.minimum(column, e.category_offset[wanted] + size - 1)
        sorted_slot = e.within_category.column(column, rng.random(targeted.size))
        ad[targeted] = e.ad_by_category[sorted_slot]
        other_device = np.searchsorted(
            np.cumsum(c.device_share)[:-1], rng.random(n), side="right"
        )
        device = np.where(rng.random(n) < 0.8, e.user_device[user], other_device)
        position = rng.integers(0, c.num_positions, n)
        return {
            "hour": hour,
            "user_id": user,
            "ad_id": ad,
            "device": device,
            "position": position,
        }

    def _day_rng(self, day: int, seed: int | None) -> np.random.Generator:
        key = [self.seed, day, 0 if seed is None else 1, 0 if seed is None else seed]
        return np.random.default_rng(np.random.SeedSequence(key))

    def _simulate_day(self, day: int, n: int, seed: int | None) -> ImpressionLog:
        rng = self._day_rng(day, seed)
        e = self.entities
        # Sorted timestamps without a sort: sorted uniforms are normalized
        # cumulative sums of exponentials, mapped through the inverse CDF of the
        # (piecewise-constant) hourly traffic; every other column is then drawn
        # for rows already in time order.
        gaps = rng.standard_exponential(n + 1)
        u = np.cumsum(gaps)[:-1] / gaps.sum()
        cdf = np.concatenate([[0.0], np.cumsum(self._traffic)])
        seconds = np.interp(u, cdf, np.arange(25) * 3600.0)
        hour = np.minimum((seconds // 3600).astype(np.int64), 23)
        ts = seconds + day * SECONDS_PER_DAY
        cols = self._draw_impressions(rng, n, day, hour)
        user, ad = cols["user_id"], cols["ad_id"]
        p = self.click_probability(
            user, ad, hour, cols["device"], cols["position"], day
        )
        clicked = self.sample_clicks(p, rng)
        delay = np.full(n, np.nan)
        is_click = clicked.astype(bool)
        delay[is_click] = self.sample_click_delays(int(is_click.sum()), rng)
        return ImpressionLog(
            impression_id=day * IMPRESSION_ID_STRIDE + np.arange(n, dtype=np.int64),
            ts=ts,
            day=np.full(n, day, dtype=np.int64),
            hour=hour.astype(np.int64, copy=False),
            user_id=user.astype(np.int64, copy=False),
            ad_id=ad.astype(np.int64, copy=False),
            campaign_id=e.ad_campaign[ad].astype(np.int64, copy=False),
            advertiser_id=e.ad_advertiser[ad].astype(np.int64, copy=False),
            ad_category=e.ad_category[ad].astype(np.int64, copy=False),
            age_bucket=e.user_age[user].astype(np.int64, copy=False),
            gender=e.user_gender[user].astype(np.int64, copy=False),
            country=e.user_country[user].astype(np.int64, copy=False),
            interest=e.user_interest[user].astype(np.int64, copy=False),
            device=cols["device"].astype(np.int64, copy=False),
            position=cols["position"].astype(np.int64, copy=False),
            true_p=p,
            clicked=clicked,
            click_delay_s=delay,
        )

    def simulate(
        self,
        days: int,
        impressions_per_day: int,
        start_day: int = 0,
        seed: int | None = None,
    ) -> ImpressionLog:
        """``days`` days of traffic from ``start_day``, ``impressions_per_day`` each.

        Day ``t`` depends only on the world, ``t`` and ``seed`` (``None``: the
        world's own stream), so consecutive calls continue consistently: ids and
        timestamps keep increasing, entities are the same, and drift is
        evaluated at the absolute day.
        """
        days = require_int("days", days, at_least=1)
        # Below the id stride, so impression ids stay unique across days.
        impressions_per_day = require_int(
            "impressions_per_day",
            impressions_per_day,
            at_least=1,
            at_most=IMPRESSION_ID_STRIDE - 1,
        )
        start_day = require_int("start_day", start_day, at_least=0)
        if seed is not None:
            require_seed("seed", seed)
        logs = [
            self._simulate_day(day, impressions_per_day, seed)
            for day in range(start_day, start_day + days)
        ]
        return logs[0] if len(logs) == 1 else ImpressionLog.concat(logs)

    # -- data sets and the best possible model ---------------------------------

    def field_cardinalities(self, num_buckets: int) -> dict[str, int]:
        """Bucket count of each categorical field of :meth:`to_ctr_data`."""
        c = self.config
        raw = {
            "ad_category": c.num_categories,
            "age_bucket": c.num_age_buckets,
            "gender": c.num_genders,
            "country": c.num_countries,
            "interest": c.num_categories,
            "hour": 24,
            "device": c.num_devices,
            "position": c.num_positions,
        }
        return {
            name: num_buckets if name in HASHED_FIELDS else raw[name]
            for name in CTR_CATEGORICAL
        }

    def to_ctr_data(
        self,
        log: ImpressionLog,
        *,
        num_buckets: int = 2**17,
        label_window_s: float | None = None,
    ) -> CTRData:
        """The log as :class:`~mlsd_lib.datasets.ctr.CTRData`, the models' input.

        Id fields (user, ad, advertiser, campaign) are hashed into
        ``num_buckets`` buckets each (salt = the field's column index); small
        fields (category, user attributes, hour, device, position) keep their
        raw value, with their own cardinality. Dense: ``sin``/``cos`` of the hour
        and the slot number.

        ``label_window_s``: count a click only if it arrived within this many
        seconds of the impression; the delayed-feedback view of a log that is
        read before every click is in. ``None`` counts every eventual click.
        """
        num_buckets = require_int("num_buckets", num_buckets, at_least=1)
        if label_window_s is not None:
            require_number("label_window_s", label_window_s, above=0)
        cards = self.field_cardinalities(num_buckets)
        categorical = np.empty((len(log), len(CTR_CATEGORICAL)), dtype=np.int64)
        for j, name in enumerate(CTR_CATEGORICAL):
            values = getattr(log, name)
            if name in HASHED_FIELDS:
                categorical[:, j] = hash_ids(values, num_buckets, salt=j)
            else:
                categorical[:, j] = values
        angle = 2 * np.pi * log.hour / 24.0
        dense = np.column_stack([np.sin(angle), np.cos(angle), log.position]).astype(
            np.float32
        )
        labels = log.clicked.astype(bool)
        if label_window_s is not None:
            with np.errstate(invalid="ignore"):
                labels &= log.click_delay_s <= label_window_s
        return CTRData(
            dense=dense,
            categorical=categorical,
            labels=labels.astype(np.float32),
            dense_names=CTR_DENSE,
            categorical_names=CTR_CATEGORICAL,
            cardinalities=tuple(cards[name] for name in CTR_CATEGORICAL),
            timestamps=log.ts.copy(),
            true_prob=log.true_p.copy(),
            meta={
                "source": "mlsd_lib.worlds.ads",
                "world_seed": self.seed,
                "label_window_s": label_window_s,
            },
        )

    @staticmethod
    def bayes_log_loss(log: ImpressionLog) -> float:
        """Log loss of the true probabilities on ``log``: no model can beat it
        in expectation."""
        return log_loss(log.clicked, log.true_p)

    @staticmethod
    def bayes_normalized_entropy(log: ImpressionLog) -> float:
        """NE of the true probabilities on ``log`` (see :func:`normalized_entropy`)."""
        return bayes_normalized_entropy(log.true_p, log.clicked)
