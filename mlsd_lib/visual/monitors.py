"""Visual search's monitors: query-embedding drift, top-1 distance and empty pages,
per time window of logged searches, with alert rules and detection delays.

Introduced in ``casestudies/visual_search/08_monitoring_and_retraining.ipynb``
(monitoring: "query-embedding drift, top-1 distance, empty-result rate"). Visual search
has no label at serving time: nobody tells us the product in the photo. What the
impression log does hold (:func:`~mlsd_lib.visual.gateway.impression_line`) is each
query region's embedding and the page's scores, and that is enough to notice that the
queries are no longer the ones the release was built for. A :class:`SearchLog` holds
those columns for many searches, each with its time window (an hour of traffic, say);
:func:`monitor_searches` computes, per window:

* **query-embedding drift** (:mod:`~mlsd_lib.monitoring.embedding_drift`):
  ``mean_shift`` (the mean query moved, in units of sampling noise),
  ``psi_max`` (PSI on the reference's principal directions) and ``far_share``
  (queries far from every catalogue category centroid);
* ``category_psi``: PSI of the top-1 product's category against the
  reference's mix. A kind of product the embedder has never seen lands near
  the known categories (it does not look "far"), so the drift statistics
  barely move; but its photos all answer with the one or two categories they
  resemble, and the mix of what the page shows shifts;
* ``top1_distance``: the median cosine distance ``1 - score`` of each page's
  best product. Photos the embedder no longer understands land farther from
  everything in the catalogue;
* ``empty_rate``: the share of searches whose page, **after the filters**,
  holds no product scoring at least ``min_score``: the relevance floor below
  which a page would say "no similar products" rather than show noise. The
  floor is the release's own: the ``empty_quantile`` (2 %) of the reference
  windows' top-1 scores, unless set;
* ``recall_truth`` when the log knows it (a simulation knows the product
  photographed): shown to judge the other monitors, never acted on
  (:data:`TRUTH_METRICS`), as in the recommender's monitors.

**Reference and baselines.** The first ``reference_windows`` windows of the log
are the release's reference: the embedding statistics are measured against them,
each metric's baseline is its mean over them, and no alert fires in them. A
new release starts a new log (its embeddings live in another space).
:data:`DEFAULT_RULES` (:class:`~mlsd_lib.monitoring.alerts.AlertRule`) are
checked in every later window; :meth:`SearchMonitorReport.detection_delays`
says how many windows each monitor took to fire after a known injection, and
:meth:`SearchMonitorReport.false_alarms` counts alerts where nothing changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.monitoring.alerts import Alert, AlertRule, check_rules
from mlsd_lib.monitoring.drift import PSI_ALERT, psi
from mlsd_lib.monitoring.embedding_drift import (
    EmbeddingReference,
    embedding_drift,
    fit_embedding_reference,
)
from mlsd_lib.visual.search import VisualBatch

__all__ = [
    "DEFAULT_RULES",
    "METRICS",
    "TRUTH_METRICS",
    "SearchLog",
    "SearchMonitorError",
    "SearchMonitorReport",
    "SearchMonitorSettings",
    "monitor_searches",
]

#: Every number a window gets, in display order.
METRICS = (
    "mean_shift",
    "psi_max",
    "far_share",
    "category_psi",
    "top1_distance",
    "empty_rate",
    "recall_truth",
)
#: Metrics that read the world's truth: shown, never acted on.
TRUTH_METRICS = ("recall_truth",)
#: The alert rules: the mean query 5 x sampling noise away, PSI on a principal
#: direction past the usual alert level, 10 points more queries far from every
#: category, the top-1 category mix past the PSI alert level, the median top-1
#: distance 25 % above its baseline, 5 points more
#: empty pages.
DEFAULT_RULES: tuple[AlertRule, ...] = (
    AlertRule("mean_shift", 5.0),
    AlertRule("psi_max", PSI_ALERT),
    AlertRule("far_share", 0.10, "above", "delta"),
    AlertRule("category_psi", PSI_ALERT),
    AlertRule("top1_distance", 0.25, "above", "relative"),
    AlertRule("empty_rate", 0.05, "above", "delta"),
)


class SearchMonitorError(MlsdError, ValueError):
    """A log or setting the monitors cannot use; the message says what to fix."""


@dataclass(frozen=True)
class SearchLog:
    """Logged searches as columns: each one's ``window`` (int), query
    ``embeddings`` ``(n, d)``, the page's scores after the filters
    ``page_scores`` ``(n, P)`` (NaN where the page has no product), the
    category of the page's first product ``top1_category`` (-1: none) and,
    in a simulation, ``found`` (the product photographed was on the page's
    first K; None in production)."""

    window: np.ndarray
    embeddings: np.ndarray
    page_scores: np.ndarray
    top1_category: np.ndarray
    found: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.window.shape[0]
        if self.window.ndim != 1 or self.embeddings.ndim != 2:
            raise SearchMonitorError(
                f"window must be (n,) and embeddings (n, d), got {self.window.shape} "
                f"and {self.embeddings.shape}."
            )
        shapes = [
            self.embeddings.shape[0],
            self.page_scores.shape[0],
            self.top1_category.shape[0],
        ]
        if self.found is not None:
            shapes.append(self.found.shape[0])
        if self.page_scores.ndim != 2 or any(s != n for s in shapes):
            raise SearchMonitorError(
                f"every column needs one row per search ({n}); got embeddings "
                f"{self.embeddings.shape}, page_scores {self.page_scores.shape}"
                + ("" if self.found is None else f", found {self.found.shape}")
                + "."
            )

    def __len__(self) -> int:
        return int(self.window.shape[0])

    @property
    def top1_scores(self) -> np.ndarray:
        """The page's best score per search (NaN: an empty page)."""
        return (
            self.page_scores[:, 0]
            if self.page_scores.shape[1]
            else np.full(len(self), np.nan)
        )

    @classmethod
    def from_batch(
        cls,
        window: ArrayLike,
        embeddings: ArrayLike,
        batch: VisualBatch,
        category_of: np.ndarray,
        found: ArrayLike | None = None,
    ) -> SearchLog:
        """A log of searches run by
        :meth:`~mlsd_lib.visual.search.VisualSearcher.search_batch` (the code
        the server runs): the page's scores, padding as NaN; ``category_of``
        maps a product id to its category."""
        page = batch.products
        scores = np.where(page.product_ids >= 0, page.scores, np.nan)
        n = page.n_queries
        first = page.product_ids[:, 0] if page.product_ids.shape[1] else np.full(n, -1)
        return cls(
            window=np.broadcast_to(np.asarray(window, np.int64), (n,)).copy(),
            embeddings=np.asarray(embeddings, np.float32),
            page_scores=scores.astype(np.float64),
            top1_category=np.where(
                first >= 0, np.asarray(category_of)[np.maximum(first, 0)], -1
            ),
            found=None if found is None else np.asarray(found, bool),
        )

    @classmethod
    def from_impressions(
        cls, lines: Iterable[Mapping[str, Any]], window_of: Callable[[float], int]
    ) -> SearchLog:
        """A log of the gateway's impression lines (``kind ==
        "visual_search"``); ``window_of`` maps a line's ``time`` to its window.
        Degraded pages (no embedding or no scores: a dependency failed) are
        left out: they are the availability monitors' business."""
        rows = [
            x
            for x in lines
            if x.get("kind") == "visual_search"
            and not x.get("degraded")
            and x.get("embedding") is not None
        ]
        if not rows:
            raise SearchMonitorError(
                "no served visual search in these impression lines: pass the "
                "gateway's log (kinds 'visual_search', not degraded)."
            )
        width = max(len(x["scores"]) for x in rows)
        scores = np.full((len(rows), width), np.nan)
        for i, x in enumerate(rows):
            scores[i, : len(x["scores"])] = [
                np.nan if s is None else s for s in x["scores"]
            ]
        return cls(
            window=np.array([window_of(x["time"]) for x in rows], np.int64),
            embeddings=np.array([x["embedding"] for x in rows], np.float32),
            page_scores=scores,
            top1_category=np.array(
                [x["category_ids"][0] if x["category_ids"] else -1 for x in rows],
                np.int64,
            ),
        )

    @staticmethod
    def concat(logs: Sequence[SearchLog]) -> SearchLog:
        """One log of several (all with ``found`` or all without)."""
        if not logs:
            raise SearchMonitorError("concat needs at least one log.")
        width = max(log.page_scores.shape[1] for log in logs)
        pad = [
            np.pad(
                log.page_scores,
                ((0, 0), (0, width - log.page_scores.shape[1])),
                constant_values=np.nan,
            )
            for log in logs
        ]
        founds = [log.found for log in logs]
        if any(f is None for f in founds) and not all(f is None for f in founds):
            raise SearchMonitorError(
                "some logs know the truth (found) and some do not: concatenate "
                "like with like."
            )
        return SearchLog(
            window=np.concatenate([log.window for log in logs]),
            embeddings=np.concatenate([log.embeddings for log in logs]),
            page_scores=np.concatenate(pad),
            top1_category=np.concatenate([log.top1_category for log in logs]),
            found=None if founds[0] is None else np.concatenate(founds),
        )


@dataclass(frozen=True)
class SearchMonitorSettings:
    """How the monitors read a log: the reference windows, the principal
    directions and far quantile of the embedding drift, the empty page's
    relevance floor (``min_score``; None: the reference's ``empty_quantile``
    of top-1 scores) and the alert rules."""

    reference_windows: int = 3
    n_components: int = 8
    far_quantile: float = 0.05
    min_score: float | None = None
    empty_quantile: float = 0.02
    rules: tuple[AlertRule, ...] = DEFAULT_RULES

    def __post_init__(self) -> None:
        if self.reference_windows < 1:
            raise SearchMonitorError(
                f"reference_windows must be >= 1, got {self.reference_windows}: "
                "the monitors compare every later window with them."
            )
        unknown = [r.metric for r in self.rules if r.metric not in METRICS]
        if unknown:
            raise SearchMonitorError(
                f"rules on unknown metrics {unknown}; the monitors measure "
                f"{list(METRICS)}."
            )


@dataclass(frozen=True)
class SearchMonitorReport:
    """Per window: the metrics (:attr:`frame`, windows as index), which rules
    fired (:attr:`fired`, one column per rule's metric), the alerts with their
    reasons; and the baselines and floor they were judged with."""

    frame: pd.DataFrame
    fired: pd.DataFrame
    alerts: dict[int, list[Alert]]
    baselines: dict[str, float]
    min_score: float
    reference: tuple[int, ...]
    rules: tuple[AlertRule, ...] = field(repr=False)

    def threshold(self, metric: str) -> float:
        """The value past which ``metric``'s rule fires."""
        rule = next((r for r in self.rules if r.metric == metric), None)
        if rule is None:
            raise SearchMonitorError(
                f"no rule on {metric!r}; rules: {[r.metric for r in self.rules]}."
            )
        return rule.threshold(self.baselines.get(metric))

    def first_alert(
        self, metric: str, start: int, stop: int | None = None
    ) -> int | None:
        """The first window in ``[start, stop)`` where ``metric``'s rule fired."""
        fired = self.fired[metric]
        hits = fired.index[(fired.index >= start) & fired.to_numpy()]
        if stop is not None:
            hits = hits[hits < stop]
        return None if hits.empty else int(hits[0])

    def detection_delays(self, injections: Mapping[str, int]) -> pd.DataFrame:
        """Windows from each injection (name: window it began) to each rule's
        first alert, before the next injection; NaN where it did not fire.
        Rows: rules' metrics; columns: injections."""
        starts = sorted(injections.items(), key=lambda kv: kv[1])
        table = {}
        for i, (name, start) in enumerate(starts):
            stop = starts[i + 1][1] if i + 1 < len(starts) else None
            table[name] = {
                metric: (
                    np.nan
                    if (first := self.first_alert(metric, start, stop)) is None
                    else float(first - start)
                )
                for metric in self.fired.columns
            }
        return pd.DataFrame(table).rename_axis("monitor")

    def false_alarms(self, before: int | None = None) -> pd.Series:
        """Alerts per rule after the reference and before window ``before``
        (None: the whole log): where nothing was injected, each is false."""
        fired = self.fired
        if before is not None:
            fired = fired[fired.index < before]
        return fired.sum().astype(int).rename("false alarms")


def _window_metrics(
    log: SearchLog,
    rows: np.ndarray,
    reference: EmbeddingReference,
    categories: np.ndarray,
    min_score: float,
) -> dict[str, float]:
    drift = embedding_drift(reference, log.embeddings[rows])
    top1 = log.top1_scores[rows]
    page = log.page_scores[rows]
    served = ~np.isnan(top1)
    return {
        **drift.as_dict(),
        "category_psi": psi(
            categories.astype(str),
            log.top1_category[rows].astype(str),
            categorical=True,
        ),
        "top1_distance": float(np.median(1.0 - top1[served]))
        if served.any()
        else np.nan,
        "empty_rate": float(
            np.mean(~(np.nan_to_num(page, nan=-np.inf) >= min_score).any(axis=1))
        ),
        "recall_truth": np.nan if log.found is None else float(log.found[rows].mean()),
    }


def monitor_searches(
    log: SearchLog,
    centroids: ArrayLike | None = None,
    settings: SearchMonitorSettings | None = None,
) -> SearchMonitorReport:
    """The monitors over every window of ``log`` (see the module notes).

    ``centroids``: the release's category centroids (the far share's
    anchors; None: no far share, and a rule on it is dropped).
    """
    settings = settings or SearchMonitorSettings()
    windows = np.unique(log.window)
    if windows.size <= settings.reference_windows:
        raise SearchMonitorError(
            f"the log has {windows.size} windows and the reference takes the first "
            f"{settings.reference_windows}: log more windows, or shorten the "
            "reference."
        )
    reference_ids = windows[: settings.reference_windows]
    in_reference = np.isin(log.window, reference_ids)
    reference = fit_embedding_reference(
        log.embeddings[in_reference],
        n_components=settings.n_components,
        centroids=centroids,
        far_quantile=settings.far_quantile,
    )
    min_score = settings.min_score
    if min_score is None:
        top1 = log.top1_scores[in_reference]
        min_score = float(np.nanquantile(top1, settings.empty_quantile))
    rows = {int(w): np.flatnonzero(log.window == w) for w in windows}
    frame = pd.DataFrame.from_dict(
        {
            w: _window_metrics(
                log, r, reference, log.top1_category[in_reference], min_score
            )
            for w, r in rows.items()
        },
        orient="index",
    ).rename_axis("window")
    frame.insert(0, "searches", [r.size for r in rows.values()])
    baselines = frame.loc[reference_ids, list(METRICS)].mean().to_dict()
    rules = tuple(
        r
        for r in settings.rules
        if r.metric not in TRUTH_METRICS
        and not (r.metric == "far_share" and centroids is None)
    )
    alerts: dict[int, list[Alert]] = {}
    fired = pd.DataFrame(False, index=frame.index, columns=[r.metric for r in rules])
    for w in windows[settings.reference_windows :]:
        raised = check_rules(rules, frame.loc[w], baselines)
        alerts[int(w)] = raised
        for alert in raised:
            fired.loc[w, alert.metric] = True
    return SearchMonitorReport(
        frame=frame,
        fired=fired,
        alerts=alerts,
        baselines={k: float(v) for k, v in baselines.items()},
        min_score=float(min_score),
        reference=tuple(int(w) for w in reference_ids),
        rules=rules,
    )
