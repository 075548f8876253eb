"""Warm start: train today's model from yesterday's weights on the newest data.

Introduced in ``casestudies/ad_click/06_monitoring_and_retraining.ipynb``. A
model retrained every day can start from scratch on a window of recent days,
or continue from yesterday's model on the one day it has not seen yet. The
warm start costs a fraction of the steps (one day instead of a window), and
the weights still carry what older days taught: good when those days matter
(ids seen weeks ago come back), bad when they describe a world that is gone.
Hashed id tables make it easy: the table size is fixed, so yesterday's model
fits today's data without growing a vocabulary.

:func:`continue_training` copies the previous model (the deployed one is left
untouched, so it can keep serving and be rolled back to) and runs the book's
training loop (:func:`~mlsd_lib.models.training.train`) on the new rows. The
optimizer starts afresh (Adam's moments are not carried over): what is
checkpointed in many daily pipelines is the weights, and a fresh optimizer's
first steps are the price, visible in the comparison.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

from torch import nn

from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.models.training import TrainingConfig, TrainingResult, train


@dataclass(frozen=True)
class TrainingRun:
    """A trained model with what its training cost."""

    model: nn.Module
    result: TrainingResult
    steps: int
    """Minibatch steps taken (the cost measure that does not depend on the machine)."""
    seconds: float


def training_steps(rows: int, batch_size: int, epochs: int) -> int:
    """Minibatch steps of ``epochs`` passes over ``rows`` rows."""
    return math.ceil(rows / batch_size) * epochs


def train_run(
    model: nn.Module,
    train_data: CTRData,
    valid_data: CTRData | None = None,
    config: TrainingConfig | None = None,
    **overrides: object,
) -> TrainingRun:
    """:func:`~mlsd_lib.models.training.train` in place, with its cost recorded."""
    start = time.perf_counter()
    result = train(model, train_data, valid_data, config, **overrides)
    model.eval()
    batch_size = int(
        overrides.get("batch_size", (config or TrainingConfig()).batch_size)
    )
    steps = training_steps(len(train_data), batch_size, len(result.history))
    return TrainingRun(model, result, steps, time.perf_counter() - start)


def continue_training(
    previous: nn.Module,
    train_data: CTRData,
    valid_data: CTRData | None = None,
    config: TrainingConfig | None = None,
    **overrides: object,
) -> TrainingRun:
    """A copy of ``previous`` trained further on ``train_data`` (warm start).

    ``previous`` is not modified. The data must fit the model (same columns and
    cardinalities: hashed ids make that hold from day to day); otherwise the
    training loop's check raises
    :class:`~mlsd_lib.models.ctr.ModelInputError` naming the column.
    """
    model = copy.deepcopy(previous)
    model.train()
    return train_run(model, train_data, valid_data, config, **overrides)
