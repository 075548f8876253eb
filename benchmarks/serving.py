"""End-to-end serving: the gateway over HTTP, with real Redis and real Triton.

    python benchmarks/serving.py [--quick]

Starts the demo gateway (``python -m mlsd_lib.serving.gateway --demo``) as a
uvicorn subprocess on 127.0.0.1, with its features in the Redis at ``REDIS_URL``
(unset: :func:`mlsd_lib.redis_backend.get_redis` starts a private redis-server,
or falls back to fakeredis, and says which; the gateway is pointed at the same
server) and its models on a real ``tritonserver``. It waits for ``/readyz``,
warms up, then sends one scoring request shape, 1 user x 100 candidates:

* ``e2e``: 1 client in a closed loop (latency);
* ``8_clients``: 8 clients in a closed loop (throughput and tail latency).

The load generator sends with ``http.client`` (``--client httpx`` for the
heavier client); over the 8-client phase :class:`CpuMeter` reads each process's
CPU time from ``/proc`` (this process, Redis, the gateway, ``tritonserver``,
the Python-backend stubs, in which the models run) and reports CPU
milliseconds per request per process: on 2 cores, the total bounds throughput
at about ``2000 / total`` requests per second, before any other load.
``--gateway-arg`` passes options to the gateway (``--http h11``,
``--loop asyncio``, ``--max-queue-delay-us 500``, ``--no-shadow``) to compare.

Separately, with the gateway stopped so the two do not share the 2 cores, the
model alone (``triton_bare_*``: served from a model repository;
``pytriton_bare_*``: the same file bound as a Python callable, for comparison)
and ``batching_speedup`` are measured directly against Triton (see
:func:`measure_triton`). Every run is bounded in requests and seconds, all
traffic stays on loopback, and every process started here is stopped, also on
error. The last line on stdout is one JSON object. Targets on a 2-core machine:
e2e p99 <= 10 ms; >= 800 req/s at 8 clients with p99 <= 25 ms; no failures.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import redis
import torch
from tqdm import tqdm

from mlsd_lib.features import records
from mlsd_lib.features.examples import CANDIDATE_REFS, make_ads_example
from mlsd_lib.features.online import delete_matching
from mlsd_lib.processes import tail
from mlsd_lib.redis_backend import get_redis
from mlsd_lib.serving.export import export_model
from mlsd_lib.serving.gateway.demo import tiny_ctr_net
from mlsd_lib.serving.gateway.process import GatewayProcess
from mlsd_lib.serving.loadgen import (
    LoadResult,
    check_loopback,
    format_table,
    http_sender,
    run_closed_loop,
    wait_until_ready,
)
from mlsd_lib.serving.registry import sha256_of
from mlsd_lib.serving.tensors import TensorSpec
from mlsd_lib.serving.triton_repository_server import TritonRepositoryServer
from mlsd_lib.serving.triton_server import TritonServer, triton_unavailable_reason

NUM_CANDIDATES = 100
USER_ID = 17
CONCURRENCY = 8
API_KEY_ENV = "MLSD_GATEWAY_API_KEY"
GATEWAY_START_TIMEOUT_S = 180.0
GATEWAY_STOP_TIMEOUT_S = 20.0
FIRST_ANSWER_TRIES = 10


def demo_gateway(
    env: dict[str, str], workdir: Path, extra_args: tuple[str, ...] = ()
) -> GatewayProcess:
    """``python -m mlsd_lib.serving.gateway --demo`` as a subprocess on loopback.

    A context manager (:class:`~mlsd_lib.serving.gateway.process.GatewayProcess`):
    on exit (also after an error) the process gets SIGTERM, which drains
    requests and stops its Triton, then SIGKILL if it hangs.
    """
    command = [
        sys.executable,
        "-m",
        "mlsd_lib.serving.gateway",
        "--demo",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--impression-log",
        str(workdir / "impressions.jsonl"),
        *extra_args,
    ]
    return GatewayProcess(
        command,
        env,
        start_timeout_s=GATEWAY_START_TIMEOUT_S,
        stop_timeout_s=GATEWAY_STOP_TIMEOUT_S,
    )


CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used (all its threads), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it, from ``/proc`` (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def process_label(pid: int, gateway_pid: int | None) -> str:
    """A short name: load generator, gateway, tritonserver, stub (model), redis."""
    if pid == os.getpid():
        return "load generator (this process)"
    if pid == gateway_pid:
        return "gateway (uvicorn; the models run in Triton)"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    words = [a.decode(errors="replace") for a in argv if a]
    name = Path(words[0]).name if words else f"pid {pid}"
    if name == "triton_python_backend_stub":
        # argv[1] is <repository>/<model>/<version>/model.py
        parts = Path(words[1]).parts if len(words) > 1 else ()
        model = parts[-3] if len(parts) >= 3 else ""
        return f"python backend stub {model}".strip()
    return name


class CpuMeter:
    """CPU time per process over a phase, for the load generator's process tree
    (this process, the private Redis it started, the gateway, its tritonserver
    and the Python-backend stubs): ``with meter: ...`` then :meth:`per_request`.
    """

    def __init__(self, gateway_pid: int | None) -> None:
        self.gateway_pid = gateway_pid
        self._before: dict[int, float] = {}
        self.used_s: dict[str, float] = {}

    def _sample(self) -> dict[int, float]:
        sample = {}
        ours = process_tree(os.getpid())
        gateway = set(process_tree(self.gateway_pid)) if self.gateway_pid else set()
        # this process, the gateway's tree and our Redis (not other children)
        pids = [os.getpid(), *gateway] + [
            p for p in ours if process_label(p, None).startswith("redis-server")
        ]
        for pid in pids:
            used = cpu_seconds(pid)
            if used is not None:
                sample[pid] = used
        return sample

    def __enter__(self) -> CpuMeter:
        self._before = self._sample()
        return self

    def __exit__(self, *exc_info: object) -> None:
        after = self._sample()
        self.used_s = {}
        for pid, used in after.items():
            label = process_label(pid, self.gateway_pid)
            delta = used - self._before.get(pid, 0.0)
            self.used_s[label] = self.used_s.get(label, 0.0) + delta

    def per_request_ms(self, requests: int) -> dict[str, float]:
        """CPU milliseconds per request per process, plus the total."""
        table = {
            label: round(1000 * used / max(requests, 1), 3)
            for label, used in sorted(self.used_s.items(), key=lambda kv: -kv[1])
            if used > 0
        }
        table["total"] = round(sum(table.values()), 3)
        return table


def gateway_env(redis_url: str | None, api_key: str) -> dict[str, str]:
    """This process's environment, plus the key and (if known) our Redis."""
    env = dict(os.environ)
    env[API_KEY_ENV] = api_key
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def measure_gateway(
    url: str,
    api_key: str,
    n_single: int,
    n_multi: int,
    max_seconds: float,
    *,
    gateway_pid: int | None = None,
    client: str = "stdlib",
) -> tuple[LoadResult, LoadResult, dict[str, int], dict[str, float]]:
    """1 client, then 8 clients, against ``POST /score``; the gateway's counters;
    and CPU milliseconds per request per process over the 8-client phase.

    ``client="stdlib"`` (the default) sends with ``http.client``, which costs
    this process about a quarter of httpx's CPU per request: on 2 cores the
    load generator's CPU is taken from the service it measures.
    """
    body = {"user_id": USER_ID, "candidate_ids": list(range(NUM_CANDIDATES))}
    waited = wait_until_ready(url, "/readyz", timeout_s=60.0)
    print(f"gateway ready after {waited:.2f} s at {url}")
    headers = {"X-API-Key": api_key}
    with http_sender(f"{url}/score", body, headers, client=client) as send:
        # The very first requests open the gateway's Redis and Triton connections
        # on fresh threads and may hit the 50 ms feature budget; they still count
        # in the gateway's degraded counter, which the JSON reports.
        for _ in range(FIRST_ANSWER_TRIES):
            first = send().json()
            if not first.get("degraded") and len(first["scores"]) == NUM_CANDIDATES:
                break
        else:
            raise RuntimeError(f"the gateway's answer is not a real score: {first}")
        phases = tqdm(total=2, desc="gateway", file=sys.stderr, leave=False)
        single = run_closed_loop(
            send,
            1,
            max_requests=n_single,
            max_seconds=max_seconds,
            warmup_requests=max(50, n_single // 10),
        )
        phases.update()
        run_closed_loop(  # warm-up, outside the CPU meter
            send, CONCURRENCY, max_requests=max(100, n_multi // 10), max_seconds=30.0
        )
        with CpuMeter(gateway_pid) as meter:
            multi = run_closed_loop(
                send, CONCURRENCY, max_requests=n_multi, max_seconds=max_seconds
            )
        phases.update()
        phases.close()
    with httpx.Client(timeout=5.0, trust_env=False) as http:
        counters = http.get(check_loopback(f"{url}/healthz")).json()
    return single, multi, counters, meter.per_request_ms(multi.count)


def tiny_model_file(folder: Path, num_features: int) -> tuple[Path, str]:
    """The demo's production model (:func:`tiny_ctr_net`, seed 0) as TorchScript,
    and its sha256."""
    exported = export_model(
        tiny_ctr_net(num_features, 0),
        torch.rand(4, num_features) * 10,
        folder / "ctr-tiny.pt",
    )
    return exported.path, sha256_of(exported.path)


def measure_triton(
    n_bare: int, n: int, rounds: int, max_seconds: float
) -> tuple[LoadResult, LoadResult, LoadResult, LoadResult]:
    """The model alone on Triton, with the gateway stopped (no Redis, no HTTP).

    * ``bare``: 1 client in a closed loop, gRPC, the gateway's request shape
      (100 rows x the model's features, float32), to the demo's production
      model (:func:`tiny_ctr_net`, seed 0) served from a model repository;
      ``pytriton_bare``: the same file bound into Triton as a Python callable
      of this process (PyTriton), in alternation with it, so the two ways of
      serving are compared side by side.
    * ``batched`` and ``unbatched``: two copies of that model in one repository,
      one with Triton's dynamic batcher (``max_queue_delay_us=0``: merge what
      is already queued, never wait) and one without, each driven at
      ``CONCURRENCY`` threads (one gRPC client each); the runs alternate
      ``rounds`` times so machine noise hits both alike. ``batching_speedup``
      is successful requests per second with batching over without.
    """
    refs = tuple(CANDIDATE_REFS)
    features = np.random.default_rng(0).uniform(0, 50, (NUM_CANDIDATES, len(refs)))
    inputs = {"features": features.astype(np.float32)}
    specs = {
        "inputs": (TensorSpec("features", np.float32, (len(refs),)),),
        "outputs": (TensorSpec("score", np.float32, (1,)),),
    }
    names = {"batched": True, "unbatched": False}
    runs: dict[str, list[LoadResult]] = {name: [] for name in names}
    bare: dict[str, list[LoadResult]] = {"repository": [], "pytriton": []}

    def closed_loop(server, model: str, clients: int, count: int) -> LoadResult:
        def infer() -> None:
            scores = server.infer(model, inputs)["score"]  # one client per thread
            if scores.size != NUM_CANDIDATES:
                raise RuntimeError(f"{model} returned {scores.size} scores")

        return run_closed_loop(
            infer,
            clients,
            max_requests=count,
            max_seconds=max_seconds,
            warmup_requests=max(300, count // 4),
        )

    with (
        tempfile.TemporaryDirectory(prefix="mlsd-bench-model-") as folder,
        TritonRepositoryServer() as server,
        TritonServer() as pytriton,
    ):
        print(server.describe())
        path, sha256 = tiny_model_file(Path(folder), len(refs))
        artifact = {"sha256": sha256, "format": "torchscript", **specs}
        for name, batching in names.items():
            server.load_artifact(
                f"ctr-{name}",
                1,
                path,
                **artifact,
                max_batch_size=512,
                dynamic_batching=batching,
            )
        pytriton.load_artifact("ctr-bound", 1, path, **artifact, max_batch_size=512)
        for _ in tqdm(range(rounds), desc="triton", file=sys.stderr, leave=False):
            bare["repository"].append(closed_loop(server, "ctr-batched", 1, n_bare))
            bare["pytriton"].append(closed_loop(pytriton, "ctr-bound", 1, n_bare))
        pytriton.stop()  # not to share the cores with the throughput runs
        for _ in tqdm(range(rounds), desc="batching", file=sys.stderr, leave=False):
            for name in names:
                runs[name].append(closed_loop(server, f"ctr-{name}", CONCURRENCY, n))
    return (
        merge(bare["repository"]),
        merge(bare["pytriton"]),
        merge(runs["batched"]),
        merge(runs["unbatched"]),
    )


def merge(results: list[LoadResult]) -> LoadResult:
    """One result for several runs at the same concurrency (times added)."""
    return LoadResult(
        mode="closed",
        count=sum(r.count for r in results),
        failures=sum(r.failures for r in results),
        duration_s=sum(r.duration_s for r in results),
        latencies_ms=np.concatenate([r.latencies_ms for r in results]),
        errors_sample=tuple(e for r in results for e in r.errors_sample)[:5],
        concurrency=results[0].concurrency,
        started_at=results[0].started_at,
    )


def remove_demo_keys(client: redis.Redis) -> None:
    """Delete the keys the demo gateway materialized, so a shared Redis stays clean."""
    registry = make_ads_example(num_users=1_000, num_ads=100, seed=0).registry
    for view in registry.views:
        delete_matching(client, f"{records.view_prefix(view)}:*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer requests (CI smoke run)"
    )
    parser.add_argument(
        "--client",
        choices=("stdlib", "httpx"),
        default="stdlib",
        help="the load generator's HTTP client (default: %(default)s)",
    )
    parser.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        help="an extra argument for the gateway (repeat), e.g. --gateway-arg=--http "
        "--gateway-arg=h11",
    )
    args = parser.parse_args()
    n_single = 500 if args.quick else 5_000
    n_multi = 1_500 if args.quick else 15_000
    n_batch, rounds = (400, 1) if args.quick else (2_000, 3)
    max_seconds = 30.0 if args.quick else 60.0

    reason = triton_unavailable_reason()
    if reason is not None:
        sys.exit(f"this benchmark needs a real tritonserver: {reason}")
    chosen = "REDIS_URL" if os.environ.get("REDIS_URL") else "get_redis()"
    backend = get_redis()  # prints the one "Redis backend: ..." line
    print(f"benchmark Redis chosen by {chosen}: {backend.kind}")
    if not backend.is_real:
        print("fakeredis has no network: the gateway starts its own, not comparable")
    redis_url = os.environ.get("REDIS_URL") or (
        f"{backend.address}/0" if backend.is_real else None
    )

    api_key = secrets.token_urlsafe(24)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="mlsd-bench-serving-") as workdir,
            demo_gateway(
                gateway_env(redis_url, api_key), Path(workdir), tuple(args.gateway_arg)
            ) as gateway,
        ):
            try:
                single, multi, counters, cpu_ms = measure_gateway(
                    gateway.url,
                    api_key,
                    n_single,
                    n_multi,
                    max_seconds,
                    gateway_pid=gateway.pid,
                    client=args.client,
                )
            except BaseException:
                print(f"gateway output:\n{tail(gateway.output, 25)}")
                raise
        bare, pytriton_bare, batched, unbatched = measure_triton(
            n_single, n_batch, rounds, max_seconds
        )
    finally:
        if backend.is_real:
            remove_demo_keys(backend.client)

    print("gateway POST /score, 1 user x 100 candidates:")
    print(format_table([single, multi]))
    print("CPU ms per request, 8-client phase, by process:")
    for label, ms in cpu_ms.items():
        print(f"  {ms:7.3f}  {label}")
    print("the model alone, 1 client: repository model, then PyTriton binding:")
    print(format_table([bare, pytriton_bare]))
    print("triton direct, 8 clients, with then without dynamic batching:")
    print(format_table([batched, unbatched]))
    measured = (single, multi, bare, pytriton_bare, batched, unbatched)
    for result in measured:
        for error in result.errors_sample:
            print(f"error: {error}")

    results: dict[str, object] = {
        "redis_backend": backend.kind,
        "quick": args.quick,
        "e2e_p50_ms": round(single.p50_ms, 3),
        "e2e_p99_ms": round(single.p99_ms, 3),
        "e2e_samples": single.successes,
        "rps_8_clients": round(multi.throughput_rps, 1),
        "p50_8_clients_ms": round(multi.p50_ms, 3),
        "p99_8_clients_ms": round(multi.p99_ms, 3),
        "samples_8_clients": multi.successes,
        "batching_speedup": round(
            batched.throughput_rps / max(unbatched.throughput_rps, 1e-9), 3
        ),
        "triton_rps_batched": round(batched.throughput_rps, 1),
        "triton_rps_unbatched": round(unbatched.throughput_rps, 1),
        "triton_bare_p50_ms": round(bare.p50_ms, 3),
        "triton_bare_p99_ms": round(bare.p99_ms, 3),
        "pytriton_bare_p50_ms": round(pytriton_bare.p50_ms, 3),
        "pytriton_bare_p99_ms": round(pytriton_bare.p99_ms, 3),
        "failed_requests": sum(r.failures for r in measured),
        "degraded_requests": counters.get("degraded", 0),
        "fallback_requests": counters.get("fallback", 0),
        "client": args.client,
        "cpu_ms_per_request_8_clients": cpu_ms,
    }
    results["targets_met"] = {
        "e2e_p99_le_10ms": results["e2e_p99_ms"] <= 10.0,
        "rps_8_clients_ge_800": results["rps_8_clients"] >= 800.0,
        "p99_8_clients_le_25ms": results["p99_8_clients_ms"] <= 25.0,
        "zero_failed_requests": results["failed_requests"] == 0,
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
