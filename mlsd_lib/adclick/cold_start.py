"""Cold-start ads as bandit arms: true click rates, campaign priors, arrivals.

Introduced in ``casestudies/ad_click/07_interview_followups.ipynb`` (exploration for
cold-start ads). :func:`cold_start_arms` turns the ads world into the
:class:`~mlsd_lib.reranking.bandit_stream.ArmStream` that
:func:`~mlsd_lib.reranking.bandit_stream.simulate_stream` runs a policy over:

* **true click rate** of each ad: its mean ``p(click | examined)`` over a sample
  of the day's traffic (users, hours, devices as the world draws them), the
  number a perfectly informed ranker would sort by (no personalization: the
  question is how fast an ad's *own* rate is learned);
* **history**: the ads already running keep the clicks and examined impressions
  of ``history`` (a logged day; ``examination[slot]`` per impression, so the
  counts are position-free);
* **new ads**: ``num_new`` ads drawn at random lose their history and arrive at
  evenly spaced requests over the first ``arrive_within`` share of the stream;
  their prior is their campaign's click rate *without them* (the leave-ad-out
  backoff of the first follow-up), shrunk towards the global rate.
"""

from __future__ import annotations

import numpy as np

from mlsd_lib.adclick.scale import shrunk_ctr
from mlsd_lib.errors import MlsdError
from mlsd_lib.reranking.bandit_stream import ArmStream
from mlsd_lib.worlds.ads import AdsWorld, ImpressionLog

__all__ = ["ColdStartInputError", "cold_start_arms", "true_ad_ctr"]


class ColdStartInputError(MlsdError, ValueError):
    """The cold-start set-up asks for something the world cannot give; says what."""


def true_ad_ctr(world: AdsWorld, traffic: ImpressionLog, *, sample: int = 500,
                seed: int = 0) -> np.ndarray:  # fmt: skip
    """Each ad's mean true ``p(click | examined)`` over ``sample`` requests of
    ``traffic`` (its users, hours, devices and day): one number per ad id."""
    if len(traffic) == 0:
        raise ColdStartInputError("traffic is empty: pass a simulated day of it.")
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(traffic), min(sample, len(traffic)), replace=False)
    ads = np.arange(world.config.num_ads)
    p = world.click_probability(
        traffic.user_id[rows, None], ads[None, :], traffic.hour[rows, None],
        traffic.device[rows, None], 0, int(traffic.day[rows[0]]),
    )  # fmt: skip
    return p.mean(axis=0)


def cold_start_arms(
    world: AdsWorld,
    history: ImpressionLog,
    true_ctr: np.ndarray,
    *,
    num_new: int,
    requests: int,
    arrive_within: float = 0.5,
    prior_strength: float = 200.0,
    seed: int = 0,
) -> ArmStream:
    """The world's ads as arms, ``num_new`` of them brand new (see the module)."""
    num_ads = world.config.num_ads
    if not 0 < num_new < num_ads:
        raise ColdStartInputError(
            f"num_new must be between 1 and {num_ads - 1} (the world has "
            f"{num_ads} ads and some must already run), got {num_new}."
        )
    if not 0.0 < arrive_within <= 1.0:
        raise ColdStartInputError(
            f"arrive_within is a share of the stream, in (0, 1]; got {arrive_within}."
        )
    exam = np.asarray(world.config.examination)[history.position]
    clicks = np.bincount(history.ad_id, weights=history.clicked, minlength=num_ads)
    examined = np.bincount(history.ad_id, weights=exam, minlength=num_ads)
    rng = np.random.default_rng(seed)
    new = np.sort(rng.choice(num_ads, num_new, replace=False))
    campaign = world.entities.ad_campaign
    num_campaigns = int(campaign.max()) + 1
    camp_clicks = np.bincount(campaign, weights=clicks, minlength=num_campaigns)
    camp_examined = np.bincount(campaign, weights=examined, minlength=num_campaigns)
    global_rate = clicks.sum() / examined.sum()
    prior = np.full(num_ads, global_rate)
    prior[new] = shrunk_ctr(
        camp_clicks[campaign[new]] - clicks[new],
        camp_examined[campaign[new]] - examined[new],
        global_rate,
        prior_strength,
    )
    clicks[new], examined[new] = 0.0, 0.0
    arrival = np.zeros(num_ads, dtype=np.int64)
    arrival[rng.permutation(new)] = np.linspace(
        1, int(arrive_within * requests), num_new
    ).astype(np.int64)
    return ArmStream(
        true_ctr=np.asarray(true_ctr, dtype=np.float64),
        prior_mean=np.clip(prior, 1e-4, 1 - 1e-4),
        prior_strength=prior_strength,
        clicks=clicks,
        examined=examined,
        arrival=arrival,
    )
