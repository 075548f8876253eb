"""What a model load does to requests already being served, over HTTP and gRPC.

    python benchmarks/triton_model_load.py [--quick]

A hot swap loads the new version into the running Triton while the old one keeps
serving. This benchmark measures what the requests in flight see: one thread
keeps calling model ``a`` while the main thread binds model ``b``; the longest
``a`` call during the bind is the stall. Run once with the clients on HTTP and
once on gRPC. The last stdout line is JSON with ``http_bind_s``,
``http_max_stall_ms``, ``grpc_bind_s`` and ``grpc_max_stall_ms``.

Measured here: Triton's HTTP front end answers nothing while the model loads
(the longest call equals the load, about 2 s), gRPC keeps answering; which is
why :class:`~mlsd_lib.serving.triton_server.TritonServer` speaks gRPC by default.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import numpy as np
import torch

from mlsd_lib.serving.gateway.deploy import torch_infer_fn
from mlsd_lib.serving.tensors import TensorSpec
from mlsd_lib.serving.triton_server import TritonServer

SPECS = (
    (TensorSpec("features", np.float32, (8,)),),
    (TensorSpec("score", np.float32, (1,)),),
)


def measure(protocol: str) -> tuple[float, float]:
    """(seconds the bind took, longest call to the other model during it, ms)."""
    model = torch.nn.Linear(8, 1).eval()
    rows = np.ones((100, 8), np.float32)
    with TritonServer(protocol=protocol) as server:  # type: ignore[arg-type]
        server.bind("a", torch_infer_fn(model), *SPECS, 512)
        server.infer("a", {"features": rows})
        calls: list[tuple[float, float]] = []
        stop = threading.Event()

        def keep_calling() -> None:
            while not stop.is_set():
                start = time.perf_counter()
                server.infer("a", {"features": rows})
                calls.append((start, time.perf_counter() - start))

        thread = threading.Thread(target=keep_calling, daemon=True)
        thread.start()
        time.sleep(0.5)
        began = time.perf_counter()
        server.bind("b", torch_infer_fn(model), *SPECS, 512)
        ended = time.perf_counter()
        time.sleep(0.5)
        stop.set()
        thread.join()
    during = [d for s, d in calls if s + d >= began and s <= ended]
    return ended - began, max(during, default=0.0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="same run (it is short)")
    parser.parse_args()
    result = {}
    for protocol in ("http", "grpc"):
        bind_s, stall_ms = measure(protocol)
        print(
            f"{protocol}: bind {bind_s:.2f} s, longest call meanwhile {stall_ms:.0f} ms"
        )
        result[f"{protocol}_bind_s"] = round(bind_s, 3)
        result[f"{protocol}_max_stall_ms"] = round(stall_ms, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
