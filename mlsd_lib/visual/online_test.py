"""The online test of visual search inside the world: two arms, clicks and saves.

Introduced in ``casestudies/visual_search/07_online_evaluation.ipynb`` (step 7: an A/B
test of two embedders, and of a re-ranker learned from clicks). An **arm** is any
function from the market's queries (and their photos) to the product lists shown, ``(n,
k)`` ids best first, -1 for an empty slot: an embedder with its own catalogue index
behind :class:`~mlsd_lib.visual.search.VisualSearcher` (:func:`searcher_arm`), the same
with a re-ranker on top, or a stand-in built from the truth for tests.

:func:`run_online_test` runs both arms on **every** query of the experiment
and asks :meth:`~mlsd_lib.worlds.images_market.ImageMarket.respond` for each
arm's clicks and saves with the same seed. The market's draws are hashed from
(query, slot), so the two arms share their random numbers (common random
numbers) and differ only by what they show. Two analyses follow from that one
run, as in the recommender's online evaluation
(:mod:`~mlsd_lib.recsys.online_evaluation`):

* ``split``: shoppers are assigned to an arm by the gateway's stable hash
  (:func:`~mlsd_lib.serving.gateway.routing.user_bucket`), and each arm is
  judged on its own shoppers' queries only, as a real experiment must be;
* ``paired``: every shopper under both arms, possible only in a simulator;
  the same effect with a much narrower interval.

The metrics are ratios over shoppers (the unit of randomization): clicks per
query, saves per query, and the **expected** clicks per query (the sum of the
true P(click) of what was shown: the same comparison free of the outcome
noise). They are tested with
:mod:`~mlsd_lib.evaluation.ratio_metrics` (delta method, by linearization,
on Welch's and the paired t-test). **Guardrails**: the share of queries
answered with an empty list and the arm's latency per query (all the
queries run as one batch; the time is that batch's, amortized: per-request
latency is the serving chapter's measurement, not this one's).

**The truth** (:meth:`OnlineTest.truth`): what each arm's lists are worth by
the world's own similarity, for every query: the exact-match rate at the top
(the photographed item first, duplicates counted as the item) and graded
NDCG@k against :meth:`~mlsd_lib.worlds.images.ImageWorld.similarity`. The
chapter reads the online verdict against it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ab_continuous import MeanDifference
from mlsd_lib.evaluation.ratio_metrics import (
    linearized_ratio,
    ratio_paired_test,
    ratio_split_test,
)
from mlsd_lib.serving.gateway.routing import user_bucket
from mlsd_lib.visual.oracle import oracle_top_k, relevance_matrix
from mlsd_lib.visual.search import VisualSearcher
from mlsd_lib.worlds.images import ImageWorld, QuerySet
from mlsd_lib.worlds.images_market import Engagement, ImageMarket

__all__ = [
    "DESIGNS",
    "METRICS",
    "Arm",
    "ArmRun",
    "OnlineTest",
    "OnlineTestError",
    "assign_treatment",
    "list_truth",
    "run_arm",
    "run_online_test",
    "searcher_arm",
]

#: The per-query metrics, primary first (each a sum over queries / queries).
METRICS: tuple[str, ...] = ("clicks", "saves", "expected clicks")
#: The two analyses of one run.
DESIGNS: tuple[str, ...] = ("split", "paired")

#: An arm: the market's queries (rows of ``ImageMarket.queries``) and their
#: photos (None when the test was run without photos) to shown product ids,
#: or to ``(ids, scores)`` when it has scores to log (a click re-ranker's
#: training data needs them).
Arm = Callable[
    [pd.DataFrame, QuerySet | None], np.ndarray | tuple[np.ndarray, np.ndarray]
]


class OnlineTestError(MlsdError, ValueError):
    """Arms or queries the online test cannot run; the message says why."""


def assign_treatment(
    shopper_ids: np.ndarray, *, share: float = 0.5, salt: str = "visual-ab"
) -> np.ndarray:
    """True for shoppers in treatment: the gateway's stable hash
    (:func:`~mlsd_lib.serving.gateway.routing.user_bucket`), so a shopper never
    switches arm. Computed once per distinct shopper."""
    if not 0.0 < share < 1.0:
        raise OnlineTestError(f"share must be in (0, 1), got {share}.")
    ids = np.asarray(shopper_ids, dtype=np.int64)
    unique, inverse = np.unique(ids, return_inverse=True)
    buckets = np.array([user_bucket(int(u), salt) for u in unique])
    return (buckets < share)[inverse.reshape(ids.shape)]


@dataclass(frozen=True)
class ArmRun:
    """One arm on every query: what it showed (and the scores it logged,
    None if it logged none), what shoppers did with it, the expected clicks
    per query and the arm's milliseconds per query (the whole batch timed,
    amortized over its queries)."""

    shown: np.ndarray
    scores: np.ndarray | None
    engagement: Engagement
    expected_clicks: np.ndarray
    latency_ms: np.ndarray

    @property
    def empty(self) -> np.ndarray:
        """Queries answered with no product at all."""
        return (self.shown < 0).all(axis=1)


def run_arm(
    market: ImageMarket,
    queries: pd.DataFrame,
    arm: Arm,
    *,
    photos: QuerySet | None = None,
    seed: int = 0,
) -> ArmRun:
    """Run ``arm`` on ``queries`` (one batch, timed), then the market's response.

    ``photos`` (aligned with ``queries``) are passed on. ``seed`` is the
    response's: the same seed for two arms gives them common random numbers.
    """
    if len(queries) == 0:
        raise OnlineTestError("no queries: pass rows of market.queries(days).")
    if photos is not None and len(photos) != len(queries):
        raise OnlineTestError(
            f"photos hold {len(photos)} images for {len(queries)} queries: pass "
            "market.photos(queries), aligned row by row."
        )
    queries = queries.reset_index(drop=True)
    start = time.perf_counter()
    answer = arm(queries, photos)
    per_query_ms = (time.perf_counter() - start) * 1e3 / len(queries)
    scores = None
    if isinstance(answer, tuple):
        answer, scores = answer
        scores = np.asarray(scores, dtype=np.float64)
    shown = np.asarray(answer)
    if (
        shown.ndim != 2
        or shown.shape[0] != len(queries)
        or not np.issubdtype(shown.dtype, np.integer)
    ):
        raise OnlineTestError(
            f"the arm returned {shown.dtype} of shape {shown.shape} for "
            f"{len(queries)} queries: return (n_queries, k) int product ids, -1 for "
            "an empty slot."
        )
    if scores is not None and scores.shape != shown.shape:
        raise OnlineTestError(
            f"the arm's scores have shape {scores.shape} but its lists "
            f"{shown.shape}: one score per shown slot."
        )
    engagement = market.respond(queries, shown, seed=seed)
    expected = market.click_probability(queries, shown).sum(axis=1)
    return ArmRun(
        shown.astype(np.int64),
        scores,
        engagement,
        expected,
        np.full(len(queries), per_query_ms),
    )


def list_truth(
    world: ImageWorld, targets: np.ndarray, shown: np.ndarray, k: int = 20
) -> pd.DataFrame:
    """Per query: whether the top result is the photographed item (``exact
    top-1``, duplicates count as the item), whether it is in the top 10, and
    graded ``NDCG@k`` of the list against the world's similarity (ideal: the
    catalogue's ``k`` most similar products to the target)."""
    targets = np.asarray(targets, dtype=np.int64)
    shown = np.asarray(shown, dtype=np.int64)[:, :k]
    valid = shown >= 0
    safe = np.where(valid, shown, 0)
    canon = world.canonical(targets)[:, None]
    same = valid & (world.canonical(safe) == canon)
    gains = np.where(valid, world.similarity(targets[:, None], safe), 0.0)
    discount = 1.0 / np.log2(np.arange(shown.shape[1]) + 2.0)
    unique, inverse = np.unique(targets, return_inverse=True)
    relevance, products = relevance_matrix(
        world.similarity, unique, np.arange(world.n_products)
    )
    ideal_gains, _ = oracle_top_k(relevance, products, k)
    ideal = (ideal_gains * (1.0 / np.log2(np.arange(k) + 2.0))).sum(axis=1)
    dcg = (gains * discount).sum(axis=1)
    return pd.DataFrame(
        {
            "exact top-1": same[:, 0],
            "exact in top 10": same[:, :10].any(axis=1),
            f"NDCG@{k}": dcg / ideal[inverse],
        }
    )


@dataclass(frozen=True)
class OnlineTest:
    """Both arms on every query (:attr:`runs`); :attr:`in_treatment` is the
    split's assignment of each query (by its shopper)."""

    control: str
    treatment: str
    queries: pd.DataFrame
    in_treatment: np.ndarray
    runs: dict[str, ArmRun]

    @property
    def arms(self) -> tuple[str, str]:
        return (self.control, self.treatment)

    def per_query(self, arm: str) -> pd.DataFrame:
        """``arm`` on every query: day, shopper, clicks, saves, expected
        clicks, empty, latency (ms, amortized), in_treatment."""
        run = self._run(arm)
        return pd.DataFrame(
            {
                "day": self.queries["day"].to_numpy(),
                "shopper_id": self.queries["shopper_id"].to_numpy(),
                "clicks": run.engagement.clicked.sum(axis=1),
                "saves": run.engagement.saved.sum(axis=1),
                "expected clicks": run.expected_clicks,
                "empty": run.empty,
                "latency ms": run.latency_ms,
                "in_treatment": self.in_treatment,
            }
        )

    def per_shopper(self, arm: str, design: str = "split") -> pd.DataFrame:
        """Per shopper: queries and each metric's sum, over the queries
        ``arm`` serves in ``design`` (its own shoppers in ``split``, all in
        ``paired``)."""
        frame = self.per_query(arm)
        if self._design(design) == "split":
            frame = frame[frame["in_treatment"] == (arm == self.treatment)]
        grouped = frame.groupby("shopper_id")
        out = grouped[list(METRICS)].sum()
        out.insert(0, "queries", grouped.size())
        return out

    def tests(
        self, metrics: Sequence[str] = METRICS, *, confidence: float = 0.95
    ) -> dict[tuple[str, str], MeanDifference]:
        """Treatment against control per (design, metric): per query, the
        delta method over shoppers (Welch for ``split``, paired for
        ``paired``)."""
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise OnlineTestError(f"unknown metrics {unknown}; known: {METRICS}.")
        results = {}
        for design in DESIGNS:
            c = self.per_shopper(self.control, design)
            t = self.per_shopper(self.treatment, design)
            for metric in metrics:
                if design == "split":
                    results[design, metric] = ratio_split_test(
                        c[metric],
                        c["queries"],
                        t[metric],
                        t["queries"],
                        confidence=confidence,
                    )
                else:
                    t = t.reindex(c.index)
                    results[design, metric] = ratio_paired_test(
                        c[metric], t[metric], c["queries"], confidence=confidence
                    )
        return results

    def daily(self, metric: str = "clicks", *, confidence: float = 0.95):
        """Per day and arm (``split``): the metric per query with a normal
        interval from the linearized per-shopper values of that day."""
        z = float(norm.ppf(0.5 + confidence / 2.0))
        rows = []
        for arm in self.arms:
            frame = self.per_query(arm)
            frame = frame[frame["in_treatment"] == (arm == self.treatment)]
            for day, part in frame.groupby("day"):
                users = part.groupby("shopper_id")
                values = linearized_ratio(users[metric].sum(), users.size())
                se = values.std(ddof=1) / np.sqrt(values.size)
                rows.append(
                    {
                        "day": int(day),
                        "arm": arm,
                        "per query": values.mean(),
                        "low": values.mean() - z * se,
                        "high": values.mean() + z * se,
                        "queries": len(part),
                    }
                )
        return pd.DataFrame(rows)

    def guardrails(self) -> pd.DataFrame:
        """Per arm, on its own (split) queries: the empty-result rate and the
        latency per query (the run's batch time, amortized)."""
        rows = {}
        for arm in self.arms:
            frame = self.per_query(arm)
            frame = frame[frame["in_treatment"] == (arm == self.treatment)]
            rows[arm] = {
                "empty-result rate": frame["empty"].mean(),
                "latency ms / query": frame["latency ms"].mean(),
            }
        return pd.DataFrame(rows).T

    def truth(self, world: ImageWorld, k: int = 20) -> pd.DataFrame:
        """Per arm, on every query: exact top-1 rate, exact match in the top
        10, graded NDCG@k (:func:`list_truth`) and expected clicks per query."""
        targets = self.queries["product_id"].to_numpy()
        rows = {}
        for arm in self.arms:
            run = self._run(arm)
            truth = list_truth(world, targets, run.shown, k).mean()
            truth["expected clicks / query"] = run.expected_clicks.mean()
            rows[arm] = truth
        return pd.DataFrame(rows).T

    def _run(self, arm: str) -> ArmRun:
        if arm not in self.runs:
            raise OnlineTestError(f"unknown arm {arm!r}; the arms are {self.arms}.")
        return self.runs[arm]

    @staticmethod
    def _design(design: str) -> str:
        if design not in DESIGNS:
            raise OnlineTestError(
                f"unknown design {design!r}; the designs are {DESIGNS}."
            )
        return design


def run_online_test(
    market: ImageMarket,
    queries: pd.DataFrame,
    control: tuple[str, Arm],
    treatment: tuple[str, Arm],
    *,
    photos: QuerySet | None = None,
    seed: int = 0,
    share: float = 0.5,
    salt: str = "visual-ab",
) -> OnlineTest:
    """Run ``control`` and ``treatment`` (``(name, arm)``) on every query of
    ``queries`` with common random numbers; assign shoppers by ``salt``."""
    (c_name, c_arm), (t_name, t_arm) = control, treatment
    if c_name == t_name:
        raise OnlineTestError(
            f"the arms need two different names, got {c_name!r} twice."
        )
    runs = {
        c_name: run_arm(market, queries, c_arm, photos=photos, seed=seed),
        t_name: run_arm(market, queries, t_arm, photos=photos, seed=seed),
    }
    in_treatment = assign_treatment(
        queries["shopper_id"].to_numpy(), share=share, salt=salt
    )
    if in_treatment.all() or not in_treatment.any():
        raise OnlineTestError(
            "every query landed in one arm: run the test on more shoppers."
        )
    return OnlineTest(
        c_name, t_name, queries.reset_index(drop=True), in_treatment, runs
    )


def searcher_arm(
    embed: Callable[[ImageSet], np.ndarray],
    searcher: VisualSearcher,
    embedder_version: str,
    *,
    n_products: int = 20,
    k_images: int = 200,
    crop: bool = True,
    rerank: Callable[
        [pd.DataFrame, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]
    ]
    | None = None,
) -> Arm:
    """An arm that embeds each query (cropped to its box with ``crop``, as
    the gateway does) and searches ``searcher``'s catalogue; it logs each
    shown product's cosine with the query as its score.

    ``rerank(queries, product_ids, scores) -> (product_ids, scores)`` may
    reorder the page (a click re-ranker's
    :meth:`~mlsd_lib.visual.click_reranker.ClickReranker.step`).
    """

    def arm(
        queries: pd.DataFrame, photos: QuerySet | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if photos is None:
            raise OnlineTestError(
                "this arm embeds the shoppers' photos: run the test with "
                "photos=market.photos(queries)."
            )
        vectors = embed(photos.crops() if crop else photos.images)
        batch = searcher.search_batch(
            vectors,
            embedder_version=embedder_version,
            k_images=k_images,
            n_products=n_products,
        )
        ids, scores = batch.products.product_ids, batch.products.scores
        if rerank is not None:
            ids, scores = rerank(queries, ids, scores)
        return ids, scores

    return arm
