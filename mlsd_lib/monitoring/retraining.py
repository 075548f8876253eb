"""When to retrain: a policy over daily quality and drift numbers, with reasons.

Introduced in
``casestudies/ad_click/06_monitoring_and_retraining.ipynb``. Retraining on a fixed
schedule wastes compute when nothing changed and is late when something did; a
trigger fires when the labelled quality degrades past a budget relative to what
the model achieved at deployment (NE up by more than, say, 3 %), or when a key
feature's PSI crosses the alert level, whichever first. A minimum interval
between retrains (hysteresis) stops a noisy day from causing a retraining storm.
Every decision is logged with its reasons, so a reader (or an on-call engineer)
can see why the system did what it did.

A model without a labelled loss to budget (a retrieval model, watched through
recall and exposure monitors) is deployed without a baseline NE, and the
caller passes the day's fired alerts (:mod:`~mlsd_lib.monitoring.alerts`) as
reasons instead: the interval and the log work the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from mlsd_lib.errors import MlsdError


class RetrainingError(MlsdError, ValueError):
    """The trigger was set up or asked out of order; the message says how."""


@dataclass(frozen=True)
class RetrainDecision:
    """One day's verdict: whether to retrain, and why (or why not)."""

    day: int
    retrain: bool
    reasons: tuple[str, ...]
    ne: float | None
    ne_threshold: float | None


@dataclass
class RetrainingTrigger:
    """Fire when NE degrades past ``ne_degradation``, a key feature's PSI is
    high, or the caller reports an alert.

    Call :meth:`deployed` when a model goes live (with its NE on the deployment
    evaluation window, if it has one), then :meth:`observe` once per day. A
    firing counts as a retrain for the minimum interval even if the caller has
    not yet called :meth:`deployed` for the new model.
    """

    ne_degradation: float = 0.03
    psi_limit: float = 0.25
    key_features: Iterable[str] | None = None
    min_interval_days: int = 7
    log: list[RetrainDecision] = field(default_factory=list)
    baseline_ne: float | None = None
    last_retrain_day: int | None = None
    _deployed: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.ne_degradation <= 0:
            raise RetrainingError(
                f"ne_degradation must be > 0, got {self.ne_degradation}."
            )
        if self.min_interval_days < 0:
            raise RetrainingError(
                f"min_interval_days must be >= 0, got {self.min_interval_days}."
            )
        if self.key_features is not None:
            self.key_features = tuple(self.key_features)

    def deployed(self, day: int, baseline_ne: float | None = None) -> None:
        """A model went live on ``day`` with NE ``baseline_ne`` on its eval window
        (None: a model judged by alerts only, see :meth:`observe`)."""
        if baseline_ne is not None and baseline_ne <= 0:
            raise RetrainingError(f"baseline_ne must be > 0, got {baseline_ne}.")
        self.baseline_ne = baseline_ne
        self.last_retrain_day = day
        self._deployed = True

    @property
    def ne_threshold(self) -> float | None:
        if self.baseline_ne is None:
            return None
        return self.baseline_ne * (1.0 + self.ne_degradation)

    def observe(
        self,
        day: int,
        ne: float | None = None,
        psi_by_feature: Mapping[str, float] | None = None,
        alerts: Iterable[str] = (),
    ) -> RetrainDecision:
        """Decide for ``day`` from its NE (``None`` if no labels yet), PSIs and
        the alerts other monitors raised (each a sentence, kept as a reason)."""
        if not self._deployed and self.baseline_ne is None:
            raise RetrainingError("call deployed(day, baseline_ne) before observe().")
        if ne is not None and self.baseline_ne is None:
            raise RetrainingError(
                f"got NE {ne} on day {day}, but the deployed model has no baseline "
                "NE to compare it with: pass deployed(day, baseline_ne=...)."
            )
        threshold = self.ne_threshold
        reasons: list[str] = []
        if ne is not None and threshold is not None and ne > threshold:
            reasons.append(
                f"NE {ne:.4f} > {threshold:.4f} (deployment NE {self.baseline_ne:.4f} "
                f"+ {self.ne_degradation:.0%})"
            )
        if psi_by_feature:
            watched = (
                tuple(psi_by_feature)
                if self.key_features is None
                else self.key_features
            )
            for name in watched:
                value = psi_by_feature.get(name)
                if value is not None and value > self.psi_limit:
                    reasons.append(f"PSI of {name!r} {value:.3f} > {self.psi_limit}")
        reasons.extend(str(alert) for alert in alerts)
        retrain = bool(reasons)
        if retrain and self.last_retrain_day is not None:
            since = day - self.last_retrain_day
            if since < self.min_interval_days:
                retrain = False
                reasons.append(
                    f"suppressed: last retrain {since} day(s) ago < minimum interval "
                    f"{self.min_interval_days}"
                )
        if not reasons:
            reasons.append("within budget")
        if retrain:
            self.last_retrain_day = day
        decision = RetrainDecision(day, retrain, tuple(reasons), ne, threshold)
        self.log.append(decision)
        return decision

    @property
    def retrain_days(self) -> list[int]:
        return [d.day for d in self.log if d.retrain]

    def log_frame(self) -> pd.DataFrame:
        """The decision log, one row per observed day."""
        return pd.DataFrame(
            {
                "day": [d.day for d in self.log],
                "ne": [d.ne for d in self.log],
                "ne_threshold": [d.ne_threshold for d in self.log],
                "retrain": [d.retrain for d in self.log],
                "reasons": ["; ".join(d.reasons) for d in self.log],
            }
        )
