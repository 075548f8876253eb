"""Log a repeating failure once per interval, with a count of what was held back.

Introduced in ``notebooks/model_serving.ipynb``. When the model server dies, every
request fails the same way; a warning per request would write thousands of
identical lines a second, bury the first one (the one that matters) and cost CPU
on the very path that is already in trouble. :class:`ThrottledLog` writes the
first occurrence of each kind at once, then at most one line per ``interval_s``
saying how many were suppressed since.
"""

from __future__ import annotations

import logging
import threading
import time


class ThrottledLog:
    """``warning(key, message)``: at most one line per key per ``interval_s``."""

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, key: str, message: str) -> bool:
        """Log ``message`` unless ``key`` was logged within the interval; returns
        whether a line was written."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            held = self._held.pop(key, 0)
            self._last[key] = now
        suffix = (
            f" ({held} more like it in the last {now - last:.1f} s)" if held else ""
        )
        self.logger.warning("%s%s", message, suffix, stacklevel=2)
        return True
