"""Alert rules: a metric, a threshold and a direction, fixed or set by a baseline.

Introduced in ``casestudies/recommender/08_monitoring_and_retraining.ipynb`` (step 7,
monitoring). A monitor computes numbers every day; an alert is the decision that one of
them is bad enough to act on. Writing the rules down as data, rather than as ``if``
statements scattered through a notebook, lets a dashboard draw the thresholds, a
retraining policy quote them as reasons, and a reviewer see them all in one table.

A rule's threshold is one of three kinds (``mode``):

* ``"absolute"``: a fixed number (PSI above 0.25, a share above 5 %);
* ``"relative"``: a fraction of a baseline, the value the model had when it
  was deployed (recall more than 15 % below its value at deployment: ``limit
  = 0.15``, ``direction="below"``);
* ``"delta"``: a baseline plus or minus a fixed amount (the top-1 % share of
  impressions up by more than 5 points).

Relative thresholds travel well between models of different quality; a delta
suits shares, where "up 5 points" means the same at 20 % as at 60 %.
:func:`check_rules` applies a list of rules to one day's values and returns the
:class:`Alert` s, each with a sentence that says what crossed what.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from mlsd_lib.errors import MlsdError

__all__ = ["DIRECTIONS", "MODES", "Alert", "AlertRule", "AlertRuleError", "check_rules"]

#: Which side of the threshold is bad.
DIRECTIONS = ("above", "below")
#: How the threshold is set (see the module notes).
MODES = ("absolute", "relative", "delta")


class AlertRuleError(MlsdError, ValueError):
    """A rule that cannot be applied as written; the message says what to fix."""


@dataclass(frozen=True)
class AlertRule:
    """Fire when ``metric`` is past a threshold on the ``direction`` side.

    ``limit`` is the threshold itself (``mode="absolute"``), the fraction of
    the baseline to allow (``"relative"``: ``baseline * (1 +- limit)``) or the
    amount (``"delta"``: ``baseline +- limit``).
    """

    metric: str
    limit: float
    direction: str = "above"
    mode: str = "absolute"

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise AlertRuleError(
                f"rule on {self.metric!r}: direction must be one of {DIRECTIONS}, "
                f"got {self.direction!r}."
            )
        if self.mode not in MODES:
            raise AlertRuleError(
                f"rule on {self.metric!r}: mode must be one of {MODES}, got "
                f"{self.mode!r}."
            )
        if self.mode != "absolute" and not self.limit >= 0:
            raise AlertRuleError(
                f"rule on {self.metric!r}: a {self.mode} limit is an allowance and "
                f"must be >= 0, got {self.limit}; the direction says which way."
            )

    @property
    def needs_baseline(self) -> bool:
        return self.mode != "absolute"

    def threshold(self, baseline: float | None = None) -> float:
        """The value past which the rule fires, given the metric's baseline."""
        if not self.needs_baseline:
            return float(self.limit)
        if baseline is None or not math.isfinite(baseline):
            raise AlertRuleError(
                f"rule on {self.metric!r} is {self.mode} to a baseline, got "
                f"baseline={baseline}: pass the metric's value at deployment."
            )
        sign = 1.0 if self.direction == "above" else -1.0
        if self.mode == "relative":
            return float(baseline * (1.0 + sign * self.limit))
        return float(baseline + sign * self.limit)

    def fires(self, value: float, baseline: float | None = None) -> bool:
        """Whether ``value`` is past the threshold (a NaN value never fires)."""
        threshold = self.threshold(baseline)
        if self.direction == "above":
            return bool(value > threshold)
        return bool(value < threshold)

    def describe(self) -> str:
        """The rule in words, e.g. ``recall < baseline x (1 - 15%)``."""
        side = ">" if self.direction == "above" else "<"
        sign = "+" if self.direction == "above" else "-"
        if self.mode == "absolute":
            return f"{self.metric} {side} {self.limit:g}"
        if self.mode == "relative":
            return f"{self.metric} {side} baseline x (1 {sign} {self.limit:.0%})"
        return f"{self.metric} {side} baseline {sign} {self.limit:g}"


@dataclass(frozen=True)
class Alert:
    """A rule that fired: the value, the threshold it crossed, and the rule."""

    rule: AlertRule
    value: float
    threshold: float
    baseline: float | None = None

    @property
    def metric(self) -> str:
        return self.rule.metric

    @property
    def reason(self) -> str:
        """One sentence, as a retraining policy logs it."""
        side = ">" if self.rule.direction == "above" else "<"
        text = f"{self.metric} {self.value:.3f} {side} {self.threshold:.3f}"
        if self.baseline is not None:
            text += f" (baseline {self.baseline:.3f}; rule {self.rule.describe()})"
        return text


def check_rules(
    rules: Iterable[AlertRule],
    values: Mapping[str, float] | pd.Series,
    baselines: Mapping[str, float] | pd.Series | None = None,
) -> list[Alert]:
    """The alerts ``rules`` raise on one day's ``values`` (in rule order).

    Every rule's metric must be in ``values``; rules relative to a baseline
    need the metric in ``baselines`` too. A NaN value (nothing measured that
    day) raises no alert.
    """
    baselines = baselines if baselines is not None else {}
    alerts = []
    for rule in rules:
        if rule.metric not in values:
            known = sorted(map(str, values.keys()))
            raise AlertRuleError(
                f"no value for {rule.metric!r} (known: {known}): measure it or "
                "drop the rule."
            )
        value = float(values[rule.metric])
        baseline = baselines.get(rule.metric) if rule.needs_baseline else None
        baseline = None if baseline is None else float(baseline)
        threshold = rule.threshold(baseline)
        if math.isnan(value) or not rule.fires(value, baseline):
            continue
        alerts.append(Alert(rule, value, threshold, baseline))
    return alerts
