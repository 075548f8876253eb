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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd


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
    """Fire when NE degrades past ``ne_degradation`` or a key feature's PSI is high.

    Call :meth:`deployed` when a model goes live (with its NE on the deployment
    evaluation window), then :meth:`observe` once per day. A firing counts as a
    retrain for the minimum interval even if the caller has not yet called
    :meth:`deployed` for the new model.
    """

    ne_degradation: float = 0.03
    psi_limit: float = 0.25
    key_features: Iterable[str] | None = None
    min_interval_days: int = 7
    log: list[RetrainDecision] = field(default_factory=list)
    baseline_ne: float | None = None
    last_retrain_day: int | None = None

    def __post_init__(self) -> None:
        if self.ne_degradation <= 0:
            raise ValueError(f"ne_degradation must be > 0, got {self.ne_degradation}.")
        if self.min_interval_days < 0:
            raise ValueError(
                f"min_interval_days must be >= 0, got {self.min_interval_days}."
            )
        if self.key_features is not None:
            self.key_features = tuple(self.key_features)

    def deployed(self, day: int, baseline_ne: float) -> None:
        """A model went live on ``day`` with NE ``baseline_ne`` on its eval window."""
        if baseline_ne <= 0:
            raise ValueError(f"baseline_ne must be > 0, got {baseline_ne}.")
        self.baseline_ne = baseline_ne
        self.last_retrain_day = day

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
    ) -> RetrainDecision:
        """Decide for ``day`` from its NE (``None`` if no labels yet) and PSIs."""
        if self.baseline_ne is None:
            raise ValueError("call deployed(day, baseline_ne) before observe().")
        threshold = self.ne_threshold
        reasons: list[str] = []
        if ne is not None and ne > threshold:
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
