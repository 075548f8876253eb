"""A small load generator, bounded and aimed only at loopback.

Introduced in ``notebooks/model_serving.ipynb``, where it measures the gateway and
Triton the way NVIDIA's ``perf_analyzer`` does: throughput and p50/p90/p95/p99
latency per concurrency level, then a latency-vs-throughput curve.

Two ways to offer load, because they answer different questions:

* **Closed loop** (:func:`run_closed_loop`, :func:`sweep`): N workers, each sending
  its next request as soon as the previous one returns. This finds the capacity
  of a service ("how many requests per second at 8 in flight?"), but a slow
  server slows the senders down, so it never shows a queue building up.
* **Open loop** (:func:`run_open_loop`): requests leave on a fixed schedule
  whatever the server does, as real users' requests do. This shows what latency
  users see at a given arrival rate, including the queueing a closed loop hides.

House rules, enforced here rather than left to the caller: every URL must be on
loopback (127.0.0.0/8 or ::1, or the name ``localhost``), every run is bounded in
both request count and time, and :func:`wait_until_ready` checks the service's
readiness endpoint before any load is sent ("health before predict").

Load is offered through a ``send`` callable that performs one request and raises
on failure, so the same loops drive HTTP (:func:`http_sender`), a Triton client
or an in-process call. A ``send`` must itself be bounded in time (the HTTP sender
has a timeout): a call that never returns cannot be interrupted from outside.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import numpy as np
from matplotlib.figure import Figure

from mlsd_lib.errors import MlsdError
from mlsd_lib.net import wait_until

#: Upper bounds on any single run. A notebook cell should never be able to send
#: more than this, however a parameter is mistyped.
MAX_REQUESTS = 100_000
MAX_SECONDS = 300.0
MAX_CONCURRENCY = 256
MAX_IN_FLIGHT = 256

#: How many error messages a result keeps; the count of failures is always exact.
ERRORS_KEPT = 5

#: The percentiles perf_analyzer reports, in the order tables and plots show them.
PERCENTILES = (50, 90, 95, 99)

Send = Callable[[], object]


class NotLoopback(MlsdError, ValueError):
    """A load-test target is not on this machine's loopback interface."""


class ServiceNotReady(MlsdError, TimeoutError):
    """The readiness endpoint did not answer 2xx in time."""


class RequestFailed(MlsdError, RuntimeError):
    """An HTTP request got a non-2xx answer; the message has status and body."""


# --------------------------------------------------------------------------- targets


def _is_loopback_address(host: str) -> bool:
    """True for an IP literal in 127.0.0.0/8 or ::1 (IPv4-mapped forms included)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def _localhost_is_loopback() -> bool:
    """Whether every address ``localhost`` resolves to is a loopback address.

    ``localhost`` is answered from ``/etc/hosts`` (or synthesized by the
    resolver), so this asks nothing of the network; a machine whose hosts file
    maps it elsewhere is refused rather than trusted.
    """
    try:
        infos = socket.getaddrinfo("localhost", None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(_is_loopback_address(info[4][0]) for info in infos)


def check_loopback(url: str) -> str:
    """Return ``url`` unchanged if it points at loopback, else raise NotLoopback.

    Load tests in this book only ever hit services on this machine. An IP
    literal must be in 127.0.0.0/8 or be ::1; the only name accepted is
    ``localhost``, after checking it resolves to loopback. Every other name is
    refused without being looked up, so a typo never sends traffic (not even a
    DNS query) anywhere. The host is read by both the standard library and
    httpx, which sends the requests, and both must agree: URLs that parsers
    read differently are refused, as are a user-info part or a backslash
    (``http://a.example\\@127.0.0.1``), which other clients read as another
    host. There is deliberately no override.
    """
    try:
        std_host = urlsplit(url).hostname or ""
        parsed = httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as error:
        raise NotLoopback(f"cannot parse load-test target {url!r}: {error}") from None
    if parsed.scheme not in ("http", "https"):
        raise NotLoopback(
            f"load-test target {url!r} must be an http:// or https:// URL "
            f"such as http://127.0.0.1:8000"
        )
    if "\\" in url or parsed.userinfo:
        raise NotLoopback(
            f"load-test target {url!r} is ambiguous: a user-info part or a "
            f"backslash lets parsers disagree on the host; write it plainly, "
            f"e.g. http://127.0.0.1:8000"
        )
    hosts = {std_host.lower(), parsed.host.lower()}
    if len(hosts) != 1:
        raise NotLoopback(
            f"load-test target {url!r} is ambiguous: its host reads as "
            f"{sorted(hosts)}; write it plainly, e.g. http://127.0.0.1:8000"
        )
    host = hosts.pop()
    if _is_loopback_address(host):
        return url
    if host == "localhost" and _localhost_is_loopback():
        return url
    raise NotLoopback(
        f"load-test target {url!r} is not on loopback (host {host!r}). Load tests "
        f"here only send traffic to 127.0.0.0/8, ::1 or localhost; start the "
        f"service on 127.0.0.1 (the library's servers already do)."
    )


def wait_until_ready(
    base_url: str,
    path: str = "/readyz",
    timeout_s: float = 30.0,
    *,
    interval_s: float = 0.05,
) -> float:
    """Block until ``GET base_url + path`` answers 2xx; return the seconds waited.

    Health before predict: a service that is still loading its model answers
    its readiness endpoint with 503, and load sent before then measures the
    start-up, not the service. Raises ServiceNotReady, with the last answer or
    error seen, if the endpoint is not ready within ``timeout_s``.
    """
    url = check_loopback(base_url.rstrip("/") + "/" + path.lstrip("/"))
    _check_range("timeout_s", timeout_s, 0, MAX_SECONDS)
    last = ["no answer yet"]
    started = time.monotonic()

    def ready(client: httpx.Client) -> bool:
        try:
            response = client.get(url)
        except httpx.HTTPError as error:
            last[0] = f"{type(error).__name__}: {error}"
            return False
        last[0] = f"HTTP {response.status_code}: {response.text[:200]!r}"
        return response.is_success

    with httpx.Client(timeout=min(1.0, timeout_s), trust_env=False) as client:
        if wait_until(
            lambda: ready(client), timeout_s=timeout_s, interval_s=interval_s
        ):
            return time.monotonic() - started
    raise ServiceNotReady(
        f"{url} was not ready after {timeout_s:g} s (last: {last[0]}). Is the "
        f"service running, and is its model loaded?"
    )


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LoadResult:
    """What one run measured: counts, wall time and every successful latency.

    Latency statistics cover successful requests only, as perf_analyzer's do;
    ``throughput_rps`` is successes per second of wall time. ``count`` is every
    request that completed (successes and failures); ``dropped`` counts open-loop
    requests never sent because ``max_in_flight`` were already outstanding.
    """

    mode: Literal["closed", "open"]
    count: int
    failures: int
    duration_s: float
    latencies_ms: np.ndarray = field(repr=False, compare=False)
    errors_sample: tuple[str, ...] = ()
    concurrency: int | None = None
    rate_per_s: float | None = None
    dropped: int = 0
    started_at: float = 0.0

    @property
    def successes(self) -> int:
        return self.count - self.failures

    @property
    def ended_at(self) -> float:
        """Wall-clock end (seconds since the epoch), to line up with server logs."""
        return self.started_at + self.duration_s

    @property
    def throughput_rps(self) -> float:
        return self.successes / self.duration_s if self.duration_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        """The q-th latency percentile (numpy's linear rule), NaN if none succeeded."""
        if self.latencies_ms.size == 0:
            return float("nan")
        return float(np.percentile(self.latencies_ms, q))

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p90_ms(self) -> float:
        return self.percentile_ms(90)

    @property
    def p95_ms(self) -> float:
        return self.percentile_ms(95)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    @property
    def max_ms(self) -> float:
        return self.percentile_ms(100)

    @property
    def mean_ms(self) -> float:
        if self.latencies_ms.size == 0:
            return float("nan")
        return float(self.latencies_ms.mean())

    def as_row(self) -> dict[str, Any]:
        """One flat dict per run, ready for ``pandas.DataFrame(rows)``."""
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            "rate_per_s": self.rate_per_s,
            "count": self.count,
            "failures": self.failures,
            "dropped": self.dropped,
            "duration_s": self.duration_s,
            "throughput_rps": self.throughput_rps,
            "mean_ms": self.mean_ms,
            **{f"p{q}_ms": self.percentile_ms(q) for q in PERCENTILES},
            "max_ms": self.max_ms,
        }


def format_table(results: Iterable[LoadResult]) -> str:
    """Summarize runs one line each, in perf_analyzer's words and units (usec).

    Printing the same shape as perf_analyzer lets a reader compare this book's
    numbers with the ones Triton's own tool prints against the same server.
    """
    lines = ["Inferences/Second vs. Client p50/p90/p95/p99 Latency"]
    for result in results:
        if result.mode == "closed":
            head = f"Concurrency: {result.concurrency}"
        else:
            head = f"Request rate: {result.rate_per_s:g}"
        usec = ", ".join(f"p{q} {_usec(result.percentile_ms(q))}" for q in PERCENTILES)
        line = (
            f"{head}, throughput: {result.throughput_rps:.1f} infer/sec, "
            f"latency {usec} usec"
        )
        if result.failures:
            line += f", failures: {result.failures}/{result.count}"
        if result.dropped:
            line += f", dropped: {result.dropped}"
        lines.append(line)
    return "\n".join(lines)


def _usec(ms: float) -> str:
    return "nan" if np.isnan(ms) else str(round(ms * 1000))


class _Tally:
    """Thread-safe collector of latencies, failure counts and a few error texts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latencies_s: list[float] = []
        self.failures = 0
        self.errors: list[str] = []

    def add_latencies(self, latencies_s: list[float]) -> None:
        with self._lock:
            self.latencies_s.extend(latencies_s)

    def fail(self, error: BaseException) -> None:
        with self._lock:
            self.failures += 1
            if len(self.errors) < ERRORS_KEPT:
                self.errors.append(f"{type(error).__name__}: {error}"[:300])

    def result(self, duration_s: float, started_at: float, **kwargs: Any) -> LoadResult:
        return LoadResult(
            count=len(self.latencies_s) + self.failures,
            failures=self.failures,
            duration_s=duration_s,
            latencies_ms=np.asarray(self.latencies_s, dtype=np.float64) * 1000.0,
            errors_sample=tuple(self.errors),
            started_at=started_at,
            **kwargs,
        )


def _check_range(name: str, value: float, low: float, high: float) -> None:
    """Refuse a bound outside (low, high], saying what the limits are for."""
    if not low < value <= high:
        raise ValueError(
            f"{name}={value!r} is outside ({low:g}, {high:g}]: every load run is "
            f"bounded so that a mistyped parameter cannot flood a machine"
        )


# --------------------------------------------------------------------------- closed


class _Budget:
    """Hands out request slots until the count or the deadline runs out."""

    def __init__(self, max_requests: int, max_seconds: float) -> None:
        self._lock = threading.Lock()
        self._left = max_requests
        self._deadline = time.perf_counter() + max_seconds

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0 or time.perf_counter() >= self._deadline:
                return False
            self._left -= 1
            return True


def _closed_loop_phase(
    send: Send, concurrency: int, max_requests: int, max_seconds: float
) -> LoadResult:
    budget = _Budget(max_requests, max_seconds)
    tally = _Tally()

    def worker() -> None:
        latencies: list[float] = []
        while budget.take():
            sent = time.perf_counter()
            try:
                send()
            except Exception as error:
                tally.fail(error)
            else:
                latencies.append(time.perf_counter() - sent)
        tally.add_latencies(latencies)

    threads = [
        threading.Thread(target=worker, name=f"loadgen-{i}", daemon=True)
        for i in range(concurrency)
    ]
    started_at, started = time.time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    duration_s = time.perf_counter() - started
    return tally.result(duration_s, started_at, mode="closed", concurrency=concurrency)


def run_closed_loop(
    send: Send,
    concurrency: int,
    *,
    max_requests: int,
    max_seconds: float,
    warmup_requests: int = 0,
) -> LoadResult:
    """Keep ``concurrency`` requests in flight until a count or time bound is hit.

    Each of ``concurrency`` threads calls ``send()`` again as soon as the
    previous call returns, which is perf_analyzer's ``--concurrency-range``
    mode. The run stops after ``max_requests`` requests or ``max_seconds``,
    whichever comes first; both are required so a run always ends by itself.
    ``warmup_requests`` are sent first, with the same concurrency and their own
    ``max_seconds`` bound, and not recorded: first requests pay for connection
    set-up, lazy model loading and cold caches.
    """
    _check_range("concurrency", concurrency, 0, MAX_CONCURRENCY)
    _check_range("max_requests", max_requests, 0, MAX_REQUESTS)
    _check_range("max_seconds", max_seconds, 0, MAX_SECONDS)
    if not 0 <= warmup_requests <= MAX_REQUESTS:
        raise ValueError(f"warmup_requests={warmup_requests!r} is outside [0, 100000]")
    if warmup_requests:
        _closed_loop_phase(send, concurrency, warmup_requests, max_seconds)
    return _closed_loop_phase(send, concurrency, max_requests, max_seconds)


def sweep(
    send: Send,
    concurrencies: Sequence[int] = (1, 2, 4, 8),
    *,
    max_requests: int,
    max_seconds: float,
    warmup_requests: int = 0,
) -> list[LoadResult]:
    """Run :func:`run_closed_loop` at each concurrency level, in order.

    Rising concurrency traces the latency-throughput curve: throughput grows
    until the server saturates, after which extra concurrency only adds queueing
    latency. The bounds apply to each level.
    """
    return [
        run_closed_loop(
            send,
            concurrency,
            max_requests=max_requests,
            max_seconds=max_seconds,
            warmup_requests=warmup_requests,
        )
        for concurrency in concurrencies
    ]


# --------------------------------------------------------------------------- open


def arrival_schedule(
    rate_per_s: float,
    duration_s: float,
    *,
    arrivals: Literal["poisson", "uniform"] = "poisson",
    seed: int = 0,
) -> np.ndarray:
    """Send times in seconds from the start, within ``[0, duration_s)``.

    ``poisson`` draws exponential gaps (independent users, the usual model of
    web traffic, seeded so a run is repeatable); ``uniform`` spaces requests
    exactly ``1 / rate_per_s`` apart.
    """
    _check_range("rate_per_s", rate_per_s, 0, MAX_REQUESTS)
    _check_range("duration_s", duration_s, 0, MAX_SECONDS)
    expected = rate_per_s * duration_s
    if expected > MAX_REQUESTS:
        raise ValueError(
            f"rate_per_s * duration_s = {expected:g} requests is over the "
            f"{MAX_REQUESTS} a single run may send; lower the rate or the duration"
        )
    if arrivals == "uniform":
        return np.arange(int(np.ceil(expected))) / rate_per_s
    if arrivals != "poisson":
        raise ValueError(f"arrivals={arrivals!r}: use 'poisson' or 'uniform'")
    rng = np.random.default_rng(seed)
    draws = int(expected + 10 * np.sqrt(expected) + 10)  # ample: 10 sigma over
    gaps = rng.exponential(1.0 / rate_per_s, size=draws)
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    return times[times < duration_s][:MAX_REQUESTS]


def run_open_loop(
    send: Send,
    rate_per_s: float,
    *,
    duration_s: float,
    max_in_flight: int = 64,
    arrivals: Literal["poisson", "uniform"] = "poisson",
    seed: int = 0,
) -> LoadResult:
    """Send requests on a fixed schedule, whatever the server does.

    Requests leave at the times :func:`arrival_schedule` gives, on a pool of
    ``max_in_flight`` threads. A request due while ``max_in_flight`` are still
    outstanding is *dropped* and counted, never queued: an unbounded queue in
    the load generator would grow without limit against a slow server.

    Latency is measured from each request's **scheduled** send time, not from
    when a thread got round to sending it. If the generator itself falls behind
    (a busy CPU, a late wake-up), that delay counts against the latency, as it
    would for a real user; measuring from the actual send would hide it, the
    "coordinated omission" that makes closed-loop tools look better than users'
    experience. The run ends once the schedule is done and the requests in
    flight have returned.
    """
    _check_range("max_in_flight", max_in_flight, 0, MAX_IN_FLIGHT)
    schedule = arrival_schedule(rate_per_s, duration_s, arrivals=arrivals, seed=seed)
    tally = _Tally()
    slots = threading.BoundedSemaphore(max_in_flight)
    dropped = 0

    def one(due: float) -> None:
        try:
            send()
        except Exception as error:
            tally.fail(error)
        else:
            tally.add_latencies([time.perf_counter() - due])
        finally:
            slots.release()

    started_at, started = time.time(), time.perf_counter()
    with ThreadPoolExecutor(max_in_flight, thread_name_prefix="loadgen") as pool:
        for offset in schedule:
            due = started + float(offset)
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if slots.acquire(blocking=False):
                pool.submit(one, due)
            else:
                dropped += 1
    duration_s = time.perf_counter() - started
    return tally.result(
        duration_s, started_at, mode="open", rate_per_s=rate_per_s, dropped=dropped
    )


# --------------------------------------------------------------------------- HTTP


class HttpSender:
    """A thread-safe ``send`` for one URL: one ``httpx.Client`` per thread.

    Each calling thread gets its own client (and so its own keep-alive
    connection), which keeps a closed loop's N workers from queueing on a
    shared connection pool, a wait that would be counted as server latency.
    Clients of threads that have finished are closed as new ones are made, and
    :meth:`close` closes the rest. Proxy variables are ignored and redirects are
    not followed, so requests cannot leave loopback.
    """

    def __init__(
        self,
        url: str,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = check_loopback(url)
        _check_range("timeout_s", timeout_s, 0, MAX_SECONDS)
        self.method = "GET" if json_body is None else "POST"
        self._content = None if json_body is None else json.dumps(json_body).encode()
        self._headers = dict(headers or {})
        if json_body is not None:
            self._headers.setdefault("content-type", "application/json")
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._clients: dict[threading.Thread, httpx.Client] = {}
        self._closed = False

    def _client(self) -> httpx.Client:
        me = threading.current_thread()
        client = self._clients.get(me)
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise RuntimeError(f"this sender for {self.url} has been closed")
            for thread in [t for t in self._clients if not t.is_alive()]:
                self._clients.pop(thread).close()
            client = httpx.Client(
                timeout=self._timeout_s, trust_env=False, follow_redirects=False
            )
            self._clients[me] = client
            return client

    def __call__(self) -> httpx.Response:
        """Send one request; raise RequestFailed on any non-2xx answer."""
        response = self._client().request(
            self.method, self.url, content=self._content, headers=self._headers
        )
        if not response.is_success:
            raise RequestFailed(
                f"{self.method} {self.url} answered {response.status_code}: "
                f"{response.text[:200]!r}"
            )
        return response

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> HttpSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class LeanResponse:
    """What :class:`LeanHttpSender` returns: status, headers and the whole body."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class LeanHttpSender(HttpSender):
    """:class:`HttpSender` on the standard library's ``http.client``.

    Same contract (one keep-alive connection per thread, loopback only, no
    proxies, no redirects, a timeout on every request, RequestFailed on any
    non-2xx answer, the whole body read) at a fraction of httpx's CPU per
    request. On a small machine the load generator shares the cores with the
    service it measures, so a heavy client lowers the throughput it reports; a
    dropped connection is reopened once, as httpx's pool would.
    """

    def __init__(
        self,
        url: str,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        super().__init__(url, json_body, headers, timeout_s)
        parts = urlsplit(self.url)
        if parts.scheme != "http":
            raise ValueError(f"the lean sender speaks plain http only, not {url!r}")
        self._host = parts.hostname or ""
        self._port = parts.port or 80
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._connections: dict[threading.Thread, http.client.HTTPConnection] = {}

    def _connection(self) -> http.client.HTTPConnection:
        me = threading.current_thread()
        connection = self._connections.get(me)
        if connection is not None:
            return connection
        with self._lock:
            if self._closed:
                raise RuntimeError(f"this sender for {self.url} has been closed")
            for thread in [t for t in self._connections if not t.is_alive()]:
                self._connections.pop(thread).close()
            connection = http.client.HTTPConnection(
                self._host, self._port, timeout=self._timeout_s
            )
            connection.connect()
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connections[me] = connection
            return connection

    def _exchange(self) -> LeanResponse:
        connection = self._connection()
        try:
            connection.request(
                self.method, self._target, body=self._content, headers=self._headers
            )
            answer = connection.getresponse()
            content = answer.read()
        except (http.client.HTTPException, OSError):
            connection.close()  # reconnects on the next call
            with self._lock:
                self._connections.pop(threading.current_thread(), None)
            raise
        if answer.will_close:
            connection.close()
            with self._lock:
                self._connections.pop(threading.current_thread(), None)
        return LeanResponse(answer.status, dict(answer.getheaders()), content)

    def __call__(self) -> LeanResponse:  # type: ignore[override]
        """Send one request; raise RequestFailed on any non-2xx answer."""
        try:
            response = self._exchange()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            response = self._exchange()  # a keep-alive connection the server closed
        if not response.is_success:
            raise RequestFailed(
                f"{self.method} {self.url} answered {response.status_code}: "
                f"{response.text[:200]!r}"
            )
        return response

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.close()


def http_sender(
    url: str,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 5.0,
    *,
    client: Literal["httpx", "stdlib"] = "httpx",
) -> HttpSender:
    """Build a ``send`` callable that POSTs ``json_body`` to ``url`` (GET if None).

    The body is encoded once, here, so the generator's own JSON work is not
    timed as server latency. Use it as a context manager so its connections
    are closed: ``with http_sender(url, body) as send: sweep(send, ...)``.
    ``client="stdlib"`` sends with :class:`LeanHttpSender` (``http.client``),
    which costs the generator several times less CPU per request than httpx.
    """
    if client == "stdlib":
        return LeanHttpSender(url, json_body, headers, timeout_s)
    if client != "httpx":
        raise ValueError(f"client={client!r}: use 'httpx' or 'stdlib'")
    return HttpSender(url, json_body, headers, timeout_s)


# --------------------------------------------------------------------------- plots


def plot_latency_throughput(results: Sequence[LoadResult]) -> Figure:
    """p50 and p99 latency against throughput, one point per concurrency level.

    The knee of this curve is the operating point a capacity plan picks: past
    it, more concurrency buys little throughput and a lot of tail latency.
    Returns a Figure (not drawn through pyplot), which a notebook displays.
    """
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    throughput = [r.throughput_rps for r in results]
    axes.plot(throughput, [r.p99_ms for r in results], "o-", label="p99")
    axes.plot(throughput, [r.p50_ms for r in results], "s--", label="p50", alpha=0.7)
    for result in results:
        label = (
            f"c={result.concurrency}"
            if result.mode == "closed"
            else f"{result.rate_per_s:g}/s"
        )
        axes.annotate(
            label,
            (result.throughput_rps, result.p99_ms),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize=8,
        )
    axes.set_xlabel("throughput (requests/s)")
    axes.set_ylabel("latency (ms)")
    axes.set_title("Latency vs throughput")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def plot_percentiles(result: LoadResult) -> Figure:
    """The latency distribution of one run as a percentile curve, tail stretched.

    The x axis is "nines" (90 %, 99 %, 99.9 %...) on a log scale, so the tail
    that averages hide gets most of the width; p50/p90/p95/p99 are marked.
    """
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    if result.latencies_ms.size:
        q = np.linspace(0, 99.99, 400)
        axes.plot(
            100 / (100 - q), np.percentile(result.latencies_ms, q), label="latency"
        )
        for p in PERCENTILES:
            value = result.percentile_ms(p)
            axes.plot(100 / (100 - p), value, "o", color="C1")
            axes.annotate(
                f"p{p} {value:.1f} ms",
                (100 / (100 - p), value),
                textcoords="offset points",
                xytext=(4, -12),
                fontsize=8,
            )
    ticks = [0, 50, 90, 99, 99.9, 99.99]
    axes.set_xscale("log")
    axes.set_xticks([100 / (100 - t) for t in ticks], [f"{t:g}%" for t in ticks])
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency (ms)")
    axes.set_title(f"Latency percentiles ({result.successes} requests)")
    axes.grid(alpha=0.3)
    return figure
