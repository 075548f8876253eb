r"""Sample ratio mismatch: is the split the one that was configured?

Introduced in ``notebooks/evaluation.ipynb``. An experiment configured as 50/50
whose arms hold 50.6 % and 49.4 % of a million users did not split as intended:
a redirect that loses some treatment users, a crash that drops their logs, a bot
filter that treats the arms differently. The lost users are rarely a random
sample, so every metric of the test is suspect, and the usual advice (Kohavi,
Tang & Xu 2020, ch. 21) is to stop and debug before reading any result.

The check is Pearson's chi-square goodness-of-fit test of the assignment counts
against the configured shares, :math:`\chi^2 = \sum_a (n_a - N s_a)^2 / (N s_a)`
with ``arms - 1`` degrees of freedom (``scipy.stats.chi2`` gives the tail). It is
run on every experiment, so it needs a strict threshold to avoid stopping healthy
ones: :math:`p < 0.001` is the common choice, which by construction fires on 0.1 %
of healthy splits. :func:`sample_ratio_p_values` is the same test vectorized over
many simulated experiments, to measure exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import chi2

from mlsd_lib.errors import MlsdError

__all__ = [
    "SRM_THRESHOLD",
    "SampleRatioCheck",
    "SampleRatioError",
    "sample_ratio_check",
    "sample_ratio_p_values",
]

#: The p-value below which a split is called broken (Kohavi et al. 2020).
SRM_THRESHOLD = 0.001


class SampleRatioError(MlsdError, ValueError):
    """Counts or shares that cannot be checked; the message says why."""


@dataclass(frozen=True)
class SampleRatioCheck:
    """Observed against expected assignment counts, and the verdict."""

    counts: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    threshold: float

    @property
    def mismatch(self) -> bool:
        """Whether the split is broken: stop and debug before reading metrics."""
        return self.p_value < self.threshold

    @property
    def observed_shares(self) -> tuple[float, ...]:
        total = sum(self.counts)
        return tuple(c / total for c in self.counts)


def _shares(expected_shares: ArrayLike | None, arms: int) -> np.ndarray:
    if expected_shares is None:
        return np.full(arms, 1.0 / arms)
    shares = np.asarray(expected_shares, dtype=np.float64)
    if shares.shape != (arms,) or (shares <= 0).any():
        raise SampleRatioError(
            f"expected_shares must be {arms} positive numbers, one per arm, got "
            f"{shares.tolist()}."
        )
    if not np.isclose(shares.sum(), 1.0):
        raise SampleRatioError(
            f"expected_shares must sum to 1 (the configured split), got "
            f"{shares.sum():.6g}; e.g. (0.5, 0.5) or (0.9, 0.1)."
        )
    return shares


def sample_ratio_p_values(
    counts: ArrayLike, expected_shares: ArrayLike | None = None
) -> np.ndarray:
    """Chi-square p-values of many splits: ``counts`` is ``(experiments, arms)``.

    ``expected_shares`` (default: equal) is the configured split.
    """
    n = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    arms = n.shape[1]
    if arms < 2:
        raise SampleRatioError(f"need at least 2 arms, got {arms}.")
    if (n < 0).any() or (n.sum(axis=1) <= 0).any():
        raise SampleRatioError(
            "counts must be >= 0 with at least one unit assigned per experiment."
        )
    shares = _shares(expected_shares, arms)
    expected = n.sum(axis=1, keepdims=True) * shares
    statistic = ((n - expected) ** 2 / expected).sum(axis=1)
    return chi2.sf(statistic, arms - 1)


def sample_ratio_check(
    counts: ArrayLike,
    expected_shares: ArrayLike | None = None,
    *,
    threshold: float = SRM_THRESHOLD,
) -> SampleRatioCheck:
    """Check one experiment's assignment counts (users per arm) against its split.

    Count the randomization units (users), not impressions or events: those
    differ between arms whenever the treatment works.
    """
    if not 0.0 < threshold < 1.0:
        raise SampleRatioError(f"threshold must be in (0, 1), got {threshold}.")
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1:
        raise SampleRatioError(
            f"counts must be one number per arm, got shape {n.shape}; use "
            "sample_ratio_p_values for many experiments."
        )
    if (n != np.round(n)).any():
        raise SampleRatioError(
            f"counts must be whole numbers of units per arm, got {n.tolist()}."
        )
    p_value = float(sample_ratio_p_values(n[None, :], expected_shares)[0])
    shares = _shares(expected_shares, len(n))
    expected = n.sum() * shares
    return SampleRatioCheck(
        counts=tuple(int(c) for c in n),
        expected=tuple(float(e) for e in expected),
        chi2=float(((n - expected) ** 2 / expected).sum()),
        p_value=p_value,
        threshold=threshold,
    )
