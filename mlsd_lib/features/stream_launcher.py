"""The stream processor as a process of its own: its command line, start, summary.

Introduced in ``notebooks/streaming_features.ipynb``: the notebook and the crash
tests run real processor processes (``python -m
mlsd_lib.features.stream_processor``) and read the JSON summary each prints.
The fold such a process runs is chosen by name (``fold="history"``, see
:mod:`~mlsd_lib.features.fold_catalog`), checked here before anything starts.
``cluster=True`` makes the URL a Redis Cluster node (``--redis-cluster-url``):
the windowed fold then writes the cluster online store's sharded keys
(:mod:`~mlsd_lib.features.stream_layout`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from mlsd_lib.features.fold_catalog import fold_named
from mlsd_lib.features.views import FeatureStoreError
from mlsd_lib.processes import die_with_parent

#: The processor's options (its fold, and tuning), as :func:`processor_command`
#: accepts them.
PROCESSOR_OPTIONS = {
    "fold": str,
    "history_length": int,
    "categories": int,
    "value_types": str,
    "counted_types": str,
    "state_name": str,
    "shards_per_view": int,
    "batch_size": int,
    "block_ms": int,
    "min_idle_ms": int,
    "max_deliveries": int,
    "dedup_retention_s": float,
    "max_events": int,
    "idle_exit_s": float,
    "max_runtime_s": float,
    "crash_after": int,
}


def processor_command(
    redis_url: str,
    *,
    stream: str,
    group: str,
    consumer: str,
    cluster: bool = False,
    **options: Any,
) -> list[str]:
    """The command line that runs one processor (``python -m ...``).

    The fold options (``fold``, ``history_length``, ``categories``,
    ``value_types``, ``counted_types``, ``state_name``) are checked here, with
    :func:`~mlsd_lib.features.fold_catalog.fold_named`'s errors; the type lists
    may be sequences or comma-separated text. ``cluster``: ``redis_url`` is a
    node of a Redis Cluster (windowed fold only; ``shards_per_view`` as the
    cluster online store's, 16 by default).
    """
    unknown = sorted(set(options) - set(PROCESSOR_OPTIONS))
    if unknown:
        raise TypeError(
            f"unknown processor options {unknown} (known: {list(PROCESSOR_OPTIONS)})."
        )
    for name in ("value_types", "counted_types"):
        if options.get(name) is not None and not isinstance(options[name], str):
            options[name] = ",".join(options[name])
    fold_named(
        options.get("fold") or "windowed",
        stream,
        history_length=options.get("history_length"),
        categories=options.get("categories"),
        value_types=options.get("value_types"),
        counted_types=options.get("counted_types"),
        state_name=options.get("state_name"),
    )
    fold = options.get("fold") or "windowed"
    if cluster and fold != "windowed":
        raise FeatureStoreError(
            f"fold {fold!r} runs on a single Redis only (its script touches keys of "
            "several slots); on a Redis Cluster use fold='windowed'."
        )
    if not cluster and options.get("shards_per_view") is not None:
        raise FeatureStoreError(
            "shards_per_view places keys on a Redis Cluster: pass cluster=True "
            "with a cluster node's URL, or drop shards_per_view."
        )
    where = "--redis-cluster-url" if cluster else "--redis-url"
    command = [
        sys.executable, "-m", "mlsd_lib.features.stream_processor",
        where, redis_url, "--stream", stream, "--group", group,
        "--consumer", consumer,
    ]  # fmt: skip
    for name, value in options.items():
        if value is not None:
            command += ["--" + name.replace("_", "-"), str(value)]
    return command


def start_processor(
    redis_url: str,
    *,
    stream: str,
    group: str,
    consumer: str,
    cluster: bool = False,
    **options: Any,
) -> subprocess.Popen[str]:
    """Start a processor as a child process (it dies with this one, on Linux);
    the arguments are :func:`processor_command`'s."""
    return subprocess.Popen(
        processor_command(
            redis_url,
            stream=stream,
            group=group,
            consumer=consumer,
            cluster=cluster,
            **options,
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent(),
    )


def summary_of(stdout: str) -> dict[str, Any]:
    """The JSON summary a processor prints as its last line."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(
            "the processor printed no JSON summary (did it crash? see its stderr); "
            f"its output ends: {stdout[-500:]!r}"
        ) from None
