"""Helpers shared by the gateway's hot-swap and fault tests: load in threads."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Outcome:
    """One request as a client saw it."""

    sent_at: float
    latency_s: float
    status: int
    body: dict = field(default_factory=dict)
    error: str = ""


class BackgroundLoad:
    """``clients`` threads posting scoring requests until stopped (bounded)."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        clients: int = 4,
        candidates: int = 20,
        num_users: int = 200,
        timeout_s: float = 5.0,
        max_requests: int = 20_000,
    ) -> None:
        self.url = url
        self.headers = headers
        self.clients = clients
        self.candidates = candidates
        self.num_users = num_users
        self.timeout_s = timeout_s
        self.max_requests = max_requests
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _worker(self, index: int) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            n = 0
            while not self._stop.is_set() and len(self.outcomes) < self.max_requests:
                user = (index * 7919 + n) % self.num_users
                ads = [(user + k) % 30 for k in range(self.candidates)]
                start = time.perf_counter()
                try:
                    answer = client.post(
                        f"{self.url}/score",
                        json={"user_id": user, "candidate_ids": ads},
                        headers=self.headers,
                    )
                    outcome = Outcome(
                        start,
                        time.perf_counter() - start,
                        answer.status_code,
                        answer.json(),
                    )
                except Exception as error:  # a failed request is data here
                    outcome = Outcome(
                        start, time.perf_counter() - start, 0, error=repr(error)
                    )
                with self._lock:
                    self.outcomes.append(outcome)
                n += 1

    def __enter__(self) -> BackgroundLoad:
        for index in range(self.clients):
            thread = threading.Thread(target=self._worker, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def since(self, moment: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.sent_at >= moment]

    def wait_for(self, count: int, timeout_s: float = 30.0) -> None:
        """Block until at least ``count`` more requests have completed."""
        target = len(self.outcomes) + count
        deadline = time.monotonic() + timeout_s
        while len(self.outcomes) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"load stalled at {len(self.outcomes)} requests")
            time.sleep(0.01)
