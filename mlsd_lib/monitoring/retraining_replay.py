"""Retraining policies replayed over the same days and scored against the truth.

Introduced in ``notebooks/monitoring.ipynb``. Which retraining policy is best
(never, on a schedule, when inputs drift, when labelled quality drops) is a
question of cost against loss, and a simulated world answers it exactly: it
logs the true probability of every outcome, so the loss a model *adds* over the
truth can be computed without label noise:

    excess log loss = E[log loss of q] - E[log loss of p]
                    = mean over rows of KL(Bernoulli(p) || Bernoulli(q)),

with ``p`` the true probability and ``q`` the model's. It is 0 for a perfect
model and grows as the model goes stale; summed over days it is the price of a
policy, next to its number of retrains.

:func:`replay_retraining` serves day after day: the day's traffic is scored by
the live model, the day's labels arrive (a model retrained on day ``t`` serves
from ``t + 1``), the monitors compute the day's metrics (NE, the calibration
ratio predicted / observed clicks, PSI of the watched inputs against the
training window), and the policy decides. Policies: :class:`NeverRetrain`,
:class:`ScheduledRetrain` and :class:`TriggeredRetrain` (alert rules from
:mod:`~mlsd_lib.monitoring.alerts` on those metrics, decided with the
hysteresis of a :class:`~mlsd_lib.monitoring.retraining.RetrainingTrigger`).
A rule relative to a baseline compares with the live model's first day of
service (an honest out-of-sample number; metrics on the training days would
be optimistic).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.calibration import calibration_ratio
from mlsd_lib.evaluation.entropy import normalized_entropy
from mlsd_lib.evaluation.expected_entropy import excess_log_loss
from mlsd_lib.monitoring.alerts import AlertRule, check_rules
from mlsd_lib.monitoring.retraining import RetrainingTrigger
from mlsd_lib.monitoring.window_stats import ReferenceBins
from mlsd_lib.validation import require_int

__all__ = [
    "LabelledDay",
    "NeverRetrain",
    "ReplayError",
    "ReplayResult",
    "ScheduledRetrain",
    "TriggeredRetrain",
    "replay_retraining",
]

#: A fitted model: features -> predicted probabilities.
Predictor = Callable[[pd.DataFrame], np.ndarray]
#: ``fit(features, labels) -> predictor``: how a policy (re)trains.
Fit = Callable[[pd.DataFrame, np.ndarray], Predictor]


class ReplayError(MlsdError, ValueError):
    """Days or a policy the replay cannot use; the message says what to fix."""


@dataclass(frozen=True)
class LabelledDay:
    """One day of traffic: what the model sees, what happened, and the truth."""

    day: int
    features: pd.DataFrame
    labels: np.ndarray
    true_p: np.ndarray


class NeverRetrain:
    """The model trained before the first day serves to the end."""

    name = "never"

    def start(self) -> None:
        """Forget any earlier replay."""

    def deployed(self, day: int, metrics: Mapping[str, float]) -> None:
        """A model served its first ``day``; ``metrics`` are that day's numbers."""

    def decide(self, day: int, metrics: Mapping[str, float]) -> tuple[bool, str]:
        """Whether to retrain after ``day`` (given its ``metrics``), and why."""
        return False, "never retrains"


@dataclass
class ScheduledRetrain:
    """Retrain every ``every_days`` days of service, whatever the monitors say."""

    every_days: int
    _deployed_day: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.every_days < 1:
            raise ReplayError(f"every_days must be >= 1, got {self.every_days}.")

    @property
    def name(self) -> str:
        return "daily" if self.every_days == 1 else f"every {self.every_days} days"

    def start(self) -> None:
        self._deployed_day = 0

    def deployed(self, day: int, metrics: Mapping[str, float]) -> None:
        self._deployed_day = day

    def decide(self, day: int, metrics: Mapping[str, float]) -> tuple[bool, str]:
        served = day - self._deployed_day + 1
        if served >= self.every_days:
            return True, f"schedule: {served} day(s) served"
        return False, f"schedule: {served} of {self.every_days} day(s) served"


@dataclass
class TriggeredRetrain:
    """Retrain when an alert rule fires on the day's metrics.

    ``rules`` are :class:`~mlsd_lib.monitoring.alerts.AlertRule` s on the
    metrics :func:`replay_retraining` computes (``"calibration"``, ``"ne"``,
    ``"psi_<feature>"``); rules relative to a baseline compare with the
    metric on the live model's first day. The decision and its hysteresis
    (``min_interval_days`` between retrains) are a
    :class:`~mlsd_lib.monitoring.retraining.RetrainingTrigger`'s, kept in
    ``trigger`` with its log.
    """

    rules: Sequence[AlertRule]
    min_interval_days: int = 3
    label: str = "trigger"
    trigger: RetrainingTrigger | None = field(default=None, init=False)
    _baselines: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not self.rules:
            raise ReplayError(
                "a triggered policy needs at least one AlertRule: on calibration "
                "(labels), on psi_<feature> (inputs), or both."
            )

    @property
    def name(self) -> str:
        return self.label

    def start(self) -> None:
        self.trigger = RetrainingTrigger(min_interval_days=self.min_interval_days)
        self._baselines = {}

    def deployed(self, day: int, metrics: Mapping[str, float]) -> None:
        self._baselines = dict(metrics)
        self.trigger.deployed(day)

    def decide(self, day: int, metrics: Mapping[str, float]) -> tuple[bool, str]:
        alerts = check_rules(self.rules, metrics, self._baselines)
        decision = self.trigger.observe(day, alerts=[a.reason for a in alerts])
        return decision.retrain, "; ".join(decision.reasons)


#: What :func:`replay_retraining` accepts as a policy.
Policy = NeverRetrain | ScheduledRetrain | TriggeredRetrain


@dataclass(frozen=True)
class ReplayResult:
    """One policy's days (a row each) and the days it retrained."""

    policy: str
    frame: pd.DataFrame
    retrain_days: list[int]

    def summary(self) -> dict[str, float | str]:
        excess = self.frame["excess_log_loss"]
        return {
            "policy": self.policy,
            "retrains": len(self.retrain_days),
            "mean excess log loss": float(excess.mean()),
            "worst day": float(excess.max()),
        }


def replay_retraining(
    days: Sequence[LabelledDay],
    policy: Policy,
    fit: Fit,
    *,
    train_days: int = 7,
    monitored: Sequence[str] = (),
    categorical: Sequence[str] = (),
) -> ReplayResult:
    """Serve ``days[train_days:]`` under ``policy`` and score every day.

    Introduced in ``notebooks/monitoring.ipynb``. The first model fits on the
    first ``train_days`` days; a retrain on day ``t`` fits on the
    ``train_days`` days up to ``t`` and serves from ``t + 1``. Each served day
    gets a row: ``excess_log_loss`` (against the truth), ``ne``,
    ``calibration``, ``psi_<f>`` for each ``monitored`` feature (against the
    live model's training window; ``categorical`` ones binned per value,
    others in 10 quantile bins, as :func:`~mlsd_lib.monitoring.drift.psi`
    does), ``retrain`` and ``reason``.
    """
    require_int("train_days", train_days, at_least=1, error=ReplayError)
    if len(days) <= train_days:
        raise ReplayError(
            f"need more than train_days={train_days} days (got {len(days)}): the "
            "first model trains on them and the rest are served."
        )
    policy.start()

    def deploy(last: int) -> tuple[Predictor, dict[str, ReferenceBins]]:
        window = days[last - train_days + 1 : last + 1]
        features = pd.concat([d.features for d in window], ignore_index=True)
        labels = np.concatenate([d.labels for d in window])
        bins = {
            name: ReferenceBins.fit(
                features[name].to_numpy(), categorical=name in categorical
            )
            for name in monitored
        }
        return fit(features, labels), bins

    predict, reference = deploy(train_days - 1)
    first_of_deployment = True
    rows, retrain_days = [], []
    for i in range(train_days, len(days)):
        d = days[i]
        q = predict(d.features)
        ne = normalized_entropy(d.labels, q)
        psi = {
            name: float(bins.psi(d.features[name].to_numpy()[None, :])[0])
            for name, bins in reference.items()
        }
        metrics = {
            "ne": ne,
            "calibration": calibration_ratio(d.labels, q),
            **{f"psi_{name}": value for name, value in psi.items()},
        }
        if first_of_deployment:
            policy.deployed(d.day, metrics)
            first_of_deployment = False
        retrain, reason = policy.decide(d.day, metrics)
        rows.append(
            {
                "day": d.day,
                "excess_log_loss": excess_log_loss(d.true_p, q),
                **metrics,
                "retrain": retrain,
                "reason": reason,
            }
        )
        if retrain:
            retrain_days.append(d.day)
            predict, reference = deploy(i)
            first_of_deployment = True
    return ReplayResult(policy.name, pd.DataFrame(rows), retrain_days)
