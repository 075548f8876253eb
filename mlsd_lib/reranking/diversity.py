"""Greedy maximal marginal relevance with hard page rules.

Introduced in ``casestudies/recommender/index.md``: a page of 20 with at most 3
items of one series or creator and at least 4 genres, and otherwise as relevant
and as varied as possible. A pointwise ranker cannot see any of this (each
score ignores the other items on the page), so the page is built greedily
after ranking, one slot at a time, by maximal marginal relevance (Carbonell &
Goldstein 1998): the next item maximizes

    λ · relevance(i) − (1 − λ) · max over picked j of cosine(e_i, e_j)

so λ = 1 is the ranker's order and smaller λ trades score for being unlike
what is already on the page. Relevance is the ranker's score min-max scaled to
[0, 1] within the request, so that λ means the same trade-off whatever the
scores' scale (logits, probabilities, expected minutes) and is comparable with
a cosine.

The hard rules are constraints on the greedy step, not penalties:

* ``max_per_group``: an item whose group (series, creator) already has that
  many items on the page is not eligible. This rule is never broken; if it
  leaves too few candidates the page comes out short.
* ``min_distinct``: when the slots left are no more than the genres still
  missing, only items that add a new genre are eligible (those adding the most
  when even one per slot would not be enough), so the last slots fill the gap.
  If no eligible item adds one, the page is still returned, best first.

Greedy is not an exact solver (picking a series' third item early can lock out
the only item of a missing genre), which is why a rule it could not meet is
reported in :attr:`DiversePage.unmet` instead of raised: a feed must still
render, and the monitor counts how often a rule fails. The cost is
``page_size`` passes over the candidates, each a matrix-vector product with
the embeddings: 20 x 500 x 64 multiply-adds for the book's sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError

__all__ = [
    "DiversePage",
    "DiversityInputError",
    "DiversityRules",
    "diversify",
    "mean_pairwise_similarity",
]


class DiversityInputError(MlsdError, ValueError):
    """Scores, embeddings or labels cannot be re-ranked; the message says why."""


@dataclass(frozen=True)
class DiversityRules:
    """The page: its size, the MMR trade-off λ (``relevance_weight``, 1 = pure
    relevance) and the two hard rules."""

    page_size: int = 20
    relevance_weight: float = 0.7
    max_per_group: int = 3
    min_distinct: int = 4

    def __post_init__(self) -> None:
        if self.page_size < 1 or self.max_per_group < 1 or self.min_distinct < 0:
            raise DiversityInputError(
                "page_size and max_per_group must be >= 1 and min_distinct >= 0, got "
                f"{self.page_size}, {self.max_per_group}, {self.min_distinct}."
            )
        if not 0.0 <= self.relevance_weight <= 1.0:
            raise DiversityInputError(
                f"relevance_weight (λ) must be in [0, 1], got {self.relevance_weight}."
            )


@dataclass(frozen=True)
class DiversePage:
    """The page as positions into the candidate arrays (``items[page.positions]``
    gives the ids), best first; ``unmet`` names the rules the page breaks
    (``"min_distinct"``, or ``"page_size"`` when it is short); ``n_genres`` is
    how many distinct genres it covers."""

    positions: np.ndarray
    unmet: tuple[str, ...]
    n_genres: int

    @property
    def ok(self) -> bool:
        return not self.unmet


def _genre_matrix(genres: ArrayLike | None, n: int) -> np.ndarray:
    """(n, G) bool: a 1-D label array (negative = no genre) or a bool matrix."""
    if genres is None:
        return np.zeros((n, 0), dtype=bool)
    labels = np.asarray(genres)
    if labels.ndim == 2 and labels.dtype == bool and len(labels) == n:
        return labels
    if (
        labels.ndim == 1
        and len(labels) == n
        and np.issubdtype(labels.dtype, np.integer)
    ):
        values, index = np.unique(labels, return_inverse=True)
        matrix = np.zeros((n, len(values)), dtype=bool)
        matrix[np.arange(n), index.reshape(-1)] = True
        return matrix[:, values >= 0]
    raise DiversityInputError(
        f"genres must be one int label per candidate ({n}) or an (n, n_genres) "
        f"bool matrix for items with several genres, got {labels.dtype} of shape "
        f"{labels.shape}."
    )


def _unit_rows(embeddings: ArrayLike, n: int) -> np.ndarray:
    vectors = np.asarray(embeddings, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) != n or not np.isfinite(vectors).all():
        raise DiversityInputError(
            f"embeddings must be a finite (n_candidates={n}, dim) array, got shape "
            f"{vectors.shape}."
        )
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)  # a zero vector: similarity 0


def diversify(
    scores: ArrayLike,
    embeddings: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    genres: ArrayLike | None = None,
    rules: DiversityRules | None = None,
) -> DiversePage:
    """Build a page from ranked candidates by greedy MMR under the hard rules.

    Introduced in ``casestudies/recommender/index.md``. ``scores`` (n,) and
    ``embeddings`` (n, d) describe the candidates; ``groups`` gives each one's
    series or creator as an int (negative: none, never capped) and ``genres``
    its genre (int label) or genres (bool matrix); without ``genres`` the genre
    rule is not applied, without ``groups`` the group rule. Ties go to the earlier
    candidate, so with λ = 1 and no binding rule the page is the candidates
    sorted by score (stable).
    """
    rules = rules or DiversityRules()
    relevance = np.asarray(scores, dtype=np.float64)
    if relevance.ndim != 1 or not np.isfinite(relevance).all():
        raise DiversityInputError(
            f"scores must be a finite 1-D array, got shape {relevance.shape}."
        )
    n = len(relevance)
    unit = _unit_rows(embeddings, n)
    genre = _genre_matrix(genres, n)
    if groups is None:
        group = np.full(n, -1, dtype=np.int64)
    else:
        group = np.asarray(groups)
        if group.shape != (n,) or not np.issubdtype(group.dtype, np.integer):
            raise DiversityInputError(
                f"groups must be one int per candidate ({n}), got {group.dtype} of "
                f"shape {group.shape}."
            )
    grouped = group >= 0
    _, group_index = np.unique(np.where(grouped, group, -1), return_inverse=True)
    group_index = group_index.reshape(-1)
    group_count = np.zeros(group_index.max(initial=0) + 1, dtype=np.int64)
    if n:
        spread = float(np.ptp(relevance))
        relevance = (relevance - relevance.min()) / (spread if spread else 1.0)
    lam = rules.relevance_weight

    available = np.ones(n, dtype=bool)
    max_similarity = np.zeros(n)  # no penalty before the first pick
    covered = np.zeros(genre.shape[1], dtype=bool)
    page: list[int] = []
    for slot in range(rules.page_size):
        allowed = available & (
            ~grouped | (group_count[group_index] < rules.max_per_group)
        )
        if not allowed.any():
            break
        missing = rules.min_distinct - int(covered.sum())
        slots_left = rules.page_size - slot
        if missing > 0 and missing >= slots_left:
            adds = (genre & ~covered).sum(axis=1)
            useful = allowed & (adds > 0)
            if useful.any():
                allowed = useful
                if missing > slots_left:  # one new genre a slot is not enough
                    allowed &= adds == adds[useful].max()
        value = lam * relevance - (1.0 - lam) * max_similarity
        pick = int(np.argmax(np.where(allowed, value, -np.inf)))
        page.append(pick)
        available[pick] = False
        if grouped[pick]:
            group_count[group_index[pick]] += 1
        covered |= genre[pick]
        similarity = unit @ unit[pick]
        max_similarity = (
            similarity if slot == 0 else np.maximum(max_similarity, similarity)
        )
    unmet = []
    if genres is not None and covered.sum() < rules.min_distinct:
        unmet.append("min_distinct")
    if len(page) < rules.page_size:
        unmet.append("page_size")
    return DiversePage(
        np.asarray(page, dtype=np.int64), tuple(unmet), int(covered.sum())
    )


def mean_pairwise_similarity(embeddings: ArrayLike) -> float:
    """Mean cosine similarity over the pairs of a list (intra-list similarity,
    Ziegler et al. 2005): lower is more diverse. 0 for fewer than two items."""
    unit = _unit_rows(embeddings, len(np.asarray(embeddings)))
    n = len(unit)
    if n < 2:
        return 0.0
    gram = unit @ unit.T
    return float((gram.sum() - np.trace(gram)) / (n * (n - 1)))
