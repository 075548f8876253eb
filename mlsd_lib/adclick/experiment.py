"""A simulated online A/B test: world users, two rankers, clicks from the truth.

Introduced in ``casestudies/ad_click/05_serving_and_ab_test.ipynb``. Offline NE
says which model predicts clicks better on logged data; an A/B test says which
one earns more clicks when *its own rankings* decide what users see. The world
lets us run the second without users:

1. :func:`sample_requests`: requests as the world's traffic makes them (who,
   when, on which device) with a set of candidate ads each;
2. each request's user is assigned an arm by the same stable hash the gateway's
   canary uses (:func:`~mlsd_lib.serving.gateway.routing.user_bucket`);
3. the arm's ranker scores the candidates; the top ``slots`` are shown in that
   order;
4. clicks are drawn from the world's true p(click) *at the slot each ad landed
   in* (position bias included): :func:`run_experiment`.

The result feeds :func:`~mlsd_lib.evaluation.ab_test.ratio_metric_test` (users
are the unit of randomization) and the power analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd
import torch

from mlsd_lib.adclick.features import SERVING_STORE_REFS, feature_registry
from mlsd_lib.adclick.serving import SERVING_INPUTS
from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ab_test import (
    ABTestResult,
    ratio_metric_test,
    two_proportion_test,
)
from mlsd_lib.features.offline import point_in_time_join
from mlsd_lib.features.views import TIMESTAMP_COLUMN, FeatureRef
from mlsd_lib.serving.gateway.routing import user_bucket
from mlsd_lib.serving.loadgen import check_loopback
from mlsd_lib.validation import require_int, require_seed
from mlsd_lib.worlds.ads import DEVICES, AdsWorld

#: ``rank(users [n], hours [n], devices [n], candidates [n, k]) -> scores [n, k]``.
Ranker = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class ExperimentError(MlsdError, ValueError):
    """An A/B experiment's inputs do not fit: the message says which and why."""


@dataclass(frozen=True)
class Requests:
    """Ad requests: who asked, when, on what, and which ads compete."""

    user_id: np.ndarray
    hour: np.ndarray
    device: np.ndarray
    candidates: np.ndarray  # [n, k], distinct ads per row
    day: int
    ts: np.ndarray  # world seconds

    def __len__(self) -> int:
        return len(self.user_id)


def _distinct_rows(
    rng: np.random.Generator, n: int, k: int, num_ads: int
) -> np.ndarray:
    """``n`` rows of ``k`` distinct ads, uniformly at random (resample repeats)."""
    if k > num_ads:
        raise ExperimentError(f"cannot pick {k} distinct ads out of {num_ads}.")
    rows = rng.integers(0, num_ads, (n, k))
    while True:
        ordered = np.sort(rows, axis=1)
        repeated = np.zeros_like(rows, dtype=bool)
        repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        if not repeated.any():
            return rows
        # Replace the repeated values (in sorted position) with fresh draws.
        ordered[repeated] = rng.integers(0, num_ads, int(repeated.sum()))
        rows = ordered


def sample_requests(
    world: AdsWorld, n: int, *, num_candidates: int = 20, day: int, seed: int = 0
) -> Requests:
    """``n`` requests on ``day``: users, hours and devices as the world's traffic
    draws them, each with ``num_candidates`` distinct candidate ads."""
    n = require_int("n", n, at_least=1)
    num_ads = world.config.num_ads
    require_int("num_candidates", num_candidates, at_least=1, at_most=num_ads)
    require_int("day", day, at_least=0)
    require_seed("seed", seed)
    log = world.simulate(days=1, impressions_per_day=n, start_day=day, seed=seed + 1)
    rng = np.random.default_rng(seed)
    return Requests(
        user_id=log.user_id,
        hour=log.hour,
        device=log.device,
        candidates=_distinct_rows(rng, n, num_candidates, world.config.num_ads),
        day=day,
        ts=log.ts,
    )


def assign_arms(
    user_id: np.ndarray, treatment_fraction: float = 0.5, salt: str = "ab-test"
) -> np.ndarray:
    """True for users in treatment: the gateway's stable hash, so a user never
    switches arm, whichever replica serves them."""
    buckets = np.array([user_bucket(int(u), salt) for u in user_id])
    return buckets < treatment_fraction


@dataclass(frozen=True)
class ExperimentLog:
    """One row per shown ad: the arm, the user, the slot, the truth, the click."""

    frame: pd.DataFrame

    def per_user(self, arm: str) -> pd.DataFrame:
        """Each user's clicks and impressions in ``arm`` (the delta method's input)."""
        rows = self.frame[self.frame["arm"] == arm]
        return rows.groupby("user_id")[["clicked"]].agg(
            clicks=("clicked", "sum"), impressions=("clicked", "size")
        )

    def summary(self) -> pd.DataFrame:
        """Users, impressions, clicks, CTR and mean true p(click) per arm."""
        grouped = self.frame.groupby("arm")
        return pd.DataFrame(
            {
                "users": grouped["user_id"].nunique(),
                "impressions": grouped.size(),
                "clicks": grouped["clicked"].sum(),
                "ctr": grouped["clicked"].mean(),
                "expected_ctr": grouped["true_p"].mean(),
            }
        )

    def test(
        self, control: str, treatment: str, *, confidence: float = 0.95
    ) -> dict[str, ABTestResult]:
        """The user-level (delta method) and the naive impression-level tests."""
        c, t = self.per_user(control), self.per_user(treatment)
        return {
            "user-level (delta method)": ratio_metric_test(
                c["clicks"], c["impressions"], t["clicks"], t["impressions"],
                confidence=confidence,
            ),
            "impression-level (naive)": two_proportion_test(
                int(c["clicks"].sum()), int(c["impressions"].sum()),
                int(t["clicks"].sum()), int(t["impressions"].sum()),
                confidence=confidence,
            ),
        }  # fmt: skip


def run_experiment(
    world: AdsWorld,
    requests: Requests,
    rankers: Mapping[str, Ranker],
    in_treatment: np.ndarray,
    *,
    slots: int = 3,
    seed: int = 0,
) -> ExperimentLog:
    """Rank each request with its arm's ranker, show the top ``slots``, draw clicks.

    ``rankers`` has exactly two entries, control first. Clicks come from
    :meth:`~mlsd_lib.worlds.ads.AdsWorld.click_probability` at the slot each ad
    was shown in.
    """
    require_int("slots", slots, at_least=1)
    if len(rankers) != 2:
        raise ExperimentError(f"an A/B test has two arms; got {list(rankers)}.")
    (control, rank_control), (treatment, rank_treatment) = rankers.items()
    rng = np.random.default_rng(seed)
    parts = []
    for arm, rank, mask in (
        (control, rank_control, ~in_treatment),
        (treatment, rank_treatment, in_treatment),
    ):
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            continue
        users, hours, devices = (
            requests.user_id[rows],
            requests.hour[rows],
            requests.device[rows],
        )
        candidates = requests.candidates[rows]
        scores = np.asarray(rank(users, hours, devices, candidates), dtype=np.float64)
        if scores.shape != candidates.shape:
            raise ExperimentError(
                f"ranker {arm!r} returned scores of shape {scores.shape} for "
                f"candidates of shape {candidates.shape}."
            )
        top = np.argsort(-scores, axis=1, kind="stable")[:, :slots]
        shown = np.take_along_axis(candidates, top, axis=1)
        position = np.broadcast_to(np.arange(slots), shown.shape)
        true_p = world.click_probability(
            users[:, None], shown, hours[:, None], devices[:, None], position,
            requests.day,
        )  # fmt: skip
        clicked = world.sample_clicks(true_p, rng)
        parts.append(
            pd.DataFrame(
                {
                    "arm": arm,
                    "user_id": np.repeat(users, slots),
                    "ad_id": shown.ravel(),
                    "position": position.ravel(),
                    "true_p": true_p.ravel(),
                    "clicked": clicked.ravel(),
                }
            )
        )
    return ExperimentLog(pd.concat(parts, ignore_index=True))


def snapshot_ranker(
    model: torch.nn.Module,
    tables: Mapping[str, pd.DataFrame],
    as_of: pd.Timestamp,
) -> Ranker:
    """Rank with ``model`` (an :class:`~mlsd_lib.adclick.serving.AdsScoringModel`)
    on the feature store's values as of ``as_of``, in process.

    The same numbers the gateway computes from a store materialized at
    ``as_of``, without HTTP: user-keyed and ad-keyed values are looked up once
    per user and per ad, then paired, so ranking a million (user, ad) pairs
    takes seconds. Used to run the A/B test at a scale HTTP would take hours for.
    """
    registry = feature_registry()
    user_refs = [r for r in SERVING_STORE_REFS if _entity_of(registry, r) == "user_id"]
    ad_refs = [r for r in SERVING_STORE_REFS if _entity_of(registry, r) == "ad_id"]
    user_cols = [SERVING_STORE_REFS.index(r) for r in user_refs]
    ad_cols = [SERVING_STORE_REFS.index(r) for r in ad_refs]
    cache: dict[str, dict[int, np.ndarray]] = {"user_id": {}, "ad_id": {}}
    chunk = 2_000

    def values(entity: str, refs: list[str], ids: np.ndarray) -> np.ndarray:
        known = cache[entity]
        missing = np.setdiff1d(np.unique(ids), np.fromiter(known, dtype=np.int64))
        if missing.size:
            labels = pd.DataFrame({entity: missing, TIMESTAMP_COLUMN: as_of})
            joined = point_in_time_join(labels, refs, registry, tables).matrix()
            known.update(zip(missing.tolist(), joined, strict=True))
        return np.stack([known[int(i)] for i in ids])

    def rank(users, hours, devices, candidates):
        # A chunk at a time: a million (user, ad) rows through a DCN at once would
        # need gigabytes of activations; 2,000 requests need tens of megabytes.
        return (
            np.concatenate(
                [
                    rank_chunk(
                        users[i : i + chunk],
                        hours[i : i + chunk],
                        devices[i : i + chunk],
                        candidates[i : i + chunk],
                    )
                    for i in range(0, len(users), chunk)
                ]
            )
            if len(users)
            else np.empty(candidates.shape)
        )

    def rank_chunk(users, hours, devices, candidates):
        n, k = candidates.shape
        matrix = np.empty((n * k, len(SERVING_INPUTS)), dtype=np.float32)
        matrix[:, user_cols] = np.repeat(values("user_id", user_refs, users), k, 0)
        matrix[:, ad_cols] = values("ad_id", ad_refs, candidates.ravel())
        context = len(SERVING_STORE_REFS)
        matrix[:, context] = np.repeat(hours, k)
        matrix[:, context + 1] = np.repeat(devices, k)
        matrix[:, context + 2] = 0.0  # scored for slot 0, as the gateway does
        with torch.inference_mode():
            scores = model(torch.from_numpy(matrix)).numpy()
        return scores.reshape(n, k)

    return rank


def _entity_of(registry, ref: str) -> str:
    view, _ = registry.resolve([FeatureRef.parse(ref)])[0]
    return view.entities[0]


def gateway_ranker(
    url: str, headers: Mapping[str, str], *, timeout_s: float = 10.0
) -> tuple[Ranker, list[str]]:
    """Rank through a running gateway's ``POST /v1/ads/score``, one request each.

    Returns the ranker and a list that collects the ``model_version`` of every
    answer, so the caller can check which arm really served each request.
    """
    client = httpx.Client(
        base_url=check_loopback(url), headers=dict(headers), timeout=timeout_s
    )
    versions: list[str] = []

    def rank(users, hours, devices, candidates):
        scores = np.empty(candidates.shape, dtype=np.float64)
        for i in range(len(users)):
            answer = client.post(
                "/v1/ads/score",
                json={
                    "user_id": int(users[i]),
                    "context": {
                        "hour": int(hours[i]),
                        "device": DEVICES[int(devices[i])],
                    },
                    "ad_ids": [int(a) for a in candidates[i]],
                },
            )
            answer.raise_for_status()
            body = answer.json()
            versions.append(body["model_version"])
            by_ad = {ad["ad_id"]: ad["pctr"] for ad in body["ads"]}
            scores[i] = [by_ad[int(a)] for a in candidates[i]]
        return scores

    return rank, versions
