r"""Looking at an A/B test every day without inflating false positives.

Introduced in ``notebooks/evaluation.ipynb``. A fixed-horizon test promises a
false-positive rate :math:`\alpha` for **one** look at the planned sample size.
A team that opens the dashboard every day and stops at the first
:math:`p < \alpha` gets many chances for noise to cross the line: with 14 daily
looks the A/A false-positive rate is near 20 %, not 5 %. Two fixes, both
hand-written here because the book teaches them:

* **Group-sequential boundary (O'Brien & Fleming 1979).** Plan ``K`` equally
  spaced looks and reject at look ``k`` when :math:`|Z_k| \ge c \sqrt{K / k}`:
  a very high bar early (little data, noisy), close to the fixed test's 1.96 at
  the end, so nearly all of the fixed test's power is kept.
  :math:`Z_k \sqrt{k}` is a Gaussian random walk, so the boundary is a constant
  :math:`c\sqrt{K}` on the walk, and :func:`obrien_fleming_boundary` finds the
  :math:`c` whose probability of ever crossing under the null is exactly
  :math:`\alpha` by integrating the walk's density look by look on a grid
  (Armitage, McPherson & Rowe 1969); for ``K = 5`` it gives 2.040, the value in
  Jennison & Turnbull's Table 2.3. The looks must be planned; looking more often
  than planned breaks the guarantee.
* **Always-valid p-values (mixture SPRT; Johari, Koomen, Pekelis & Walsh 2017).**
  For an estimated difference :math:`\hat\delta_n` with variance :math:`V_n`,
  the likelihood ratio of "the effect is drawn from :math:`N(0, \tau^2)`" against
  "no effect" is

  .. math::

      \Lambda_n = \sqrt{\frac{V_n}{V_n + \tau^2}}
      \exp\!\left(\frac{\tau^2 \hat\delta_n^2}{2 V_n (V_n + \tau^2)}\right),

  a martingale under the null, so by Ville's inequality it ever exceeds
  :math:`1/\alpha` with probability at most :math:`\alpha`, however often one
  looks. The always-valid p-value is :math:`\min(1, \min_{m \le n} 1 /
  \Lambda_m)`. Any look schedule is allowed; the price is power, which depends
  on :math:`\tau` (choose it near the effect one hopes to detect).

:func:`first_crossing` finds the first look at which a path of statistics
crosses a boundary; it is how both methods, and naive peeking, are scored on the
simulated paths of :func:`~mlsd_lib.evaluation.ab_simulation.simulate_daily_z`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.stats import norm

from mlsd_lib.errors import MlsdError

__all__ = [
    "SequentialInputError",
    "boundary_crossing_probability",
    "first_crossing",
    "msprt_p_values",
    "obrien_fleming_boundary",
]


class SequentialInputError(MlsdError, ValueError):
    """Looks, levels or statistics a sequential test cannot use; says why."""


def _check_looks(looks: int) -> None:
    if int(looks) != looks or looks < 1:
        raise SequentialInputError(
            f"looks must be a whole number >= 1 (the planned analyses), got {looks}."
        )


def boundary_crossing_probability(
    boundary: float, looks: int, *, grid_step: float = 0.02
) -> float:
    r"""P(a standard Gaussian random walk of ``looks`` steps ever has
    :math:`|S_k| \ge` ``boundary``), by numerical integration.

    The density of the walk, kept only where it has not crossed, is carried
    from step to step by convolving it with the N(0, 1) step on a grid
    (trapezoid rule); what is left after ``looks`` steps never crossed.
    """
    _check_looks(looks)
    if not boundary > 0:
        raise SequentialInputError(f"boundary must be > 0, got {boundary}.")
    points = max(math.ceil(2 * boundary / grid_step), 2) + 1
    x = np.linspace(-boundary, boundary, points)
    h = x[1] - x[0]
    weights = np.full(points, h)
    weights[[0, -1]] = h / 2
    density = norm.pdf(x)
    kernel = norm.pdf(x[:, None] - x[None, :]) * weights[None, :]
    for _ in range(looks - 1):
        density = kernel @ density
    stayed = float(weights @ density)
    return min(max(1.0 - stayed, 0.0), 1.0)


def obrien_fleming_boundary(looks: int, alpha: float = 0.05) -> np.ndarray:
    r"""Two-sided O'Brien-Fleming z-boundaries for ``looks`` equally spaced looks.

    Look ``k`` (1-based) rejects when :math:`|Z_k| \ge c\sqrt{K/k}`, with ``c``
    solved so that an A/A test crosses at some look with probability ``alpha``.
    One look gives the fixed test's :math:`z_{1-\alpha/2}`.
    """
    _check_looks(looks)
    if not 0.0 < alpha < 1.0:
        raise SequentialInputError(f"alpha must be in (0, 1), got {alpha}.")
    fixed = float(norm.ppf(1.0 - alpha / 2.0))
    k = np.arange(1, looks + 1)
    if looks == 1:
        return np.array([fixed])

    def excess(c: float) -> float:
        return boundary_crossing_probability(c * math.sqrt(looks), looks) - alpha

    # Bonferroni's bar on the final look is a safe upper bracket.
    c = brentq(excess, fixed, float(norm.ppf(1.0 - alpha / (2.0 * looks))) + 1.0)
    return c * np.sqrt(looks / k)


def first_crossing(statistics: ArrayLike, boundary: ArrayLike) -> np.ndarray:
    """First look (0-based) at which ``|statistics| >= boundary``; -1 if never.

    ``statistics`` is ``(experiments, looks)``; ``boundary`` broadcasts against it
    (one bar per look, or one per experiment and look).
    """
    stats = np.atleast_2d(np.asarray(statistics, dtype=np.float64))
    crossed = np.abs(stats) >= np.asarray(boundary, dtype=np.float64)
    return np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)


def msprt_p_values(difference: ArrayLike, se: ArrayLike, tau: float) -> np.ndarray:
    r"""Always-valid p-values of a two-sample difference, look by look.

    ``difference`` and ``se`` are ``(experiments, looks)`` (or one path): the
    estimated treatment-minus-control difference and its standard error at each
    look. ``tau`` is the mixing prior's standard deviation, in the difference's
    units. Returns the running minimum of :math:`1/\Lambda` capped at 1 (module
    docstring): reject at the first look where it is below α.
    """
    if not (math.isfinite(tau) and tau > 0):
        raise SequentialInputError(
            f"tau must be a positive number in the metric's units (near the "
            f"effect you hope to detect), got {tau}."
        )
    d = np.atleast_2d(np.asarray(difference, dtype=np.float64))
    variance = np.atleast_2d(np.asarray(se, dtype=np.float64)) ** 2
    if d.shape != variance.shape:
        raise SequentialInputError(
            f"difference and se must have the same shape, got {d.shape} and "
            f"{variance.shape}."
        )
    if not (variance > 0).all():
        raise SequentialInputError(
            "every standard error must be > 0; start looking once both arms have data."
        )
    tau2 = tau**2
    log_lambda = 0.5 * np.log(variance / (variance + tau2)) + tau2 * d**2 / (
        2.0 * variance * (variance + tau2)
    )
    p = np.minimum(1.0, np.exp(-log_lambda))
    return np.minimum.accumulate(p, axis=1)
