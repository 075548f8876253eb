"""DCN-V2: explicit feature crosses of bounded degree, plus a deep network.

Introduced in ``casestudies/ad_click/03_models.ipynb``. A cross layer computes
``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` (elementwise product with the input
``x_0``), so ``L`` layers hold every polynomial cross of the embedded features
up to degree ``L + 1``, with a residual that keeps the lower-degree ones (Wang
et al. 2021, "DCN V2: Improved Deep & Cross Network and Practical Lessons for
Web-scale Learning to Rank Systems"). ``W_l`` is full-rank here or, with
``low_rank``, ``U_l V_l^T`` (the paper's cost-saving variant). The deep part is
stacked on the cross output or runs in parallel with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from mlsd_lib.models.ctr import (
    CTRModule,
    DenseScaler,
    FieldEmbedding,
    mlp,
)


class CrossLayer(nn.Module):
    """One DCN-V2 cross: ``x0 * (W x + b) + x``; ``W = U V^T`` when low-rank."""

    def __init__(self, width: int, low_rank: int | None = None) -> None:
        super().__init__()
        if low_rank is None:
            self.project = nn.Linear(width, width)
        else:
            self.project = nn.Sequential(
                nn.Linear(width, low_rank, bias=False), nn.Linear(low_rank, width)
            )
        nn.init.zeros_(self.project_bias())

    def project_bias(self) -> torch.Tensor:
        last = self.project if isinstance(self.project, nn.Linear) else self.project[1]
        return last.bias

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.project(x) + x


class DCNv2(CTRModule):
    """Embeddings and scaled dense -> cross layers and MLP -> one logit."""

    def __init__(
        self,
        num_dense: int,
        cardinalities: Sequence[int],
        *,
        embedding_dim: int = 16,
        num_cross_layers: int = 2,
        low_rank: int | None = None,
        hidden: Sequence[int] = (128, 64),
        structure: Literal["stacked", "parallel"] = "parallel",
        dropout: float = 0.0,
        dense_mean: np.ndarray | None = None,
        dense_std: np.ndarray | None = None,
        sparse: bool = True,
    ) -> None:
        super().__init__()
        if structure not in ("stacked", "parallel"):
            raise ValueError(
                f"structure must be 'stacked' or 'parallel', not {structure!r}."
            )
        self.num_dense = int(num_dense)
        self.cardinalities = tuple(int(c) for c in cardinalities)
        self.structure = structure
        self.scaler = DenseScaler(self.num_dense, dense_mean, dense_std)
        self.embedding = FieldEmbedding(
            self.cardinalities, embedding_dim, sparse=sparse
        )
        width = len(self.cardinalities) * embedding_dim + self.num_dense
        self.cross = nn.ModuleList(
            [CrossLayer(width, low_rank) for _ in range(num_cross_layers)]
        )
        hidden = tuple(hidden)
        if structure == "stacked":
            self.deep = mlp([width, *hidden], dropout) if hidden else nn.Identity()
            self.head = nn.Linear(hidden[-1] if hidden else width, 1)
        else:
            self.deep = mlp([width, *hidden], dropout) if hidden else nn.Identity()
            self.head = nn.Linear(width + (hidden[-1] if hidden else width), 1)
        # mlp() leaves the last layer linear; the head needs a nonlinearity below it.
        self.deep_activation = nn.ReLU() if hidden else nn.Identity()

    def forward(self, dense: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        self.check_inputs(dense, categorical)
        x0 = torch.cat([self.embedding(categorical).flatten(1), self.scaler(dense)], 1)
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        if self.structure == "stacked":
            out = self.deep_activation(self.deep(x))
        else:
            out = torch.cat([x, self.deep_activation(self.deep(x0))], dim=1)
        return self.head(out).squeeze(1)
