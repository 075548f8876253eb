"""Daily retraining two ways: warm-started from yesterday, or from scratch.

Introduced in ``casestudies/ad_click/06_monitoring_and_retraining.ipynb``.
Both start from the same first model (hashed LR trained on the first window,
the recipe of :func:`~mlsd_lib.adclick.monitoring.fit_lr`). Then, every day
``t`` once its labels are in:

* **from scratch**: a new model trains on the ``train_days - 1`` days before
  ``t`` (one epoch, as ``fit_lr``);
* **warm start**: yesterday's model continues on day ``t - 1`` only, the one day
  it has not trained on yet (:func:`~mlsd_lib.models.warm_start.continue_training`),
  with the same optimizer settings;

each recalibrated on day ``t`` (:func:`~mlsd_lib.adclick.recipes.intercept_shift`)
and serving day ``t + 1``. Each served day records NE against the world's
Bayes NE, the steps and seconds of the training that produced the model, and
the NE on a **probe**: rows of old days held out of every training set
(:func:`probe_mask`). The probe's days fall out of the scratch model's window
after ``train_days`` days; how its NE moves afterwards is what each model
forgets of a period it no longer trains on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from mlsd_lib.adclick.monitoring import Traffic
from mlsd_lib.adclick.recipes import build_torch_model, intercept_shift, shifted
from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.errors import MlsdError
from mlsd_lib.models import predict_proba
from mlsd_lib.models.training import TrainingConfig
from mlsd_lib.models.warm_start import TrainingRun, continue_training, train_run
from mlsd_lib.progress import tqdm
from mlsd_lib.worlds.ads import bayes_normalized_entropy, normalized_entropy

MODES = ("warm start", "from scratch")
#: One fast epoch, the settings of :func:`~mlsd_lib.adclick.monitoring.fit_lr`.
DAILY_TRAINING = TrainingConfig(
    epochs=1,
    batch_size=1024,
    lr=0.05,
    embedding_l2=100.0,
    progress=False,
    num_threads=1,
)


def warm_training(train_days: int, lr: float = 0.02) -> TrainingConfig:
    """:data:`DAILY_TRAINING` for a model that continues from yesterday's weights.

    Two changes, both measured in the monitoring chapter: a smaller step
    (``lr``; at the scratch model's 0.05 a fresh Adam's first steps undo what
    the weights knew, and the warm model trailed the scratch one on every day),
    and the embedding prior divided by the window's training days: the prior
    is paid once per epoch over whatever data the epoch sees, so a model that
    trains every day on one day would otherwise pay it ``train_days - 1`` times
    per window, where the scratch model pays it once.
    """
    if train_days < 2:
        raise RetrainingComparisonError(
            f"train_days must be >= 2, got {train_days}; the window is the "
            "scratch model's training days plus one to recalibrate on."
        )
    return replace(
        DAILY_TRAINING,
        lr=lr,
        embedding_l2=DAILY_TRAINING.embedding_l2 / (train_days - 1),
    )


class RetrainingComparisonError(MlsdError, ValueError):
    """The days or the probe do not allow the comparison; the message says why."""


def probe_mask(
    traffic: Traffic, days: Sequence[int], share: float, *, seed: int = 0
) -> np.ndarray:
    """A seeded random ``share`` of the rows of ``days``, held out of training."""
    if not 0.0 < share < 1.0:
        raise RetrainingComparisonError(
            f"probe share must be in (0, 1), got {share}; 0.2 holds out a fifth."
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9B0BE]))
    return np.isin(traffic.day, list(days)) & (rng.random(len(traffic.day)) < share)


@dataclass
class _Served:
    run: TrainingRun
    shift: float

    def predict(self, data: CTRData) -> np.ndarray:
        p = predict_proba(self.run.model, data, num_threads=1)
        return shifted(p, self.shift)


def _rows(traffic: Traffic, days: Sequence[int], probe: np.ndarray) -> CTRData:
    keep = np.isin(traffic.day, list(days)) & ~probe
    return traffic.data.subset(np.flatnonzero(keep))


def _calibrated(run: TrainingRun, valid: CTRData) -> _Served:
    p = predict_proba(run.model, valid, num_threads=1)
    return _Served(run, intercept_shift(p, valid.labels))


def compare_warm_and_scratch(
    traffic: Traffic,
    *,
    first_day: int,
    last_day: int,
    probe: np.ndarray,
    train_days: int = 7,
    config: TrainingConfig = DAILY_TRAINING,
    warm_config: TrainingConfig | None = None,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Serve days ``first_day .. last_day`` with both modes; one row per day and mode.

    ``config`` trains the scratch models (and the first one); ``warm_config``
    (default :func:`warm_training`) the warm-started ones.
    Columns: ``day``, ``mode``, ``ne``, ``bayes_ne``, ``probe_ne`` (NE on the
    probe rows), ``steps`` and ``seconds`` (of the training whose model served
    the day; the first day's model is shared, trained from scratch).
    """
    if first_day < 2 or last_day < first_day or train_days < 2:
        raise RetrainingComparisonError(
            f"need 2 <= first_day <= last_day and train_days >= 2, got first_day="
            f"{first_day}, last_day={last_day}, train_days={train_days}."
        )
    if probe.shape != traffic.day.shape:
        raise RetrainingComparisonError(
            f"probe has {probe.shape[0]:,} entries, traffic {traffic.day.shape[0]:,} "
            "rows; build it with probe_mask(traffic, ...)."
        )
    warm_settings = warm_config or warm_training(train_days)
    probe_data = traffic.data.subset(np.flatnonzero(probe))
    if len(probe_data) == 0:
        raise RetrainingComparisonError("the probe is empty; hold out some old rows.")
    probe_bayes = bayes_normalized_entropy(probe_data.true_prob, probe_data.labels)

    def scratch(last: int) -> _Served:
        window = range(max(0, last - train_days + 1), last)
        torch.manual_seed(seed)
        model = build_torch_model("lr", traffic.data)
        run = train_run(model, _rows(traffic, window, probe), None, config, seed=seed)
        return _calibrated(run, _rows(traffic, [last], probe))

    def warm(previous: _Served, last: int) -> _Served:
        run = continue_training(
            previous.run.model, _rows(traffic, [last - 1], probe), None,
            warm_settings, seed=seed + last,
        )  # fmt: skip
        return _calibrated(run, _rows(traffic, [last], probe))

    first = scratch(first_day - 1)
    served = {"warm start": first, "from scratch": first}
    rows = []
    for day in tqdm(range(first_day, last_day + 1), desc="days", disable=not progress):
        data = _rows(traffic, [day], probe)
        bayes = bayes_normalized_entropy(data.true_prob, data.labels)
        for mode in MODES:
            model = served[mode]
            p_probe = model.predict(probe_data)
            rows.append(
                {
                    "day": day,
                    "mode": mode,
                    "ne": normalized_entropy(data.labels, model.predict(data)),
                    "bayes_ne": bayes,
                    "probe_ne": normalized_entropy(probe_data.labels, p_probe),
                    "probe_ne_refit": normalized_entropy(
                        probe_data.labels,
                        shifted(p_probe, intercept_shift(p_probe, probe_data.labels)),
                    ),
                    "probe_bayes_ne": probe_bayes,
                    "steps": model.run.steps,
                    "seconds": model.run.seconds,
                }
            )
        if day < last_day:
            served = {
                "warm start": warm(served["warm start"], day),
                "from scratch": scratch(day),
            }
    return pd.DataFrame(rows)
