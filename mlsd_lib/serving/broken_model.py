"""A deliberately broken model, to rehearse catching one in a canary.

Introduced in ``notebooks/failure_drills.ipynb``. The bad release a canary must
catch is rarely a crash (the hot swap's warm-up refuses those); it is a model
that answers fast, with plausible numbers, that are wrong: a sign flipped in a
feature transform, labels inverted in a training job, columns in the wrong
order. :class:`InvertedLogit` is such a model: it reflects a probability
model's logit around a fixed centre,

    p_broken = sigmoid(2 * centre - logit(p)),

With ``centre=0`` it is the plain sign flip, ``1 - p``: rare clicks predicted
as near-certain, which any calibration check catches at once. With ``centre``
at the model's average logit (:func:`mean_logit`) it is the subtle version: the
mean pCTR stays about where it was (a dashboard of average pCTR sees nothing)
while the ranking is exactly reversed; only a metric against labels, or the
world's truth, catches it, and it takes more samples the weaker the model's
ranking signal was to begin with.
"""

from __future__ import annotations

import torch
from torch import nn


class InvertedLogit(nn.Module):
    """``model``'s probabilities with the logit reflected around ``centre``."""

    def __init__(self, model: nn.Module, centre: float) -> None:
        super().__init__()
        self.model = model
        self.centre = float(centre)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        p = self.model(features).clamp(1e-7, 1.0 - 1e-7)
        return torch.sigmoid(2.0 * self.centre - torch.logit(p))


def mean_logit(model: nn.Module, features: torch.Tensor) -> float:
    """The average logit ``model`` gives ``features``: a centre for
    :class:`InvertedLogit` that keeps the broken model's average pCTR close."""
    with torch.inference_mode():
        p = model(features).clamp(1e-7, 1.0 - 1e-7)
    return float(torch.logit(p).mean())
