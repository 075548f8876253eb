"""The knobs of the synthetic ads world, in one frozen dataclass.

Introduced in ``casestudies/ad_click/01_requirements_and_scale.ipynb`` (the world and
its ground truth). Every number that shapes the world lives here, so a chapter can say
"the world with ``drift_per_day=0``" and a reader can reproduce it exactly.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from mlsd_lib.validation import ParameterError, require_int, require_number

#: The device types an impression comes from, in their integer-code order.
DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")


@dataclass(frozen=True)
class AdsWorldConfig:
    """Sizes, effect strengths, drift, position bias and click delays.

    Sizes: ``num_users`` users (each with an age bucket, a gender, a country and
    one interest category), ``num_advertisers`` advertisers, each with
    ``num_campaigns / num_advertisers`` campaigns on average, and ``num_ads`` ads,
    each in one of ``num_categories`` categories (the same set of categories as
    user interests, so "interest matches category" means something).

    Effect strengths are standard deviations on the logit scale:
    ``main_effect_scale`` multiplies every main effect, ``pair_scale`` the
    2nd-order interactions, ``triple_scale`` the 3rd-order ones. ``ad_effect_sd``
    is the per-ad quality left after advertiser and campaign effects;
    ``user_effect_sd`` is each user's idiosyncratic taste, kept small on purpose:
    a user sees few ads, so a large per-user effect could not be learned and the
    best model would sit far from the Bayes-optimal one.

    ``base_ctr`` is the mean p(click) over the impressions of day 0 (the
    intercept is solved for it when the world is built).

    ``examination[k]`` is p(examine | slot k), the position bias: slot 0 is
    always seen, lower slots less often. Its length is the number of slots.

    ``drift_per_day`` is the day-to-day standard deviation of the change in each
    (interest, category) affinity (logit units); the affinities follow a
    mean-reverting random walk with time scale ``drift_timescale_days``, defined
    for days ``0 .. horizon_days - 1``. ``0`` switches drift off.

    Click delays are lognormal with median ``click_delay_median_s`` seconds and
    log-scale standard deviation ``click_delay_sigma``.

    ``targeting`` is the share of impressions whose ad is drawn from the user's
    interest category (the rest are drawn by ad popularity alone).
    """

    num_users: int = 20_000
    num_advertisers: int = 200
    num_campaigns: int = 600
    num_ads: int = 2_000
    num_categories: int = 12
    num_age_buckets: int = 6
    num_genders: int = 3
    num_countries: int = 8
    base_ctr: float = 0.04
    main_effect_scale: float = 1.0
    pair_scale: float = 1.0
    triple_scale: float = 1.0
    interest_match_boost: float = 0.8
    ad_effect_sd: float = 0.15
    user_effect_sd: float = 0.08
    examination: tuple[float, ...] = (1.0, 0.7, 0.5, 0.35, 0.25)
    drift_per_day: float = 0.1
    drift_timescale_days: float = 30.0
    horizon_days: int = 400
    click_delay_median_s: float = 1800.0
    click_delay_sigma: float = 1.2
    targeting: float = 0.3
    device_share: tuple[float, ...] = (0.6, 0.3, 0.1)

    def __post_init__(self) -> None:
        for name in (
            "num_users",
            "num_advertisers",
            "num_campaigns",
            "num_ads",
            "num_categories",
            "num_age_buckets",
            "num_genders",
            "num_countries",
            "horizon_days",
        ):
            require_int(name, getattr(self, name), at_least=1)
        if self.num_campaigns < self.num_advertisers:
            raise ParameterError(
                f"num_campaigns ({self.num_campaigns}) must be >= num_advertisers "
                f"({self.num_advertisers}): every advertiser runs a campaign."
            )
        if self.num_ads < self.num_campaigns:
            raise ParameterError(
                f"num_ads ({self.num_ads}) must be >= num_campaigns "
                f"({self.num_campaigns}): every campaign has an ad."
            )
        if not 0.0 < self.base_ctr < 1.0:
            raise ParameterError(f"base_ctr must be in (0, 1), got {self.base_ctr}.")
        exam = self.examination
        if not exam or any(not 0.0 < e <= 1.0 for e in exam):
            raise ParameterError(f"examination must be in (0, 1] per slot, got {exam}.")
        if any(b > a for a, b in itertools.pairwise(exam)):
            raise ParameterError(
                f"examination must not increase with slot, got {exam}."
            )
        require_number("drift_per_day", self.drift_per_day, at_least=0)
        require_number("drift_timescale_days", self.drift_timescale_days, above=0)
        if self.click_delay_median_s <= 0 or self.click_delay_sigma < 0:
            raise ParameterError("click_delay_median_s must be > 0, sigma >= 0.")
        if not 0.0 <= self.targeting <= 1.0:
            raise ParameterError(f"targeting must be in [0, 1], got {self.targeting}.")
        if (
            len(self.device_share) != len(DEVICES)
            or abs(sum(self.device_share) - 1.0) > 1e-9
        ):
            raise ParameterError(
                f"device_share needs {len(DEVICES)} shares summing to 1 "
                f"({', '.join(DEVICES)}), got {self.device_share}."
            )

    @property
    def num_positions(self) -> int:
        """The number of ad slots on a page (the length of ``examination``)."""
        return len(self.examination)

    @property
    def num_devices(self) -> int:
        """The number of device types (:data:`DEVICES`)."""
        return len(DEVICES)
