"""The retrieval loss: a softmax over a batch's items, corrected for their sampling.

Introduced in ``casestudies/recommender/03_models.ipynb``. Retrieval is trained as an
extreme classification: given a user, which of millions of items did they
engage with? A full softmax over the catalogue costs one item-tower pass per item
per step; a *sampled* softmax scores the positive against a few candidates only.

* **In-batch negatives.** The ``B`` positives of a batch are each other's
  negatives: row ``i`` of ``U V^T / temperature`` has its positive on the
  diagonal and ``B - 1`` other items, at no extra item-tower cost.
* **logQ correction** (Yi et al. 2019). In-batch candidates are drawn in
  proportion to popularity, so the sampled softmax is biased: it learns
  ``log p(item | user) - log Q(item)``, which over-penalizes popular items. The
  correction subtracts ``log Q`` (any constant factor of ``Q`` cancels) from
  every logit, the positive's included; ``Q`` comes from exact counts or the
  streaming estimate of :mod:`mlsd_lib.models.item_frequency`.
* **Mixed negatives** (Yang et al. 2020, "Mixed negative sampling"). An item
  is an in-batch negative only as often as it is a positive, so the long tail
  is almost never one: the model is rarely told a tail item is *not* what a user
  wants, and tail items drift up. Adding ``M`` items drawn uniformly from the
  catalogue shows every item as a negative at the same rate. Each column
  is then a draw from the mixture of the two samplers, and the correct ``Q`` of
  an item is its expected number of appearances among a row's candidates:
  ``q_batch(i) + M / N`` (:func:`mixture_log_q`), the same for every column.
* **Accidental hits.** An item that is row ``i``'s positive can also sit in
  another column (two users in the batch watched it, or the uniform sample drew
  it); scoring it as a negative would push the positive down. Those cells are
  masked (``-inf``), as TensorFlow's ``remove_accidental_hits`` does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mlsd_lib.models.ctr import ModelInputError

__all__ = ["in_batch_softmax_loss", "mixture_log_q"]


def mixture_log_q(
    batch_count: torch.Tensor, uniform_negatives: int, n_items: int
) -> torch.Tensor:
    """``log(q_batch + M / N)``: log expected appearances among a row's candidates.

    ``batch_count`` is each item's expected count in a batch of positives
    (exact: ``batch_size * count / total``; streaming:
    :meth:`~mlsd_lib.models.item_frequency.StreamingFrequencyEstimator.estimate`);
    ``M = uniform_negatives`` items are added per step, uniformly over ``N =
    n_items``. With ``M = 0`` this is plain in-batch logQ.
    """
    if uniform_negatives < 0 or n_items < 1:
        raise ModelInputError(
            f"uniform_negatives must be >= 0 and n_items >= 1 (got "
            f"{uniform_negatives}, {n_items})."
        )
    return torch.log(batch_count + uniform_negatives / n_items)


def _check_rows(name: str, tensor: torch.Tensor | None, rows: int) -> None:
    if tensor is not None and tuple(tensor.shape) != (rows,):
        raise ModelInputError(
            f"{name} must have shape ({rows},), one value per candidate column; "
            f"got {tuple(tensor.shape)}."
        )


def in_batch_softmax_loss(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    log_q: torch.Tensor | None = None,
    *,
    temperature: float = 0.05,
    item_ids: torch.Tensor | None = None,
    negative_emb: torch.Tensor | None = None,
    negative_ids: torch.Tensor | None = None,
    negative_log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean softmax cross-entropy of each user's positive against the candidates.

    ``user_emb[i]`` and ``item_emb[i]`` (``(B, d)``) are a positive pair; every
    other row of ``item_emb`` and every row of ``negative_emb`` (``(M, d)``,
    mixed negatives) is a candidate for row ``i``. ``log_q`` (``(B,)``) and
    ``negative_log_q`` (``(M,)``) are subtracted from the candidates' logits
    (logQ correction; give both or neither when there are negatives). With
    ``item_ids`` (``(B,)``) a column holding row ``i``'s own item, in the batch
    or (with ``negative_ids``) among the negatives, is masked rather than
    counted as a negative.
    """
    if user_emb.ndim != 2 or user_emb.shape != item_emb.shape:
        raise ModelInputError(
            "user_emb and item_emb must both be (batch, dim) with row i a positive "
            f"pair; got {tuple(user_emb.shape)} and {tuple(item_emb.shape)}."
        )
    if temperature <= 0:
        raise ModelInputError(f"temperature must be > 0, got {temperature}.")
    rows = user_emb.shape[0]
    _check_rows("log_q", log_q, rows)
    _check_rows("item_ids", item_ids, rows)
    candidates = item_emb
    if negative_emb is not None:
        if negative_emb.ndim != 2 or negative_emb.shape[1] != item_emb.shape[1]:
            raise ModelInputError(
                f"negative_emb must be (negatives, {item_emb.shape[1]}); got "
                f"{tuple(negative_emb.shape)}."
            )
        if (log_q is None) != (negative_log_q is None):
            raise ModelInputError(
                "give log_q and negative_log_q together (logQ-corrected mixed "
                "negatives) or neither (no correction): correcting only some "
                "columns biases the softmax toward the others."
            )
        _check_rows("negative_log_q", negative_log_q, negative_emb.shape[0])
        _check_rows("negative_ids", negative_ids, negative_emb.shape[0])
        candidates = torch.cat([item_emb, negative_emb])
    logits = (user_emb / temperature) @ candidates.T
    if log_q is not None:
        column_log_q = (
            log_q if negative_log_q is None else torch.cat([log_q, negative_log_q])
        )
        logits = logits - column_log_q.unsqueeze(0)
    if item_ids is not None:
        column_ids = item_ids
        if negative_emb is not None:
            if negative_ids is None:
                raise ModelInputError(
                    "with negatives, pass negative_ids too, so a negative that is "
                    "a row's own positive can be masked."
                )
            column_ids = torch.cat([item_ids, negative_ids])
        hit = item_ids.unsqueeze(1) == column_ids.unsqueeze(0)
        hit[:, :rows].fill_diagonal_(False)  # the positive itself stays
        logits = logits.masked_fill(hit, -math.inf)
    target = torch.arange(rows, device=user_emb.device)
    return F.cross_entropy(logits, target)
