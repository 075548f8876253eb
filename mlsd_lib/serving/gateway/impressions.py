"""The impression log: one JSON line per scored request, append-only.

Introduced in ``notebooks/model_serving.ipynb``. What the gateway showed is the
training data of the next model and the input of monitoring, so it is written
as it happened: a line per request with its id, time, user, candidates, scores,
the model version that served it and whether features were degraded. Shadow
scores arrive later (they are computed off the request path) as their own line
with ``"kind": "shadow"`` and the same ``request_id``; join on it.

Request handlers only put a dict on a queue; one writer thread owns the file,
so lines never interleave, and each batch it drains is flushed before it waits
again. When the queue is full (the disk cannot keep up) a line is dropped and
counted, rather than making requests wait on the disk. A record that cannot be
encoded is counted in ``unwritable`` and skipped: one bad line must not stop the
thread, or every later request would be lost from the log.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import orjson

from mlsd_lib.serving.gateway.background import STOP, BoundedWorker


class ImpressionLog(BoundedWorker):
    """Append JSON lines to ``path`` from a single writer thread.

    Lines are encoded by orjson, which writes NaN and infinity (not JSON) as
    null, at a fraction of the standard library's cost: the writer shares the
    gateway's GIL with the request path.
    """

    def __init__(self, path: str | Path, max_queued: int = 10_000) -> None:
        super().__init__("impression-log", max_queued)
        self.path = Path(path)
        self.written = 0
        self.unwritable = 0

    def _prepare(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict[str, Any]) -> bool:
        """Queue one line; never blocks. Returns False (and counts) if dropped."""
        return self._offer(record)

    def flush(self) -> None:
        """Wait until every queued line is written and flushed."""
        self._wait_idle()

    def _run(self) -> None:
        with self.path.open("a", encoding="utf-8") as file:
            while True:
                item = self._queue.get()
                batch = [item]
                while True:  # drain what else is waiting, then flush once
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = False
                for record in batch:
                    if record is STOP:
                        stop = True
                        continue
                    try:
                        line = orjson.dumps(record)
                    except TypeError:  # e.g. an integer beyond 64 bits
                        self.unwritable += 1
                        continue
                    file.write(line.decode() + "\n")
                    self.written += 1
                file.flush()
                for _ in batch:
                    self._queue.task_done()
                if stop:
                    return
