"""DeepFM: factorization-machine interactions plus an MLP over the same embeddings.

Introduced in ``casestudies/ad_click/03_models.ipynb``. A factorization machine
(Rendle 2010, "Factorization Machines") gives every feature a vector ``v_i``
and scores each pair by ``<v_i, v_j>``: a pair never seen together in training
still gets a sensible weight, because each vector was learned from its other
pairs. DeepFM (Guo et al. 2017, "DeepFM: A Factorization-Machine based Neural
Network for CTR Prediction") adds an MLP on the concatenated embeddings for
higher-order interactions, sharing the embeddings between the two parts so no
feature engineering is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mlsd_lib.models.ctr import (
    CTRModule,
    DenseScaler,
    FieldEmbedding,
    mlp,
)


def fm_interaction(vectors: torch.Tensor) -> torch.Tensor:
    """``sum_{i<j} <v_i, v_j>`` for ``[n, fields, dim]`` vectors, in ``O(fields)``.

    Rendle's identity: ``0.5 * ((sum_i v_i)^2 - sum_i v_i^2)`` summed over dims.
    """
    square_of_sum = vectors.sum(dim=1).pow(2)
    sum_of_squares = vectors.pow(2).sum(dim=1)
    return 0.5 * (square_of_sum - sum_of_squares).sum(dim=1)


class DeepFM(CTRModule):
    """First-order (LR) + FM second-order + MLP, all on shared embeddings.

    Each dense feature ``x_k`` joins the FM as the vector ``x_k * u_k`` (a
    learned vector scaled by the standardized value), so dense-categorical
    pairs interact too.
    """

    def __init__(
        self,
        num_dense: int,
        cardinalities: Sequence[int],
        *,
        embedding_dim: int = 16,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.0,
        dense_mean: np.ndarray | None = None,
        dense_std: np.ndarray | None = None,
        sparse: bool = True,
    ) -> None:
        super().__init__()
        self.num_dense = int(num_dense)
        self.cardinalities = tuple(int(c) for c in cardinalities)
        self.scaler = DenseScaler(self.num_dense, dense_mean, dense_std)
        self.first_order = FieldEmbedding(
            self.cardinalities, 1, sparse=sparse, init_std=0
        )
        self.dense_linear = nn.Linear(self.num_dense, 1)
        self.embedding = FieldEmbedding(
            self.cardinalities, embedding_dim, sparse=sparse
        )
        self.dense_vectors = nn.Parameter(
            torch.randn(self.num_dense, embedding_dim) * 0.01
        )
        num_fields = len(self.cardinalities) + self.num_dense
        self.deep = mlp([num_fields * embedding_dim, *hidden, 1], dropout)

    def forward(self, dense: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        self.check_inputs(dense, categorical)
        x = self.scaler(dense)
        first = self.dense_linear(x).squeeze(1) + self.first_order(categorical).sum(
            dim=(1, 2)
        )
        vectors = torch.cat(
            [self.embedding(categorical), x.unsqueeze(2) * self.dense_vectors], dim=1
        )
        second = fm_interaction(vectors)
        deep = self.deep(vectors.flatten(1)).squeeze(1)
        return first + second + deep
