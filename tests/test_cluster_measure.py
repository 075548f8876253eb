"""The measurements the scale-out chapter and the cluster benchmark share."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from mlsd_lib.cluster_measure import (
    MeasurementError,
    RequestCounter,
    latency_table,
    measure_round_robin,
    server_cpu_per_call,
)


def test_round_robin_takes_the_calls_in_turns_and_times_each():
    order: list[str] = []
    calls = {
        "fast": lambda: order.append("fast"),
        "slow": lambda: (order.append("slow"), time.sleep(0.002)),
    }
    samples = measure_round_robin(calls, n=5, warmup=2, show_progress=False)
    assert order == ["fast", "slow"] * 7  # 2 warm-up rounds, then 5 measured
    assert set(samples) == {"fast", "slow"}
    assert samples["fast"].shape == samples["slow"].shape == (5,)
    assert samples["slow"].min() >= 0.002 > samples["fast"].max()


def test_latency_table_reports_p50_and_p99_in_milliseconds():
    seconds = np.arange(1, 101) / 1e3  # 1 ms .. 100 ms
    table = latency_table({"x": seconds})
    assert list(table.columns) == ["p50_ms", "p99_ms"]
    assert table.loc["x", "p50_ms"] == pytest.approx(50.5)
    assert table.loc["x", "p99_ms"] == pytest.approx(99.01)


def test_nothing_to_measure_is_refused():
    with pytest.raises(MeasurementError, match="give at least one call"):
        measure_round_robin({}, n=3, warmup=0)
    with pytest.raises(MeasurementError, match="n >= 1"):
        measure_round_robin({"x": lambda: None}, n=0, warmup=0)


class _Router:
    def __init__(self):
        self.sent = 0

    def send_to_nodes(self, packed):
        self.sent += 1
        return {address: [b"ok"] * len(c) for address, c in packed.items()}


def test_request_counter_records_each_fan_out_and_then_gets_out_of_the_way():
    router = _Router()
    a, b = ("127.0.0.1", 1), ("127.0.0.1", 2)
    with RequestCounter(router) as counter:
        assert router.send_to_nodes({a: [b"x", b"y"], b: [b"z"]}) == {
            a: [b"ok", b"ok"],
            b: [b"ok"],
        }
        router.send_to_nodes({a: [b"x"]})
    assert counter.calls == [{a: 2, b: 1}, {a: 1}]
    assert "send_to_nodes" not in vars(router)  # the method is the class's again
    router.send_to_nodes({a: [b"x"]})
    assert len(counter.calls) == 2 and router.sent == 3


@pytest.mark.redis
def test_server_cpu_per_call_grows_with_the_work_a_call_does(real_redis_url):
    client = redis.Redis.from_url(real_redis_url)
    try:
        client.set("measure:small", b"x")
        client.rpush("measure:list", *range(2_000))
        ping = server_cpu_per_call(client, client.ping, 2_000)
        heavy = server_cpu_per_call(
            {"one": client}, lambda: client.lrange("measure:list", 0, -1), 500
        )
        assert 0 < ping < 1e-3  # a PING costs microseconds of server CPU
        assert heavy > 3 * ping  # 2,000 elements to encode cost more
    finally:
        client.delete("measure:small", "measure:list")
        client.close()
    with pytest.raises(MeasurementError, match="at least one call"):
        server_cpu_per_call(client, client.ping, 0)
