"""A stream processor that keeps folding new events while a service reads the store.

Introduced in ``casestudies/recommender/06_serving.ipynb`` (step 6, "Serving": the
histories a feed reads stay fresh because a processor folds every new play into Redis
within seconds). A backfill is a bounded run (``run(idle_exit_s=...)`` and it returns);
a service needs the opposite: a processor started next to it that runs until told to
stop. :class:`LiveProcessor` is that, with the same fold the backfill used:

* on a real Redis, a **process of its own** (``python -m
  mlsd_lib.features.stream_processor``, started by
  :func:`~mlsd_lib.features.stream_launcher.start_processor`), as it runs in
  production: its CPU is not the service's, and it survives the service's
  restarts. A process receives its fold by name
  (:func:`~mlsd_lib.features.fold_catalog.fold_named`), so the fold must be one
  a name can rebuild; anything else is refused before a process starts;
* on fakeredis, which another process cannot reach, a **thread** running the
  same :class:`~mlsd_lib.features.stream_processor.StreamProcessor` on the
  fold object itself (announced by :meth:`LiveProcessor.describe`).

Either way :meth:`LiveProcessor.wait_caught_up` waits until a backlog is
folded, and :meth:`LiveProcessor.stop` asks it to finish what it holds and
returns what it did (the processor's counts).
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import asdict
from typing import Any, Literal

import redis

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.fold_catalog import fold_named
from mlsd_lib.features.history_fold import HistoryFold
from mlsd_lib.features.latest_fold import LatestValueFold
from mlsd_lib.features.stream_folds import StreamFold
from mlsd_lib.features.stream_launcher import start_processor, summary_of
from mlsd_lib.features.stream_processor import StreamProcessor
from mlsd_lib.features.windowed_fold import WindowedCountFold
from mlsd_lib.net import wait_until
from mlsd_lib.redis_backend import RedisBackend

__all__ = ["LiveProcessor", "LiveProcessorError", "ProcessorKind"]

ProcessorKind = Literal["process", "thread"]


class LiveProcessorError(MlsdError, RuntimeError):
    """A live processor that cannot start, or stopped badly; says why."""


def _fold_options(fold: StreamFold) -> dict[str, Any]:
    """The command-line options that rebuild ``fold`` in a processor process,
    refused unless :func:`fold_named` rebuilds exactly ``fold`` from them."""
    if isinstance(fold, HistoryFold):
        options: dict[str, Any] = {
            "fold": "history",
            "history_length": fold.length,
            "categories": fold.n_categories,
        }
    elif isinstance(fold, WindowedCountFold):
        options = {"fold": "windowed"}
    elif isinstance(fold, LatestValueFold):
        state = fold.values.view.name
        options = {
            "fold": "latest",
            "value_types": ",".join(fold.values.types),
            "counted_types": ",".join(
                c.event_type for c in (fold.counts.counts if fold.counts else ())
            )
            or None,
            "state_name": state.removesuffix("_state"),
        }
    else:
        options = {}
    rebuilt = (
        fold_named(
            options["fold"],
            fold.stream,
            **{k: v for k, v in options.items() if k != "fold"},
        )
        if options
        else None
    )
    if rebuilt != fold:
        raise LiveProcessorError(
            f"a processor process cannot rebuild this {type(fold).__name__} "
            f"({getattr(fold, 'name', fold.stream)!r}) from a fold name: it only "
            "knows the folds of mlsd_lib.features.fold_catalog (a history fold must "
            "be named 'user_history'; a latest-value fold built by entity_state); "
            "build the fold with fold_named, or run the processor in a thread "
            "(LiveProcessor(..., kind='thread'))."
        )
    return options


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _redis_url(backend: RedisBackend) -> str:
    """The URL another process reaches ``backend``'s server at."""
    if backend.kind == "redis-url":
        return backend.address
    return f"{backend.address}/0"


class LiveProcessor:
    """One consumer of ``group`` folding ``fold``'s stream into ``backend``'s Redis
    until :meth:`stop`.

    ``kind`` defaults to a process on a real Redis and a thread on fakeredis.
    ``block_ms`` is how long one read waits for new events: it bounds how late
    a stop is noticed, not how late an event is folded (a read returns as soon
    as an event arrives).
    """

    def __init__(
        self,
        backend: RedisBackend,
        fold: StreamFold,
        *,
        group: str,
        consumer: str = "live",
        kind: ProcessorKind | None = None,
        block_ms: int = 50,
        batch_size: int = 100,
    ) -> None:
        self.backend = backend
        self.fold = fold
        self.group, self.consumer = group, consumer
        self.kind: ProcessorKind = kind or ("process" if backend.is_real else "thread")
        if self.kind == "process" and not backend.is_real:
            raise LiveProcessorError(
                "fakeredis lives inside this process, so a processor process cannot "
                "reach it: use kind='thread', or a real Redis (REDIS_URL or a "
                "redis-server on PATH)."
            )
        self.block_ms, self.batch_size = block_ms, batch_size
        self._options = _fold_options(fold) if self.kind == "process" else {}
        self._process: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._processor: StreamProcessor | None = None
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._summary: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        """The processor process's id (None for a thread, or when stopped)."""
        return None if self._process is None else self._process.pid

    def describe(self) -> str:
        """One line: where the processor runs and what it folds."""
        where = (
            "a process of its own (python -m mlsd_lib.features.stream_processor)"
            if self.kind == "process"
            else "a thread of this process (fakeredis cannot be shared)"
        )
        return (
            f"stream processor: {where}, group {self.group!r}, folding stream "
            f"{self.fold.stream!r}"
        )

    def _consuming(self) -> bool:
        """Whether its consumer group exists (the processor creates it, from the
        stream's start, before its first read: no event published after this
        can be missed)."""
        try:
            groups = self.backend.client.xinfo_groups(self.fold.stream)
        except redis.ResponseError:  # no stream yet
            return False
        names = {
            g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
            for g in groups
        }
        return self.group in names

    def caught_up(self) -> bool:
        """Whether its group has read and acknowledged every event on the stream
        (nothing pending, the last delivered id the stream's last)."""
        client = self.backend.client
        try:
            groups = client.xinfo_groups(self.fold.stream)
            last = client.xinfo_stream(self.fold.stream)["last-generated-id"]
        except redis.ResponseError:  # no stream yet: nothing to fold
            return True
        for group in groups:
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                delivered = group["last-delivered-id"]
                return int(group["pending"]) == 0 and _text(delivered) == _text(last)
        return False

    def wait_caught_up(self, timeout_s: float = 120.0) -> float:
        """Wait until :meth:`caught_up` (a backlog folded); return the seconds
        waited, or raise :class:`LiveProcessorError` after ``timeout_s``."""
        started = time.perf_counter()
        alive = self._process
        if not wait_until(
            self.caught_up,
            timeout_s=timeout_s,
            interval_s=0.02,
            give_up_if=None if alive is None else lambda: alive.poll() is not None,
        ):
            raise LiveProcessorError(
                f"the stream processor had not folded stream {self.fold.stream!r} "
                f"within {timeout_s:.0f} s{self._exit_note()}; is it running, and "
                "is the backlog that large?"
            )
        return time.perf_counter() - started

    def _run_thread(self) -> None:
        try:
            self._processor.run(should_stop=self._stop.is_set)
        except BaseException as error:  # reported by stop()
            self._failure = error

    def start(self, timeout_s: float = 30.0) -> LiveProcessor:
        """Start it and wait until its group exists (at most ``timeout_s``)."""
        if self._process is not None or self._thread is not None:
            return self
        if self.kind == "process":
            self._process = start_processor(
                _redis_url(self.backend), stream=self.fold.stream, group=self.group,
                consumer=self.consumer, block_ms=self.block_ms,
                batch_size=self.batch_size, **self._options,
            )  # fmt: skip
            alive = self._process
        else:
            self._processor = StreamProcessor(
                self.backend.client, self.fold.stream, self.group, self.consumer,
                fold=self.fold, block_ms=self.block_ms, batch_size=self.batch_size,
            )  # fmt: skip
            self._thread = threading.Thread(
                target=self._run_thread, name="live-processor", daemon=True
            )
            self._thread.start()
            alive = None
        ready = wait_until(
            self._consuming,
            timeout_s=timeout_s,
            give_up_if=None if alive is None else lambda: alive.poll() is not None,
        )
        if not ready:
            detail = self._exit_note()
            if detail:
                self._process = None  # exited, and its output read
            self.stop()
            raise LiveProcessorError(
                f"the stream processor did not start folding stream "
                f"{self.fold.stream!r} within {timeout_s:.0f} s{detail}; check that "
                "its Redis answers and the fold's options are valid."
            )
        return self

    def _exit_note(self) -> str:
        """Why a process that should be running is not: its status and stderr."""
        process = self._process
        if process is None or process.poll() is None:
            return ""
        _, stderr = process.communicate()
        return f" (it exited with status {process.returncode}: {stderr[-300:]!r})"

    def stop(self, timeout_s: float = 15.0) -> dict[str, Any]:
        """Stop it and return its counts (``applied``, ...); idempotent: a second
        call returns the same counts ({} if it never ran).

        A process gets SIGTERM, finishes its batch and prints its summary; a
        thread is asked to stop after its current read.
        """
        if self._process is not None or self._thread is not None:
            self._summary = self._stop_running(timeout_s)
        return self._summary

    def _stop_running(self, timeout_s: float) -> dict[str, Any]:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
            try:
                stdout, stderr = process.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
                raise LiveProcessorError(
                    f"the stream processor did not stop within {timeout_s:.0f} s "
                    "of SIGTERM and was killed; its pending events stay in the "
                    "group for the next consumer."
                ) from None
            try:
                return summary_of(stdout)
            except RuntimeError:
                raise LiveProcessorError(
                    f"the stream processor exited with status {process.returncode} "
                    f"without a summary; its stderr ends: {stderr[-500:]!r}"
                ) from None
        thread, self._thread = self._thread, None
        assert thread is not None and self._processor is not None
        self._stop.set()
        thread.join(timeout_s)
        if thread.is_alive():
            raise LiveProcessorError(
                f"the stream processor thread did not stop within {timeout_s:.0f} s."
            )
        if self._failure is not None:
            raise LiveProcessorError(
                f"the stream processor thread failed: {self._failure!r}"
            ) from self._failure
        return {"consumer": self.consumer, **asdict(self._processor.counts)}

    def __enter__(self) -> LiveProcessor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
