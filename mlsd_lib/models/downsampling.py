"""Negative downsampling and the recalibration that undoes it.

Introduced in ``casestudies/ad_click/03_models.ipynb``. With a CTR near 1%,
99% of the training rows are negatives that each teach little; keeping each
negative with probability ``w`` (and every positive) cuts training cost by
almost ``1 / w`` at a small loss of accuracy (He et al. 2014, "Practical
Lessons from Predicting Clicks on Ads at Facebook", section 6). The model then
sees odds ``1 / w`` times the true ones, so its prediction ``p`` must be mapped
back: ``q = p / (p + (1 - p) / w)``, which multiplies the odds by ``w``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.errors import MlsdError


class DownsampleRateError(MlsdError, ValueError):
    """The downsampling rate is not a fraction in (0, 1]."""


def _check_rate(w: float) -> None:
    if not 0.0 < w <= 1.0:
        raise DownsampleRateError(
            f"the downsampling rate w is the fraction of negatives kept, in (0, 1]; "
            f"got {w}."
        )


def downsample_negatives(data: CTRData, w: float, seed: int = 0) -> CTRData:
    """Keep every positive and each negative with probability ``w`` (seeded).

    Row order is preserved; ``meta["negative_downsample_rate"]`` records ``w``
    (multiplied in, if the data was downsampled before), so whoever trains on
    the result knows what to recalibrate by.
    """
    _check_rate(w)
    rng = np.random.default_rng(seed)
    keep = (data.labels > 0.5) | (rng.random(len(data)) < w)
    out = data.subset(keep)
    out.meta["negative_downsample_rate"] = (
        data.meta.get("negative_downsample_rate", 1.0) * w
    )
    return out


def recalibrate(p: ArrayLike, w: float) -> np.ndarray:
    """``q = p / (p + (1 - p) / w)``: the calibrated probability of a model's ``p``.

    Exactly inverts the odds scaling that downsampling negatives by ``w``
    causes (``odds(q) = w * odds(p)``); ``w = 1`` is the identity; monotone in
    ``p`` and maps ``(0, 1)`` into ``(0, 1)``.
    """
    _check_rate(w)
    p = np.asarray(p, dtype=np.float64)
    if np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
        raise ValueError(
            "p must be probabilities in [0, 1] (apply a sigmoid to logits)."
        )
    return p / (p + (1.0 - p) / w)
