"""Hashed logistic regression: the CTR baseline every other model must beat.

Introduced in ``casestudies/ad_click/03_models.ipynb``. One weight per hashed id per
field plus a linear term on the standardized dense features: the model that
served ads for a decade (McMahan et al. 2013, "Ad Click Prediction: a View from
the Trenches"; He et al. 2014). It memorizes per-id click rates well but cannot
represent an *interaction* (this user likes *this* kind of ad) unless someone
hand-crosses the two fields into one: the gap the factorization and cross
models close.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mlsd_lib.models.ctr import CTRModule, DenseScaler, FieldEmbedding


class HashedLogisticRegression(CTRModule):
    """``logit = b + w_dense . scale(dense) + sum_j w_j[id_j]``."""

    def __init__(
        self,
        num_dense: int,
        cardinalities: Sequence[int],
        *,
        dense_mean: np.ndarray | None = None,
        dense_std: np.ndarray | None = None,
        sparse: bool = True,
    ) -> None:
        super().__init__()
        self.num_dense = int(num_dense)
        self.cardinalities = tuple(int(c) for c in cardinalities)
        self.scaler = DenseScaler(self.num_dense, dense_mean, dense_std)
        self.weights = FieldEmbedding(self.cardinalities, 1, sparse=sparse, init_std=0)
        self.dense_linear = nn.Linear(self.num_dense, 1)
        nn.init.zeros_(self.dense_linear.weight)
        nn.init.zeros_(self.dense_linear.bias)

    def forward(self, dense: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        self.check_inputs(dense, categorical)
        linear = self.dense_linear(self.scaler(dense)).squeeze(1)
        return linear + self.weights(categorical).sum(dim=(1, 2))
