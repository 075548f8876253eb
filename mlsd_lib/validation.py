"""Checks for the values a reader types into a notebook's parameters cell.

Introduced in ``notebooks/00_environment.ipynb`` (every notebook's parameters
cell: a reader may set any of them, and a value outside its domain must fail at
the function that receives it, before any work or any write, with a message
that names the parameter and the allowed range, e.g. ``n_users must be an
integer >= 1 (got 0)``).

Each check returns the value (as ``int`` or ``float``), so an entry point can
write ``days = require_int("days", days, at_least=1)``. The error class is a
parameter: a module that already has its own error for bad settings
(:class:`~mlsd_lib.worlds.recsys_config.RecsysConfigError`) passes it, so a
caller's ``except`` keeps working; the default is :class:`ParameterError`.
Booleans are refused where a number is asked for (``True`` is an ``int`` in
Python, and ``days=True`` is a typo, not a day).
"""

from __future__ import annotations

import math
import numbers

from mlsd_lib.errors import MlsdError

__all__ = [
    "ParameterError",
    "require_fraction",
    "require_int",
    "require_number",
    "require_seed",
]


class ParameterError(MlsdError, ValueError):
    """A parameter is outside its domain; the message names it and the range."""


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def require_int(
    name: str,
    value: object,
    *,
    at_least: int | None = None,
    at_most: int | None = None,
    error: type[MlsdError] = ParameterError,
) -> int:
    """``value`` as an ``int``; it must be integral and inside the bounds given."""
    if at_least is not None and at_most is not None:
        rule = f"an integer in [{at_least}, {at_most}]"
    elif at_least is not None:
        rule = f"an integer >= {at_least}"
    elif at_most is not None:
        rule = f"an integer <= {at_most}"
    else:
        rule = "an integer"
    integral = _is_int(value) or (
        _is_real(value) and math.isfinite(value) and float(value).is_integer()
    )
    if not integral:
        raise error(f"{name} must be {rule} (got {value!r}).")
    number = int(value)  # type: ignore[arg-type]
    if (at_least is not None and number < at_least) or (
        at_most is not None and number > at_most
    ):
        raise error(f"{name} must be {rule} (got {value!r}).")
    return number


def require_number(
    name: str,
    value: object,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    error: type[MlsdError] = ParameterError,
) -> float:
    """``value`` as a finite ``float`` inside the (open or closed) bounds given."""
    parts = []
    if above is not None:
        parts.append(f"> {above:g}")
    if at_least is not None:
        parts.append(f">= {at_least:g}")
    if below is not None:
        parts.append(f"< {below:g}")
    if at_most is not None:
        parts.append(f"<= {at_most:g}")
    rule = "a finite number" + (" " + " and ".join(parts) if parts else "")
    if not _is_real(value) or not math.isfinite(value):  # type: ignore[arg-type]
        raise error(f"{name} must be {rule} (got {value!r}).")
    x = float(value)  # type: ignore[arg-type]
    inside = (
        (above is None or x > above)
        and (at_least is None or x >= at_least)
        and (below is None or x < below)
        and (at_most is None or x <= at_most)
    )
    if not inside:
        raise error(f"{name} must be {rule} (got {value!r}).")
    return x


def require_fraction(
    name: str,
    value: object,
    *,
    zero: bool = False,
    one: bool = True,
    error: type[MlsdError] = ParameterError,
) -> float:
    """``value`` as a share in ``(0, 1]`` (``zero``/``one`` close or open the ends)."""
    low, high = ("[0" if zero else "(0"), ("1]" if one else "1)")
    x = float(value) if _is_real(value) else math.nan  # type: ignore[arg-type]
    above_low = x >= 0 if zero else x > 0
    below_high = x <= 1 if one else x < 1
    if not (math.isfinite(x) and above_low and below_high):
        raise error(f"{name} must be a fraction in {low}, {high} (got {value!r}).")
    return x


def require_seed(
    name: str, value: object, *, error: type[MlsdError] = ParameterError
) -> int:
    """A seed numpy's ``default_rng`` accepts: an integer >= 0."""
    return require_int(name, value, at_least=0, error=error)
