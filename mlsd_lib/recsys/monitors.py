"""The recommender's daily monitors: input drift, retrieval recall decay and
popularity concentration, with alert rules that feed the retraining policy.

Introduced in ``casestudies/recommender/08_monitoring_and_retraining.ipynb`` (step 7,
"Monitoring and retraining"; panel B's "monitoring: feature drift, retrieval recall,
..., catalogue coverage, popularity share"). A :class:`FeedMonitor` watches a release
serving the world through a
:class:`~mlsd_lib.recsys.served_policy.ServedFeedPolicy`, one day at a time:
:meth:`FeedMonitor.start_day` before the day is simulated (the world's truth
as the day begins), :meth:`FeedMonitor.end_day` with the day's log. Each day's
:class:`DayReport` holds:

* **input drift**: PSI (:func:`~mlsd_lib.monitoring.drift.psi`) of what the
  user tower was fed at each request, against the release's reference window:
  the genres of the newest :attr:`MonitorSettings.history_slots` history
  entries (``psi_history_genre``, the taste mix) and log1p of the 7-day
  session and engaged-play counts (``psi_sessions_7d``,
  ``psi_engaged_plays_7d``, the activity); and the catalogue side,
  ``unindexed_share``: the share of the day's catalogue that the served index
  does not hold (items launched since it was built, which retrieval cannot
  return);
* **retrieval recall**: the release's own retrieval (user tower on the
  history as the day began, exact inner product over the items its index
  holds, filtered like the feed) at :attr:`MonitorSettings.recall_k`, against
  the day's engaged plays of items new to the user (``recall_plays``) and
  against the world's true top K of a fixed sample of users
  (``recall_truth``, :func:`~mlsd_lib.recsys.ceilings.oracle_ranking`); exact
  search so that index tuning is never mistaken for model decay (ANN recall
  is measured apart, in :mod:`mlsd_lib.index`);
* **exposure**: the share of impressions that went to the top 1 % of items
  (``top1_share``, :func:`~mlsd_lib.evaluation.ranking.top_share`), the share
  that went to items launched in the last ``new_item_days`` (``new_item_share``)
  and the engaged plays per impression.

**Reference window and baselines.** A new release changes the traffic it is
later compared with (it shows other items, so users play other things), so the
reference is the release's own first ``reference_days`` days in production: the
PSI bins come from the inputs of those days, and each metric's baseline (its
"value at deployment") is its mean over them. No alert fires in the reference
window; a swap to another release (the policy's ``release`` changes) starts a
new one. After it, :data:`DEFAULT_RULES`
(:class:`~mlsd_lib.monitoring.alerts.AlertRule`) are checked each day.

**What production can see.** Recall against the truth needs the world's
ground truth, which no real system has: it is on the panel to show what the
other monitors stand in for, and it is kept out of
:attr:`DayReport.reasons`, the alerts a
:class:`~mlsd_lib.monitoring.retraining.RetrainingTrigger` is given
(:data:`TRUTH_METRICS`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ranking import RelevantItems, recall_at_k, top_share
from mlsd_lib.features.histories import Histories
from mlsd_lib.index.ann import AnnIndex
from mlsd_lib.monitoring.alerts import Alert, AlertRule, check_rules
from mlsd_lib.monitoring.drift import PSI_ALERT, psi
from mlsd_lib.recsys.ceilings import held_out_plays, oracle_ranking, true_top_relevance
from mlsd_lib.recsys.evaluation import rank_catalogue
from mlsd_lib.recsys.feed import FeedModels
from mlsd_lib.recsys.served_policy import ServedFeedPolicy
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_log import RecsysLog
from mlsd_lib.worlds.recsys_truth import SECONDS_PER_DAY

__all__ = [
    "DEFAULT_RULES",
    "INPUTS",
    "METRICS",
    "TRUTH_METRICS",
    "DayReport",
    "FeedMonitor",
    "MonitorError",
    "MonitorSettings",
    "indexed_items",
    "request_inputs",
]

#: The user-tower inputs whose PSI is watched, one sample per request (the
#: history's genres: one per filled slot of the newest ``history_slots``).
INPUTS = ("history_genre", "sessions_7d", "engaged_plays_7d")
#: Every number a :class:`DayReport` holds, in display order.
METRICS = (
    "psi_history_genre",
    "psi_sessions_7d",
    "psi_engaged_plays_7d",
    "unindexed_share",
    "recall_plays",
    "recall_truth",
    "top1_share",
    "new_item_share",
    "engaged_rate",
)
#: Metrics that read the world's truth: shown, never acted on.
TRUTH_METRICS = ("recall_truth",)
#: The alert rules (see :mod:`~mlsd_lib.monitoring.alerts`): PSI past the usual
#: alert level, more than 5 % of the catalogue out of the index, recall 15 %
#: below its value at deployment, the top-1 % share up by 5 points.
DEFAULT_RULES: tuple[AlertRule, ...] = (
    AlertRule("psi_history_genre", PSI_ALERT),
    AlertRule("psi_sessions_7d", PSI_ALERT),
    AlertRule("psi_engaged_plays_7d", PSI_ALERT),
    AlertRule("unindexed_share", 0.05),
    AlertRule("recall_plays", 0.15, "below", "relative"),
    AlertRule("recall_truth", 0.15, "below", "relative"),
    AlertRule("top1_share", 0.05, "above", "delta"),
)


class MonitorError(MlsdError, ValueError):
    """The monitor was asked out of order or with inputs that do not fit."""


@dataclass(frozen=True)
class MonitorSettings:
    """What the monitors measure and over what.

    ``recall_k``: the cut-off of both recalls; ``truth_users``: the size of the
    fixed user sample recall against the truth is measured on;
    ``history_slots``: the newest history entries whose genres form the taste
    mix; ``top_fraction``: the "top" of the concentration share;
    ``new_item_days``: how recent a launch counts as new; ``reference_days``:
    each release's reference window; ``psi_bins``: quantile bins of the
    numeric inputs.
    """

    recall_k: int = 100
    truth_users: int = 500
    history_slots: int = 3
    top_fraction: float = 0.01
    new_item_days: int = 7
    reference_days: int = 2
    psi_bins: int = 10

    def __post_init__(self) -> None:
        for name in (
            "recall_k",
            "truth_users",
            "history_slots",
            "new_item_days",
            "reference_days",
        ):
            if getattr(self, name) < 1:
                raise MonitorError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not 0 < self.top_fraction <= 1:
            raise MonitorError(
                f"top_fraction must be in (0, 1], got {self.top_fraction}."
            )


@dataclass(frozen=True)
class DayReport:
    """One monitored day: the release that served it, every metric, and the
    alerts (none in the release's reference window)."""

    day: int
    release: str
    reference: bool
    values: dict[str, float]
    alerts: tuple[Alert, ...] = ()

    @property
    def reasons(self) -> list[str]:
        """The alerts production could raise, as sentences (what a retraining
        trigger is given): every alert but those on :data:`TRUTH_METRICS`."""
        return [a.reason for a in self.alerts if a.metric not in TRUTH_METRICS]

    def row(self) -> dict[str, object]:
        """A flat row: day, release, phase, the metrics, the alerted metrics."""
        return {
            "day": self.day,
            "release": self.release,
            "phase": "reference" if self.reference else "monitor",
            **self.values,
            "alerts": ", ".join(alert.metric for alert in self.alerts),
        }


def indexed_items(index: AnnIndex) -> np.ndarray:
    """The item ids an index holds, sorted (its ``IDMap``'s ids)."""
    import faiss  # the index package's dependency, imported where used

    inner = index.faiss_index
    if not hasattr(inner, "id_map"):
        raise MonitorError(
            f"the index {index!r} keeps no ids of its own: build it with ids "
            "(AnnIndex.build(vectors, ids)), as every release does."
        )
    return np.sort(faiss.vector_to_array(inner.id_map).astype(np.int64))


def request_inputs(
    histories: Histories, item_genre: np.ndarray, history_slots: int
) -> dict[str, np.ndarray]:
    """The watched user-tower inputs of a batch of requests (see :data:`INPUTS`).

    ``history_genre`` has one entry per filled slot among the newest
    ``history_slots`` of every history (a user with no play adds none); the
    counts one entry per request.
    """
    newest = histories.items[:, :history_slots]
    names = list(histories.count_names)
    missing = [n for n in ("sessions_7d", "engaged_plays_7d") if n not in names]
    if missing:
        raise MonitorError(
            f"the histories' counts are {names}, the monitors need {missing}: read "
            "them with the case study's fold (interaction_history())."
        )
    counts = histories.counts.astype(np.float64)
    return {
        "history_genre": np.asarray(item_genre)[newest[newest >= 0]].astype(str),
        "sessions_7d": np.log1p(counts[:, names.index("sessions_7d")]),
        "engaged_plays_7d": np.log1p(counts[:, names.index("engaged_plays_7d")]),
    }


def _watched(users: np.ndarray, pair_user: np.ndarray, pair_item: np.ndarray):
    """Each of ``users`` (sorted, unique)'s items among the (user, item) pairs."""
    row = np.searchsorted(users, pair_user)
    inside = row < len(users)
    inside[inside] = users[row[inside]] == pair_user[inside]
    rows, items = row[inside], pair_item[inside]
    span = int(items.max()) + 1 if len(items) else 1
    keys = np.unique(rows * span + items)
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // span, minlength=len(users)), out=indptr[1:])
    return RelevantItems(indptr, keys % span)


@dataclass
class _Reference:
    release: str
    days: list[int] = field(default_factory=list)
    inputs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    values: list[dict[str, float]] = field(default_factory=list)
    baselines: dict[str, float] | None = None
    pooled: dict[str, np.ndarray] | None = None


class FeedMonitor:
    """Daily monitors of the release a
    :class:`~mlsd_lib.recsys.served_policy.ServedFeedPolicy` serves.

    ``world`` is the world the policy serves (its truth is read at the start
    of each day), ``log`` everything it logged before the first monitored day
    (what each user has already watched). Call :meth:`start_day` before
    simulating a day and :meth:`end_day` with its log, or :meth:`run_day` for
    both. The truth sample is ``settings.truth_users`` users drawn with
    ``seed`` among those signed up by the first day.
    """

    def __init__(
        self,
        world: RecsysWorld,
        policy: ServedFeedPolicy,
        log: RecsysLog,
        *,
        settings: MonitorSettings | None = None,
        rules: Sequence[AlertRule] = DEFAULT_RULES,
        seed: int = 0,
    ) -> None:
        self.world = world
        self.policy = policy
        self.settings = settings or MonitorSettings()
        self.rules = tuple(rules)
        unknown = [rule.metric for rule in self.rules if rule.metric not in METRICS]
        if unknown:
            raise MonitorError(
                f"rules on {unknown}, which the monitors do not measure (they "
                f"measure {list(METRICS)})."
            )
        first = world.next_day
        signed_up = np.flatnonzero(world.users.signup_day <= first)
        n = min(self.settings.truth_users, len(signed_up))
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x3011, first]))
        self.truth_users = np.sort(rng.choice(signed_up, n, replace=False))
        engaged = log.engaged
        self._pairs_user = [log.user[engaged]]
        self._pairs_item = [log.item[engaged]]
        self._truth: tuple[int, np.ndarray] | None = None
        self._reference: _Reference | None = None
        self.reports: list[DayReport] = []

    # -- the day's truth, before it is simulated ------------------------------------
    def watched(self, users: np.ndarray) -> RelevantItems:
        """The items each of ``users`` (sorted) had an engaged play of so far."""
        return _watched(
            users, np.concatenate(self._pairs_user), np.concatenate(self._pairs_item)
        )

    def start_day(self, day: int) -> None:
        """Snapshot the truth sample's true top K as ``day`` begins (the world
        must not have simulated ``day`` yet)."""
        users, k = self.truth_users, self.settings.recall_k
        oracle, _ = oracle_ranking(self.world, users, k, day, self.watched(users))
        self._truth = (day, oracle)

    # -- the served retrieval ---------------------------------------------------------
    def served_ranking(
        self, models: FeedModels, users: np.ndarray, day: int, watched: RelevantItems
    ) -> np.ndarray:
        """The release's top ``recall_k`` for ``users`` (sorted) at the start of
        ``day``: its user tower on their histories then, exact inner product
        over the items its index holds, minus what they may not see or watched."""
        in_index = np.zeros(len(models.catalogue), dtype=bool)
        in_index[indexed_items(models.index)] = True  # read now: items may be added
        times = np.full(len(users), day * SECONDS_PER_DAY)
        histories = self.policy.histories(users, times)
        embedding = self.policy.embed_users(histories, users, models)
        vectors = models.catalogue.embeddings

        def scores(rows: slice) -> np.ndarray:
            out = embedding[rows] @ vectors.T
            out[:, ~in_index] = -np.inf
            return out

        return rank_catalogue(
            self.world, day, users, watched, scores, self.settings.recall_k
        )

    # -- the day's report -------------------------------------------------------------
    def _reference_for(self, release: str) -> _Reference:
        if self._reference is None or self._reference.release != release:
            self._reference = _Reference(release)
        return self._reference

    def end_day(self, day: int, log: RecsysLog) -> DayReport:
        """Measure ``day`` from its log; its alerts if past the reference window."""
        if self._truth is None or self._truth[0] != day:
            raise MonitorError(
                f"end_day({day}) without start_day({day}) before the day was "
                "simulated: the truth of a day must be read as it begins."
            )
        if not len(log):
            raise MonitorError(f"the log of day {day} is empty: nothing to monitor.")
        s, models = self.settings, self.policy.models
        release = models.release
        k = s.recall_k
        values: dict[str, float] = {}

        # inputs at each request, as the user tower saw them
        _, first = np.unique(log.request_id, return_index=True)
        histories = self.policy.histories(log.user[first], log.time[first])
        inputs = request_inputs(histories, self.world.items.genre, s.history_slots)
        reference = self._reference_for(release)
        in_reference = len(reference.days) < s.reference_days
        if in_reference:
            reference.days.append(day)
            for name, sample in inputs.items():
                reference.inputs.setdefault(name, []).append(sample)
            reference.pooled = {
                name: np.concatenate(parts) for name, parts in reference.inputs.items()
            }
        for name in INPUTS:
            values[f"psi_{name}"] = psi(
                reference.pooled[name],
                inputs[name],
                num_bins=s.psi_bins,
                categorical=name == "history_genre",
            )
        launched = self.world.items.launch_day <= day
        in_index = np.zeros(len(launched), dtype=bool)
        in_index[indexed_items(models.index)] = True
        values["unindexed_share"] = float((launched & ~in_index).sum() / launched.sum())

        # recall against the day's plays and against the truth
        played = np.unique(log.user[log.engaged])
        watched = self.watched(played)
        plays = held_out_plays(log, played, watched)
        keep = plays.counts() > 0
        played = played[keep]
        watched = self.watched(played)
        plays = held_out_plays(log, played, watched)
        if len(played):
            ranked = self.served_ranking(models, played, day, watched)
            values["recall_plays"] = recall_at_k(ranked, plays, k)
        else:
            values["recall_plays"] = float("nan")
        truth_watched = self.watched(self.truth_users)
        ranked = self.served_ranking(models, self.truth_users, day, truth_watched)
        values["recall_truth"] = recall_at_k(
            ranked, true_top_relevance(self._truth[1], k), k
        )

        # exposure
        n_items = self.world.n_items
        values["top1_share"] = top_share(log.item, n_items, s.top_fraction)
        age = day - self.world.items.launch_day[log.item]
        values["new_item_share"] = float(np.mean(age < s.new_item_days))
        values["engaged_rate"] = log.engaged_rate

        self._pairs_user.append(log.user[log.engaged])
        self._pairs_item.append(log.item[log.engaged])
        self._truth = None
        if in_reference:
            reference.values.append(values)
            reference.baselines = {
                name: float(np.nanmean([v[name] for v in reference.values]))
                for name in METRICS
            }
            alerts: tuple[Alert, ...] = ()
        else:
            alerts = tuple(check_rules(self.rules, values, reference.baselines))
        report = DayReport(day, release, in_reference, values, alerts)
        self.reports.append(report)
        return report

    def run_day(
        self, day: int, *, users: np.ndarray | None = None
    ) -> tuple[RecsysLog, DayReport]:
        """Simulate ``day`` under the policy between :meth:`start_day` and
        :meth:`end_day` (``users``: only theirs, see
        :meth:`~mlsd_lib.worlds.recsys.RecsysWorld.simulate`); the day's log
        and report."""
        self.start_day(day)
        log = self.world.simulate(self.policy, day, 1, users=users)
        return log, self.end_day(day, log)

    def fork(self, world: RecsysWorld, policy: ServedFeedPolicy) -> FeedMonitor:
        """A copy that goes on monitoring ``policy`` on ``world`` (forks of the
        ones watched so far), with the same reference window, baselines and
        reports up to now: the counterfactual arm of a decision."""
        twin = copy.copy(self)
        twin.world, twin.policy = world, policy
        twin._pairs_user = list(self._pairs_user)
        twin._pairs_item = list(self._pairs_item)
        twin._reference = copy.deepcopy(self._reference)
        twin.reports = list(self.reports)
        return twin

    # -- views ------------------------------------------------------------------------
    @property
    def baselines(self) -> dict[str, float]:
        """Each metric's value at deployment of the release serving now."""
        if self._reference is None or self._reference.baselines is None:
            raise MonitorError("no day monitored yet: no baselines.")
        return dict(self._reference.baselines)

    def thresholds(self) -> dict[str, float]:
        """Each rule's threshold for the release serving now (one per metric)."""
        baselines = self.baselines
        return {
            rule.metric: rule.threshold(baselines.get(rule.metric))
            for rule in self.rules
        }

    def frame(self) -> pd.DataFrame:
        """One row per monitored day (:meth:`DayReport.row`)."""
        return pd.DataFrame([report.row() for report in self.reports])
