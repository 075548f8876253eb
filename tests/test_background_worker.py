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
