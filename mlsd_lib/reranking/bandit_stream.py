"""A stream of requests where new arms arrive: what exploration costs and what it buys.

Introduced in ``casestudies/ad_click/07_interview_followups.ipynb`` (exploration for
cold-start ads). :func:`simulate_stream` runs one policy of
:mod:`~mlsd_lib.reranking.bandits` over ``requests`` requests, in batches of
``batch_size`` (the estimates are refreshed between batches, as a streaming
counter job would refresh them every few minutes, not after every impression):

1. each request draws ``candidates`` distinct arms among those that have
   arrived (uniformly: eligibility, not quality, decides who competes);
2. the policy scores them and the top ``slots`` are shown, best first;
3. the shown arm in slot ``k`` is clicked with ``examination[k] x true_ctr``;
4. after the batch, each arm's clicks and *examined* impressions
   (``examination[k]`` per impression, so the estimate is position-free) are
   added to its counts.

The world's side is an :class:`ArmStream`: the true click rates (which no
policy sees), each arm's prior, its counts before the stream and the request
at which it arrives. Randomness is split into three streams seeded by
``seed``: candidates, click draws and the policy's own. The first two do not
depend on the policy, so every policy faces the same requests and the same
click coins (common random numbers): the differences between policies are the
policies', not noise.

Against the truth, per batch: the expected clicks of what was shown and of
what an oracle that knows ``true_ctr`` would have shown (their gap summed over
time is the *regret*), the impressions new arms got, and the share of the new
arms that have arrived whose estimate is within ``tolerance`` (relative) of
their true rate. Per arm: impressions, clicks and the final estimate.

``explore_new_only`` spends the policy's exploration on the new arms alone (the
others are ranked by their estimate): a production system that trusts a
week of history explores where it has none.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from mlsd_lib.reranking.bandits import (
    BanditInputError,
    BanditPolicy,
    policy_scores,
    posterior_mean,
)

__all__ = [
    "ArmStream",
    "StreamConfig",
    "StreamResult",
    "error_by_impressions",
    "simulate_stream",
    "summarize_new_arms",
]


@dataclass(frozen=True)
class ArmStream:
    """The arms: true rates, priors, counts before the stream, arrival times."""

    true_ctr: np.ndarray  # p(click | examined), hidden from the policy
    prior_mean: np.ndarray
    prior_strength: float
    clicks: np.ndarray  # history before the stream
    examined: np.ndarray
    arrival: np.ndarray  # request index from which the arm may be a candidate

    def __post_init__(self) -> None:
        sizes = {
            name: np.shape(getattr(self, name))
            for name in ("true_ctr", "prior_mean", "clicks", "examined", "arrival")
        }
        if len(set(sizes.values())) != 1 or len(sizes["true_ctr"]) != 1:
            raise BanditInputError(
                f"every per-arm array must be 1-D and of one length, got {sizes}."
            )
        t = np.asarray(self.true_ctr)
        if np.any((t < 0) | (t > 1)):
            raise BanditInputError("true_ctr must lie in [0, 1] for every arm.")

    @property
    def num_arms(self) -> int:
        """How many arms there are, arrived or not."""
        return len(self.true_ctr)

    @property
    def is_new(self) -> np.ndarray:
        """Arms that arrive after the first request (the cold-start ones)."""
        return np.asarray(self.arrival) > 0


@dataclass(frozen=True)
class StreamConfig:
    """How long the stream runs, how requests look and how often estimates update."""

    requests: int = 100_000
    batch_size: int = 1_000
    candidates: int = 20
    slots: int = 3
    examination: tuple[float, ...] = (1.0, 0.7, 0.5)
    tolerance: float = 0.2
    explore_new_only: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.requests < 1 or self.batch_size < 1:
            problems.append(
                f"requests and batch_size must be >= 1, got {self.requests} and "
                f"{self.batch_size}"
            )
        if not 1 <= self.slots <= self.candidates:
            problems.append(
                f"slots must be between 1 and candidates={self.candidates}, got "
                f"{self.slots}"
            )
        if len(self.examination) < self.slots:
            problems.append(
                f"examination needs a probability for each of the {self.slots} "
                f"slots, got {self.examination}"
            )
        if self.tolerance <= 0:
            problems.append(f"tolerance must be > 0, got {self.tolerance}")
        if problems:
            raise BanditInputError("; ".join(problems) + ".")

    @property
    def num_batches(self) -> int:
        """Batches of ``batch_size`` (the last may be shorter)."""
        return -(-self.requests // self.batch_size)


@dataclass(frozen=True)
class StreamResult:
    """What one policy did over the stream, measured against the truth."""

    policy: str
    batch_end: np.ndarray  # requests served after each batch
    expected_clicks: np.ndarray  # per batch, of what was shown
    oracle_clicks: np.ndarray  # per batch, of the best possible pages
    new_impressions: np.ndarray  # per batch, impressions of new arms
    new_within: np.ndarray  # per batch, share of arrived new arms whose
    # estimate is within tolerance of the truth
    impressions: np.ndarray  # per arm, during the stream
    clicks: np.ndarray  # per arm, during the stream
    estimate: np.ndarray  # per arm, posterior mean at the end

    @property
    def regret(self) -> np.ndarray:
        """Cumulative expected clicks lost against the oracle, after each batch."""
        return np.cumsum(self.oracle_clicks - self.expected_clicks)


def _distinct_candidates(
    rng: np.random.Generator, live: np.ndarray, n: int, k: int
) -> np.ndarray:
    """``n`` rows of ``k`` distinct arms drawn uniformly from ``live``."""
    if k > live.size:
        raise BanditInputError(
            f"cannot draw {k} distinct candidates from {live.size} arrived arms: "
            "lower candidates or let more arms arrive before the first request."
        )
    rows = np.sort(rng.integers(0, live.size, (n, k)), axis=1)
    while True:
        repeated = np.zeros(rows.shape, dtype=bool)
        repeated[:, 1:] = rows[:, 1:] == rows[:, :-1]
        if not repeated.any():
            return live[rows]
        rows[repeated] = rng.integers(0, live.size, int(repeated.sum()))
        rows = np.sort(rows, axis=1)


def simulate_stream(
    arms: ArmStream, policy: BanditPolicy, config: StreamConfig
) -> StreamResult:
    """Serve ``config.requests`` requests with ``policy``; see the module notes."""
    candidate_rng, click_rng, policy_rng = (
        np.random.default_rng(s)
        for s in np.random.SeedSequence([config.seed, 0xBA4D]).spawn(3)
    )
    true = np.asarray(arms.true_ctr, dtype=np.float64)
    prior = np.asarray(arms.prior_mean, dtype=np.float64)
    arrival = np.asarray(arms.arrival, dtype=np.int64)
    clicks = np.asarray(arms.clicks, dtype=np.float64).copy()
    examined = np.asarray(arms.examined, dtype=np.float64).copy()
    stream_clicks = np.zeros(arms.num_arms)
    stream_shows = np.zeros(arms.num_arms)
    exam = np.asarray(config.examination[: config.slots], dtype=np.float64)
    is_new = arms.is_new
    ends, expected, oracle, new_shows, new_within = [], [], [], [], []
    served = 0
    for _ in range(config.num_batches):
        b = min(config.batch_size, config.requests - served)
        live = np.flatnonzero(arrival <= served)
        cand = _distinct_candidates(candidate_rng, live, b, config.candidates)
        coins = click_rng.random((b, config.slots))
        scores = policy_scores(
            policy, cand, clicks, examined, prior, arms.prior_strength, policy_rng,
            explorable=is_new if config.explore_new_only else None,
        )  # fmt: skip
        top = np.argsort(-scores, axis=1, kind="stable")[:, : config.slots]
        shown = np.take_along_axis(cand, top, axis=1)
        p = exam * true[shown]
        best = -np.sort(-true[cand], axis=1)[:, : config.slots]
        clicked = coins < p
        expected.append(float(p.sum()))
        oracle.append(float((exam * best).sum()))
        new_shows.append(int(is_new[shown].sum()))
        flat = shown.ravel()
        clicks += np.bincount(flat, weights=clicked.ravel(), minlength=arms.num_arms)
        examined += np.bincount(
            flat, weights=np.broadcast_to(exam, shown.shape).ravel(),
            minlength=arms.num_arms,
        )  # fmt: skip
        stream_clicks += np.bincount(
            flat, weights=clicked.ravel(), minlength=arms.num_arms
        )
        stream_shows += np.bincount(flat, minlength=arms.num_arms)
        served += b
        ends.append(served)
        estimate = posterior_mean(clicks, examined, prior, arms.prior_strength)
        within = np.abs(estimate - true) <= config.tolerance * true
        arrived_new = is_new & (arrival < served)
        new_within.append(float(within[arrived_new].mean()) if arrived_new.any() else 0)
    return StreamResult(
        policy=policy.label + (", new arms only" if config.explore_new_only else ""),
        batch_end=np.asarray(ends),
        expected_clicks=np.asarray(expected),
        oracle_clicks=np.asarray(oracle),
        new_impressions=np.asarray(new_shows),
        new_within=np.asarray(new_within),
        impressions=stream_shows.astype(np.int64),
        clicks=stream_clicks.astype(np.int64),
        estimate=posterior_mean(clicks, examined, prior, arms.prior_strength),
    )


def summarize_new_arms(
    result: StreamResult,
    arms: ArmStream,
    tolerance: float,
    mask: ArrayLike | None = None,
) -> dict[str, float]:
    """For the new arms (or ``mask``) at the end of the stream: impressions per
    arm, the share whose estimate is within ``tolerance`` (relative) of the
    truth, and the mean relative error of their estimates."""
    sel = arms.is_new if mask is None else np.asarray(mask, dtype=bool)
    if not sel.any():
        raise BanditInputError("no arm selected: pass a mask with at least one arm.")
    true = np.asarray(arms.true_ctr)[sel]
    error = np.abs(result.estimate[sel] - true) / np.maximum(true, 1e-12)
    return {
        "arms": int(sel.sum()),
        "impressions per arm": float(result.impressions[sel].mean()),
        "share within tolerance": float(np.mean(error <= tolerance)),
        "mean relative error": float(error.mean()),
    }


def error_by_impressions(
    results: list[StreamResult],
    arms: ArmStream,
    edges: ArrayLike,
    tolerance: float,
) -> pd.DataFrame:
    """New arms of every run pooled, grouped by impressions received (bins
    ``[edges[i], edges[i+1])``): how many, and the share of their end-of-stream
    estimates within ``tolerance`` of the truth. The estimator is the same under
    every policy, so pooling shows how many impressions an estimate needs."""
    bounds = np.asarray(edges)
    new = arms.is_new
    true = np.asarray(arms.true_ctr)[new]
    shows = np.concatenate([r.impressions[new] for r in results])
    error = np.concatenate(
        [np.abs(r.estimate[new] - true) / np.maximum(true, 1e-12) for r in results]
    )
    rows = []
    for lo, hi in itertools.pairwise(bounds):
        sel = (shows >= lo) & (shows < hi)
        rows.append(
            {
                "impressions": f"{lo:g}-{hi:g}" if np.isfinite(hi) else f"{lo:g}+",
                "new arms (all runs)": int(sel.sum()),
                "share within tolerance": (
                    float(np.mean(error[sel] <= tolerance)) if sel.any() else np.nan
                ),
                "median relative error": (
                    float(np.median(error[sel])) if sel.any() else np.nan
                ),
            }
        )
    return pd.DataFrame(rows)
