"""The ranker: P(engaged play) and E[minutes | engaged play] from one network.

Introduced in ``casestudies/recommender/03_models.ipynb``. The ranker scores the few
hundred candidates retrieval returns, with features too costly for retrieval:
user, item and *cross* features (the two-tower score of the pair, the share of
the user's history in the item's genre, how many of their last 50 plays were in
the item's series: :func:`history_group_overlap`). It ranks by

    score = P(engaged play) x E[minutes | engaged play]

the expected engaged minutes of showing the item (the case study's objective).
:class:`TwoHeadRanker` is one shared MLP with two heads:

* **play head**: a logit, trained by binary cross-entropy on every impression;
* **minutes head**: watch time given an engaged play modelled as **lognormal**,
  ``log minutes ~ Normal(mu, sigma^2)``, trained by its negative log-likelihood
  on the engaged rows only (a skipped impression has no watch time to explain).
  Watch times are positive and right-skewed, which a lognormal fits and a
  squared error on raw minutes does not; and its mean is well defined in
  closed form, ``E[minutes] = exp(mu + sigma^2 / 2)`` (a model of the median,
  ``exp(mu)``, would under-count long sessions).

Rows whose ``minutes`` are NaN (MovieLens ratings carry no watch time) are
masked out of the minutes loss. When *no* training row has minutes the head is
never trained; the model records that (``minutes_trained``) and then serves
``E[minutes] = 1``, so the score falls back to P(engaged) instead of multiplying
it by an untrained number.

**Position debiasing** (the "shallow tower" of Zhao et al. 2019, YouTube): an
item shown first is played more because it is first. The feed position enters
*only* as a learned additive bias on the play logit (a slope on ``log(1 +
position)`` plus a free bias per position), so it absorbs the position effect
instead of the features the old feed ranked by. It is a training-only feature:
:class:`RankerScorer`, the served module, fixes it at 0 (the top slot), so
every candidate is scored as if shown first and the order depends on the
features alone. Positions from ``max_position`` on share the last bucket;
an unknown position (-1) has its own.

Trained through the book's one loop, :func:`~mlsd_lib.models.training.fit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.models.ctr import ModelInputError
from mlsd_lib.models.towers import TabularFeatures, mlp
from mlsd_lib.models.training import (
    BatchLoss,
    TrainingConfig,
    TrainingResult,
    fit,
    make_optimizers,
    torch_threads,
)
from mlsd_lib.models.two_tower_data import EntityFeatures

__all__ = [
    "RankerData",
    "RankerPrediction",
    "RankerScorer",
    "TwoHeadRanker",
    "history_group_overlap",
    "predict_ranker",
    "ranker_examples",
    "ranker_loss",
    "train_ranker",
]

#: ``log sigma`` of the minutes head is kept in this range: a sigma near 0 makes
#: the likelihood unbounded, a huge one makes ``exp(sigma^2 / 2)`` overflow.
LOG_SIGMA_RANGE = (-4.0, 1.5)


@dataclass(frozen=True)
class RankerData:
    """Impressions for the ranker: features, feed position and the two labels.

    ``features`` has one row per impression (user, item and cross features
    already joined); ``position`` (int, -1 where unknown), ``engaged`` (bool)
    and ``minutes`` (float32, NaN where unknown or not engaged) are parallel.
    """

    features: EntityFeatures
    position: np.ndarray
    engaged: np.ndarray
    minutes: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.features)
        for name in ("position", "engaged", "minutes"):
            if np.shape(getattr(self, name)) != (n,):
                raise ModelInputError(
                    f"'{name}' must have shape ({n},), one value per impression; "
                    f"got {np.shape(getattr(self, name))}."
                )

    def __len__(self) -> int:
        return len(self.features)

    def subset(self, index: np.ndarray) -> RankerData:
        """The impressions ``index`` selects (a bool mask or positions)."""
        return RankerData(
            self.features.rows(index),
            self.position[index],
            self.engaged[index],
            self.minutes[index],
        )

    @property
    def has_minutes(self) -> np.ndarray:
        """Rows the minutes head learns from: engaged, with a positive watch time."""
        return (
            self.engaged.astype(bool) & np.isfinite(self.minutes) & (self.minutes > 0)
        )


def ranker_examples(interactions: Interactions, features: EntityFeatures) -> RankerData:
    """Pair each impression of ``interactions`` with its row of ``features``.

    The labels and the position come from the log (``engaged``, ``minutes``,
    ``position``); ``features`` must hold one row per event, built point-in-time
    by the caller (the feature store's join).
    """
    if len(features) != len(interactions):
        raise ModelInputError(
            f"features has {len(features)} rows but the log has "
            f"{len(interactions)} impressions: one row per impression."
        )
    return RankerData(
        features,
        np.asarray(interactions.position, dtype=np.int64),
        np.asarray(interactions.engaged, dtype=bool),
        np.asarray(interactions.minutes, dtype=np.float32),
    )


def history_group_overlap(
    history: np.ndarray, items: np.ndarray, item_group: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how many of the history's items share the candidate's group, and
    what share of the (non-padded) history that is.

    ``history`` is ``(n, N)`` item ids, -1 padded; ``items`` the ``(n,)``
    candidates; ``item_group`` a group id per item (a genre, a series; -1 for
    none, which never matches). Returns ``(count int64, share float32)``: "3 of
    your last 50 were in this series", "40% of your history is this genre".
    """
    history = np.asarray(history)
    items = np.asarray(items)
    item_group = np.asarray(item_group)
    if history.ndim != 2 or items.shape != (len(history),):
        raise ModelInputError(
            f"history must be (n, N) and items (n,); got {history.shape} and "
            f"{items.shape}."
        )
    present = history >= 0
    groups = np.where(present, item_group[np.maximum(history, 0)], -1)
    target = item_group[items][:, None]
    match = present & (groups == target) & (target >= 0)
    count = match.sum(axis=1).astype(np.int64)
    share = (count / np.maximum(present.sum(axis=1), 1)).astype(np.float32)
    return count, share


def expected_minutes(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """``E[minutes] = exp(mu + sigma^2 / 2)`` of a lognormal (the mean, not median)."""
    return torch.exp(mu + 0.5 * torch.exp(2.0 * log_sigma))


def served_minutes(
    ranker: TwoHeadRanker, mu: torch.Tensor, log_sigma: torch.Tensor
) -> torch.Tensor:
    """:func:`expected_minutes`, or 1 where the minutes head was never trained."""
    minutes = expected_minutes(mu, log_sigma)
    return torch.where(ranker.minutes_trained, minutes, torch.ones_like(minutes))


class TwoHeadRanker(nn.Module):
    """Shared MLP, a play-logit head, a lognormal minutes head, a position bias.

    ``forward(dense, categorical, position) -> (play_logit, mu, log_sigma)``,
    each ``(B,)``; ``play_logit`` includes the position bias. Build one sized to
    the data with :meth:`from_data`.
    """

    def __init__(
        self,
        num_dense: int,
        cardinalities: Sequence[int] = (),
        *,
        hidden: Sequence[int] = (128, 64),
        embedding_dim: int = 8,
        max_position: int = 50,
        dense_mean: np.ndarray | None = None,
        dense_std: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        if not hidden:
            raise ModelInputError("hidden needs at least one layer width.")
        if max_position < 1:
            raise ModelInputError(f"max_position must be >= 1, got {max_position}.")
        self.features = TabularFeatures(
            num_dense, cardinalities, embedding_dim, dense_mean, dense_std
        )
        self.bottom = nn.Sequential(mlp([self.features.width, *hidden]), nn.ReLU())
        self.play_head = nn.Linear(hidden[-1], 1)
        self.minutes_head = nn.Linear(hidden[-1], 2)
        self.max_position = int(max_position)
        # rows 0..max_position-1: positions; max_position: beyond; +1: unknown
        self.position_bias = nn.Embedding(self.max_position + 2, 1)
        nn.init.zeros_(self.position_bias.weight)
        # and a slope on log(1 + position): one weight that moves every
        # position's bias at once, so position's effect is learned as fast as
        # the features' (a table of 50 free biases alone, each stepped by at
        # most the learning rate, lagged the MLP, which credited the features
        # the old feed ranked by with position's effect).
        self.position_slope = nn.Parameter(torch.zeros(()))
        self.register_buffer("minutes_trained", torch.tensor(False))

    @classmethod
    def from_data(
        cls, data: RankerData, *, seed: int = 0, **kwargs: object
    ) -> TwoHeadRanker:
        """A ranker sized to ``data``, its dense scaling fitted on it, seeded."""
        features = data.features
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return cls(
                features.num_dense,
                features.cardinalities,
                dense_mean=features.dense.mean(axis=0) if len(features) else None,
                dense_std=features.dense.std(axis=0) if len(features) else None,
                **kwargs,  # type: ignore[arg-type]
            )

    def position_rows(self, position: torch.Tensor) -> torch.Tensor:
        """Bias row of each position: itself, the last bucket, or unknown (-1)."""
        capped = position.clamp(max=self.max_position)
        unknown = torch.full_like(position, self.max_position + 1)
        return torch.where(position >= 0, capped, unknown)

    def position_logit(self, position: torch.Tensor) -> torch.Tensor:
        """The additive play-logit bias of each feed position (the shallow tower)."""
        rows = self.position_rows(position)
        known = torch.clamp(position, min=0, max=self.max_position).to(torch.float32)
        slope = self.position_slope * torch.log1p(known)
        return self.position_bias(rows).squeeze(-1) + slope

    def forward(
        self, dense: torch.Tensor, categorical: torch.Tensor, position: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.bottom(self.features(dense, categorical))
        bias = self.position_logit(position)
        play_logit = self.play_head(h).squeeze(-1) + bias
        mu, log_sigma = self.minutes_head(h).unbind(dim=-1)
        return play_logit, mu, log_sigma.clamp(*LOG_SIGMA_RANGE)


class RankerScorer(nn.Module):
    """What is served: ``(dense, categorical) -> (p_play, expected_minutes)``.

    Position is fixed at 0 (the top slot) so candidates are compared on their
    features alone; ``expected_minutes`` is 1 when the minutes head was never
    trained, so ``p_play * expected_minutes`` is then ``p_play``.
    """

    def __init__(self, ranker: TwoHeadRanker) -> None:
        super().__init__()
        self.ranker = ranker

    def forward(
        self, dense: torch.Tensor, categorical: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        position = torch.zeros(dense.shape[0], dtype=torch.int64, device=dense.device)
        logit, mu, log_sigma = self.ranker(dense, categorical, position)
        return torch.sigmoid(logit), served_minutes(self.ranker, mu, log_sigma)


def ranker_loss(
    play_logit: torch.Tensor,
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    engaged: torch.Tensor,
    log_minutes: torch.Tensor,
    has_minutes: torch.Tensor,
    minutes_weight: float = 1.0,
) -> torch.Tensor:
    """BCE on every row + ``minutes_weight`` x lognormal NLL on ``has_minutes`` rows.

    The NLL of ``log minutes`` under ``Normal(mu, sigma^2)``, up to a constant:
    ``(y - mu)^2 / (2 sigma^2) + log sigma``, averaged over the rows that have
    minutes (0 when the batch has none, so such a batch trains the play head
    only). ``log_minutes`` may be anything (it is masked) where ``has_minutes``
    is false.
    """
    bce = F.binary_cross_entropy_with_logits(play_logit, engaged)
    mask = has_minutes.to(play_logit.dtype)
    y = torch.where(has_minutes, log_minutes, mu.detach())
    nll = 0.5 * ((y - mu) * torch.exp(-log_sigma)) ** 2 + log_sigma
    minutes_nll = (nll * mask).sum() / mask.sum().clamp(min=1.0)
    return bce + minutes_weight * minutes_nll


def _tensors(data: RankerData) -> tuple[torch.Tensor, ...]:
    has = data.has_minutes
    log_minutes = np.zeros(len(data), np.float32)
    log_minutes[has] = np.log(data.minutes[has])
    return (
        torch.as_tensor(np.asarray(data.features.dense, dtype=np.float32)),
        torch.as_tensor(np.asarray(data.features.categorical, dtype=np.int64)),
        torch.as_tensor(np.asarray(data.position, dtype=np.int64)),
        torch.as_tensor(data.engaged.astype(np.float32)),
        torch.as_tensor(log_minutes),
        torch.as_tensor(has),
    )


def _check(model: TwoHeadRanker, data: RankerData, what: str) -> None:
    if len(data) == 0:
        raise ModelInputError(f"the {what} data set is empty.")
    expected = (model.features.num_dense, len(model.features.cardinalities))
    got = (data.features.num_dense, len(data.features.cardinalities))
    if got != expected:
        raise ModelInputError(
            f"the {what} data has {got[0]} dense and {got[1]} categorical features "
            f"but the ranker was built for {expected[0]} and {expected[1]}: build "
            "it from data of the same schema (TwoHeadRanker.from_data)."
        )


@torch.no_grad()
def _mean_loss(
    model: TwoHeadRanker,
    tensors: tuple[torch.Tensor, ...],
    minutes_weight: float,
    batch_size: int = 65536,
) -> float:
    was_training = model.training
    model.eval()
    try:
        n = len(tensors[0])
        bce_sum, nll_sum, rows_with_minutes = 0.0, 0.0, 0.0
        for i in range(0, n, batch_size):
            dense, cat, pos, engaged, log_minutes, has = (
                t[i : i + batch_size] for t in tensors
            )
            logit, mu, log_sigma = model(dense, cat, pos)
            bce_sum += float(
                F.binary_cross_entropy_with_logits(logit, engaged, reduction="sum")
            )
            y = torch.where(has, log_minutes, mu)
            nll = 0.5 * ((y - mu) * torch.exp(-log_sigma)) ** 2 + log_sigma
            nll_sum += float((nll * has).sum())
            rows_with_minutes += float(has.sum())
    finally:
        model.train(was_training)
    return bce_sum / n + minutes_weight * nll_sum / max(rows_with_minutes, 1.0)


def train_ranker(
    model: TwoHeadRanker,
    train: RankerData,
    valid: RankerData | None = None,
    config: TrainingConfig | None = None,
    *,
    minutes_weight: float = 1.0,
) -> TrainingResult:
    """Fit both heads with :func:`ranker_loss`; stop on the validation loss.

    Validation is the same objective (log loss + ``minutes_weight`` x minutes
    NLL) on ``valid``, with the logged positions. Sets ``minutes_trained`` when
    some training row has minutes.
    """
    config = config or TrainingConfig()
    _check(model, train, "training")
    if valid is not None:
        _check(model, valid, "validation")
    tensors = _tensors(train)
    dense, cat, pos, engaged, log_minutes, has = tensors

    def train_batch(index: torch.Tensor) -> BatchLoss:
        logit, mu, log_sigma = model(dense[index], cat[index], pos[index])
        return ranker_loss(
            logit,
            mu,
            log_sigma,
            engaged[index],
            log_minutes[index],
            has[index],
            minutes_weight,
        )

    validate = None
    if valid is not None:
        valid_tensors = _tensors(valid)

        def validate() -> float:
            return _mean_loss(model, valid_tensors, minutes_weight)

    model.minutes_trained.fill_(bool(has.any()))
    return fit(
        model, len(train), train_batch, make_optimizers(model, config), config, validate
    )


@dataclass(frozen=True)
class RankerPrediction:
    """Per impression: ``p_play``, ``expected_minutes``, ``score`` (their product)."""

    p_play: np.ndarray
    expected_minutes: np.ndarray

    @property
    def score(self) -> np.ndarray:
        """The ranking score, P(engaged) x E[minutes | engaged]."""
        return self.p_play * self.expected_minutes


@torch.no_grad()
def predict_ranker(
    model: TwoHeadRanker,
    data: RankerData,
    batch_size: int = 65536,
    *,
    position: int | None = 0,
    num_threads: int | None = None,
) -> RankerPrediction:
    """Predictions as served (``position=0``, :class:`RankerScorer`'s rule), or at
    the logged positions (``position=None``: for calibration against the log)."""
    _check(model, data, "prediction")
    tensors = _tensors(data)
    dense, cat, pos = tensors[:3]
    if position is not None:
        pos = torch.full_like(pos, int(position))
    was_training = model.training
    model.eval()
    p_out, m_out = [], []
    try:
        with torch_threads(num_threads):
            for i in range(0, len(data), batch_size):
                s = slice(i, i + batch_size)
                logit, mu, log_sigma = model(dense[s], cat[s], pos[s])
                p_out.append(torch.sigmoid(logit))
                m_out.append(served_minutes(model, mu, log_sigma))
    finally:
        model.train(was_training)
    return RankerPrediction(
        p_play=torch.cat(p_out).double().numpy(),
        expected_minutes=torch.cat(m_out).double().numpy(),
    )
