"""The load generator: loopback only, bounded, honest percentiles, real HTTP."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator

import fastapi
import matplotlib.pyplot as plt
import numpy as np
import pytest
import uvicorn

from mlsd_lib.net import LOOPBACK, free_loopback_port
from mlsd_lib.serving import loadgen
from mlsd_lib.serving.loadgen import (
    LoadResult,
    NotLoopback,
    ServiceNotReady,
    arrival_schedule,
    check_loopback,
    format_table,
    http_sender,
    plot_latency_throughput,
    plot_percentiles,
    run_closed_loop,
    run_open_loop,
    sweep,
    wait_until_ready,
)


class InFlight:
    """Counts concurrent calls of a fake ``send`` and remembers the peak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.calls = 0

    def __enter__(self) -> InFlight:
        with self._lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.now -= 1


def sleeper(seconds: float, in_flight: InFlight | None = None):
    in_flight = in_flight or InFlight()

    def send() -> None:
        with in_flight:
            time.sleep(seconds)

    return send


# ------------------------------------------------------------------------ targets


@pytest.fixture
def no_network(monkeypatch):
    """Make any name lookup or connection fail the test loudly."""

    def forbidden(*args, **kwargs):
        raise AssertionError(f"network touched: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1",
        "http://10.0.0.1:8000/predict",
        "http://example.com",
        "https://example.com:443/readyz",
        "http://[2001:db8::1]:8000",
        "http://127.0.0.1.example.com",
        "http://127.0.0.1@example.com/",
        "http://example.com\\@127.0.0.1/",
        "http://0.0.0.0:8000",
        "ftp://127.0.0.1/",
        "127.0.0.1:8000",
    ],
)
def test_non_loopback_targets_are_refused_without_touching_the_network(url, no_network):
    with pytest.raises(NotLoopback, match=r"loopback|http://|ambiguous"):
        check_loopback(url)
    with pytest.raises(ValueError):  # NotLoopback is a ValueError
        http_sender(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/predict",
        "http://127.3.2.1",
        "https://[::1]:8443/readyz",
        "http://[::ffff:127.0.0.1]:80",
    ],
)
def test_loopback_literals_are_accepted_without_lookup(url, no_network):
    assert check_loopback(url) == url


def test_localhost_is_accepted_only_if_it_resolves_to_loopback(monkeypatch):
    assert check_loopback("http://LOCALHOST:9/x") == "http://LOCALHOST:9/x"

    def hijacked(host, *args, **kwargs):
        assert host == "localhost"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", hijacked)
    with pytest.raises(NotLoopback, match="not on loopback"):
        check_loopback("http://localhost:8000")


# ------------------------------------------------------------------------ results


def test_percentiles_and_table_match_numpy():
    latencies_ms = np.random.default_rng(0).lognormal(1.0, 0.8, size=997)
    result = LoadResult("closed", 1000, 3, 2.0, latencies_ms, concurrency=4)
    for q in (50, 90, 95, 99, 100):
        assert result.percentile_ms(q) == np.percentile(latencies_ms, q)
    row = result.as_row()
    assert row["p95_ms"] == np.percentile(latencies_ms, 95)
    assert row["max_ms"] == latencies_ms.max()
    assert row["mean_ms"] == pytest.approx(latencies_ms.mean())
    assert row["throughput_rps"] == pytest.approx(997 / 2.0)
    p99_us = round(np.percentile(latencies_ms, 99) * 1000)
    line = format_table([result]).splitlines()[1]
    assert line.startswith("Concurrency: 4, throughput: 498.5 infer/sec, latency p50 ")
    assert f"p99 {p99_us} usec, failures: 3/1000" in line


def test_closed_loop_percentiles_follow_known_service_times():
    service_ms = np.array([5, 10, 15, 20, 40] * 40, dtype=float)
    turns = itertools.count()

    def send() -> None:
        time.sleep(service_ms[next(turns)] / 1000)

    result = run_closed_loop(send, 4, max_requests=service_ms.size, max_seconds=20)
    assert result.count == service_ms.size and result.failures == 0
    for q in (50, 90, 95, 99):
        expected = np.percentile(service_ms, q)
        assert expected <= result.percentile_ms(q) < expected + 8


# ------------------------------------------------------------------------ closed


def test_closed_loop_stops_at_max_requests():
    in_flight = InFlight()
    result = run_closed_loop(
        sleeper(0, in_flight), 4, max_requests=37, max_seconds=10, warmup_requests=5
    )
    assert result.count == 37
    assert in_flight.calls == 37 + 5  # the warm-up ran, and was not recorded
    assert result.latencies_ms.size == 37


def test_closed_loop_stops_at_max_seconds():
    started = time.perf_counter()
    result = run_closed_loop(sleeper(0.01), 2, max_requests=100_000, max_seconds=0.3)
    elapsed = time.perf_counter() - started
    assert 0.3 <= result.duration_s <= elapsed < 0.5
    assert 20 <= result.count <= 62  # ~2 workers x 30 turns of 10 ms


def test_closed_loop_workers_overlap():
    in_flight = InFlight()
    result = run_closed_loop(
        sleeper(0.05, in_flight), 4, max_requests=80, max_seconds=10
    )
    assert in_flight.peak == 4
    assert 64 <= result.throughput_rps <= 80.5  # 4 workers / 50 ms = 80 req/s
    assert result.duration_s == pytest.approx(1.0, abs=0.2)


def test_failures_are_counted_and_sampled():
    turns = itertools.count(1)

    def flaky() -> None:
        turn = next(turns)
        if turn % 3 == 0:
            raise RuntimeError(f"backend said no to request {turn}")

    result = run_closed_loop(flaky, 1, max_requests=30, max_seconds=10)
    assert (result.count, result.failures, result.successes) == (30, 10, 20)
    assert result.latencies_ms.size == 20
    assert result.errors_sample == tuple(
        f"RuntimeError: backend said no to request {turn}" for turn in (3, 6, 9, 12, 15)
    )
    assert "failures: 10/30" in format_table([result])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 0}, "concurrency=0"),
        ({"concurrency": 10_000}, "concurrency=10000"),
        ({"max_requests": 100_001}, "max_requests=100001"),
        ({"max_requests": 0}, "max_requests=0"),
        ({"max_seconds": 301}, "max_seconds=301"),
        ({"max_seconds": 0}, "max_seconds=0"),
    ],
)
def test_closed_loop_bounds_are_enforced(kwargs, message):
    args = {"concurrency": 1, "max_requests": 10, "max_seconds": 1} | kwargs
    with pytest.raises(ValueError, match=message):
        run_closed_loop(sleeper(0), **args)


def test_sweep_runs_each_level_in_order():
    results = sweep(sleeper(0.001), (1, 2, 4), max_requests=20, max_seconds=5)
    assert [r.concurrency for r in results] == [1, 2, 4]
    assert all(r.count == 20 and r.mode == "closed" for r in results)
    lines = format_table(results).splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == [
        "Concurrency: 1",
        "Concurrency: 2",
        "Concurrency: 4",
    ]


# ------------------------------------------------------------------------ open


def test_arrival_schedules_are_seeded_and_at_the_asked_rate():
    uniform = arrival_schedule(100, 2.0, arrivals="uniform")
    np.testing.assert_allclose(uniform, np.arange(200) / 100)
    poisson = arrival_schedule(1000, 5.0, seed=1)
    np.testing.assert_array_equal(poisson, arrival_schedule(1000, 5.0, seed=1))
    assert not np.array_equal(poisson, arrival_schedule(1000, 5.0, seed=2))
    assert poisson.size == pytest.approx(5000, rel=0.05)
    assert np.all(np.diff(poisson) > 0) and poisson[-1] < 5.0
    with pytest.raises(ValueError, match="over the 100000"):
        arrival_schedule(1000, 200.0)


def test_open_loop_keeps_its_schedule():
    sent_at: list[float] = []

    def send() -> None:
        sent_at.append(time.perf_counter())
        time.sleep(0.02)

    result = run_open_loop(send, 100, duration_s=0.6, arrivals="uniform")
    schedule = arrival_schedule(100, 0.6, arrivals="uniform")
    assert result.count == schedule.size == len(sent_at) and result.dropped == 0
    lag = np.sort(sent_at) - sent_at[0] - schedule
    assert np.all(np.abs(lag) < 0.015)  # not drifting, not bunched up
    assert 20 <= result.p50_ms < 30


def test_open_loop_drops_what_would_exceed_max_in_flight():
    in_flight = InFlight()
    result = run_open_loop(
        sleeper(0.1, in_flight),
        100,
        duration_s=0.5,
        max_in_flight=3,
        arrivals="uniform",
    )
    assert in_flight.peak == 3
    assert result.count + result.dropped == 50
    assert 30 <= result.dropped <= 40  # ~3 slots x 5 turns of 100 ms get through
    assert result.p50_ms >= 100
    assert "dropped: " in format_table([result])


def test_open_loop_measures_from_the_scheduled_time(monkeypatch):
    """A late send is charged its lateness: coordinated omission is not hidden."""
    real_sleep = time.sleep
    turns = itertools.count()

    def oversleep(seconds: float) -> None:  # the generator wakes up 50 ms late once
        real_sleep(seconds + (0.05 if next(turns) == 5 else 0))

    monkeypatch.setattr(loadgen.loops.time, "sleep", oversleep)
    result = run_open_loop(lambda: None, 50, duration_s=0.2, arrivals="uniform")
    assert result.count == 10
    assert result.max_ms >= 50  # the sixth request, due 50 ms before it left
    assert result.p50_ms < 20


# ------------------------------------------------------------------------ plots


def test_plots_return_figures_without_pyplot():
    results = sweep(sleeper(0.002), (1, 2, 4), max_requests=20, max_seconds=5)
    before = plt.get_fignums()
    figure = plot_latency_throughput(results)
    (axes,) = figure.axes
    assert [t.get_text() for t in axes.texts] == ["c=1", "c=2", "c=4"]
    p99_line = axes.get_lines()[0]
    np.testing.assert_allclose(p99_line.get_ydata(), [r.p99_ms for r in results])
    np.testing.assert_allclose(
        p99_line.get_xdata(), [r.throughput_rps for r in results]
    )
    percentile_figure = plot_percentiles(results[-1])
    labels = [t.get_text() for t in percentile_figure.axes[0].texts]
    assert [label.split()[0] for label in labels] == ["p50", "p90", "p95", "p99"]
    assert plt.get_fignums() == before  # nothing left open in pyplot's registry


# ------------------------------------------------------------------------ HTTP


@pytest.fixture
def service() -> Iterator[str]:
    """A tiny FastAPI app under uvicorn on loopback; ready 0.3 s after start."""
    app = fastapi.FastAPI()
    started = time.monotonic()

    @app.get("/readyz")
    def readyz(response: fastapi.Response) -> dict[str, bool]:
        ready = time.monotonic() - started > 0.3
        response.status_code = 200 if ready else 503
        return {"ready": ready}

    @app.get("/never-ready", status_code=503)
    def never_ready() -> dict[str, bool]:
        return {"ready": False}

    @app.post("/predict")
    def predict(body: dict[str, list[float]]) -> dict[str, float]:
        return {"score": sum(body["features"])}

    port = free_loopback_port()
    config = uvicorn.Config(
        app, host=LOOPBACK, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def test_http_load_against_a_real_service(service):
    waited = wait_until_ready(service, timeout_s=10)
    assert waited >= 0.2  # it did wait for the 503s to turn into a 200
    with http_sender(f"{service}/predict", {"features": [1.0, 2.5]}) as send:
        assert send().json() == {"score": 3.5}
        results = sweep(send, (1, 2), max_requests=40, max_seconds=10)
    assert [(r.count, r.failures) for r in results] == [(40, 0), (40, 0)]
    assert all(r.throughput_rps > 0 and r.p99_ms > 0 for r in results)


def test_http_failures_and_unready_services_are_reported(service):
    with http_sender(f"{service}/missing", {"x": 1}) as send:
        result = run_closed_loop(send, 2, max_requests=6, max_seconds=10)
    assert (result.count, result.failures) == (6, 6)
    assert "RequestFailed: POST" in result.errors_sample[0]
    assert "answered 404" in result.errors_sample[0]
    with pytest.raises(ServiceNotReady, match="HTTP 503"):
        wait_until_ready(service, "/never-ready", timeout_s=0.3)


def test_stage_percentiles_skip_missing_values_and_name_empty_stages_nan():
    from mlsd_lib.serving.loadgen.results import stage_percentiles

    samples = {"embed": np.array([1.0, np.nan, 3.0]), "ann": np.array([])}
    out = stage_percentiles(samples, 50)
    assert out["embed"] == 2.0 and np.isnan(out["ann"])
    assert list(stage_percentiles(samples, 99, ["ann", "dedup"])) == ["ann", "dedup"]
