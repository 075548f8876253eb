"""Two-tower retrieval: train the towers, embed the catalogue and the users, search.

Introduced in ``casestudies/recommender/03_models.ipynb``. A :class:`TwoTower` holds a
:class:`~mlsd_lib.models.towers.UserTower` and an
:class:`~mlsd_lib.models.towers.ItemTower` that share the item-id table; a user
and an item score ``<u, v> / temperature``, both vectors unit norm. Online only
the user tower runs (one inference per request); the item tower embeds the whole
catalogue offline (:func:`embed_items`) into the index.

:func:`train_two_tower` goes through the book's one loop
(:func:`~mlsd_lib.models.training.fit`) with a sampled-softmax batch step
(:mod:`mlsd_lib.models.sampled_softmax`), chosen by two keywords:

* ``negatives``: ``"in_batch"`` (the other positives of the batch) or
  ``"mixed"`` (plus ``uniform_negatives`` items drawn uniformly per step from
  the catalogue items the training data knows, Yang et al. 2020);
* ``log_q``: ``"none"``, ``"exact"`` (each item's share of the training
  positives, counted up front) or ``"streaming"`` (the one-pass hashed estimate
  of :class:`~mlsd_lib.models.item_frequency.StreamingFrequencyEstimator`,
  updated batch by batch, what a trainer on an endless stream can afford).

**Validation is recall@k by exact search**, not the validation loss: embed the
catalogue, score every validation user against every item, and count how often
the held-out item is in the top ``k``. The sampled loss depends on the batch's
composition, on the negatives mode and on the correction, so two settings'
losses are not comparable and a lower one need not retrieve better; recall is
what the retrieval stage is judged on, and at 10 k items exact search costs a
second. It enters early stopping as ``-recall`` (lower is better).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import numpy as np
import torch
from torch import nn

from mlsd_lib.models.ctr import ModelInputError
from mlsd_lib.models.item_frequency import StreamingFrequencyEstimator
from mlsd_lib.models.sampled_softmax import in_batch_softmax_loss, mixture_log_q
from mlsd_lib.models.towers import ItemIdTable, ItemTower, UserTower
from mlsd_lib.models.training import (
    BatchLoss,
    TrainingConfig,
    TrainingResult,
    fit,
    make_optimizers,
    torch_threads,
)
from mlsd_lib.models.two_tower_data import EntityFeatures, TwoTowerData

__all__ = [
    "LOG_Q_MODES",
    "NEGATIVE_MODES",
    "TwoTower",
    "embed_items",
    "embed_users",
    "exact_recall_at_k",
    "exact_top_k",
    "item_tower_inputs",
    "train_two_tower",
    "user_tower_inputs",
]

NegativesMode = Literal["in_batch", "mixed"]
LogQMode = Literal["none", "streaming", "exact"]
NEGATIVE_MODES: tuple[str, ...] = ("in_batch", "mixed")
LOG_Q_MODES: tuple[str, ...] = ("none", "streaming", "exact")


class TwoTower(nn.Module):
    """A user tower and an item tower sharing one item-id table; a temperature.

    Build one sized to the data with :meth:`from_data`; ``forward`` scores
    positive pairs row by row (the towers are what get exported and served).
    """

    def __init__(
        self, user_tower: UserTower, item_tower: ItemTower, temperature: float = 0.05
    ) -> None:
        super().__init__()
        if user_tower.dim != item_tower.dim:
            raise ModelInputError(
                f"the towers must embed into one space: the user tower has dim "
                f"{user_tower.dim}, the item tower {item_tower.dim}."
            )
        if temperature <= 0:
            raise ModelInputError(f"temperature must be > 0, got {temperature}.")
        self.user_tower = user_tower
        self.item_tower = item_tower
        self.temperature = float(temperature)

    @classmethod
    def from_data(
        cls,
        data: TwoTowerData,
        *,
        dim: int = 64,
        id_dim: int = 32,
        hidden: tuple[int, ...] = (128,),
        embedding_dim: int = 8,
        id_dropout: float = 0.25,
        temperature: float = 0.05,
        seed: int = 0,
    ) -> TwoTower:
        """Towers sized to ``data``, dense scalers fitted on it, weights seeded."""
        items = data.items
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            ids = ItemIdTable(data.n_items, id_dim)
            item_tower = ItemTower(
                ids,
                items.num_dense,
                items.cardinalities,
                dim=dim,
                hidden=hidden,
                embedding_dim=embedding_dim,
                id_dropout=id_dropout,
                dense_mean=items.dense.mean(axis=0) if len(items) else None,
                dense_std=items.dense.std(axis=0) if len(items) else None,
            )
            user_tower = UserTower(
                ids,
                data.user_dense.shape[1],
                data.user_cardinalities,
                history_len=data.history_len,
                dim=dim,
                hidden=hidden,
                embedding_dim=embedding_dim,
                dense_mean=data.user_dense.mean(axis=0) if len(data) else None,
                dense_std=data.user_dense.std(axis=0) if len(data) else None,
            )
        return cls(user_tower, item_tower, temperature)

    def forward(
        self,
        history: torch.Tensor,
        user_dense: torch.Tensor,
        user_categorical: torch.Tensor,
        item_ids: torch.Tensor,
        item_dense: torch.Tensor,
        item_categorical: torch.Tensor,
    ) -> torch.Tensor:
        """The logit ``<u_i, v_i> / temperature`` of each row's user-item pair."""
        u = self.user_tower(history, user_dense, user_categorical)
        v = self.item_tower(item_ids, item_dense, item_categorical)
        return (u * v).sum(dim=1) / self.temperature


def check_data(model: TwoTower, data: TwoTowerData, what: str) -> None:
    """Refuse data whose shapes do not fit ``model``, naming what differs."""
    if len(data) == 0:
        raise ModelInputError(f"the {what} data set is empty.")
    ids = model.item_tower.ids
    user = model.user_tower
    checks = (
        ("catalogue items", data.n_items, ids.n_items),
        ("history length", data.history_len, user.history_len),
        ("user dense features", data.user_dense.shape[1], user.features.num_dense),
        (
            "item dense features",
            data.items.num_dense,
            model.item_tower.features.num_dense,
        ),
        (
            "user categorical fields",
            len(data.user_cardinalities),
            len(user.features.cardinalities),
        ),
        (
            "item categorical fields",
            len(data.items.cardinalities),
            len(model.item_tower.features.cardinalities),
        ),
    )
    for name, got, expected in checks:
        if got != expected:
            raise ModelInputError(
                f"the {what} data has {got} {name} but the model was built for "
                f"{expected}: build the model from data of the same schema "
                "(TwoTower.from_data)."
            )


def user_tower_inputs(
    data: TwoTowerData, index: np.ndarray | slice | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(history int64 (B, N), dense float32 (B, F), categorical int64 (B, C))``.

    The user tower's served signature, for rows ``index`` of ``data`` (all by
    default): what an exporter's example and a parity check's samples are.
    """
    index = slice(None) if index is None else index
    return (
        torch.as_tensor(np.asarray(data.history[index], dtype=np.int64)),
        torch.as_tensor(np.asarray(data.user_dense[index], dtype=np.float32)),
        torch.as_tensor(np.asarray(data.user_categorical[index], dtype=np.int64)),
    )


def item_tower_inputs(
    items: EntityFeatures, item_ids: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(item_ids int64 (B,), dense float32 (B, F), categorical int64 (B, C))``.

    For catalogue rows ``item_ids`` (all by default). ``items`` may also be the
    features of items outside the catalogue, with ``item_ids`` of -1: a new
    title the item tower embeds from its content alone.
    """
    if item_ids is None:
        item_ids = np.arange(len(items))
        rows = items
    else:
        item_ids = np.asarray(item_ids, dtype=np.int64)
        rows = items if len(items) == len(item_ids) else items.rows(item_ids)
    return (
        torch.as_tensor(np.asarray(item_ids, dtype=np.int64)),
        torch.as_tensor(np.asarray(rows.dense, dtype=np.float32)),
        torch.as_tensor(np.asarray(rows.categorical, dtype=np.int64)),
    )


@torch.no_grad()
def _embed(
    tower: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    batch_size: int,
    num_threads: int | None,
) -> np.ndarray:
    was_training = tower.training
    tower.eval()
    try:
        with torch_threads(num_threads):
            out = [
                tower(*(t[i : i + batch_size] for t in inputs))
                for i in range(0, len(inputs[0]), batch_size)
            ]
    finally:
        tower.train(was_training)
    if not out:
        return np.zeros((0, tower.dim), np.float32)
    return torch.cat(out).numpy().astype(np.float32, copy=False)


def embed_items(
    model: TwoTower,
    items: EntityFeatures,
    batch_size: int = 8192,
    *,
    item_ids: np.ndarray | None = None,
    num_threads: int | None = None,
) -> np.ndarray:
    """``(n, dim)`` float32 unit vectors of the catalogue (or of ``item_ids``).

    What the index is built from. Items without training events (and ids of -1)
    are embedded from their content features through the unknown id row.
    """
    if items.num_dense != model.item_tower.features.num_dense or len(
        items.cardinalities
    ) != len(model.item_tower.features.cardinalities):
        raise ModelInputError(
            f"items have {items.num_dense} dense and {len(items.cardinalities)} "
            "categorical features but the item tower was built for "
            f"{model.item_tower.features.num_dense} and "
            f"{len(model.item_tower.features.cardinalities)}."
        )
    inputs = item_tower_inputs(items, item_ids)
    return _embed(model.item_tower, inputs, batch_size, num_threads)


def embed_users(
    model: TwoTower,
    data: TwoTowerData,
    batch_size: int = 8192,
    *,
    num_threads: int | None = None,
) -> np.ndarray:
    """``(n, dim)`` float32 unit vectors of each example's user, as of its time."""
    check_data(model, data, "embedding")
    return _embed(model.user_tower, user_tower_inputs(data), batch_size, num_threads)


def exact_top_k(
    user_emb: np.ndarray, item_emb: np.ndarray, k: int, batch_size: int = 1024
) -> np.ndarray:
    """``(n_users, k)`` item indices by descending inner product, exhaustively.

    Brute force is the ground truth an approximate index is measured against
    (its recall is the share of these it returns), and fast enough at 10 k
    items. Ties break toward the lower item index.
    """
    if (
        user_emb.ndim != 2
        or item_emb.ndim != 2
        or user_emb.shape[1] != (item_emb.shape[1])
    ):
        raise ModelInputError(
            f"user and item embeddings must be (n, d) with one d; got "
            f"{user_emb.shape} and {item_emb.shape}."
        )
    if not 1 <= k <= len(item_emb):
        raise ModelInputError(f"k must lie in [1, {len(item_emb)}], got {k}.")
    items = torch.as_tensor(np.ascontiguousarray(item_emb, dtype=np.float32))
    users = torch.as_tensor(np.ascontiguousarray(user_emb, dtype=np.float32))
    out = [
        torch.topk(users[i : i + batch_size] @ items.T, k, dim=1, sorted=True).indices
        for i in range(0, len(users), batch_size)
    ]
    if not out:
        return np.zeros((0, k), np.int64)
    return torch.cat(out).numpy().astype(np.int64)


def exact_recall_at_k(
    user_emb: np.ndarray, item_emb: np.ndarray, targets: np.ndarray, k: int
) -> float:
    """Share of rows whose ``targets`` item is among the exact top ``k``.

    One held-out item per row (a positive event), so this is the hit rate at
    ``k``: the retrieval recall the book reports.
    """
    targets = np.asarray(targets)
    if len(targets) != len(user_emb):
        raise ModelInputError(
            f"{len(targets)} targets for {len(user_emb)} users: one item per row."
        )
    top = exact_top_k(user_emb, item_emb, k)
    return float((top == targets[:, None]).any(axis=1).mean())


def _check_modes(negatives: str, log_q: str, uniform_negatives: int) -> None:
    if negatives not in NEGATIVE_MODES:
        raise ModelInputError(
            f"negatives must be one of {NEGATIVE_MODES}, not {negatives!r}: "
            "'in_batch' uses the batch's other positives, 'mixed' adds items "
            "drawn uniformly from the catalogue."
        )
    if log_q not in LOG_Q_MODES:
        raise ModelInputError(f"log_q must be one of {LOG_Q_MODES}, not {log_q!r}.")
    if negatives == "mixed" and uniform_negatives < 1:
        raise ModelInputError(
            f"negatives='mixed' needs uniform_negatives >= 1, got {uniform_negatives}."
        )


def _batch_step(
    model: TwoTower,
    data: TwoTowerData,
    config: TrainingConfig,
    negatives: str,
    log_q: str,
    uniform_negatives: int,
) -> tuple[Callable[[torch.Tensor], BatchLoss], StreamingFrequencyEstimator | None]:
    """The sampled-softmax loss of a batch of rows, as :func:`fit` calls it."""
    history = torch.as_tensor(np.asarray(data.history, dtype=np.int64))
    user_dense = torch.as_tensor(np.asarray(data.user_dense, dtype=np.float32))
    user_cat = torch.as_tensor(np.asarray(data.user_categorical, dtype=np.int64))
    items = torch.as_tensor(np.asarray(data.item, dtype=np.int64))
    item_dense = torch.as_tensor(np.asarray(data.items.dense, dtype=np.float32))
    item_cat = torch.as_tensor(np.asarray(data.items.categorical, dtype=np.int64))
    # Uniform negatives come from the items the training data knows: an item
    # with no positive at all would only ever be a negative, and the model would
    # learn that its content means "never watched" (true of the training window,
    # false of a title that launches tomorrow).
    pool = torch.nonzero(model.item_tower.ids.known[:-1]).flatten()
    n_pool = len(pool)
    mixed = negatives == "mixed"
    sampler = torch.Generator().manual_seed(config.seed + 1)
    share = torch.as_tensor(
        np.bincount(data.item, minlength=data.n_items) / len(data),
        dtype=torch.float32,
    )
    estimator = (
        StreamingFrequencyEstimator(
            num_buckets=4 * data.n_items, alpha=0.01, seed=config.seed
        )
        if log_q == "streaming"
        else None
    )

    def batch_count(ids: torch.Tensor, rows: int) -> torch.Tensor:
        if estimator is not None:
            return torch.as_tensor(estimator.estimate(ids.numpy()), dtype=torch.float32)
        return rows * share[ids]

    def train_batch(index: torch.Tensor) -> BatchLoss:
        ids = items[index]
        user_emb = model.user_tower(history[index], user_dense[index], user_cat[index])
        item_emb = model.item_tower(ids, item_dense[ids], item_cat[ids])
        neg_ids = neg_emb = None
        if mixed:
            draws = torch.randint(0, n_pool, (uniform_negatives,), generator=sampler)
            neg_ids = pool[draws]
            neg_emb = model.item_tower(neg_ids, item_dense[neg_ids], item_cat[neg_ids])
        q = neg_q = None
        if estimator is not None:
            estimator.update(ids.numpy())
        if log_q != "none":
            m = uniform_negatives if mixed else 0
            q = mixture_log_q(batch_count(ids, len(index)), m, n_pool)
            if mixed:
                neg_q = mixture_log_q(batch_count(neg_ids, len(index)), m, n_pool)
        return in_batch_softmax_loss(
            user_emb,
            item_emb,
            q,
            temperature=model.temperature,
            item_ids=ids,
            negative_emb=neg_emb,
            negative_ids=neg_ids,
            negative_log_q=neg_q,
        )

    return train_batch, estimator


def train_two_tower(
    model: TwoTower,
    train: TwoTowerData,
    valid: TwoTowerData | None = None,
    config: TrainingConfig | None = None,
    *,
    negatives: NegativesMode = "in_batch",
    log_q: LogQMode = "none",
    uniform_negatives: int | None = None,
    recall_k: int = 100,
) -> TrainingResult:
    """Fit ``model`` on ``train``'s positives; stop on ``valid``'s recall@``recall_k``.

    ``negatives`` and ``log_q`` choose the loss (see the module notes);
    ``uniform_negatives`` is the number of catalogue items added per step with
    ``negatives="mixed"`` (default: a quarter of ``config.batch_size``: enough
    for every item to be a negative now and then, and each one costs an
    item-tower pass; a full batch of them more than doubled the step time).
    Items that are neither a training positive nor in a training history are
    marked unknown (:meth:`~mlsd_lib.models.towers.ItemIdTable.set_known`): they
    are embedded, in training as after it, from their content. The result's
    ``valid_losses`` are ``-recall@k``; ``extras`` records the settings and, for
    ``log_q="streaming"``, the estimator.
    """
    config = config or TrainingConfig()
    uniform = (
        max(1, config.batch_size // 4)
        if uniform_negatives is None
        else uniform_negatives
    )
    _check_modes(negatives, log_q, uniform)
    check_data(model, train, "training")
    if valid is not None:
        check_data(model, valid, "validation")
    seen = np.concatenate([train.item, np.asarray(train.history).ravel()])
    model.item_tower.ids.set_known(np.unique(seen[seen >= 0]))
    train_batch, estimator = _batch_step(
        model, train, config, negatives, log_q, uniform
    )
    validate = None
    if valid is not None:
        k = min(recall_k, train.n_items)

        def validate() -> float:
            item_emb = embed_items(model, valid.items)
            user_emb = embed_users(model, valid)
            return -exact_recall_at_k(user_emb, item_emb, valid.item, k)

    result = fit(
        model, len(train), train_batch, make_optimizers(model, config), config, validate
    )
    extras = {
        "negatives": negatives,
        "log_q": log_q,
        "uniform_negatives": uniform if negatives == "mixed" else 0,
        "recall_k": recall_k,
        "frequency_estimator": estimator,
    }
    return replace(result, extras=extras)
