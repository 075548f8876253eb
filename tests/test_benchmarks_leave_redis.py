"""Every benchmark that writes to the configured Redis leaves it as it found it.

``REDIS_URL`` may be the reader's own server. Each benchmark that touches Redis
runs here, ``--quick``, against a private server standing in for the reader's,
which already holds keys of its own: afterwards ``DBSIZE`` and the key set must
be what they were, and the reader's values untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[1]

#: The benchmarks that write to ``REDIS_URL`` (the others never open Redis;
#: ``cluster_store`` also writes to ``REDIS_CLUSTER_URL``'s cluster, which it
#: cleans by the same rule: its own test checks it).
WRITERS = [
    "backends.py",
    "feature_store.py",
    "cluster_store.py",
    pytest.param("serving.py", marks=pytest.mark.triton),
    pytest.param("recsys_serving.py", marks=pytest.mark.triton),
    pytest.param("visual_serving.py", marks=pytest.mark.triton),
]

#: What a reader's own application keeps there (the book's key spaces, ``fs:``
#: ``pf:`` ``rk:`` ..., are the book's: a benchmark may use them, and must leave
#: none of its keys behind).
READERS_KEYS = {
    "app:session:42": b"logged in",
    "cache:page:/home": b"<html>",
    "users:7:name": b"Ada",
}


@pytest.mark.redis
@pytest.mark.quality
@pytest.mark.parametrize("script", WRITERS)
def test_a_benchmark_leaves_the_readers_redis_as_found(script, real_redis_url):
    client = redis.Redis.from_url(real_redis_url)
    client.flushdb()
    client.mset(READERS_KEYS)
    before = (client.dbsize(), set(client.scan_iter(count=1_000)))
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
            cwd=ROOT,
            env={**os.environ, "REDIS_URL": real_redis_url},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        after = (client.dbsize(), set(client.scan_iter(count=1_000)))
        assert after[0] == before[0], (
            f"{script} changed DBSIZE {before[0]} -> {after[0]}: "
            f"{sorted(after[1] ^ before[1])[:10]}"
        )
        assert after[1] == before[1]
        assert client.mget(list(READERS_KEYS)) == list(READERS_KEYS.values())
    finally:
        client.flushdb()
        client.close()
