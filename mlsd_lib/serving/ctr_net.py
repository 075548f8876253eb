"""A small click model over feature-store columns, the one the serving chapter ships.

Introduced in ``notebooks/model_serving.ipynb``. Serving is the subject there,
not modelling (the ad-click case study compares real CTR models), so the model
is deliberately small: ``log1p`` of the raw counters (they span 0 to thousands),
one hidden layer, a sigmoid. Everything happens inside ``forward``, so the
exported artifact takes the feature store's float32 matrix exactly as the
gateway reads it, and no preprocessing can drift between training and serving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class FeatureCTRNet(nn.Module):
    """``features [n, k]`` (raw counters and ratios) -> ``p(click) [n]``."""

    def __init__(self, num_features: int, hidden: int = 16) -> None:
        super().__init__()
        self.hidden = nn.Linear(num_features, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.log1p(features.clamp(min=0.0))
        return torch.sigmoid(self.out(torch.relu(self.hidden(x)))).squeeze(-1)


@dataclass(frozen=True)
class FitReport:
    """Training log loss per epoch (full batch)."""

    losses: tuple[float, ...]


def fit_feature_ctr_net(
    features: np.ndarray,
    clicks: np.ndarray,
    *,
    hidden: int = 16,
    epochs: int = 300,
    lr: float = 0.05,
    seed: int = 0,
) -> tuple[FeatureCTRNet, FitReport]:
    """Full-batch Adam on log loss; seeded, so the same data gives the same model.

    Returns the model in eval mode (ready to export) and its loss curve.
    """
    if len(features) != len(clicks) or len(features) == 0:
        raise ValueError(
            f"{len(features)} feature rows and {len(clicks)} labels: pass the same, "
            "non-zero number of each."
        )
    torch.manual_seed(seed)
    model = FeatureCTRNet(features.shape[1], hidden)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.asarray(clicks, dtype=np.float32))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCELoss()
    losses = []
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = loss_fn(model(x).clamp(1e-7, 1 - 1e-7), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), FitReport(tuple(losses))
