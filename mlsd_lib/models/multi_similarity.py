"""The multi-similarity loss and its miner, written out in plain torch to teach them.

Introduced in ``casestudies/visual_search/04_models.ipynb``. Training uses the library's
version (:func:`~mlsd_lib.models.metric_losses.metric_loss`); this one exists so that a
reader can see every line, and a test checks that it gives ``pytorch-metric-learning``'s
value on the same batch.

On a batch of unit vectors with cosine similarities ``S`` (Wang et al. 2019):

1. **Mine.** For anchor ``i``, a positive ``j`` is informative if it is less
   similar than the anchor's most similar negative plus a margin
   (``S_ij - eps < max_k S_ik``); a negative ``k`` if it is more similar than
   the least similar positive minus the margin (``S_ik + eps > min_j S_ij``).
   Easy pairs drop out, so the gradient is spent on the confusions.
2. **Weigh.** Each kept pair counts by how it compares with the others:

   ::

       L_i = 1/alpha * log(1 + sum_pos exp(-alpha (S_ij - base)))
           + 1/beta  * log(1 + sum_neg exp( beta (S_ik - base)))

   The soft-max inside each sum gives the hardest positive and the hardest
   negative most of the weight; ``beta`` (50) is large, so a negative above
   ``base`` (0.5) costs a lot and one far below it nothing.
3. **Average** over the batch's anchors (an anchor with no kept pair adds 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mine_multi_similarity", "multi_similarity_loss"]


def _pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positives, negatives)``: same label but not the same row; other label."""
    same = labels[:, None] == labels[None, :]
    itself = torch.eye(len(labels), dtype=torch.bool)
    return same & ~itself, ~same


def mine_multi_similarity(
    similarity: torch.Tensor, labels: torch.Tensor, epsilon: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The informative ``(positive, negative)`` pairs as boolean ``(n, n)`` masks."""
    positives, negatives = _pair_masks(labels)
    inf = torch.tensor(float("inf"), dtype=similarity.dtype)
    hardest_negative = torch.where(negatives, similarity, -inf).amax(dim=1)
    easiest_positive = torch.where(positives, similarity, inf).amin(dim=1)
    hard_positives = positives & (similarity - epsilon < hardest_negative[:, None])
    hard_negatives = negatives & (similarity + epsilon > easiest_positive[:, None])
    return hard_positives, hard_negatives


def _log1p_sum_exp(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``log(1 + sum_{keep} exp(values))`` per row, stable; 0 where none is kept."""
    masked = values.masked_fill(~keep, float("-inf"))
    zeros = torch.zeros(len(values), 1, dtype=values.dtype)
    return torch.logsumexp(torch.cat([masked, zeros], dim=1), dim=1)


def multi_similarity_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    epsilon: float | None = 0.1,
) -> torch.Tensor:
    """The multi-similarity loss of a batch (mined when ``epsilon`` is not None).

    ``embeddings`` ``(n, d)`` are normalized here (cosine similarity), as the
    library's ``CosineSimilarity`` does; ``labels`` ``(n,)`` are identities.
    """
    unit = F.normalize(embeddings, dim=1)
    similarity = unit @ unit.T
    if epsilon is None:
        positives, negatives = _pair_masks(labels)
    else:
        with torch.no_grad():
            positives, negatives = mine_multi_similarity(similarity, labels, epsilon)
    pull = _log1p_sum_exp(-alpha * (similarity - base), positives) / alpha
    push = _log1p_sum_exp(beta * (similarity - base), negatives) / beta
    return (pull + push).mean()
