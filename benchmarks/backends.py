"""The floor under every latency in the book: one Redis round trip, one model call.

    python benchmarks/backends.py [--quick]

Measures, in one run and side by side:

* ``redis_ping``: a bare PING to the Redis that :func:`mlsd_lib.redis_backend.get_redis`
  chooses (REDIS_URL, else a private redis-server, else fakeredis);
* ``triton_http`` / ``triton_grpc``: one 1x4 request to a tiny model served by a
  real tritonserver, per protocol;
* ``in_process``: the same model called through the in-process server.

The last line on stdout is one JSON object with p50/p99 (ms) per measurement and
the backend kinds, so the numbers can be read by a script.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mlsd_lib.redis_backend import get_redis
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.registry import sha256_of
from mlsd_lib.serving.tensors import TensorSpec
from mlsd_lib.serving.triton_repository_server import TritonRepositoryServer
from mlsd_lib.serving.triton_server import triton_unavailable_reason

FEATURES = TensorSpec("features", np.float32, (4,))
P_CLICK = TensorSpec("p_click", np.float32, (1,))


def percentiles_ms(call: Callable[[], object], n: int, label: str) -> dict[str, float]:
    for _ in range(min(50, n)):  # warm up connections and caches
        call()
    samples = np.empty(n)
    for i in tqdm(range(n), desc=label, leave=False):
        start = time.perf_counter()
        call()
        samples[i] = time.perf_counter() - start
    p50, p99 = np.percentile(samples * 1e3, [50, 99])
    return {"p50_ms": round(float(p50), 4), "p99_ms": round(float(p99), 4), "n": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer requests (CI smoke run)"
    )
    args = parser.parse_args()
    n = 300 if args.quick else 3000

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Sigmoid()).eval()
    folder = tempfile.TemporaryDirectory(prefix="mlsd-bench-backends-")
    path = Path(folder.name) / "ctr.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    artifact = {
        "sha256": sha256_of(path),
        "format": "torchscript",
        "inputs": (FEATURES,),
        "outputs": (P_CLICK,),
        "max_batch_size": 64,
    }

    request = {"features": np.ones((1, 4), np.float32)}
    results: dict[str, object] = {}

    backend = get_redis()
    results["redis_backend"] = backend.kind
    results["redis_ping"] = percentiles_ms(backend.client.ping, n, "redis ping")

    in_process = InProcessModelServer("benchmark baseline")
    in_process.load_artifact("ctr", 1, path, **artifact)
    results["in_process"] = percentiles_ms(
        lambda: in_process.infer("ctr", request), n, "in-process"
    )

    reason = triton_unavailable_reason()
    results["triton_unavailable_reason"] = reason
    if reason is None:
        with TritonRepositoryServer() as triton:
            triton.load_artifact("ctr", 1, path, **artifact)
            print(triton.describe())
            for protocol in ("http", "grpc"):
                with triton.client(protocol) as client:
                    results[f"triton_{protocol}"] = percentiles_ms(
                        lambda c=client: c.infer("ctr", request, ["p_click"]),
                        n,
                        f"triton {protocol}",
                    )
    folder.cleanup()
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
