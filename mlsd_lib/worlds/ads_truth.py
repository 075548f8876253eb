r"""The ground truth of the ads world: its entities and the true p(click).

Introduced in ``casestudies/ad_click/01_requirements_and_scale.ipynb`` (the world and
its ground truth). A model can only be judged against the best possible model if the
best possible model is known; here it is, written down as a formula.

For user :math:`u` (age bucket :math:`a`, gender :math:`g`, country :math:`c`,
interest :math:`i`), ad :math:`x` (category :math:`k`, campaign :math:`m`,
advertiser :math:`v`), hour :math:`h`, device :math:`d`, slot :math:`s` and day
:math:`t`:

.. math::

    p(\text{click}) = e_s \cdot \sigma(z), \qquad
    z = b + \underbrace{\alpha_a + \gamma_g + \kappa_c + \iota_i + \varepsilon_u
        + \beta_k + \nu_v + \mu_m + q_x + \eta_h + \delta_d}_{\text{main effects}}
      + \underbrace{A_{ik} + D_{t,ik} + B_{ak} + G_{gk} + E_{dk}}_{\text{2nd order}}
      + \underbrace{T_{khd} + S_{agk}}_{\text{3rd order}}

* :math:`e_s` is the examination probability of slot :math:`s` (position bias:
  a user who never looks at slot 4 cannot click it, however good the ad);
* :math:`A_{ik}` is the static interest-category affinity, with a boost on the
  diagonal (a sports fan likes sports ads), and :math:`D_{t,ik}` its drift:
  a mean-reverting random walk over days, so yesterday's model is a little stale;
* :math:`T_{khd} = \tau_{kd} \cos(2\pi (h - \phi_{kd}) / 24)`: each category has
  its own daily rhythm per device (games on mobile at night, B2B on desktop at
  noon);
* :math:`\varepsilon_u` (per user) is small on purpose, :math:`q_x` (per ad) is
  learnable because every ad gets many impressions.

Effect sizes (standard deviations of the normal draws, logit units, before the
config's ``main_effect_scale`` / ``pair_scale`` / ``triple_scale``): age 0.2,
gender 0.1, country 0.25, interest 0.2, category 0.4, advertiser 0.35, campaign
0.15, ad ``ad_effect_sd`` (0.15), user ``user_effect_sd`` (0.08); hour
:math:`0.3\cos(2\pi(h-20)/24)`; device (0, -0.3, 0.15); :math:`A` 0.3 plus
``interest_match_boost`` (0.8) on the diagonal; :math:`B` 0.3, :math:`G` 0.25,
:math:`E` 0.2; :math:`|\tau|` 0.35 with a uniform phase; :math:`S` 0.25. The
intercept :math:`b` is solved so that day 0's mean p(click) is ``base_ctr``.

Why these sizes: most of the signal sits in observed attributes with few
values and their crosses, which a model can learn from a million impressions,
and only a little in per-user taste, which it cannot (a user sees few ads). So
a good feature-crossing model can come within about 1-2% of the Bayes-optimal
NE, while a main-effects-only logistic regression stays about 5% behind.

Everything is drawn once, deterministically, from the world's seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.worlds.ads_config import AdsWorldConfig


@dataclass(frozen=True)
class AdsEntities:
    """Users, advertisers, campaigns and ads, as arrays indexed by id."""

    user_age: np.ndarray
    user_gender: np.ndarray
    user_country: np.ndarray
    user_interest: np.ndarray
    user_device: np.ndarray
    user_activity: AliasTable
    campaign_advertiser: np.ndarray
    ad_campaign: np.ndarray
    ad_advertiser: np.ndarray
    ad_category: np.ndarray
    ad_popularity: AliasTable
    ad_by_category: np.ndarray
    category_offset: np.ndarray
    category_size: np.ndarray
    within_category: AliasTable


@dataclass(frozen=True)
class AdsTruth:
    """The effect tables of :math:`z` (see the module docstring), by symbol."""

    intercept: float
    age: np.ndarray  # alpha[a]
    gender: np.ndarray  # gamma[g]
    country: np.ndarray  # kappa[c]
    interest: np.ndarray  # iota[i]
    user: np.ndarray  # epsilon[u]
    category: np.ndarray  # beta[k]
    advertiser: np.ndarray  # nu[v]
    campaign: np.ndarray  # mu[m]
    ad: np.ndarray  # q[x]
    hour: np.ndarray  # eta[h]
    device: np.ndarray  # delta[d]
    interest_category: np.ndarray  # A[i, k]
    drift: np.ndarray  # D[t, i, k]
    age_category: np.ndarray  # B[a, k]
    gender_category: np.ndarray  # G[g, k]
    device_category: np.ndarray  # E[d, k]
    category_hour_device: np.ndarray  # T[k, h, d]
    age_gender_category: np.ndarray  # S[a, g, k]
    examination: np.ndarray  # e[s]


class AliasTableError(MlsdError, ValueError):
    """Weights that describe no distribution (empty, negative, NaN, all zero)."""


@dataclass(frozen=True)
class AliasTable:
    """Walker's alias method: O(1) draws from a fixed discrete distribution.

    A draw picks a column ``j`` uniformly and keeps it with probability
    ``keep[j]``, else takes ``alias[j]``: two array lookups per draw, where a
    binary search over a CDF would touch memory all over a large table.
    """

    keep: np.ndarray
    alias: np.ndarray

    @classmethod
    def build(cls, weights: np.ndarray) -> AliasTable:
        """The table for probabilities proportional to ``weights`` (Vose's build).

        The weights must be finite, non-negative and not all zero: anything else
        describes no distribution (zero weights summing to zero used to give NaN
        probabilities silently).
        """
        w = np.asarray(weights, dtype=np.float64)
        n = w.size
        if n == 0 or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise AliasTableError(
                "AliasTable.build needs weights that are finite, >= 0 and not all "
                f"zero (got {n} weights summing to {w.sum() if n else 0.0}); an "
                "empty group has no distribution to draw from: skip it."
            )
        scaled = w * (n / w.sum())
        keep = np.ones(n)
        alias = np.arange(n)
        small = [j for j in range(n) if scaled[j] < 1.0]
        large = [j for j in range(n) if scaled[j] >= 1.0]
        while small and large:
            s, g = small.pop(), large.pop()
            keep[s], alias[s] = scaled[s], g
            scaled[g] -= 1.0 - scaled[s]
            (small if scaled[g] < 1.0 else large).append(g)
        return cls(keep=keep, alias=alias)

    def probabilities(self) -> np.ndarray:
        """The distribution the table draws from (for checking)."""
        n = self.keep.size
        p = self.keep / n
        np.add.at(p, self.alias, (1.0 - self.keep) / n)
        return p

    def column(self, column: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Resolve uniform ``column`` indices with uniforms ``u`` in [0, 1)."""
        return np.where(u < self.keep[column], column, self.alias[column])

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` independent draws."""
        column = rng.integers(0, self.keep.size, n)
        return self.column(column, rng.random(n))


def draw_entities(config: AdsWorldConfig, rng: np.random.Generator) -> AdsEntities:
    """Draw the static population: who the users are, who sells what."""
    c = config
    k = c.num_categories
    user_age = rng.integers(0, c.num_age_buckets, c.num_users)
    user_gender = rng.choice(c.num_genders, c.num_users, p=_shares(c.num_genders))
    user_country = rng.choice(c.num_countries, c.num_users, p=_zipf(c.num_countries))
    user_interest = rng.choice(k, c.num_users, p=_zipf(k, 0.5))
    user_device = rng.choice(len(c.device_share), c.num_users, p=c.device_share)
    # Heavy users and light users: lognormal activity, as in real traffic.
    user_activity = rng.lognormal(0.0, 1.0, c.num_users)

    advertiser_category = rng.integers(0, k, c.num_advertisers)
    # Every advertiser runs at least one campaign; the rest go to random ones.
    campaign_advertiser = np.concatenate(
        [
            np.arange(c.num_advertisers),
            rng.integers(0, c.num_advertisers, c.num_campaigns - c.num_advertisers),
        ]
    )
    ad_campaign = np.concatenate(
        [
            np.arange(c.num_campaigns),
            rng.integers(0, c.num_campaigns, c.num_ads - c.num_campaigns),
        ]
    )
    ad_advertiser = campaign_advertiser[ad_campaign]
    # Most ads are in their advertiser's category; some advertisers branch out.
    off_category = rng.random(c.num_ads) < 0.2
    ad_category = np.where(
        off_category, rng.integers(0, k, c.num_ads), advertiser_category[ad_advertiser]
    )
    ad_popularity = rng.lognormal(0.0, 0.5, c.num_ads)

    # For targeted impressions: ads sorted by category, and one alias table per
    # category laid end to end, so a vectorized draw for any requested category
    # is an offset plus a uniform column within that category's block.
    ad_by_category = np.argsort(ad_category, kind="stable")
    category_size = np.bincount(ad_category, minlength=k)
    category_offset = np.concatenate([[0], np.cumsum(category_size)[:-1]])
    keep, alias = [], []
    for j in range(k):
        if category_size[j] == 0:  # no ad in this category: an empty block
            continue
        block = AliasTable.build(ad_popularity[ad_by_category[ad_category == j]])
        keep.append(block.keep)
        alias.append(block.alias + category_offset[j])
    within_category = AliasTable(keep=np.concatenate(keep), alias=np.concatenate(alias))

    return AdsEntities(
        user_age=user_age,
        user_gender=user_gender,
        user_country=user_country,
        user_interest=user_interest,
        user_device=user_device,
        user_activity=AliasTable.build(user_activity),
        campaign_advertiser=campaign_advertiser,
        ad_campaign=ad_campaign,
        ad_advertiser=ad_advertiser,
        ad_category=ad_category,
        ad_popularity=AliasTable.build(ad_popularity),
        ad_by_category=ad_by_category,
        category_offset=category_offset,
        category_size=category_size,
        within_category=within_category,
    )


def _shares(n: int) -> np.ndarray:
    p = np.full(n, 1.0)
    p[-1] = 0.1 if n > 1 else 1.0  # e.g. "unknown" gender is rare
    return p / p.sum()


def _zipf(n: int, exponent: float = 1.0) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return p / p.sum()


def draw_truth(
    config: AdsWorldConfig, rng: np.random.Generator, drift_rng: np.random.Generator
) -> AdsTruth:
    """Draw every effect table; the intercept is 0 until the world calibrates it.

    ``drift_rng`` is separate so that turning drift on or off leaves every other
    table, and so every other comparison, unchanged.
    """
    c = config
    k, d = c.num_categories, c.num_devices
    main, pair, triple = c.main_effect_scale, c.pair_scale, c.triple_scale

    def normal(sd: float, *shape: int) -> np.ndarray:
        return rng.normal(0.0, sd, shape)

    hours = np.arange(24)
    # Fewer clicks in the small hours, more in the evening.
    hour = main * 0.3 * np.cos(2 * np.pi * (hours - 20) / 24)
    device = main * np.array([0.0, -0.3, 0.15])
    interest_category = pair * normal(0.3, k, k) + c.interest_match_boost * np.eye(k)
    amplitude = triple * np.abs(normal(0.35, k, d))
    phase = rng.uniform(0, 24, (k, d))
    category_hour_device = amplitude[:, None, :] * np.cos(
        2 * np.pi * (hours[None, :, None] - phase[:, None, :]) / 24
    )
    truth = AdsTruth(
        intercept=0.0,
        age=main * normal(0.2, c.num_age_buckets),
        gender=main * normal(0.1, c.num_genders),
        country=main * normal(0.25, c.num_countries),
        interest=main * normal(0.2, k),
        user=normal(c.user_effect_sd, c.num_users),
        category=main * normal(0.4, k),
        advertiser=main * normal(0.35, c.num_advertisers),
        campaign=main * normal(0.15, c.num_campaigns),
        ad=normal(c.ad_effect_sd, c.num_ads),
        hour=hour,
        device=device,
        interest_category=interest_category,
        drift=_draw_drift(c, drift_rng),
        age_category=pair * normal(0.3, c.num_age_buckets, k),
        gender_category=pair * normal(0.25, c.num_genders, k),
        device_category=pair * normal(0.2, d, k),
        category_hour_device=category_hour_device,
        age_gender_category=triple * normal(0.25, c.num_age_buckets, c.num_genders, k),
        examination=np.asarray(c.examination, dtype=np.float64),
    )
    return truth


def _draw_drift(config: AdsWorldConfig, rng: np.random.Generator) -> np.ndarray:
    r"""The drift :math:`D_{t,ik}`: a stationary AR(1) walk per (interest, category).

    :math:`D_{t+1} = \rho D_t + s\,\epsilon_t` with :math:`\rho = e^{-1/\tau}`,
    :math:`s` = ``drift_per_day`` and :math:`D_0` drawn from the stationary law
    :math:`N(0, s^2 / (1 - \rho^2))`, so no day is special. ``s = 0`` gives zeros.
    """
    k = config.num_categories
    shape = (config.horizon_days, k, k)
    noise = rng.normal(0.0, 1.0, shape)  # drawn even when s = 0: same stream
    s = config.drift_per_day
    if s == 0.0:
        return np.zeros(shape)
    rho = float(np.exp(-1.0 / config.drift_timescale_days))
    drift = np.empty(shape)
    drift[0] = noise[0] * s / np.sqrt(1.0 - rho**2)
    for t in range(1, config.horizon_days):
        drift[t] = rho * drift[t - 1] + s * noise[t]
    return drift


def true_logit(
    truth: AdsTruth,
    entities: AdsEntities,
    user_id: np.ndarray,
    ad_id: np.ndarray,
    hour: np.ndarray,
    device: np.ndarray,
    day: np.ndarray | int,
) -> np.ndarray:
    r"""The logit :math:`z` of p(click | examined), term by term as documented.

    .. math::

        z = b + \alpha_a + \gamma_g + \kappa_c + \iota_i + \varepsilon_u
            + \beta_k + \nu_v + \mu_m + q_x + \eta_h + \delta_d
            + A_{ik} + D_{t,ik} + B_{ak} + G_{gk} + E_{dk} + T_{khd} + S_{agk}

    This is the readable reference; :class:`LogitTables` computes the same
    number with fewer memory gathers (a test holds the two equal).
    """
    e, w = entities, truth
    u = np.asarray(user_id)
    x = np.asarray(ad_id)
    h = np.asarray(hour)
    d = np.asarray(device)
    t = _check_day(np.asarray(day), w.drift.shape[0])
    a, g, c, i = e.user_age[u], e.user_gender[u], e.user_country[u], e.user_interest[u]
    k, m, v = e.ad_category[x], e.ad_campaign[x], e.ad_advertiser[x]
    main = (
        w.intercept
        + w.age[a]
        + w.gender[g]
        + w.country[c]
        + w.interest[i]
        + w.user[u]
        + w.category[k]
        + w.advertiser[v]
        + w.campaign[m]
        + w.ad[x]
        + w.hour[h]
        + w.device[d]
    )
    pairs = (
        w.interest_category[i, k]
        + w.drift[t, i, k]
        + w.age_category[a, k]
        + w.gender_category[g, k]
        + w.device_category[d, k]
    )
    triples = w.category_hour_device[k, h, d] + w.age_gender_category[a, g, k]
    return main + pairs + triples


def _check_day(day: np.ndarray, horizon: int) -> np.ndarray:
    if day.size and (day.min() < 0 or day.max() >= horizon):
        raise ValueError(
            f"day must be in [0, {horizon}) (the drift is drawn for horizon_days="
            f"{horizon} days); got days {day.min()}..{day.max()}. Build the world "
            f"with a larger AdsWorldConfig(horizon_days=...)."
        )
    return day


class LogitTables:
    """:func:`true_logit`, precombined into five gathers for speed.

    Terms that depend only on the user, only on the ad, only on the
    (user segment, category) pair or only on (category, hour, device) are summed
    once into one table each, so generating a million impressions costs a
    handful of array lookups instead of twenty.
    """

    def __init__(self, truth: AdsTruth, entities: AdsEntities) -> None:
        w, e = truth, entities
        num_g, num_k = w.gender.size, w.category.size
        num_h, num_d = w.hour.size, w.device.size
        self.user_part = (
            w.age[e.user_age]
            + w.gender[e.user_gender]
            + w.country[e.user_country]
            + w.interest[e.user_interest]
            + w.user
        )
        self.ad_part = (
            w.category[e.ad_category]
            + w.advertiser[e.ad_advertiser]
            + w.campaign[e.ad_campaign]
            + w.ad
        )
        # Segment = (age, gender, interest); table [segment, category].
        self.user_segment = (
            e.user_age * num_g + e.user_gender
        ) * num_k + e.user_interest
        segment_category = (
            w.interest_category[None, None, :, :]
            + w.age_category[:, None, None, :]
            + w.gender_category[None, :, None, :]
            + w.age_gender_category[:, :, None, :]
        )
        self.segment_category = segment_category.reshape(-1)
        self.num_k = num_k
        self.drift = w.drift.reshape(-1)
        context = (
            w.category_hour_device
            + w.device_category.T[:, None, :]
            + w.hour[None, :, None]
            + w.device[None, None, :]
        )
        self.context = context.reshape(-1)
        self.num_h, self.num_d = num_h, num_d
        self.intercept = w.intercept
        self.user_interest = e.user_interest
        self.ad_category = e.ad_category
        self.horizon = w.drift.shape[0]

    def __call__(
        self,
        user_id: np.ndarray,
        ad_id: np.ndarray,
        hour: np.ndarray,
        device: np.ndarray,
        day: np.ndarray | int,
    ) -> np.ndarray:
        """The logit of p(click | examined); same as :func:`true_logit`."""
        k = self.ad_category[ad_id]
        nk = self.num_k
        t = _check_day(np.asarray(day), self.horizon)
        i = self.user_interest[user_id]
        z = self.user_part[user_id] + self.ad_part[ad_id]
        z += self.segment_category[self.user_segment[user_id] * nk + k]
        z += self.drift[(t * nk + i) * nk + k]
        z += self.context[(k * self.num_h + hour) * self.num_d + device]
        return z + self.intercept
