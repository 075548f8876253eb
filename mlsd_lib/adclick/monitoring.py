"""Monitoring and retraining, day by day, for the ad-click model.

Introduced in ``casestudies/ad_click/06_monitoring_and_retraining.ipynb``. A
model trained on the first days is deployed; :func:`simulate_days` then walks
through the following days as production would:

1. score the day's traffic with the deployed model;
2. once the day's labels are in (the attribution window closes the next
   morning), compute its NE, the world's Bayes NE, the calibration ratio, and
   the PSI of the monitored inputs and of the score against the deployed
   model's training window;
3. if an *input* feature's PSI is past the alert level, page a human and hold
   retraining: a broken upstream feature looks like drift, and retraining on it
   would bake the bug into the next model (the day is also kept out of later
   training windows);
4. otherwise ask the policy (never, daily, or a
   :class:`~mlsd_lib.monitoring.retraining.RetrainingTrigger`) and, if it says
   so, retrain on the most recent window; the new model serves from the next day.

The injected changes are transformations of the world's simulated log or data,
so the world itself (and its Bayes NE) stays the documented one:

* :func:`seasonal_surge`: from some day on, one ad category gets more
  impressions (a traffic-mix shift) and a higher click probability (a concept
  shift: the same inputs, a different p(click));
* :meth:`Traffic.with_broken_feature`: one day, an upstream logger writes one
  value for a feature on every row (a broken join or a default that leaked).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from mlsd_lib.adclick.recipes import build_torch_model, intercept_shift, shifted
from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.evaluation.calibration import calibration_ratio
from mlsd_lib.models import predict_proba, train
from mlsd_lib.monitoring import PSI_ALERT, DriftReport, RetrainingTrigger
from mlsd_lib.validation import (
    ParameterError,
    require_int,
    require_number,
    require_seed,
)
from mlsd_lib.worlds.ads import (
    SECONDS_PER_DAY,
    AdsWorld,
    ImpressionLog,
    bayes_normalized_entropy,
    normalized_entropy,
)

#: The inputs watched by PSI (categorical columns of ``AdsWorld.to_ctr_data``).
MONITORED_FEATURES = ("hour", "device", "ad_category", "interest")
#: The name of the model-score column in the PSI tables.
SCORE = "score"
POLICIES = ("never", "daily", "trigger")

Predictor = Callable[[CTRData], np.ndarray]
#: ``fit(train, valid, seed) -> predictor``: how a policy (re)trains.
FitFunction = Callable[[CTRData, CTRData, int], Predictor]


def seasonal_surge(
    world: AdsWorld,
    log: ImpressionLog,
    *,
    category: int,
    from_day: int,
    traffic_factor: float = 2.0,
    ctr_factor: float = 1.6,
    seed: int = 0,
) -> ImpressionLog:
    """``log`` with a surge of ad category ``category`` from ``from_day`` on.

    Introduced in ``casestudies/ad_click/06_monitoring_and_retraining.ipynb``.
    On each affected day, rows are resampled (with replacement, same count) with
    weight ``traffic_factor`` for the category's impressions and 1 for the rest
    (a traffic-mix shift), then the category's true p(click) is multiplied by
    ``ctr_factor`` (capped at 0.95) and its clicks and click delays are drawn
    again (a concept shift). Rows stay in time order; other days are untouched.
    """
    require_int(
        "category", category, at_least=0, at_most=world.config.num_categories - 1
    )
    require_int("from_day", from_day, at_least=0)
    require_number("traffic_factor", traffic_factor, above=0)
    require_number("ctr_factor", ctr_factor, above=0)
    require_seed("seed", seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E45, category]))
    keep = [np.flatnonzero(log.day < from_day)]
    for day in np.unique(log.day[log.day >= from_day]):
        rows = np.flatnonzero(log.day == day)
        weight = np.where(log.ad_category[rows] == category, traffic_factor, 1.0)
        picked = rng.choice(rows, size=rows.size, p=weight / weight.sum())
        keep.append(np.sort(picked))
    index = np.concatenate(keep)
    columns = {
        f.name: getattr(log, f.name)[index].copy() for f in dataclasses.fields(log)
    }
    hit = (columns["day"] >= from_day) & (columns["ad_category"] == category)
    columns["true_p"][hit] = np.minimum(columns["true_p"][hit] * ctr_factor, 0.95)
    clicked = AdsWorld.sample_clicks(columns["true_p"][hit], rng)
    columns["clicked"][hit] = clicked
    delay = np.full(int(hit.sum()), np.nan)
    delay[clicked.astype(bool)] = world.sample_click_delays(int(clicked.sum()), rng)
    columns["click_delay_s"][hit] = delay
    return ImpressionLog(**columns)


@dataclass
class Traffic:
    """Model-ready rows (``CTRData``) of many days, sliced by day.

    Introduced in ``casestudies/ad_click/06_monitoring_and_retraining.ipynb``.
    """

    data: CTRData
    day: np.ndarray

    @classmethod
    def from_log(
        cls, world: AdsWorld, log: ImpressionLog, *, num_buckets: int = 2**15
    ) -> Traffic:
        data = world.to_ctr_data(log, num_buckets=num_buckets)
        return cls(data, (data.timestamps // SECONDS_PER_DAY).astype(np.int64))

    def days(self, days: Sequence[int]) -> CTRData:
        """The rows of ``days`` (in time order)."""
        return self.data.subset(np.flatnonzero(np.isin(self.day, list(days))))

    def on(self, day: int) -> CTRData:
        return self.days([day])

    def column(self, data: CTRData, name: str) -> np.ndarray:
        """Categorical column ``name`` of ``data`` (a slice of this traffic)."""
        names = list(data.categorical_names)
        if name not in names:
            raise KeyError(f"feature {name!r} is not a categorical column ({names}).")
        return data.categorical[:, names.index(name)]

    def with_broken_feature(self, day: int, name: str, value: int) -> Traffic:
        """A copy where every row of ``day`` has ``value`` in column ``name``."""
        require_int("day", day, at_least=0)
        categorical = self.data.categorical.copy()
        j = list(self.data.categorical_names).index(name)
        categorical[self.day == day, j] = value
        broken = dataclasses.replace(self.data, categorical=categorical)
        return Traffic(broken, self.day)


def fit_lr(train_data: CTRData, valid: CTRData, seed: int = 0) -> Predictor:
    """Hashed LR in one fast epoch, level recalibrated on ``valid``.

    The ``lr`` model of :mod:`mlsd_lib.adclick.recipes` trained for a single
    epoch with a larger step (``lr=0.05``, batches of 1024) so that a month of
    daily retrains fits in a notebook; then
    :func:`~mlsd_lib.adclick.recipes.intercept_shift` fitted on the freshest
    labelled day, as every retrain in production would do.
    """
    torch.manual_seed(seed)
    model = build_torch_model("lr", train_data)
    train(
        model,
        train_data,
        valid,
        epochs=1,
        batch_size=1024,
        patience=1,
        seed=seed,
        progress=False,
        num_threads=1,
        lr=0.05,
        embedding_l2=100.0,
    )
    model.eval()

    def predict(data: CTRData) -> np.ndarray:
        return predict_proba(model, data, num_threads=1)

    shift = intercept_shift(predict(valid), valid.labels)
    return lambda data: shifted(predict(data), shift)


@dataclass
class SimulationResult:
    """One policy's days: a row per day, the retrain days and the pages."""

    policy: str
    frame: pd.DataFrame
    retrain_days: list[int]
    paged_days: list[int]
    trigger: RetrainingTrigger | None = None
    drift_reports: dict[int, DriftReport] = field(default_factory=dict)
    training_rows: int = 0

    def summary(self) -> dict[str, float]:
        f = self.frame
        return {
            "retrains": len(self.retrain_days),
            "training rows (M)": self.training_rows / 1e6,
            "mean NE": float(f["ne"].mean()),
            "mean NE - Bayes NE": float((f["ne"] - f["bayes_ne"]).mean()),
            "worst NE - Bayes NE": float((f["ne"] - f["bayes_ne"]).max()),
        }


def _window(traffic: Traffic, last: int, length: int, skip: set[int]) -> list[int]:
    return [d for d in range(last - length + 1, last + 1) if d >= 0 and d not in skip]


def simulate_days(
    traffic: Traffic,
    *,
    first_day: int,
    last_day: int,
    policy: str = "trigger",
    trigger: RetrainingTrigger | None = None,
    train_days: int = 7,
    fit: FitFunction = fit_lr,
    features: Sequence[str] = MONITORED_FEATURES,
    page_psi: float = PSI_ALERT,
    seed: int = 0,
) -> SimulationResult:
    """Serve days ``first_day .. last_day`` under a retraining ``policy``.

    Introduced in ``casestudies/ad_click/06_monitoring_and_retraining.ipynb``.
    The first model trains on the ``train_days`` days before ``first_day`` (the
    last of them validates and recalibrates). ``policy``: ``"never"``,
    ``"daily"`` or ``"trigger"`` (asks ``trigger``, a fresh
    :class:`~mlsd_lib.monitoring.retraining.RetrainingTrigger`, each day). A
    retrain on day ``t`` uses the ``train_days`` days up to ``t`` (minus paged
    days) and serves from ``t + 1``.
    An input feature with PSI above ``page_psi`` pages instead of retraining.
    """
    # The first model trains on days before first_day, the last of them validates.
    first_day = require_int("first_day", first_day, at_least=2)
    last_day = require_int("last_day", last_day, at_least=first_day)
    require_int("train_days", train_days, at_least=2)
    if policy not in POLICIES:
        raise ParameterError(f"unknown policy {policy!r}; known: {list(POLICIES)}.")
    if policy == "trigger" and trigger is None:
        raise ParameterError("policy 'trigger' needs a RetrainingTrigger.")
    paged: set[int] = set()
    training_rows = 0

    def deploy(last: int):
        nonlocal training_rows
        days = _window(traffic, last, train_days, paged)
        train_data, valid = traffic.days(days[:-1]), traffic.on(days[-1])
        training_rows += len(train_data)
        predict = fit(train_data, valid, seed)
        p_valid = predict(valid)
        reference = {n: traffic.column(train_data, n) for n in features}
        reference[SCORE] = p_valid
        return predict, reference, normalized_entropy(valid.labels, p_valid)

    predict, reference, ne_valid = deploy(first_day - 1)
    if trigger is not None:
        trigger.deployed(first_day - 1, ne_valid)
    rows, retrain_days, reports = [], [], {}
    for day in range(first_day, last_day + 1):
        data = traffic.on(day)
        p = predict(data)  # served during the day, before any label
        current = {n: traffic.column(data, n) for n in features}
        current[SCORE] = p
        report = DriftReport.compute(
            reference, current, features=[*features, SCORE], categorical=features
        )
        reports[day] = report
        ne = normalized_entropy(data.labels, p)  # known the next morning
        broken = [n for n in features if report.psi[n] > page_psi]
        if broken:
            paged.add(day)
            action = "page: PSI alert on " + ", ".join(broken)
        elif policy == "daily":
            action = "retrain"
        elif policy == "trigger":
            decision = trigger.observe(day, ne=ne)
            action = "retrain" if decision.retrain else "keep"
        else:
            action = "keep"
        rows.append(
            {
                "day": day,
                "ne": ne,
                "bayes_ne": bayes_normalized_entropy(data.true_prob, data.labels),
                "ctr": float(data.labels.mean()),
                "mean_pctr": float(p.mean()),
                "calibration": calibration_ratio(data.labels, p),
                **{f"psi_{n}": v for n, v in report.psi.items()},
                "action": action,
            }
        )
        if action == "retrain":
            retrain_days.append(day)
            predict, reference, ne_valid = deploy(day)
            if trigger is not None:
                trigger.deployed(day, ne_valid)
    return SimulationResult(
        policy=policy,
        frame=pd.DataFrame(rows),
        retrain_days=retrain_days,
        paged_days=sorted(paged),
        trigger=trigger,
        drift_reports=reports,
        training_rows=training_rows,
    )
