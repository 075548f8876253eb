"""The recommender's feed over HTTP, with real Redis, real Triton and faiss.

    python benchmarks/recsys_serving.py [--quick]

Builds a seeded release (:func:`mlsd_lib.recsys.quick_release.build_quick_release`:
the ``small`` world, 20,000 users and 10,000 items, 7 simulated days; ``--quick``:
the ``quick`` world, 3,000 users and 2,000 items, 3 days), streams its feature
events through the real stream processor into the Redis at ``REDIS_URL``
(unset: :func:`mlsd_lib.redis_backend.get_redis` starts a private redis-server;
fakeredis cannot be shared with another process, so it is refused), and starts
the feed gateway as a process of its own (``python -m
mlsd_lib.recsys.feed_server``: uvicorn on 127.0.0.1, the user tower and the
ranker in ``tritonserver`` from its model repository, faiss HNSW over the
catalogue in the gateway process). It waits for ``/readyz``, warms up, then
sends ``POST /v1/recs/feed``, **one user per request** (users in a seeded
order, each request a different user, 20 items per page):

* ``1 client`` in a closed loop: ``feed_p50_ms``, ``feed_p99_ms`` (the client's
  end-to-end latency) and each stage's p99 inside the gateway
  (``stage_<name>_p99_ms``: features, user_tower, ann, ranker, rerank, and
  ``stage_total_p99_ms``, the gateway's own time);
* ``4 clients`` in a closed loop: ``rps_4_clients``, ``p99_4_clients_ms``.

``failed_requests`` counts non-2xx answers and errors; ``degraded_requests``
the answers that fell back to the popular-in-region feed (a dependency failed
or ran out of time). Every run is bounded in requests and seconds, all traffic
stays on loopback, the gateway (and its Triton) is stopped, the Redis keys this
run wrote are deleted, also on error. The last stdout line is one JSON object.
Targets: ``feed_p99_ms`` <= 40, ``failed_requests`` = 0.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
from _common import gateway_run, print_stages, real_backends

from mlsd_lib.recsys.feed import FEED_STAGE_BUDGETS_MS
from mlsd_lib.recsys.feed_load import (
    RecordingSender,
    feed_bodies,
    source_mix,
    stage_samples,
)
from mlsd_lib.recsys.quick_release import QuickRelease, build_quick_release
from mlsd_lib.serving.gateway.service_process import API_KEY_ENV
from mlsd_lib.serving.loadgen import (
    LoadResult,
    RotatingBodySender,
    check_loopback,
    format_table,
    run_closed_loop,
    wait_until_ready,
)
from mlsd_lib.serving.loadgen.results import stage_percentiles
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig

CONCURRENCY = 4
STREAM = "recs_bench_events"
HISTORY = "recs_bench_history"


def served_percentiles(answers: list[dict], q: float) -> dict[str, float]:
    """The ``q``-th percentile of each stage's milliseconds over the served
    (not degraded) answers; NaN where none was served."""
    return stage_percentiles(stage_samples(answers), q)


def measure(
    url: str,
    api_key: str,
    bodies: list[dict],
    n_single: int,
    n_multi: int,
    max_seconds: float,
) -> tuple[LoadResult, LoadResult, list[dict], list[dict], dict]:
    """1 client, then 4 clients; the answers of each phase; the gateway's counters."""
    waited = wait_until_ready(url, "/readyz", timeout_s=120.0)
    print(f"feed gateway ready after {waited:.2f} s at {url}")
    headers = {"X-API-Key": api_key}
    with RotatingBodySender(f"{url}/v1/recs/feed", bodies, headers) as sender:
        send = RecordingSender(sender)
        run_closed_loop(send, 1, max_requests=max(100, n_single // 5), max_seconds=30)
        run_closed_loop(send, CONCURRENCY, max_requests=200, max_seconds=30)
        send.take()  # warm-up answers are not measured
        single = run_closed_loop(
            send, 1, max_requests=n_single, max_seconds=max_seconds
        )
        single_answers = send.take()
        multi = run_closed_loop(
            send, CONCURRENCY, max_requests=n_multi, max_seconds=max_seconds
        )
        multi_answers = send.take()
    with httpx.Client(timeout=5.0, trust_env=False) as http:
        counters = http.get(check_loopback(f"{url}/healthz")).json()
    return single, multi, single_answers, multi_answers, counters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small world, fewer requests"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n_single, n_multi = (400, 800) if args.quick else (3_000, 6_000)
    max_seconds = 60.0 if args.quick else 120.0

    backend, redis_url = real_backends()

    started = time.perf_counter()
    config = RecsysWorldConfig.quick(seed=args.seed) if args.quick else (
        RecsysWorldConfig.small(seed=args.seed))  # fmt: skip
    days = 3 if args.quick else 7
    api_key = secrets.token_urlsafe(24)
    release: QuickRelease | None = None
    with tempfile.TemporaryDirectory(prefix="mlsd-bench-feed-") as workdir:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit
                release = build_quick_release(
                    Path(workdir) / "release", days=days, seed=args.seed,
                    config=config, stream=STREAM, history_name=HISTORY,
                )  # fmt: skip
            built_s = time.perf_counter() - started
            print(f"release {release.release.name} built in {built_s:.0f} s")
            applied = release.load_histories(backend.client, max_runtime_s=600)
            print(f"{applied} feature events streamed into {backend.kind}")
            bundle = release.save_bundle(Path(workdir) / "bundle")
            env = {**os.environ, "REDIS_URL": redis_url, API_KEY_ENV: api_key}
            command = [sys.executable, "-m", "mlsd_lib.recsys.feed_server", str(bundle)]
            bodies = feed_bodies(
                release.user_profiles(), release.world.n_users, args.seed
            )
            with gateway_run(command, env) as gateway:
                single, multi, one, four, counters = measure(
                    gateway.url, api_key, bodies, n_single, n_multi, max_seconds
                )
        finally:
            if release is not None:
                release.clear_histories(backend.client)

    print("POST /v1/recs/feed, one user per request, 20 items:")
    print(format_table([single, multi]))
    p50, p99 = served_percentiles(one, 50), served_percentiles(one, 99)
    print_stages(FEED_STAGE_BUDGETS_MS, p50, p99, "1 client, inside the gateway")
    for result in (single, multi):
        for error in result.errors_sample:
            print(f"error: {error}")
    degraded = [a.get("degraded_reason") for a in one + four if a["degraded"]]
    for reason in sorted(set(degraded))[:5]:
        print(f"degraded: {reason}")
    sources = source_mix(one)

    results: dict[str, object] = {
        "quick": args.quick,
        "redis_backend": backend.kind,
        "n_users": release.world.n_users,
        "n_items": release.world.n_items,
        "feed_p50_ms": round(single.p50_ms, 3),
        "feed_p99_ms": round(single.p99_ms, 3),
        "feed_samples": single.successes,
        "rps_4_clients": round(multi.throughput_rps, 1),
        "p50_4_clients_ms": round(multi.p50_ms, 3),
        "p99_4_clients_ms": round(multi.p99_ms, 3),
        "samples_4_clients": multi.successes,
        **{f"stage_{name}_p99_ms": value for name, value in p99.items()},
        **{f"stage_{name}_p50_ms": value for name, value in p50.items()},
        "stage_p99_4_clients_ms": served_percentiles(four, 99),
        "failed_requests": single.failures + multi.failures,
        "degraded_requests": len(degraded),
        "gateway_feed_requests": counters.get("feed_requests", 0),
        "sources_1_client": sources,
        "versions": one[0]["versions"] if one else {},
    }
    results["targets_met"] = {
        "feed_p99_le_40ms": results["feed_p99_ms"] <= 40.0,
        "zero_failed_requests": results["failed_requests"] == 0,
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
