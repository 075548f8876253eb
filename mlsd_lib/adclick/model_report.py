"""Reports on the ad-click models: scores, training curves, breakdowns, latency.

Introduced in ``casestudies/ad_click/03_models.ipynb``. The models themselves
and their settings are :mod:`mlsd_lib.adclick.recipes`; this module turns a set
of fitted models into the tables and figures the chapter shows, scoring the test
day exactly as ``benchmarks/adclick_quality.py`` does (logit shift fitted on the
validation day, the ensemble as the mean logit of its members).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mlsd_lib.adclick.recipes import (
    DISPLAY_NAMES,
    ENSEMBLE,
    FittedModel,
    ensemble,
    intercept_shift,
    shifted,
)
from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.evaluation import calibration_ratio, normalized_entropy, roc_auc
from mlsd_lib.models.training import TrainingResult
from mlsd_lib.validation import require_int

BAYES = "Bayes (true p)"


def scores(y: np.ndarray, p: np.ndarray, bayes_ne: float) -> dict[str, float]:
    """NE, NE / Bayes NE, AUC and calibration ratio of predictions ``p``."""
    ne = normalized_entropy(y, p)
    return {
        "NE": ne,
        "NE / Bayes": ne / bayes_ne,
        "AUC": roc_auc(y, p),
        "calibration": calibration_ratio(y, p),
    }


def test_predictions(
    fitted: Mapping[str, FittedModel], valid: CTRData, test: CTRData
) -> dict[str, np.ndarray]:
    """Each model's test-day pCTR, level-shifted on ``valid``; plus ``ensemble``.

    The shift is :func:`~mlsd_lib.adclick.recipes.intercept_shift` on the
    validation day (the freshest labelled day), as in the quality benchmark.
    The ensemble row needs every member of
    :data:`~mlsd_lib.adclick.recipes.ENSEMBLE` in ``fitted``.
    """
    predictions = {}
    for name, model in fitted.items():
        shift = intercept_shift(model.predict(valid), valid.labels)
        predictions[name] = shifted(model.predict(test), shift)
    if all(m in predictions for m in ENSEMBLE):
        predictions["ensemble"] = ensemble(predictions)
    return predictions


def results_table(
    predictions: Mapping[str, np.ndarray],
    test: CTRData,
    train_seconds: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row per model (Bayes first): NE, NE / Bayes, AUC, calibration, train s.

    ``test.true_prob`` gives the Bayes row: the NE of the world's own p(click),
    the floor no model beats in expectation. A model missing from
    ``train_seconds`` gets NaN; ``ensemble`` gets the sum of its members'.
    """
    if test.true_prob is None:
        raise ValueError("test has no true_prob: the Bayes row needs the world's.")
    y = test.labels
    bayes_ne = normalized_entropy(y, test.true_prob)
    seconds = dict(train_seconds or {})
    if "ensemble" in predictions and all(m in seconds for m in ENSEMBLE):
        seconds["ensemble"] = sum(seconds[m] for m in ENSEMBLE)
    rows = {BAYES: {**scores(y, test.true_prob, bayes_ne), "train s": np.nan}}
    for name, p in predictions.items():
        rows[DISPLAY_NAMES.get(name, name)] = {
            **scores(y, p, bayes_ne),
            "train s": seconds.get(name, np.nan),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def training_history(model: FittedModel) -> TrainingResult | None:
    """The torch training log of ``model`` (for GBDT + LR: its LR stage's)."""
    if model.result is not None:
        return model.result
    return getattr(model.model, "training", None)


def training_curves_figure(fitted: Mapping[str, FittedModel]) -> Figure:
    """Train loss (dashed) and validation log loss (solid) per epoch, per model."""
    fig = Figure(figsize=(7, 3.8), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, model) in enumerate(fitted.items()):
        result = training_history(model)
        if result is None:
            continue
        color = f"C{i}"
        epochs = [r.epoch for r in result.history]
        label = DISPLAY_NAMES.get(name, name)
        ax.plot(epochs, result.train_losses, "--", color=color, alpha=0.7)
        ax.plot(epochs, result.valid_log_losses, "o-", color=color, label=label)
        ax.plot(result.best_epoch, result.best_valid_log_loss, "k*", ms=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel("log loss")
    ax.set_title("Training (dashed) and validation (solid) log loss; * = kept")
    ax.legend()
    return fig


def ne_by_group(
    y: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    groups: np.ndarray,
    *,
    baseline: str = "lr",
    true_prob: np.ndarray | None = None,
) -> pd.DataFrame:
    """NE of each model within each value of ``groups``, and the gain over LR.

    Columns: ``rows``, ``CTR``, one NE column per model (display names), then
    ``gain of <model>`` = ``1 - NE(model) / NE(baseline)`` for every other
    model; with ``true_prob``, a Bayes NE column too.
    """
    groups = np.asarray(groups)
    records = []
    for value in np.unique(groups):
        mask = groups == value
        record: dict[str, object] = {
            "group": value,
            "rows": int(mask.sum()),
            "CTR": float(np.mean(y[mask])),
        }
        if true_prob is not None:
            record[BAYES] = normalized_entropy(y[mask], true_prob[mask])
        ne = {m: normalized_entropy(y[mask], p[mask]) for m, p in predictions.items()}
        for name, value_ne in ne.items():
            record[DISPLAY_NAMES.get(name, name)] = value_ne
        for name, value_ne in ne.items():
            if name != baseline:
                gain = 1.0 - value_ne / ne[baseline]
                record[f"gain of {DISPLAY_NAMES.get(name, name)}"] = gain
        records.append(record)
    return pd.DataFrame.from_records(records).set_index("group")


def scoring_seconds(
    model: FittedModel, data: CTRData, *, candidates: int = 100, repeats: int = 20
) -> float:
    """Median seconds to score ``candidates`` rows of ``data`` in process."""
    require_int("candidates", candidates, at_least=1)
    require_int("repeats", repeats, at_least=1)
    batch = data.subset(np.arange(min(candidates, len(data))))
    model.predict(batch)  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
