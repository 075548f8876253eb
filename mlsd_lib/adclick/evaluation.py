"""Offline evaluation experiments for the ad-click models.

Introduced in ``casestudies/ad_click/04_evaluation.ipynb``. The metrics
themselves live in :mod:`mlsd_lib.evaluation`; this module holds the
experiments the chapter runs with them, on the ads world whose true p(click)
is known:

* :func:`metrics_table`: AUC, log loss, NE, ECE and predicted ÷ observed CTR
  for several models' predictions, next to the Bayes-optimal model (the
  world's ``true_prob``);
* :func:`day_split` and :func:`random_split`: the honest split (train on the
  past, test on the next day) and the leaky one (rows shuffled across days);
* :func:`freshness_study`: "train on a sliding window, evaluate on the next
  day", for several retraining schedules (daily, weekly), reusing one model
  per distinct training day;
* :func:`distort`: a monotone distortion of probabilities (AUC unchanged,
  calibration broken) for the recalibration demonstration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from mlsd_lib.adclick.recipes import Budget, FittedModel, fit_model, logit, sigmoid
from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.evaluation import (
    calibration_ratio,
    expected_calibration_error,
    log_loss,
    normalized_entropy,
    roc_auc,
)
from mlsd_lib.validation import require_int, require_number

SECONDS_PER_DAY = 86_400.0
#: One cheap pass per retraining: a daily job has a daily time budget.
FRESHNESS_BUDGET = Budget(epochs=2, batch_size=1024)
#: The key :func:`metrics_table` uses for the world's true probabilities.
BAYES = "Bayes (true p)"


def day_index(data: CTRData) -> np.ndarray:
    """The world day of each row (``timestamps // 86400``)."""
    if data.timestamps is None:
        raise ValueError("day_index needs timestamps; this data set has none.")
    return (np.asarray(data.timestamps) // SECONDS_PER_DAY).astype(np.int64)


def day_split(
    data: CTRData, *, test_day: int, valid_days: int = 1
) -> tuple[CTRData, CTRData, CTRData]:
    """``(train, valid, test)`` by time: every day before the validation days,
    ``valid_days`` days just before ``test_day``, and ``test_day`` itself."""
    day = day_index(data)
    first_valid = test_day - valid_days
    if not (day < first_valid).any():
        raise ValueError(
            f"no training rows before day {first_valid} "
            f"(days {day.min()}..{day.max()})."
        )
    return (
        data.subset(day < first_valid),
        data.subset((day >= first_valid) & (day < test_day)),
        data.subset(day == test_day),
    )


def random_split(
    data: CTRData, *, valid_size: int, test_size: int, seed: int = 0
) -> tuple[CTRData, CTRData, CTRData]:
    """``(train, valid, test)`` with rows drawn at random from every day.

    The split a tabular-ML habit reaches for, and the wrong one for a model
    that trains on the past and serves the future: training then contains
    rows from the test rows' own days (and later ones). Rows keep their time
    order within each part.
    """
    n = len(data)
    if valid_size < 1 or test_size < 1 or valid_size + test_size >= n:
        raise ValueError(
            f"valid_size ({valid_size}) and test_size ({test_size}) must be >= 1 "
            f"and leave training rows out of {n}."
        )
    order = np.random.default_rng(seed).permutation(n)
    test = np.sort(order[:test_size])
    valid = np.sort(order[test_size : test_size + valid_size])
    train = np.sort(order[test_size + valid_size :])
    return data.subset(train), data.subset(valid), data.subset(test)


def model_metrics(
    labels: np.ndarray, p: np.ndarray, *, num_bins: int = 10
) -> dict[str, float]:
    """AUC, log loss, NE, ECE (``num_bins`` equal-mass bins) and the
    calibration ratio (predicted ÷ observed CTR) of predictions ``p``."""
    return {
        "AUC": roc_auc(labels, p),
        "log loss": log_loss(labels, p),
        "NE": normalized_entropy(labels, p),
        "ECE": expected_calibration_error(
            labels, p, num_bins=num_bins, strategy="quantile"
        ),
        "pred/obs CTR": calibration_ratio(labels, p),
    }


def metrics_table(
    data: CTRData, predictions: Mapping[str, np.ndarray], *, num_bins: int = 10
) -> pd.DataFrame:
    """One row per model, plus the Bayes-optimal model (``data.true_prob``).

    Columns: :func:`model_metrics`, and ``NE gap`` = NE minus the Bayes NE, the
    part of the loss a better model could still remove.
    """
    rows = dict(predictions)
    if data.true_prob is not None:
        rows[BAYES] = data.true_prob
    table = pd.DataFrame(
        {
            name: model_metrics(data.labels, p, num_bins=num_bins)
            for name, p in rows.items()
        }
    ).T
    if data.true_prob is not None:
        table["NE gap"] = table["NE"] - table.loc[BAYES, "NE"]
    return table


def distort(
    p: np.ndarray, *, temperature: float = 1.0, shift: float = 0.0
) -> np.ndarray:
    """``sigmoid(logit(p) / temperature + shift)``: a strictly increasing map.

    The ranking (hence AUC) is unchanged; the probabilities are not: a
    temperature above 1 squeezes them towards 0.5 (overconfident at the low
    end for CTRs), below 1 spreads them; ``shift`` moves the level.
    """
    require_number("temperature", temperature, above=0)
    return sigmoid(logit(p) / temperature + shift)


def training_days(eval_day: int, *, first_day: int, every: int) -> int:
    """The day a schedule that retrains every ``every`` days last retrained
    on, as of ``eval_day``: retraining happens on ``first_day``,
    ``first_day + every``, ... (a model retrained on day ``t`` has seen days
    before ``t``)."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}.")
    if eval_day < first_day:
        raise ValueError(f"eval_day {eval_day} is before the first day {first_day}.")
    return first_day + (eval_day - first_day) // every * every


def freshness_study(
    data: CTRData,
    *,
    eval_days: Sequence[int],
    schedules: Mapping[str, int],
    window_days: int,
    model: str = "lr",
    budget: Budget = FRESHNESS_BUDGET,
    seed: int = 0,
    fit: Callable[..., FittedModel] = fit_model,
) -> pd.DataFrame:
    """NE per day for models retrained on different schedules.

    ``schedules`` maps a name to a retraining period in days (``{"daily": 1,
    "weekly": 7}``). A model retrained on day ``t`` trains on days
    ``[t - window_days, t - 1)`` and early-stops on day ``t - 1``; it then
    serves (and is evaluated on) every day from ``t`` until the schedule's
    next retraining. All schedules start by retraining on ``eval_days[0]``.
    Models are cached by retraining day, so schedules that retrain on the
    same day share one model (the weekly schedule costs nothing extra next to
    the daily one).

    Returns one row per (day, schedule): the retraining day, the model's age
    in days, NE, the Bayes NE and their gap.
    """
    # A model trains on [t - window_days, t - 1) and validates on t - 1.
    require_int("window_days", window_days, at_least=2)
    day = day_index(data)
    first = int(eval_days[0])
    if first - window_days < int(day.min()):
        raise ValueError(
            f"a {window_days}-day window before day {first} starts before the "
            f"first day of data ({int(day.min())})."
        )
    models: dict[int, FittedModel] = {}
    rows = []
    for d in eval_days:
        test = data.subset(day == d)
        bayes = normalized_entropy(test.labels, test.true_prob)
        for name, every in schedules.items():
            t = training_days(int(d), first_day=first, every=every)
            if t not in models:
                in_window = (day >= t - window_days) & (day < t - 1)
                models[t] = fit(
                    model,
                    data.subset(in_window),
                    data.subset(day == t - 1),
                    budget,
                    seed=seed,
                )
            ne = normalized_entropy(test.labels, models[t].predict(test))
            rows.append(
                {
                    "day": int(d),
                    "schedule": name,
                    "trained_on": t,
                    "age_days": int(d) - t,
                    "NE": ne,
                    "bayes_NE": bayes,
                    "NE_gap": ne - bayes,
                }
            )
    return pd.DataFrame(rows)
