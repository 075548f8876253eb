"""The bounded worker behind the impression log and the shadow scorer."""

from __future__ import annotations

import threading

from mlsd_lib.serving.gateway.background import STOP, BoundedWorker


class Collector(BoundedWorker):
    def __init__(self, max_queued: int, gate: threading.Event) -> None:
        super().__init__("collector", max_queued)
        self.gate = gate
        self.seen: list[int] = []

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is STOP:
                    return
                self.gate.wait(5)
                self.seen.append(item)
            finally:
                self._queue.task_done()


def test_offers_never_wait_and_drops_are_counted_then_close_finishes_the_queue():
    gate = threading.Event()
    worker = Collector(max_queued=2, gate=gate)
    offered = [worker._offer(i) for i in range(5)]  # before start: nothing drains
    assert offered == [True, True, False, False, False]
    assert worker.dropped == 3
    worker.start()
    gate.set()
    worker._wait_idle()
    worker.close()
    assert worker.seen == [0, 1]
    worker.start()  # again after close
    assert worker._offer(7)
    worker.close()
    assert worker.seen == [0, 1, 7]


def test_impression_lines_are_json_with_non_finite_scores_as_null(tmp_path):
    import json
    import math

    from mlsd_lib.serving.gateway.impressions import ImpressionLog

    log = ImpressionLog(tmp_path / "log.jsonl")
    log.start()
    log.append({"kind": "served", "scores": [0.5, math.nan, math.inf], "id": "a"})
    log.append({"kind": "shadow", "scores": [1e-05], "id": "a"})
    log.close()
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"kind": "served", "scores": [0.5, None, None], "id": "a"},
        {"kind": "shadow", "scores": [1e-05], "id": "a"},
    ]
    assert log.written == 2


def test_a_record_orjson_cannot_encode_is_counted_and_the_log_goes_on(tmp_path):
    import json

    from mlsd_lib.serving.gateway.impressions import ImpressionLog

    log = ImpressionLog(tmp_path / "log.jsonl")
    log.start()
    log.append({"user_id": 2**64})  # beyond 64 bits: orjson refuses it
    log.append({"user_id": 3})
    log.close()
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"user_id": 3}]
    assert (log.written, log.unwritable) == (1, 1)
