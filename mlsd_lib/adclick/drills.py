"""The ad-click gateway's failure drills: its requests, and its canary metric.

Introduced in ``notebooks/failure_drills.ipynb``. The drills themselves are
generic (:mod:`~mlsd_lib.serving.fault_drill`,
:mod:`~mlsd_lib.serving.canary_rollback`); this module supplies what only the
ad-click case knows: the body of a ``POST /v1/ads/score`` for each sampled
request, and the canary metric, the log loss of each arm's served pCTRs
against the world's true click probabilities for the same ads, users and
contexts (in slot 0, as the gateway scores them), less the truth's own log
loss: the part each model gets wrong. In production the labels
are clicks joined to the impression log minutes later; the simulator's truth
gives the same comparison without waiting or sampling noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlsd_lib.adclick.experiment import Requests
from mlsd_lib.evaluation.expected_entropy import excess_log_loss
from mlsd_lib.serving.canary_rollback import ArmMetrics
from mlsd_lib.serving.fault_drill import DrillOutcome
from mlsd_lib.worlds.ads import DEVICES, AdsWorld


def ads_request_bodies(requests: Requests) -> list[dict[str, Any]]:
    """One ``/v1/ads/score`` body per request, in order."""
    return [
        {
            "user_id": int(user),
            "context": {"hour": int(hour), "device": DEVICES[int(device)]},
            "ad_ids": [int(ad) for ad in ads],
        }
        for user, hour, device, ads in zip(
            requests.user_id,
            requests.hour,
            requests.device,
            requests.candidates,
            strict=True,
        )
    ]


def served_vs_truth(
    world: AdsWorld, requests: Requests, outcomes: Sequence[DrillOutcome]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each arm (``production``, ``canary``) that answered any of
    ``outcomes``: the served pCTRs and the world's true p(click in slot 0) of
    the same ads, one entry per scored ad."""
    rows: dict[str, list[tuple[int, list[int], list[float]]]] = {}
    for o in outcomes:
        if o.status == 200 and o.index >= 0:
            ads = o.body["ads"]
            rows.setdefault(o.body["route"], []).append(
                (o.index, [a["ad_id"] for a in ads], [a["pctr"] for a in ads])
            )
    result = {}
    for arm, answered in rows.items():
        index = np.repeat([i for i, _, _ in answered], [len(a) for _, a, _ in answered])
        ads = np.concatenate([a for _, a, _ in answered])
        served = np.concatenate([p for _, _, p in answered])
        truth = world.click_probability(
            requests.user_id[index],
            ads,
            requests.hour[index],
            requests.device[index],
            np.zeros(len(ads), dtype=int),
            requests.day,
        )
        result[arm] = (served, truth)
    return result


def arm_log_loss(
    world: AdsWorld, requests: Requests, outcomes: Sequence[DrillOutcome]
) -> ArmMetrics | None:
    """Each arm's log loss in excess of the truth's own
    (:func:`~mlsd_lib.evaluation.expected_entropy.excess_log_loss`) on
    ``outcomes``, one sample per scored ad; None unless both arms answered."""
    arms = served_vs_truth(world, requests, outcomes)
    if "canary" not in arms or "production" not in arms:
        return None
    (stable_p, stable_truth), (canary_p, canary_truth) = (
        arms["production"],
        arms["canary"],
    )
    return ArmMetrics(
        stable=excess_log_loss(stable_truth, stable_p),
        canary=excess_log_loss(canary_truth, canary_p),
        stable_samples=len(stable_p),
        canary_samples=len(canary_p),
    )
