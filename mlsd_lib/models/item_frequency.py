"""How often does an item appear in a training batch? A one-pass streaming estimate.

Introduced in ``casestudies/recommender/03_models.ipynb``. The logQ correction of a
sampled softmax (:mod:`mlsd_lib.models.sampled_softmax`) subtracts the log of
each candidate's sampling probability from its logit. With in-batch negatives
that probability is the item's share of the *training stream*, which in
production is unbounded, drifts (a title launches, a trend fades) and never
sits in memory as one table of counts. Yi et al. (2019, "Sampling-bias-corrected
neural modeling for large corpus item recommendations", Algorithm 2) estimate it
in one pass with two fixed-size arrays indexed by a hash of the item id:

* ``A[h]``: the last step (batch) at which an item hashing to ``h`` was seen;
* ``B[h]``: an exponential moving average, with rate ``alpha``, of the number of
  steps between two sightings.

An item seen every ``B`` steps on average appears ``1 / B`` times per step, so
``Q = 1 / B`` is its expected count in a batch: the in-batch sampling
probability times the batch size, a constant factor that cancels in a softmax.
Memory is fixed by ``num_buckets`` whatever the catalogue; two ids sharing a
bucket share an estimate (the price of hashing, as for hashed CTR features).

Hand-written because the book teaches it. Three choices the paper leaves open:

* **Several sightings in one batch.** The paper loops over a batch's items one
  by one, all at the same step: the first sighting brings the gap since the last
  step, each further one a gap of 0. :meth:`StreamingFrequencyEstimator.update`
  applies that loop in closed form per bucket (``c`` sightings: ``B <- (1 -
  alpha)^c B + alpha (1 - alpha)^(c - 1) gap``), vectorized with ``np.unique``,
  so a popular item seen 10 times per batch converges to ``B = 1/10``, not 1.
* **The first sighting.** Started at 0, ``B`` takes about ``1 / alpha``
  sightings to forget its start (and an item first seen at step 1000 would
  bring a gap of 1000: a title launched mid-stream). So the average is
  bias-corrected as Adam's moments are: a third array ``W`` holds the total
  weight the average has received and the gap read is ``B / W``; an item is
  counted from the step it is first seen (that sighting is a gap of one step).
* **Staleness at read time.** ``B`` only moves when an item is seen, so a title
  that was popular and stopped being watched would keep its old estimate
  forever. :meth:`~StreamingFrequencyEstimator.estimate` reads the gap as it
  would be if the item were seen now, when that is larger. A title unseen for
  many steps decays at once; a rare one unseen for a few steps barely moves
  (flooring the gap at the steps since last seen instead would make rare
  items' estimates jump between sightings).
"""

from __future__ import annotations

import numpy as np

from mlsd_lib.datasets.ctr import hash_ids
from mlsd_lib.errors import MlsdError

__all__ = ["FrequencyEstimatorError", "StreamingFrequencyEstimator"]


class FrequencyEstimatorError(MlsdError, ValueError):
    """The estimator was given settings or ids it cannot use; the message says which."""


class StreamingFrequencyEstimator:
    """Per-item expected count per batch, from a stream of batches (Yi et al. 2019).

    ``num_buckets`` sizes the two hash arrays (collisions merge items: keep it a
    few times the number of items that matter); ``alpha`` is the moving
    average's rate (larger adapts faster to a shift, and is noisier); ``seed``
    picks the hash function.
    """

    def __init__(
        self, num_buckets: int = 1 << 20, alpha: float = 0.01, seed: int = 0
    ) -> None:
        if num_buckets < 1:
            raise FrequencyEstimatorError(
                f"num_buckets must be >= 1, got {num_buckets}; a few times the "
                "number of distinct items keeps collisions rare."
            )
        if not 0.0 < alpha <= 1.0:
            raise FrequencyEstimatorError(
                f"alpha must lie in (0, 1], got {alpha}: it is the weight of the "
                "newest gap in the moving average (0.01 to 0.1 is usual)."
            )
        self.num_buckets = int(num_buckets)
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.last_seen = np.full(self.num_buckets, -1, dtype=np.int64)  # A
        self.gap = np.zeros(self.num_buckets, dtype=np.float64)  # B
        self.weight = np.zeros(self.num_buckets, dtype=np.float64)  # W
        self.steps = 0

    def _buckets(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise FrequencyEstimatorError(
                f"item ids must be a 1-d integer array, got {ids.dtype} of shape "
                f"{ids.shape}."
            )
        return hash_ids(ids, self.num_buckets, salt=self.seed)

    def update(self, ids: np.ndarray) -> None:
        """Record one step (one training batch) in which ``ids`` were seen."""
        buckets, counts = np.unique(self._buckets(ids), return_counts=True)
        step = self.steps
        previous = self.last_seen[buckets]
        gap_now = np.where(previous >= 0, step - previous, 1).astype(np.float64)
        decay = 1.0 - self.alpha
        kept = decay**counts
        self.gap[buckets] = (
            kept * self.gap[buckets] + self.alpha * decay ** (counts - 1) * gap_now
        )
        self.weight[buckets] = kept * self.weight[buckets] + (1.0 - kept)
        self.last_seen[buckets] = step
        self.steps = step + 1

    def mean_gap(self, ids: np.ndarray) -> np.ndarray:
        """``B / W``: the bias-corrected mean steps between sightings (NaN: unseen)."""
        buckets = self._buckets(ids)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                self.last_seen[buckets] >= 0,
                self.gap[buckets] / self.weight[buckets],
                np.nan,
            )

    def estimate(self, ids: np.ndarray) -> np.ndarray:
        """Expected number of occurrences of each id in a batch, ``1 / B`` (float64).

        The gap is read as it would be if the id were seen now, when that is
        larger (see the module notes); an id never seen gets ``1 / steps``, about
        the most it could have appeared unnoticed.
        """
        buckets = self._buckets(ids)
        last = self.last_seen[buckets]
        gap, weight = self.gap[buckets], self.weight[buckets]
        stale = (self.steps - 1 - last).astype(np.float64)
        decay = 1.0 - self.alpha
        with np.errstate(invalid="ignore", divide="ignore"):
            now = gap / weight
            if_seen_now = (decay * gap + self.alpha * stale) / (
                decay * weight + self.alpha
            )
        read = np.maximum(np.maximum(now, if_seen_now), 1e-6)
        return np.where(last >= 0, 1.0 / read, 1.0 / max(self.steps, 1))
