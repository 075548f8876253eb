"""The near-duplicate threshold, chosen on labelled pairs for a stated precision.

Introduced in ``casestudies/visual_search/05_evaluation.ipynb`` (follow-up "How does
dedup work, and how do you set its threshold?"). Walking down the re-ranked list, a
product is dropped when its image is within a threshold of a product already kept.
Dropping a distinct product costs more than showing a duplicate (the user loses a result
they might have bought), so the threshold is set for a precision: of the pairs it calls
duplicates, at least ``target_precision`` (say 99%) must be; among such thresholds the
one that catches the most duplicates (highest recall) wins.

Scores are either similarities (a pair is called a duplicate when
``score >= threshold``) or distances (``score <= threshold``): ``kind`` says
which, so inner products, cosines and L2 distances all work. The candidate
thresholds are the observed scores themselves; the precision-recall curve
(:func:`precision_recall_curve`) has one point per distinct score, from the
strictest threshold to the loosest, computed with one sort and two cumulative
sums. The threshold is chosen on one set of labelled pairs and its precision
must then be measured on another (:func:`dedup_quality`): chosen and measured
on the same pairs, 0.99 is optimistic, by construction.

When no threshold reaches the target, the error says the best precision that
is reachable and where, rather than returning a threshold that misses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError

__all__ = [
    "DedupQuality",
    "DedupThreshold",
    "DedupThresholdError",
    "PrecisionRecallCurve",
    "choose_dedup_threshold",
    "dedup_quality",
    "precision_recall_curve",
]

KINDS = ("similarity", "distance")


class DedupThresholdError(MlsdError, ValueError):
    """Pairs or a target from which no threshold can be chosen; says why."""


def _pairs(
    scores: ArrayLike, is_duplicate: ArrayLike, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64 (larger = more alike) and labels as bool, checked."""
    if kind not in KINDS:
        raise DedupThresholdError(
            f"kind must be 'similarity' (duplicates score high) or 'distance' "
            f"(duplicates score low), got {kind!r}."
        )
    values = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(is_duplicate)
    if values.ndim != 1 or labels.shape != values.shape:
        raise DedupThresholdError(
            f"scores and is_duplicate must be 1-D and of one length (one per "
            f"labelled pair), got shapes {values.shape} and {labels.shape}."
        )
    if len(values) == 0:
        raise DedupThresholdError("no labelled pairs: label some pairs first.")
    if not np.isfinite(values).all():
        raise DedupThresholdError(
            f"scores hold NaN or infinity (first at pair "
            f"{int(np.flatnonzero(~np.isfinite(values))[0])}); fix the vectors."
        )
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise DedupThresholdError(
                "is_duplicate must be bool or 0/1, one label per pair."
            )
        labels = labels.astype(bool)
    return (values if kind == "similarity" else -values), labels


@dataclass(frozen=True)
class PrecisionRecallCurve:
    """One point per distinct score, strictest threshold first.

    At ``thresholds[i]`` (a similarity: pairs ``>=`` it are called duplicates;
    a distance: pairs ``<=`` it) the called pairs have ``precision[i]`` and
    catch ``recall[i]`` of the duplicates; ``flagged[i]`` pairs are called.
    """

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    flagged: np.ndarray
    kind: str

    def __len__(self) -> int:
        return len(self.thresholds)


def precision_recall_curve(
    scores: ArrayLike, is_duplicate: ArrayLike, *, kind: str = "similarity"
) -> PrecisionRecallCurve:
    """Precision and recall of "duplicate" at every distinct score.

    Introduced in ``casestudies/visual_search/index.md``. Needs at least one
    duplicate pair (recall divides by their number).
    """
    alike, labels = _pairs(scores, is_duplicate, kind)
    n_duplicates = int(labels.sum())
    if n_duplicates == 0:
        raise DedupThresholdError(
            f"none of the {len(labels)} pairs is labelled a duplicate, so recall "
            "is undefined: add known duplicate pairs (the world's duplicate_pairs)."
        )
    order = np.argsort(-alike, kind="stable")
    alike, labels = alike[order], labels[order]
    true_pos = np.cumsum(labels)
    # The last pair of each run of equal scores: a threshold takes all or none.
    last = np.flatnonzero(np.r_[alike[1:] != alike[:-1], True])
    flagged = last + 1
    sign = 1.0 if kind == "similarity" else -1.0
    return PrecisionRecallCurve(
        thresholds=sign * alike[last],
        precision=true_pos[last] / flagged,
        recall=true_pos[last] / n_duplicates,
        flagged=flagged,
        kind=kind,
    )


@dataclass(frozen=True)
class DedupThreshold:
    """The chosen threshold and what it achieves on the pairs it was chosen on."""

    threshold: float
    kind: str
    target_precision: float
    precision: float
    recall: float
    n_pairs: int
    n_duplicates: int
    curve: PrecisionRecallCurve

    def is_duplicate(self, scores: ArrayLike) -> np.ndarray:
        """Whether each score is on the duplicate side of the threshold."""
        values = np.asarray(scores, dtype=np.float64)
        if self.kind == "similarity":
            return values >= self.threshold
        return values <= self.threshold


def choose_dedup_threshold(
    scores: ArrayLike,
    is_duplicate: ArrayLike,
    target_precision: float = 0.99,
    *,
    kind: str = "similarity",
) -> DedupThreshold:
    """The threshold with the highest recall among those whose precision is at
    least ``target_precision`` (ties: the higher precision).

    Introduced in ``casestudies/visual_search/index.md``. ``scores`` and
    ``is_duplicate`` are one per labelled pair (both kinds of pair needed).
    Raises :class:`DedupThresholdError` naming the best reachable precision
    when no threshold reaches the target.
    """
    if not 0.0 < target_precision <= 1.0:
        raise DedupThresholdError(
            f"target_precision must be in (0, 1], got {target_precision}."
        )
    curve = precision_recall_curve(scores, is_duplicate, kind=kind)
    labels = np.asarray(is_duplicate).astype(bool)
    if labels.all():
        raise DedupThresholdError(
            f"all {len(labels)} pairs are labelled duplicates, so every threshold "
            "has precision 1: add distinct pairs (look-alikes, same-category "
            "products) to measure what a threshold wrongly drops."
        )
    eligible = np.flatnonzero(curve.precision >= target_precision - 1e-12)
    side = ">=" if kind == "similarity" else "<="
    if eligible.size == 0:
        best = int(np.lexsort((curve.recall, curve.precision))[-1])
        raise DedupThresholdError(
            f"no threshold reaches precision {target_precision} on these "
            f"{len(labels)} pairs ({int(labels.sum())} duplicates): the best "
            f"reachable is {curve.precision[best]:.4f} (at {kind} {side} "
            f"{curve.thresholds[best]:.4g}, recall {curve.recall[best]:.4f}). "
            "Lower target_precision, or separate the pairs better (a better "
            "embedder, or exact copies caught by a perceptual hash first)."
        )
    pick = eligible[np.lexsort((curve.precision[eligible], curve.recall[eligible]))[-1]]
    return DedupThreshold(
        threshold=float(curve.thresholds[pick]),
        kind=kind,
        target_precision=float(target_precision),
        precision=float(curve.precision[pick]),
        recall=float(curve.recall[pick]),
        n_pairs=len(labels),
        n_duplicates=int(labels.sum()),
        curve=curve,
    )


@dataclass(frozen=True)
class DedupQuality:
    """Precision and recall of a fixed threshold on labelled pairs.

    ``precision`` is NaN when the threshold calls no pair a duplicate (nothing
    dropped, nothing to be right about); ``recall`` is NaN without duplicates.
    """

    precision: float
    recall: float
    flagged: int
    n_pairs: int
    n_duplicates: int


def dedup_quality(
    scores: ArrayLike,
    is_duplicate: ArrayLike,
    threshold: float | DedupThreshold,
    *,
    kind: str | None = None,
) -> DedupQuality:
    """Precision and recall of ``threshold`` on (held-out) labelled pairs.

    Introduced in ``casestudies/visual_search/index.md``: a threshold chosen by
    :func:`choose_dedup_threshold` is measured here on other pairs. Pass the
    :class:`DedupThreshold` itself (its ``kind`` is used) or a number with
    ``kind`` (default ``"similarity"``).
    """
    if isinstance(threshold, DedupThreshold):
        if kind is not None and kind != threshold.kind:
            raise DedupThresholdError(
                f"kind={kind!r} contradicts the threshold's own kind "
                f"{threshold.kind!r}: leave kind out."
            )
        kind, value = threshold.kind, threshold.threshold
    else:
        kind, value = kind or "similarity", float(threshold)
    alike, labels = _pairs(scores, is_duplicate, kind)
    called = alike >= (value if kind == "similarity" else -value)
    flagged, caught = int(called.sum()), int((called & labels).sum())
    n_duplicates = int(labels.sum())
    return DedupQuality(
        precision=caught / flagged if flagged else float("nan"),
        recall=caught / n_duplicates if n_duplicates else float("nan"),
        flagged=flagged,
        n_pairs=len(labels),
        n_duplicates=n_duplicates,
    )
