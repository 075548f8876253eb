"""Pieces every torch CTR model shares: field embeddings, dense scaling, checks.

Introduced in ``casestudies/ad_click/03_models.ipynb``. Each model in
:mod:`mlsd_lib.models` reads a :class:`~mlsd_lib.datasets.ctr.CTRData` through
``forward(dense, categorical) -> logits``; the pieces here make that contract
the same for all of them:

* :class:`FieldEmbedding` keeps *one* table for all categorical fields, with a
  per-field row offset, instead of one ``nn.Embedding`` per field: one lookup per
  batch, one sparse gradient, and a model whose size is the sum of the fields'
  bucket counts (the hashing trick fixes those counts in advance).
* :class:`DenseScaler` standardizes the dense columns with statistics fitted on
  the training set and stored as buffers, so the exported model carries its own
  preprocessing and serving cannot forget (or redo differently) the scaling.
* :class:`ProbabilityHead` turns logits into the served pCTR and undoes negative
  downsampling (:mod:`mlsd_lib.models.downsampling`) inside the exported graph.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Self

import numpy as np
import torch
from torch import nn

from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.errors import MlsdError


class ModelInputError(MlsdError, ValueError):
    """Data does not fit the model (field count, dense width, id range)."""


class FieldEmbedding(nn.Module):
    """Embed hashed ids of several fields from one table with field offsets.

    Field ``j``'s ids ``[0, cardinalities[j])`` map to rows
    ``offsets[j] + id``. ``sparse=True`` makes the backward pass produce a sparse
    gradient (only the rows in the batch), which
    :func:`~mlsd_lib.models.training.train` updates with a lazy Adam: with
    millions of rows, a dense optimizer step would touch every row on every batch.
    """

    def __init__(
        self,
        cardinalities: Sequence[int],
        dim: int,
        *,
        sparse: bool = True,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        cardinalities = tuple(int(c) for c in cardinalities)
        if not cardinalities or min(cardinalities) < 1:
            raise ModelInputError(
                f"need at least one categorical field with cardinality >= 1; got "
                f"{list(cardinalities)}."
            )
        self.cardinalities = cardinalities
        self.num_fields = len(cardinalities)
        self.dim = dim
        offsets = np.concatenate([[0], np.cumsum(cardinalities)[:-1]])
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.int64))
        self.table = nn.Embedding(sum(cardinalities), dim, sparse=sparse)
        nn.init.normal_(self.table.weight, std=init_std)

    def forward(self, categorical: torch.Tensor) -> torch.Tensor:
        """``[n, fields]`` ids to ``[n, fields, dim]`` vectors."""
        return self.table(categorical + self.offsets)


class DenseScaler(nn.Module):
    """``(x - mean) / std`` with the training set's statistics kept as buffers."""

    def __init__(
        self,
        num_dense: int,
        mean: np.ndarray | None = None,
        std: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        mean_t = torch.zeros(num_dense) if mean is None else torch.as_tensor(mean)
        std_t = torch.ones(num_dense) if std is None else torch.as_tensor(std)
        if mean_t.shape != (num_dense,) or std_t.shape != (num_dense,):
            raise ModelInputError(
                f"dense mean/std must have shape ({num_dense},); got "
                f"{tuple(mean_t.shape)} and {tuple(std_t.shape)}."
            )
        std_t = torch.where(std_t > 1e-8, std_t, torch.ones_like(std_t))
        self.register_buffer("mean", mean_t.float().clone())
        self.register_buffer("std", std_t.float().clone())

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        return (dense - self.mean) / self.std


def dense_statistics(data: CTRData) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation of ``data.dense`` (float64)."""
    if len(data) == 0:
        raise ModelInputError("cannot fit dense statistics on an empty data set.")
    dense = data.dense.astype(np.float64)
    return dense.mean(axis=0), dense.std(axis=0)


class CTRModule(nn.Module):
    """Base class: remembers the input schema and checks data against it.

    Subclasses set ``num_dense`` and ``cardinalities`` and implement
    ``forward(dense, categorical) -> logits [n]``.
    """

    num_dense: int
    cardinalities: tuple[int, ...]

    @classmethod
    def from_data(cls, data: CTRData, **kwargs: object) -> Self:
        """Size the tables from ``data`` and fit the dense scaling on it; the
        other keyword arguments go to the model's constructor."""
        mean, std = dense_statistics(data)
        return cls(
            data.dense.shape[1],  # type: ignore[call-arg]
            data.cardinalities,
            dense_mean=mean,
            dense_std=std,
            **kwargs,
        )

    def check_inputs(self, dense: torch.Tensor, categorical: torch.Tensor) -> None:
        """Raise :class:`ModelInputError` naming the mismatch (shape checks only).

        The checks read static shapes, so they cost nothing when traced or
        exported; the batch size is never inspected. Skipped while tracing, where
        shapes are tensors and a Python ``if`` on them only draws warnings.
        """
        if torch.jit.is_tracing():
            return
        if dense.dim() != 2 or dense.shape[1] != self.num_dense:
            raise ModelInputError(
                f"{type(self).__name__} expects dense of shape [batch, "
                f"{self.num_dense}]; got {list(dense.shape)}."
            )
        if categorical.dim() != 2 or categorical.shape[1] != len(self.cardinalities):
            raise ModelInputError(
                f"{type(self).__name__} was built for {len(self.cardinalities)} "
                f"categorical fields; got categorical of shape "
                f"{list(categorical.shape)}."
            )

    def check_data(self, data: CTRData) -> None:
        """Check a whole data set: widths, field count and every field's id range."""
        if data.dense.shape[1] != self.num_dense:
            raise ModelInputError(
                f"{type(self).__name__} was built for {self.num_dense} dense "
                f"features; the data has {data.dense.shape[1]} "
                f"({list(data.dense_names)})."
            )
        if len(data.cardinalities) != len(self.cardinalities):
            raise ModelInputError(
                f"{type(self).__name__} was built for {len(self.cardinalities)} "
                f"categorical fields; the data has {len(data.cardinalities)} "
                f"({list(data.categorical_names)})."
            )
        too_big = [
            (name, got, want)
            for name, got, want in zip(
                data.categorical_names,
                data.cardinalities,
                self.cardinalities,
                strict=True,
            )
            if got > want
        ]
        if too_big:
            details = ", ".join(f"{n!r}: {g} > {w}" for n, g, w in too_big)
            raise ModelInputError(
                f"the data's fields have more buckets than the model's tables "
                f"({details}): ids would index past the embedding. Rebuild the "
                "model from this data's cardinalities."
            )


def mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear + ReLU layers through ``sizes`` (the last layer has no activation)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class ProbabilityHead(nn.Module):
    """Serve probabilities: ``sigmoid(logit + log w)``, the recalibrated pCTR.

    A model trained on data where each negative was kept with probability ``w``
    (:func:`~mlsd_lib.models.downsampling.downsample_negatives`) predicts odds
    ``1 / w`` times too high. Recalibration ``q = p / (p + (1 - p) / w)`` is the
    same as multiplying the odds by ``w``, that is adding ``log w`` to the
    logit: done here, inside the exported graph, so every server returns a
    calibrated pCTR and nobody has to remember ``w`` at serving time
    (He et al. 2014, "Practical Lessons from Predicting Clicks on Ads at
    Facebook", section 6.2).
    """

    def __init__(self, model: nn.Module, downsample_rate: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < downsample_rate <= 1.0:
            raise ValueError(
                f"downsample_rate is the fraction of negatives kept, in (0, 1]; "
                f"got {downsample_rate}."
            )
        self.model = model
        self.downsample_rate = float(downsample_rate)
        self.log_rate = math.log(downsample_rate)

    def forward(self, dense: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(dense, categorical) + self.log_rate)
