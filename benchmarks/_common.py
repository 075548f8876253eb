"""What the serving benchmarks share (imported by them as ``_common``).

The case studies' serving benchmarks (``recsys_serving.py``,
``visual_serving.py``) measure a gateway process over real Redis and real
Triton: they refuse to run on stand-ins (:func:`real_backends`), run the
gateway as a process of its own and show its last lines (:func:`gateway_run`),
and print each stage's p50 and p99 against its budget (:func:`print_stages`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from mlsd_lib.processes import tail
from mlsd_lib.redis_backend import RedisBackend, get_redis
from mlsd_lib.serving.gateway.process import GatewayProcess
from mlsd_lib.serving.triton_server import triton_unavailable_reason


def real_backends() -> tuple[RedisBackend, str]:
    """The real Redis (and the URL the gateway process reaches it at); exits
    saying why where Triton cannot run or only fakeredis is available."""
    reason = triton_unavailable_reason()
    if reason is not None:
        sys.exit(f"this benchmark needs a real tritonserver: {reason}")
    backend = get_redis()
    if not backend.is_real:
        sys.exit(
            "this benchmark needs a real Redis (fakeredis cannot be shared with "
            "the gateway's process): set REDIS_URL or install redis-server"
        )
    return backend, os.environ.get("REDIS_URL") or f"{backend.address}/0"


@contextmanager
def gateway_run(
    command: Sequence[str], env: Mapping[str, str]
) -> Iterator[GatewayProcess]:
    """The gateway ``command`` as a process for the block; its last 25 lines
    printed if the block fails, its last 6 once it has stopped."""
    with GatewayProcess(command, env) as gateway:
        try:
            yield gateway
        except BaseException:
            print(f"gateway output:\n{tail(gateway.output, 25)}")
            raise
    print(tail(gateway.output, 6))


def print_stages(
    budgets_ms: Mapping[str, float],
    p50: Mapping[str, float],
    p99: Mapping[str, float],
    note: str,
) -> None:
    """One line per stage (then ``total``): budget, p50 and p99 in ms."""
    print(f"stage     budget   p50 ms   p99 ms   ({note})")
    for name in [*budgets_ms, "total"]:
        budget = budgets_ms.get(name, float("nan"))
        print(f"{name:10s}{budget:6.0f}  {p50[name]:7.3f}  {p99[name]:7.3f}")
