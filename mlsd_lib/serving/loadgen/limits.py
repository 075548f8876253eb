"""The bounds every load run stays within, and the one check that enforces them.

Part of :mod:`mlsd_lib.serving.loadgen`, introduced in
``notebooks/model_serving.ipynb``.
"""

from __future__ import annotations

from collections.abc import Callable

from mlsd_lib.errors import MlsdError

#: Upper bounds on any single run. A notebook cell should never be able to send
#: more than this, however a parameter is mistyped.
MAX_REQUESTS = 100_000
MAX_SECONDS = 300.0
MAX_CONCURRENCY = 256
MAX_IN_FLIGHT = 256

Send = Callable[[], object]
"""One request: returns on success, raises on failure, bounded in time itself."""


def check_range(name: str, value: float, low: float, high: float) -> None:
    """Refuse a bound outside (low, high], saying what the limits are for."""
    if not low < value <= high:
        raise LoadLimitError(
            f"{name}={value!r} is outside ({low:g}, {high:g}]: every load run is "
            f"bounded so that a mistyped parameter cannot flood a machine"
        )


class LoadLimitError(MlsdError, ValueError):
    """A load run's bound (requests, seconds, concurrency) is out of range."""
