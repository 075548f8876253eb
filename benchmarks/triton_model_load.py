"""What a model load does to requests already being served, over HTTP and gRPC.

    python benchmarks/triton_model_load.py [--quick]

A hot swap loads the new version into the running Triton while the old one keeps
serving. This benchmark measures what the requests in flight see: one thread
keeps calling model ``a`` while the main thread loads model ``b`` from the
model repository (:meth:`~mlsd_lib.serving.triton_repository_server.
TritonRepositoryServer.load_artifact`, what a hot swap does); the longest ``a``
call during the load is the stall. Run once with the clients on HTTP and
once on gRPC. The last stdout line is JSON with ``http_load_s``,
``http_max_stall_ms``, ``grpc_load_s`` and ``grpc_max_stall_ms``.

Measured here: Triton's HTTP front end answers nothing while the model loads
(the longest call equals the load, about 2 s), gRPC keeps answering; which is
why the library's Triton clients speak gRPC by default.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from mlsd_lib.serving.registry import sha256_of
from mlsd_lib.serving.tensors import TensorSpec
from mlsd_lib.serving.triton_repository_server import TritonRepositoryServer

SPECS = (
    (TensorSpec("features", np.float32, (8,)),),
    (TensorSpec("score", np.float32, (1,)),),
)


def measure(protocol: str) -> tuple[float, float]:
    """(seconds the load took, longest call to the other model during it, ms)."""
    rows = np.ones((100, 8), np.float32)
    with (
        tempfile.TemporaryDirectory() as folder,
        TritonRepositoryServer(protocol=protocol) as server,  # type: ignore[arg-type]
    ):
        path = Path(folder) / "linear.pt"
        torch.jit.save(torch.jit.script(torch.nn.Linear(8, 1).eval()), str(path))
        artifact = {
            "sha256": sha256_of(path),
            "format": "torchscript",
            "inputs": SPECS[0],
            "outputs": SPECS[1],
            "max_batch_size": 512,
        }
        server.load_artifact("a", 1, path, **artifact)
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
        server.load_artifact("b", 1, path, **artifact)
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
        load_s, stall_ms = measure(protocol)
        print(
            f"{protocol}: load {load_s:.2f} s, longest call meanwhile {stall_ms:.0f} ms"
        )
        result[f"{protocol}_load_s"] = round(load_s, 3)
        result[f"{protocol}_max_stall_ms"] = round(stall_ms, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
