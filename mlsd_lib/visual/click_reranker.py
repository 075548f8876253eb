"""A light re-ranker learned from clicks, with visual distance as a constraint.

Introduced in ``casestudies/visual_search/07_online_evaluation.ipynb`` (the follow-up
"Where does engagement enter the ranking, and what is the risk?"): "The embedding
decides what is similar; engagement decides which of the similar items are good
results." The re-ranker reorders the top of the visual page (20 products) by a click
model over, per (query, candidate):

* ``similarity``: the candidate's cosine with the query (its best image's),
  and ``gap to best``: how far below the page's best candidate it is;
* ``ctr 24h``: the product's click-through over the 24 hours before the query
  (:class:`WindowedCtr`, the definition of the feature store's
  ``product_counts``), smoothed towards the overall rate;
* ``log price`` and ``in stock`` (in the shopper's region at the query's
  time), as the online store serves them.

The model is the generic position-debiased click model
(:func:`~mlsd_lib.models.position_debiased_clicks.fit_click_model`): the
logged slot is a feature at training and every candidate is scored at slot
0, so the clicks that slot 0 earns for being first are not credited to the
features. ``similarity`` is declared monotone (more similar never scores
lower).

**The constraint** (:class:`ClickReranker`). Clicks reward what shoppers
like, and a popular product that only looks like the query can out-click the
exact match: engagement then overrides similarity, the risk the index page
names. With ``max_distance`` set, only candidates whose cosine distance to
the query (``1 - similarity``) is at most ``max_distance`` are eligible to be
re-ranked; they come first, by the model, and the rest follow in their
visual order. ``max_distance=None`` lets the model reorder everything (the
unconstrained re-ranker the chapter measures the risk with).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.models.position_debiased_clicks import (
    PositionDebiasedClickModel,
    fit_click_model,
)
from mlsd_lib.validation import (
    require_number,
)
from mlsd_lib.visual.online_test import ArmRun
from mlsd_lib.worlds.images_market import DAY_SECONDS, ImageMarket

__all__ = [
    "FEATURES",
    "ClickReranker",
    "ClickRerankerError",
    "WindowedCtr",
    "candidate_features",
    "click_examples",
    "train_click_reranker",
]

#: The re-ranker's features, in column order.
FEATURES: tuple[str, ...] = (
    "similarity",
    "gap to best",
    "ctr 24h",
    "log price",
    "in stock",
)


class ClickRerankerError(MlsdError, ValueError):
    """Logs or candidates the re-ranker cannot use; the message says why."""


class WindowedCtr:
    """Each product's click-through over a trailing window, as of any time.

    Built from a log of impressions (product, time) and clicks (product,
    time); :meth:`at` counts both in ``[t - window, t)`` for every (product,
    t) pair at once (two sorted key arrays and ``searchsorted``), and smooths
    ``(clicks + prior * base) / (impressions + prior)`` towards the log's
    overall rate ``base``, so a product shown twice is not rated 0 or 1.
    """

    def __init__(
        self,
        impression_products: np.ndarray,
        impression_times: np.ndarray,
        click_products: np.ndarray,
        click_times: np.ndarray,
        *,
        window_seconds: float = DAY_SECONDS,
        prior_impressions: float = 20.0,
    ) -> None:
        if window_seconds <= 0 or prior_impressions < 0:
            raise ClickRerankerError(
                f"window_seconds must be > 0 and prior_impressions >= 0, got "
                f"{window_seconds} and {prior_impressions}."
            )
        imp_p = np.asarray(impression_products, dtype=np.int64)
        clk_p = np.asarray(click_products, dtype=np.int64)
        if imp_p.size == 0:
            raise ClickRerankerError("no impressions logged: log some queries first.")
        self._span = float(
            max(np.max(impression_times), np.max(click_times, initial=0.0))
            + 2 * window_seconds
            + 1.0
        )
        self._impressions = np.sort(imp_p * self._span + impression_times)
        self._clicks = np.sort(clk_p * self._span + click_times)
        self.window_seconds = float(window_seconds)
        self.prior_impressions = float(prior_impressions)
        self.base_rate = clk_p.size / imp_p.size

    @classmethod
    def from_runs(
        cls,
        logs: list[tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]],
        **settings: float,
    ) -> WindowedCtr:
        """From logged lists: each entry ``(queries, shown, clicked,
        click_time)`` of what shoppers were shown and did."""
        imp_p, imp_t, clk_p, clk_t = [], [], [], []
        for queries, shown, clicked, click_time in logs:
            valid = np.asarray(shown) >= 0
            t = np.broadcast_to(queries["time"].to_numpy()[:, None], valid.shape)
            imp_p.append(shown[valid])
            imp_t.append(t[valid])
            clk_p.append(shown[clicked])
            clk_t.append(click_time[clicked])
        return cls(
            np.concatenate(imp_p),
            np.concatenate(imp_t),
            np.concatenate(clk_p),
            np.concatenate(clk_t),
            **settings,
        )

    def at(self, products: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Smoothed CTR of each product over the window before each time
        (broadcast)."""
        p, t = np.broadcast_arrays(
            np.asarray(products, dtype=np.int64), np.asarray(times, dtype=np.float64)
        )
        hi = p * self._span + t
        lo = hi - self.window_seconds

        def count(keys: np.ndarray) -> np.ndarray:
            return np.searchsorted(keys, hi, "left") - np.searchsorted(keys, lo, "left")

        prior = self.prior_impressions
        return (count(self._clicks) + prior * self.base_rate) / (
            count(self._impressions) + prior
        )


def candidate_features(
    market: ImageMarket,
    queries: pd.DataFrame,
    product_ids: np.ndarray,
    scores: np.ndarray,
    ctr: WindowedCtr,
) -> np.ndarray:
    """``(n, k, len(FEATURES))`` features of each query's candidates (padding
    slots, -1, get zeros)."""
    ids = np.asarray(product_ids, dtype=np.int64)
    sims = np.asarray(scores, dtype=np.float64)
    if ids.shape != sims.shape or ids.ndim != 2 or ids.shape[0] != len(queries):
        raise ClickRerankerError(
            f"product_ids {ids.shape} and scores {sims.shape} must both be "
            f"(n_queries, k) = ({len(queries)}, k)."
        )
    valid = ids >= 0
    safe = np.where(valid, ids, 0)
    t = np.broadcast_to(queries["time"].to_numpy()[:, None], ids.shape)
    region = queries["region"].to_numpy()[:, None]
    best = np.where(valid, sims, -np.inf).max(axis=1, initial=-np.inf)[:, None]
    columns = [
        sims,
        np.where(valid, best - sims, 0.0),
        ctr.at(safe, t),
        np.log(market.price_at(safe, t)),
        market.in_stock(safe, region, t).astype(np.float64),
    ]
    out = np.stack(columns, axis=-1)
    return np.where(valid[..., None], out, 0.0)


def click_examples(
    market: ImageMarket,
    queries: pd.DataFrame,
    run: ArmRun,
    ctr: WindowedCtr,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training rows from a logged arm: ``(features (m, F), slot (m,),
    clicked (m,))`` for every shown product of the queries ``rows`` selects
    (a bool mask; all by default). The arm must have logged its scores."""
    if run.scores is None:
        raise ClickRerankerError(
            "this arm logged no scores: log an arm that returns (ids, scores), "
            "such as searcher_arm(...)."
        )
    keep = np.ones(len(queries), bool) if rows is None else np.asarray(rows, bool)
    part = queries[keep].reset_index(drop=True)
    shown, scores = run.shown[keep], run.scores[keep]
    features = candidate_features(market, part, shown, scores, ctr)
    valid = shown >= 0
    slots = np.broadcast_to(np.arange(shown.shape[1]), shown.shape)
    clicked = run.engagement.clicked[keep]
    return features[valid], slots[valid].astype(np.int64), clicked[valid]


@dataclass(frozen=True)
class ClickReranker:
    """A click model and the constraint it runs under (module docstring)."""

    model: PositionDebiasedClickModel
    max_distance: float | None

    def __post_init__(self) -> None:
        # Any finite bound works (below 0: no candidate is eligible); NaN would
        # silently make every comparison false.
        if self.max_distance is not None:
            require_number("max_distance", self.max_distance, error=ClickRerankerError)

    def with_max_distance(self, max_distance: float | None) -> ClickReranker:
        """The same model under another constraint (None: unconstrained)."""
        return ClickReranker(self.model, max_distance)

    def order(self, features: np.ndarray, product_ids: np.ndarray) -> np.ndarray:
        """Each row's new order of slots ``(n, k)``: eligible candidates by
        the model's score, then the rest in their visual order, padding last."""
        ids = np.asarray(product_ids)
        valid = ids >= 0
        eligible = valid.copy()
        if self.max_distance is not None:
            distance = 1.0 - features[..., FEATURES.index("similarity")]
            eligible &= distance <= self.max_distance
        score = np.where(eligible, self.model.score(features), 0.0)
        slot = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
        group = np.where(eligible, 0, np.where(valid, 1, 2))
        return np.lexsort((slot, -score, group), axis=-1)

    def rerank(
        self,
        market: ImageMarket,
        ctr: WindowedCtr,
        queries: pd.DataFrame,
        product_ids: np.ndarray,
        scores: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The pages reordered: ``(product_ids, scores)``, same shapes."""
        features = candidate_features(market, queries, product_ids, scores, ctr)
        order = self.order(features, product_ids)
        return (
            np.take_along_axis(np.asarray(product_ids), order, axis=1),
            np.take_along_axis(np.asarray(scores), order, axis=1),
        )

    def step(
        self, market: ImageMarket, ctr: WindowedCtr
    ) -> Callable[
        [pd.DataFrame, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]
    ]:
        """The re-ranking step a search arm runs after the visual page
        (:func:`~mlsd_lib.visual.online_test.searcher_arm`'s ``rerank``)."""

        def step(
            queries: pd.DataFrame, ids: np.ndarray, scores: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray]:
            return self.rerank(market, ctr, queries, ids, scores)

        return step


def train_click_reranker(
    market: ImageMarket,
    queries: pd.DataFrame,
    run: ArmRun,
    ctr: WindowedCtr,
    *,
    rows: np.ndarray | None = None,
    max_distance: float | None = None,
    num_trees: int = 100,
    seed: int = 0,
) -> ClickReranker:
    """Fit the click model on a logged arm's impressions (:func:`click_examples`)
    and wrap it with the constraint ``max_distance``."""
    features, slots, clicked = click_examples(market, queries, run, ctr, rows)
    model = fit_click_model(
        features,
        slots,
        clicked,
        FEATURES,
        monotone={"similarity": 1, "gap to best": -1},
        num_trees=num_trees,
        seed=seed,
    )
    return ClickReranker(model, max_distance)
