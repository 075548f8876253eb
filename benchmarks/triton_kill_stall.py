"""What a killed ``tritonserver`` does to the process that uses it.

    python benchmarks/triton_kill_stall.py [--quick]

A gateway whose model server dies must keep answering, from its fallback. That
needs the gateway's own threads to keep running. This benchmark serves one
small model on Triton two ways, a Python callable bound into Triton (PyTriton:
the model runs in this process) and a model repository (the model runs in
Triton's process), SIGKILLs ``tritonserver``, and measures the longest pause of
a thread of this process that wakes up every millisecond, before and after the
kill. Rounds alternate between the two ways.

Measured here: after the kill, PyTriton's exit handler runs in the calling
process and pauses its threads for hundreds of milliseconds, longer than the
gateway's 300 ms model budget, so a fallback started in that window times out
(the 503 that ``test_triton_killed_under_load_falls_back_or_503s_without_hanging
[fallback]`` once saw); with a model repository nothing of Triton's runs in the
caller. The last stdout line is JSON: the worst pause per way, before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from mlsd_lib.serving.registry import sha256_of
from mlsd_lib.serving.tensors import TensorSpec
from mlsd_lib.serving.triton_repository_server import TritonRepositoryServer
from mlsd_lib.serving.triton_server import TritonServer, triton_unavailable_reason

INPUTS = (TensorSpec("features", np.float32, (6,)),)
OUTPUTS = (TensorSpec("score", np.float32, (1,)),)
WATCH_S = 3.0


def worst_pauses_ms(server, kill_after_s: float = 0.5) -> tuple[float, float]:
    """(longest 1 ms-ticker pause before the kill, after it), in ms."""
    gaps: list[tuple[float, float]] = []
    stop = threading.Event()

    def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append((now, now - last))
            last = now

    thread = threading.Thread(target=ticker)
    thread.start()
    time.sleep(kill_after_s)
    killed_at = time.perf_counter()
    os.kill(server.server_pid, signal.SIGKILL)
    time.sleep(WATCH_S)
    stop.set()
    thread.join()
    before = max(g for t, g in gaps if t < killed_at)
    after = max(g for t, g in gaps if t >= killed_at)
    return before * 1000, after * 1000


def one_round(way: str, path: Path) -> tuple[float, float]:
    server = TritonServer() if way == "pytriton" else TritonRepositoryServer()
    server.start()
    try:
        server.load_artifact(
            "m",
            1,
            path,
            sha256=sha256_of(path),
            format="torchscript",
            inputs=INPUTS,
            outputs=OUTPUTS,
            max_batch_size=64,
        )
        server.infer("m", {"features": np.zeros((2, 6), np.float32)})
        return worst_pauses_ms(server)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, not 5")
    args = parser.parse_args()
    reason = triton_unavailable_reason()
    if reason is not None:
        raise SystemExit(f"this benchmark needs a real tritonserver: {reason}")
    rounds = 2 if args.quick else 5
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.pt"
        torch.jit.save(torch.jit.script(torch.nn.Linear(6, 1).eval()), str(path))
        for _ in range(rounds):
            for way in ("pytriton", "repository"):
                before, after = one_round(way, path)
                print(f"{way}: worst pause {before:.0f} ms before, {after:.0f} after")
                results.setdefault(f"{way}_before_ms", []).append(before)
                results.setdefault(f"{way}_after_ms", []).append(after)
    summary = {key: round(max(values), 1) for key, values in results.items()}
    summary["rounds"] = rounds
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
