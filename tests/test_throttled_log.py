"""A repeating failure is logged once per interval, with a count."""

from __future__ import annotations

import logging
import time

from mlsd_lib.serving.gateway.throttled_log import ThrottledLog


def test_repeats_are_held_back_and_counted(caplog):
    log = ThrottledLog(logging.getLogger("test-throttle"), interval_s=0.2)
    with caplog.at_level(logging.WARNING, logger="test-throttle"):
        written = [log.warning("v1", "model v1 failed") for _ in range(50)]
        assert log.warning("v2", "model v2 failed")  # another key is not held back
        time.sleep(0.25)
        assert log.warning("v1", "model v1 failed")
    assert written[0] and not any(written[1:])
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "model v1 failed"
    assert messages[1] == "model v2 failed"
    assert messages[2].startswith("model v1 failed (49 more like it in the last")
    assert len(messages) == 3
