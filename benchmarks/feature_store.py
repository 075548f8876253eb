"""Online feature read latency: the packed store against per-feature layouts.

    python benchmarks/feature_store.py [--quick]

Loads the example ads views (:mod:`mlsd_lib.features.examples`) into the Redis at
``REDIS_URL`` (unset: :func:`mlsd_lib.redis_backend.get_redis` starts a private
redis-server, or falls back to fakeredis, and says which), then measures, in one
run and interleaved round-robin so machine noise hits every measurement alike:

* ``single_entity``: 1 entity row x 50 features over 3 views via
  :meth:`OnlineStore.read` (one EVALSHA round trip);
* ``candidates``: 1 user plus 100 candidate ads x 20 features via the same read;
* ``naive``: the single-entity request as one GET per feature (50 round trips);
* ``pipelined``: the same GETs in one pipeline (one round trip, 50 commands);
* ``hand_pipeline``: the single-entity request as a plain redis-py pipeline of one
  HMGET per view (3 commands) over a hash-per-entity copy of the same values,
  every value decoded (:class:`~mlsd_lib.features.read_strategies.HashPipelineReader`);
  the yardstick the store's one-entity read must meet;
* ``hand_pipeline_candidates``: the same for the 100-candidate request;
* ``roundtrip``: a bare PING, the floor under all of them.

The last line on stdout is one JSON object (milliseconds), see the README's
``make bench``. Targets on a 2-core machine with a real Redis: single entity
p99 <= 0.5 ms and <= the hand pipeline's, 100 candidates p99 <= 2 ms. The run
deletes exactly the keys its three layouts wrote (DBSIZE is unchanged after it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import redis
from tqdm import tqdm

from mlsd_lib.features import records
from mlsd_lib.features.examples import (
    CANDIDATE_REFS,
    SINGLE_ENTITY_REFS,
    AdsExample,
    make_ads_example,
)
from mlsd_lib.features.online import OnlineStore, delete_matching
from mlsd_lib.features.read_strategies import (
    HashPipelineReader,
    feature_key,
    hash_key,
    read_naive,
    read_pipelined,
    write_hash_per_entity,
    write_per_feature,
)
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.redis_backend import get_redis

NUM_CANDIDATES = 100


def measure_round_robin(
    calls: dict[str, Callable[[], object]], n: int, warmup: int
) -> dict[str, np.ndarray]:
    """Time each call ``n`` times, cycling through all of them on every round."""
    for _ in tqdm(range(warmup), desc="warm-up", file=sys.stderr, leave=False):
        for call in calls.values():
            call()
    samples = {name: np.empty(n) for name in calls}
    for i in tqdm(range(n), desc="measuring", file=sys.stderr):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name][i] = time.perf_counter() - start
    return samples


def remove_example_keys(client: redis.Redis, registry: FeatureRegistry) -> int:
    """Delete what this run wrote (all three layouts), so a shared Redis stays clean.

    The patterns come from the functions that name the keys (a hand-written
    prefix once missed every per-feature key), so they cannot drift apart.
    """
    deleted = 0
    for view in registry.views:
        for pattern in (
            f"{records.view_prefix(view)}:*",
            feature_key(view, "*", "*"),
            hash_key(view, "*"),
        ):
            deleted += delete_matching(client, pattern)
    return deleted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer requests (CI smoke run)"
    )
    args = parser.parse_args()
    n = 300 if args.quick else 5_000
    warmup = 50 if args.quick else 300

    chosen = "REDIS_URL" if os.environ.get("REDIS_URL") else "get_redis()"
    backend = get_redis()  # prints the one "Redis backend: ..." line
    print(f"benchmark Redis chosen by {chosen}: {backend.kind}")
    if not backend.is_real:
        print("fakeredis has no network: these latencies are not meaningful")
    client = backend.client

    example = make_ads_example(seed=0)
    keys_before = client.dbsize()
    store = OnlineStore(client, example.registry)
    registry = example.registry
    try:
        for name, table in example.tables.items():
            store.materialize(name, table)
            write_per_feature(client, registry, name, table)
            write_hash_per_entity(client, registry, name, table)
        samples, hand_matches = run_measurements(client, store, example, n, warmup)
    finally:
        deleted = remove_example_keys(client, registry)
    keys_after = client.dbsize()
    print(f"DBSIZE {keys_before} before, {keys_after} after ({deleted} keys deleted)")

    results: dict[str, object] = {"redis_backend": backend.kind, "quick": args.quick}
    for name, seconds in samples.items():
        p50, p99 = np.percentile(seconds * 1e3, [50, 99])
        results[f"{name}_p50_ms"] = round(float(p50), 4)
        results[f"{name}_p99_ms"] = round(float(p99), 4)
        results[f"{name}_samples"] = len(seconds)
    results["hand_pipeline_returns_the_same"] = hand_matches
    results["keys_left_behind"] = keys_after - keys_before
    results["targets_met"] = {
        "single_entity_p99_le_0.5ms": results["single_entity_p99_ms"] <= 0.5,
        "candidates_p99_le_2ms": results["candidates_p99_ms"] <= 2.0,
        "single_entity_p99_le_hand_pipeline": results["single_entity_p99_ms"]
        <= results["hand_pipeline_p99_ms"],
    }
    print(json.dumps(results))


def run_measurements(
    client: redis.Redis, store: OnlineStore, example: AdsExample, n: int, warmup: int
) -> tuple[dict[str, np.ndarray], bool]:
    """Every read, round-robin; and whether the hand pipeline serves what the
    store serves (it must, or the comparison is not like for like)."""
    now = example.end
    single = [{"user_id": 17, "ad_id": 5}]
    candidates = [{"user_id": 17, "ad_id": ad} for ad in range(NUM_CANDIDATES)]
    registry = example.registry
    hand_single = HashPipelineReader(client, registry, SINGLE_ENTITY_REFS)
    hand_candidates = HashPipelineReader(client, registry, CANDIDATE_REFS)
    same = True
    for hand, rows, refs in (
        (hand_single, single, SINGLE_ENTITY_REFS),
        (hand_candidates, candidates, CANDIDATE_REFS),
    ):
        expected = store.read(rows, refs, now=now)
        actual = hand.read(rows, now=now)
        same = same and all(
            np.array_equal(getattr(expected, f), getattr(actual, f))
            for f in ("values", "missing", "stale")
        )

    calls: dict[str, Callable[[], object]] = {
        "roundtrip": client.ping,
        "single_entity": lambda: store.read(single, SINGLE_ENTITY_REFS, now=now),
        "candidates": lambda: store.read(candidates, CANDIDATE_REFS, now=now),
        "naive": lambda: read_naive(
            client, registry, single, SINGLE_ENTITY_REFS, now=now
        ),
        "pipelined": lambda: read_pipelined(
            client, registry, single, SINGLE_ENTITY_REFS, now=now
        ),
        "hand_pipeline": lambda: hand_single.read(single, now=now),
        "hand_pipeline_candidates": lambda: hand_candidates.read(candidates, now=now),
    }
    return measure_round_robin(calls, n, warmup), same


if __name__ == "__main__":
    main()
