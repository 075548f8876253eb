"""Roll a canary back when its metric is worse than stable's on the same window.

Introduced in ``notebooks/failure_drills.ipynb``. A canary exists to be judged
on live traffic before everyone gets it; the judgement must be automatic,
because a bad model hurts every second it serves. The rule here is the one
most canary analysers (Kayenta, Argo Rollouts' analysis runs) reduce to:
compare the canary's metric with stable's **on the same time window** (so
traffic mix, hour and any outage hit both alike), wait for enough canary
samples to trust it, then

    rollback  if  canary_metric > stable_metric * (1 + max_relative_excess)

for a lower-is-better metric such as log loss (here, by default, the log loss in excess
of the truth's own: :func:`~mlsd_lib.evaluation.expected_entropy.excess_log_loss`).
:class:`CanaryGuard` applies it while traffic flows: every ``check_every_s`` it asks a
caller-supplied function for both arms' metrics over the last ``window_s``, records the
verdict, and on the first ``rollback`` calls the caller's ``rollback`` once (withdraw
the version in the registry and reload the gateway). The guard knows nothing of models
or labels: where labels come from is the case study's business.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from mlsd_lib.errors import MlsdError

Verdict = Literal["wait", "hold", "rollback"]


class CanaryRuleError(MlsdError, ValueError):
    """A canary rule or guard was configured with an impossible setting."""


@dataclass(frozen=True)
class ArmMetrics:
    """One window's metric for each arm and how many samples it rests on."""

    stable: float
    canary: float
    stable_samples: int
    canary_samples: int


@dataclass(frozen=True)
class CanaryRule:
    """Roll back when the canary's lower-is-better metric exceeds stable's by
    more than ``max_relative_excess``, once both arms have ``min_samples``."""

    max_relative_excess: float = 0.1
    min_samples: int = 200

    def __post_init__(self) -> None:
        if not self.max_relative_excess >= 0 or self.min_samples < 1:
            raise CanaryRuleError(
                f"max_relative_excess must be >= 0 and min_samples >= 1; got "
                f"{self.max_relative_excess} and {self.min_samples}."
            )

    def judge(self, metrics: ArmMetrics) -> Verdict:
        """``wait`` (too few samples), ``hold`` (within bounds) or ``rollback``."""
        if min(metrics.stable_samples, metrics.canary_samples) < self.min_samples:
            return "wait"
        if not math.isfinite(metrics.canary):
            return "rollback"  # a canary producing NaN or infinite loss is broken
        limit = metrics.stable * (1.0 + self.max_relative_excess)
        return "rollback" if metrics.canary > limit else "hold"


@dataclass(frozen=True)
class Check:
    """One check of the guard: when, on what, with which verdict."""

    at: float
    metrics: ArmMetrics | None
    verdict: Verdict


@dataclass
class CanaryGuard:
    """Check ``rule`` every ``check_every_s`` on ``measure(since, until)``'s
    metrics for the last ``window_s``; call ``rollback()`` once on the first
    ``rollback`` verdict. Use as a context manager around the traffic.

    ``measure`` returns None while the window holds no canary data at all.
    Times are :func:`time.perf_counter` values. ``checks`` keeps every check
    and ``rolled_back_at`` the moment ``rollback()`` returned.
    """

    rule: CanaryRule
    measure: Callable[[float, float], ArmMetrics | None]
    rollback: Callable[[], object]
    window_s: float = 1.0
    check_every_s: float = 0.1
    checks: list[Check] = field(default_factory=list)
    rollback_started_at: float | None = None
    rolled_back_at: float | None = None

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.check_every_s <= 0:
            raise CanaryRuleError(
                f"window_s and check_every_s must be positive; got {self.window_s} "
                f"and {self.check_every_s}."
            )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> Verdict:
        """One check now; calls ``rollback()`` if it is the first to say so."""
        now = time.perf_counter()
        metrics = self.measure(now - self.window_s, now)
        verdict: Verdict = "wait" if metrics is None else self.rule.judge(metrics)
        self.checks.append(Check(now, metrics, verdict))
        if verdict == "rollback" and self.rollback_started_at is None:
            self.rollback_started_at = time.perf_counter()
            self.rollback()
            self.rolled_back_at = time.perf_counter()
        return verdict

    def _run(self) -> None:
        while not self._stop.wait(self.check_every_s):
            self.check()  # on after a rollback too: the timeline shows its effect

    def __enter__(self) -> CanaryGuard:
        self._thread = threading.Thread(target=self._run, name="canary-guard")
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
