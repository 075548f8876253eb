"""The ad-click models as the case study trains them: one recipe per model.

Introduced in ``casestudies/ad_click/03_models.ipynb`` and shared by every later
chapter and by ``benchmarks/adclick_quality.py``, so a figure in the book and
the benchmark's JSON come from the same settings. Four models, from the
baseline up (the papers are cited in :mod:`mlsd_lib.models`):

* ``lr``: hashed logistic regression, main effects only;
* ``gbdt_lr``: LightGBM trees whose leaves feed a logistic regression
  (He et al. 2014);
* ``deepfm``: factorization machine plus MLP (Guo et al. 2017);
* ``dcn_v2``: cross network V2 plus MLP (Wang et al. 2021).

The settings were tuned on the world's validation day (``benchmarks/
adclick_quality.py --quick``): learning rate 0.01 for every torch model, a
per-row prior on the embeddings (``embedding_l2``; without it the user-id
embeddings overfit after one epoch) and one torch thread (two threads on a
shared 2-core machine wait on each other).

After training, :func:`intercept_shift` recalibrates the level on the freshest
labelled day: the CTR level moves day to day (drift, traffic mix), and a model
trained on many days predicts their average.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.models import (
    DCNv2,
    DeepFM,
    GBDTPlusLR,
    HashedLogisticRegression,
    TrainingConfig,
    TrainingResult,
    predict_proba,
    train,
)
from mlsd_lib.validation import require_int

MODEL_NAMES = ("lr", "gbdt_lr", "deepfm", "dcn_v2")
CROSSING_MODELS = ("deepfm", "dcn_v2")
#: The models whose logits the ensemble averages.
ENSEMBLE = ("gbdt_lr", "deepfm", "dcn_v2")
DISPLAY_NAMES = {
    "lr": "hashed LR",
    "gbdt_lr": "GBDT + LR",
    "deepfm": "DeepFM",
    "dcn_v2": "DCN-V2",
    "ensemble": "ensemble",
}
#: Optimizer settings per torch model (see the module docstring); the budget
#: (epochs, batch size, patience), the seed and the threads are set per run.
TORCH_TRAINING: dict[str, TrainingConfig] = {
    "lr": TrainingConfig(lr=0.01, embedding_l2=100.0),
    "deepfm": TrainingConfig(lr=0.01, embedding_l2=100.0),
    "dcn_v2": TrainingConfig(lr=0.01, embedding_l2=100.0),
}


@dataclass(frozen=True)
class Budget:
    """How long each model may train."""

    epochs: int = 6
    batch_size: int = 4096
    num_trees: int = 40
    gbdt_lr_epochs: int = 3
    patience: int = 2

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "num_trees", "gbdt_lr_epochs", "patience"):
            require_int(name, getattr(self, name), at_least=1)


@dataclass
class FittedModel:
    """A trained model, how long it took, and how to score data with it."""

    name: str
    model: object
    seconds: float
    predict: Callable[[CTRData], np.ndarray]
    result: TrainingResult | None = None
    """The torch training log (loss per epoch, best epoch); None for GBDT + LR."""

    @property
    def torch_module(self) -> torch.nn.Module | None:
        """The torch module (exportable), or None for GBDT + LR."""
        return self.model if isinstance(self.model, torch.nn.Module) else None


def build_torch_model(name: str, train_data: CTRData) -> torch.nn.Module:
    """An untrained ``lr``, ``deepfm`` or ``dcn_v2`` sized for ``train_data``."""
    if name == "lr":
        return HashedLogisticRegression.from_data(train_data)
    if name == "deepfm":
        return DeepFM.from_data(train_data, embedding_dim=8, hidden=(64, 32))
    if name == "dcn_v2":
        return DCNv2.from_data(
            train_data, embedding_dim=8, num_cross_layers=2, hidden=(64, 32)
        )
    raise ValueError(f"unknown torch model {name!r}; known: lr, deepfm, dcn_v2.")


def fit_model(
    name: str,
    train_data: CTRData,
    valid_data: CTRData,
    budget: Budget = Budget(),
    *,
    seed: int = 0,
    progress: bool = False,
) -> FittedModel:
    """Train model ``name`` with its recipe, early-stopping on ``valid_data``."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; known: {list(MODEL_NAMES)}.")
    start = time.perf_counter()
    if name == "gbdt_lr":
        gbdt = GBDTPlusLR(
            num_trees=budget.num_trees,
            num_leaves=31,
            learning_rate=0.1,
            lr_epochs=budget.gbdt_lr_epochs,
            lr_lr=0.01,
            lr_embedding_l2=100.0,
            patience=budget.patience,
            seed=seed,
            torch_num_threads=1,
        ).fit(train_data, valid_data, progress=progress)
        return FittedModel(name, gbdt, time.perf_counter() - start, gbdt.predict_proba)
    torch.manual_seed(seed)
    model = build_torch_model(name, train_data)
    result = train(
        model,
        train_data,
        valid_data,
        TORCH_TRAINING[name],
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        patience=budget.patience,
        seed=seed,
        progress=progress,
        num_threads=1,
    )
    model.eval()
    return FittedModel(
        name,
        model,
        time.perf_counter() - start,
        lambda data: predict_proba(model, data, num_threads=1),
        result,
    )


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def intercept_shift(p_valid: np.ndarray, y_valid: np.ndarray) -> float:
    """The logit shift ``b`` with mean ``sigmoid(logit(p) + b)`` = observed CTR.

    Fitted on the freshest labelled day and applied to the next. Bisection: the
    mean is increasing in ``b``.
    """
    z, target = logit(p_valid), float(np.mean(y_valid))
    low, high = -5.0, 5.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        if np.mean(sigmoid(z + mid)) < target:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def shifted(p: np.ndarray, shift: float) -> np.ndarray:
    """``p`` with its logit moved by ``shift``."""
    return sigmoid(logit(p) + shift)


def ensemble(predictions: dict[str, np.ndarray]) -> np.ndarray:
    """The mean logit of the :data:`ENSEMBLE` members' predictions."""
    return sigmoid(np.mean([logit(predictions[m]) for m in ENSEMBLE], axis=0))
