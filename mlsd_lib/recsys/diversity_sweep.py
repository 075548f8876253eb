"""What diversity costs in relevance: the MMR trade-off swept over λ, rules on and off.

Introduced in ``casestudies/recommender/09_interview_followups.ipynb`` (the follow-up
"How do you keep the feed diverse?"). The feed's re-ranker
(:func:`~mlsd_lib.reranking.diversity.diversify`) builds each page greedily, trading the
ranker's score against similarity to what is already on the page (weight λ on relevance)
under two hard rules (at most 3 per series, at least 4 genres). This module runs it over
every user's candidates for a grid of λ, with the rules and without them, and measures
each setting's pages:

* **genres per page**, the share of **pages under the genre minimum** (fewer
  than ``min_distinct`` genres: the rule could not be met from the candidates
  retrieved, which is why retrieval over-fetches) and the share of **pages
  over the series cap** (more than ``max_per_group`` items of one series):
  what diversity buys;
* **intra-list similarity**
  (:func:`~mlsd_lib.reranking.diversity.mean_pairwise_similarity` of the page's
  embeddings): what MMR itself minimizes;
* **NDCG@k under the true gains** (:func:`true_minutes`, the world's expected
  engaged minutes of each candidate at the top slot): what diversity costs.
  The ideal ranking is the candidates by true gain (the oracle, 1 by
  construction), so the figure is the share of the oracle's value kept.

The pages come back too (``SweepResult.pages``), so a caller can ask the world
what each setting's feeds would do
(:func:`~mlsd_lib.recsys.evaluation.feed_outcomes`, which adds position bias and
patience). What no single-day measure shows, and the chapter says: a diverse
feed's value is long-term (users discover new tastes, the log gains data on
more items), which a world with fixed tastes per day does not credit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ranking import RelevantItems, ndcg_at_k
from mlsd_lib.progress import tqdm
from mlsd_lib.recsys.ceilings import truth_snapshot
from mlsd_lib.reranking.diversity import (
    DiversityRules,
    diversify,
    mean_pairwise_similarity,
)
from mlsd_lib.validation import (
    require_fraction,
)
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_truth import SECONDS_PER_DAY

__all__ = ["DiversitySweepError", "SweepResult", "diversity_sweep", "true_minutes"]


class DiversitySweepError(MlsdError, ValueError):
    """Candidates, scores or labels that do not fit together; says how."""


@dataclass(frozen=True)
class SweepResult:
    """``table``: one row per setting (see the module notes); ``pages``: each
    setting's pages, ``(users, page_size)`` item ids (-1 where a page came out
    short), keyed by the table's row name."""

    table: pd.DataFrame
    pages: dict[str, np.ndarray]


def true_minutes(
    world: RecsysWorld, day: int, users: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """``(users, depth)``: each candidate's true expected engaged minutes per
    impression at the top slot, at the start of ``day`` (0 for a -1 slot)."""
    candidates = np.asarray(candidates)
    users = np.asarray(users, dtype=np.int64)
    if candidates.ndim != 2 or len(candidates) != len(users):
        raise DiversitySweepError(
            f"candidates must be (users={len(users)}, depth), got shape "
            f"{candidates.shape}."
        )
    snapshot = truth_snapshot(world, day)
    t = day * SECONDS_PER_DAY
    items = np.maximum(candidates, 0)
    gain = snapshot.true_engaged_p(users[:, None], items, t, 0) * (
        snapshot.true_expected_minutes(users[:, None], items, t)
    )
    return np.where(candidates >= 0, gain, 0.0).astype(np.float64)


def _gains(candidates: np.ndarray, gains: np.ndarray) -> RelevantItems:
    """Each user's candidates with their gains, as the CSR NDCG reads."""
    valid = candidates >= 0
    rows = np.repeat(np.arange(len(candidates)), valid.sum(axis=1))
    items, values = candidates[valid], gains[valid]
    order = np.lexsort((items, rows))
    indptr = np.zeros(len(candidates) + 1, dtype=np.int64)
    np.cumsum(valid.sum(axis=1), out=indptr[1:])
    return RelevantItems(indptr, items[order], values[order])


def _setting_name(lam: float, rules_on: bool) -> str:
    return f"λ={lam:g}, " + ("rules" if rules_on else "no rules")


def diversity_sweep(
    candidates: np.ndarray,
    scores: np.ndarray,
    gains: np.ndarray,
    embeddings: np.ndarray,
    series: np.ndarray,
    genre: np.ndarray,
    lambdas: Sequence[float],
    *,
    rules: DiversityRules | None = None,
    k: int = 20,
    progress: bool = False,
) -> SweepResult:
    """Re-rank every user's candidates for each λ, with ``rules`` and without.

    ``candidates``, ``scores`` and ``gains`` are ``(users, depth)`` (item ids,
    the ranker's scores, the true gains; -1 for no candidate);
    ``embeddings``, ``series`` (-1: none) and ``genre`` are indexed by item id.
    "Without rules" lifts the series cap to the page size and drops the genre
    minimum. Each row of the table is one (λ, rules) setting.
    """
    for lam in lambdas:
        require_fraction("lambdas", lam, zero=True, error=DiversitySweepError)
    candidates = np.asarray(candidates)
    scores = np.asarray(scores, dtype=np.float64)
    gains = np.asarray(gains, dtype=np.float64)
    if candidates.ndim != 2 or scores.shape != candidates.shape:
        raise DiversitySweepError(
            f"scores {scores.shape} and candidates {candidates.shape} must be the "
            "same (users, depth) shape: one score per candidate."
        )
    if gains.shape != candidates.shape:
        raise DiversitySweepError(
            f"gains {gains.shape} must match candidates {candidates.shape}: one "
            "true gain per candidate (true_minutes builds them)."
        )
    if not lambdas:
        raise DiversitySweepError("lambdas is empty: pass the λ values to sweep.")
    rules = rules or DiversityRules(page_size=k)
    free = replace(rules, max_per_group=rules.page_size, min_distinct=0)
    relevance = _gains(candidates, gains)
    settings = [(lam, on) for lam in lambdas for on in (True, False)]
    table, pages = {}, {}
    for lam, on in tqdm(settings, desc="λ settings", disable=not progress):
        setting = replace(rules if on else free, relevance_weight=float(lam))
        page, similarity = _pages(
            candidates, scores, embeddings, series, genre, setting
        )
        name = _setting_name(lam, on)
        pages[name] = page
        shown = page >= 0
        page_genres = np.where(shown, genre[np.maximum(page, 0)], -1)
        page_series = np.where(shown, series[np.maximum(page, 0)], -1)
        genres_on_page = _distinct(page_genres)
        table[name] = {
            "λ": float(lam),
            "hard rules": on,
            "genres per page": float(np.mean(genres_on_page)),
            "pages under the genre minimum": float(
                np.mean(genres_on_page < rules.min_distinct)
            ),
            "pages over the series cap": float(
                np.mean(_largest_group(page_series) > rules.max_per_group)
            ),
            "intra-list similarity": float(np.mean(similarity)),
            f"NDCG@{k}": ndcg_at_k(page, relevance, k),
        }
    return SweepResult(pd.DataFrame(table).T, pages)


def _pages(
    candidates: np.ndarray,
    scores: np.ndarray,
    embeddings: np.ndarray,
    series: np.ndarray,
    genre: np.ndarray,
    rules: DiversityRules,
) -> tuple[np.ndarray, np.ndarray]:
    """One page per user (a request at a time, as the feed builds it)."""
    page = np.full((len(candidates), rules.page_size), -1, dtype=np.int64)
    similarity = np.zeros(len(candidates))
    for row, (items, score) in enumerate(zip(candidates, scores, strict=True)):
        valid = items >= 0
        items, score = items[valid], score[valid]
        built = diversify(
            score,
            embeddings[items],
            groups=series[items],
            genres=genre[items],
            rules=rules,
        )
        chosen = items[built.positions]
        page[row, : len(chosen)] = chosen
        similarity[row] = mean_pairwise_similarity(embeddings[chosen])
    return page, similarity


def _distinct(labels: np.ndarray) -> np.ndarray:
    """Distinct non-negative labels per row."""
    ordered = np.sort(labels, axis=1)
    new = np.diff(ordered, axis=1, prepend=-1) != 0
    return (new & (ordered >= 0)).sum(axis=1)


def _largest_group(labels: np.ndarray) -> np.ndarray:
    """Per row, the count of the most frequent non-negative label (0 if none)."""
    ordered = np.sort(labels, axis=1)
    largest = np.zeros(len(ordered), dtype=np.int64)
    run = np.ones(len(ordered), dtype=np.int64)
    for j in range(ordered.shape[1]):  # over the page's slots, not over users
        if j:
            run = np.where(ordered[:, j] == ordered[:, j - 1], run + 1, 1)
        largest = np.maximum(largest, np.where(ordered[:, j] >= 0, run, 0))
    return largest
