"""The two towers of a retrieval model: users and items into one embedding space.

Introduced in ``casestudies/recommender/03_models.ipynb``. Each tower maps its side to
a ``dim``-dimensional, L2-normalized vector; retrieval is then a nearest-
neighbour search by inner product (cosine), which an index answers in
milliseconds over millions of items (:mod:`mlsd_lib.models.two_tower`).

* :class:`ItemIdTable`: one item-id embedding table that **both** towers read.
  The user tower pools the ids of the user's last engaged items and the item
  tower embeds the candidate's id, and sharing the table puts a watched item and
  a candidate in one space: "users who watched X" and "X" start from the same
  vector, every positive trains the row from both sides, and a 10 M-item
  catalogue pays for one 2.56 GB table instead of two (YouTube's candidate
  generator shares its video embeddings the same way, Covington et al. 2016).
  The cost is coupling: the history side cannot learn a separate "watched" meaning
  of an item. Row ``n_items`` is the **unknown** item: an id of -1, an id beyond
  the table (a title added after training) or an id with no training event
  (``known`` is false) reads it, so an item the model never saw is embedded from
  its content features alone instead of from an untrained random row.
* :class:`ItemTower`: id vector + standardized dense content features
  (description embedding, log duration, quality proxies) + categorical ones
  (genre, language) through an MLP. **Id-dropout**: in training, a share of the
  rows read the unknown row instead of their own, so the MLP must learn to place
  an item from its content; that is what makes a brand-new title retrievable.
* :class:`UserTower`: the mean of the item vectors of the user's last ``N``
  engaged items (padded with -1), ``log(1 + N_seen)``, and the user's dense and
  categorical features through an MLP. A mean is order-free, cheap and exports
  as two tensor ops; attention over the history *conditioned on the candidate*
  (DIN) cannot exist in a two-tower model, whose user side never sees the item,
  and self-attention is left as an exercise. An empty history pools to zeros, so
  a new user is embedded from context features alone.

Inputs are tensors a server can send (``int64`` ids, ``float32`` features), and
``forward`` has no Python branch on values, so both towers export with
``torch.jit.trace`` and ``torch.export``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlsd_lib.models.ctr import DenseScaler, FieldEmbedding, ModelInputError

__all__ = ["ItemIdTable", "ItemTower", "TabularFeatures", "UserTower", "mlp"]


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of ``sizes`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ItemIdTable(nn.Module):
    """Item-id vectors for rows ``0..n_items-1`` plus an unknown row ``n_items``.

    ``known`` (a buffer saved with the weights) marks the items that had training
    events; :meth:`rows` sends every other id (-1, out of range, unknown) to the
    unknown row. A sparse table: each step moves only the rows its batch read.
    """

    def __init__(self, n_items: int, dim: int, *, init_std: float = 0.05) -> None:
        super().__init__()
        if n_items < 1 or dim < 1:
            raise ModelInputError(
                f"n_items and dim must be >= 1 (got {n_items}, {dim})."
            )
        self.n_items = int(n_items)
        self.dim = int(dim)
        self.table = nn.Embedding(self.n_items + 1, self.dim, sparse=True)
        nn.init.normal_(self.table.weight, std=init_std)
        self.register_buffer("known", torch.ones(self.n_items + 1, dtype=torch.bool))

    @property
    def unknown(self) -> int:
        """The row every unseen item reads."""
        return self.n_items

    def set_known(self, item_ids: np.ndarray | torch.Tensor) -> None:
        """Mark exactly ``item_ids`` as seen in training; others read unknown."""
        ids = torch.as_tensor(np.asarray(item_ids), dtype=torch.int64)
        ids = ids[(ids >= 0) & (ids < self.n_items)]
        known = torch.zeros_like(self.known)
        known[ids] = True
        known[self.unknown] = True
        self.known.copy_(known)

    def rows(self, item_ids: torch.Tensor) -> torch.Tensor:
        """The table row of each id: its own if known, else the unknown row."""
        in_range = (item_ids >= 0) & (item_ids < self.n_items)
        rows = torch.where(in_range, item_ids, torch.full_like(item_ids, self.unknown))
        return torch.where(self.known[rows], rows, torch.full_like(rows, self.unknown))

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        return self.table(self.rows(item_ids))


class TabularFeatures(nn.Module):
    """Standardized dense columns and embedded categorical ones, concatenated.

    ``(dense (B, F), categorical (B, C)) -> (B, width)``: the
    :class:`~mlsd_lib.models.ctr.DenseScaler` carries the training statistics
    into the exported graph, and one
    :class:`~mlsd_lib.models.ctr.FieldEmbedding` embeds every categorical field
    (none when ``C`` is 0). The towers and the ranker all read features so.
    """

    def __init__(
        self,
        num_dense: int,
        cardinalities: Sequence[int],
        embedding_dim: int,
        dense_mean: np.ndarray | None = None,
        dense_std: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.num_dense = int(num_dense)
        self.cardinalities = tuple(int(c) for c in cardinalities)
        self.scaler = DenseScaler(self.num_dense, dense_mean, dense_std)
        self.fields = (
            FieldEmbedding(self.cardinalities, embedding_dim, init_std=0.05)
            if self.cardinalities
            else None
        )
        self.width = self.num_dense + embedding_dim * len(self.cardinalities)

    def forward(self, dense: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = [self.scaler(dense)]
        if self.fields is not None:
            parts.append(self.fields(categorical).flatten(1))
        return torch.cat(parts, dim=1)


class ItemTower(nn.Module):
    """``(item_ids (B,), dense (B, F), categorical (B, C)) -> (B, dim)``, unit norm.

    ``id_dropout`` is the share of training rows that read the unknown id row
    instead of their own (see the module notes); 0 turns it off.
    """

    def __init__(
        self,
        ids: ItemIdTable,
        num_dense: int,
        cardinalities: Sequence[int] = (),
        *,
        dim: int = 64,
        hidden: Sequence[int] = (128,),
        embedding_dim: int = 8,
        id_dropout: float = 0.25,
        dense_mean: np.ndarray | None = None,
        dense_std: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= id_dropout < 1.0:
            raise ModelInputError(f"id_dropout must lie in [0, 1), got {id_dropout}.")
        self.ids = ids
        self.features = TabularFeatures(
            num_dense, cardinalities, embedding_dim, dense_mean, dense_std
        )
        self.id_dropout = float(id_dropout)
        self.dim = int(dim)
        self.mlp = mlp([ids.dim + self.features.width, *hidden, self.dim])

    def forward(
        self, item_ids: torch.Tensor, dense: torch.Tensor, categorical: torch.Tensor
    ) -> torch.Tensor:
        rows = self.ids.rows(item_ids)
        if self.training and self.id_dropout > 0:
            drop = torch.rand(rows.shape, device=rows.device) < self.id_dropout
            rows = torch.where(drop, torch.full_like(rows, self.ids.unknown), rows)
        x = torch.cat([self.ids.table(rows), self.features(dense, categorical)], 1)
        return F.normalize(self.mlp(x), dim=1)


class UserTower(nn.Module):
    """``(history (B, N), dense (B, F), categorical (B, C)) -> (B, dim)``, unit norm.

    ``history`` holds the ids of the user's last ``N`` engaged items, -1 where
    there are fewer; it reads ``ids``, the table the item tower owns.
    """

    def __init__(
        self,
        ids: ItemIdTable,
        num_dense: int,
        cardinalities: Sequence[int] = (),
        *,
        history_len: int = 50,
        dim: int = 64,
        hidden: Sequence[int] = (128,),
        embedding_dim: int = 8,
        dense_mean: np.ndarray | None = None,
        dense_std: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.ids = ids
        self.history_len = int(history_len)
        self.features = TabularFeatures(
            num_dense, cardinalities, embedding_dim, dense_mean, dense_std
        )
        self.dim = int(dim)
        self.mlp = mlp([ids.dim + 1 + self.features.width, *hidden, self.dim])

    def forward(
        self, history: torch.Tensor, dense: torch.Tensor, categorical: torch.Tensor
    ) -> torch.Tensor:
        present = (history >= 0).unsqueeze(-1).to(torch.float32)
        count = present.sum(dim=1)
        pooled = (self.ids(history) * present).sum(dim=1) / count.clamp(min=1.0)
        x = torch.cat(
            [pooled, torch.log1p(count), self.features(dense, categorical)], dim=1
        )
        return F.normalize(self.mlp(x), dim=1)
