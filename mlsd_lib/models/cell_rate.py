"""A counting model: the smoothed click rate of each combination of a few fields.

Introduced in ``notebooks/monitoring.ipynb``. Comparing retraining policies
means retraining dozens of times; a model that trains by counting (one
``bincount``) makes that free, and what a policy is worth does not depend on
the model class: every model learns ``P(y | x)`` from a window of the past, and
every one is stale after a concept change. It is also the "historical CTR"
baseline the framework chapter asks for before any learned model.

A cell is one combination of the chosen fields' values (interest x ad
category x device x slot, say). Its prediction is the cell's click rate shrunk
toward the overall rate with a Beta prior worth ``prior_strength`` impressions:
``(clicks + a * base) / (impressions + a)``, so an empty cell predicts the base
rate and a full one its own rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError

__all__ = ["CellRateError", "CellRateModel"]


class CellRateError(MlsdError, ValueError):
    """Fields, values or labels the model cannot use; the message says how."""


class CellRateModel:
    """Smoothed click rate per cell of ``fields`` (integer codes ``0 ..
    cardinality - 1``)."""

    def __init__(
        self,
        fields: Sequence[str],
        cardinalities: Sequence[int],
        *,
        prior_strength: float = 20.0,
    ) -> None:
        if len(fields) != len(cardinalities) or not fields:
            raise CellRateError(
                f"need one cardinality per field, got fields {list(fields)} and "
                f"cardinalities {list(cardinalities)}."
            )
        if prior_strength <= 0:
            raise CellRateError(
                f"prior_strength must be > 0 (impressions the prior is worth), got "
                f"{prior_strength}."
            )
        self.fields = tuple(fields)
        self.cardinalities = tuple(int(c) for c in cardinalities)
        self.prior_strength = float(prior_strength)
        self.rates_: np.ndarray | None = None
        self.base_rate_: float | None = None

    @property
    def num_cells(self) -> int:
        return int(np.prod(self.cardinalities))

    def cells(self, features: pd.DataFrame) -> np.ndarray:
        """The cell index of every row."""
        missing = [f for f in self.fields if f not in features.columns]
        if missing:
            raise CellRateError(
                f"fields {missing} are not in the features (known: "
                f"{list(features.columns)})."
            )
        codes = [features[f].to_numpy(np.int64) for f in self.fields]
        for name, code, card in zip(
            self.fields, codes, self.cardinalities, strict=True
        ):
            if code.size and (code.min() < 0 or code.max() >= card):
                raise CellRateError(
                    f"field {name!r} has codes in [{code.min()}, {code.max()}], "
                    f"outside [0, {card}): pass its true cardinality."
                )
        return np.ravel_multi_index(codes, self.cardinalities)

    def fit(self, features: pd.DataFrame, labels: ArrayLike) -> CellRateModel:
        """Count impressions and clicks per cell."""
        y = np.asarray(labels, dtype=np.float64)
        if y.shape != (len(features),) or y.size == 0:
            raise CellRateError(
                f"need one label per row ({len(features)}), got shape {y.shape}."
            )
        cells = self.cells(features)
        shown = np.bincount(cells, minlength=self.num_cells)
        clicks = np.bincount(cells, weights=y, minlength=self.num_cells)
        base = float(y.mean())
        a = self.prior_strength
        self.rates_ = (clicks + a * base) / (shown + a)
        self.base_rate_ = base
        return self

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """The predicted click probability of every row."""
        if self.rates_ is None:
            raise CellRateError("the model is not fitted: call fit(features, labels).")
        return self.rates_[self.cells(features)]
