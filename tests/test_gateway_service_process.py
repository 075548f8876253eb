"""The start-up every gateway command shares (serving.gateway.service_process)."""

from __future__ import annotations

import pytest

from mlsd_lib.recsys import feed_server
from mlsd_lib.serving.gateway.service_process import (
    API_KEY_ENV,
    api_key_from_env,
    bundle_service_parser,
    is_loopback,
    service_start,
)
from mlsd_lib.visual import search_server


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.2", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("10.0.0.1", False), ("example.com", False)],
)  # fmt: skip
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_api_key_comes_from_the_environment_or_is_generated_and_printed(
    monkeypatch, capsys
):
    monkeypatch.setenv(API_KEY_ENV, "k1")
    assert api_key_from_env(False) == "k1"
    assert api_key_from_env(True) is None
    monkeypatch.delenv(API_KEY_ENV)
    key = api_key_from_env(False)
    assert len(key) >= 24 and key != api_key_from_env(False)
    assert f"this run's API key: {key}" in capsys.readouterr().out


def test_service_start_refuses_off_loopback_and_without_redis(monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert service_start("0.0.0.0", True, "x") is None
    assert "refusing to bind to 0.0.0.0: loopback only." in capsys.readouterr().err
    monkeypatch.delenv("REDIS_URL")
    assert service_start("127.0.0.1", True, "it reads Y there.") is None
    assert capsys.readouterr().err == "REDIS_URL is not set: it reads Y there.\n"


def test_bundle_service_parser_takes_the_shared_arguments(tmp_path):
    parser = bundle_service_parser("prog", "what", "a bundle")
    args = parser.parse_args([str(tmp_path), "--port", "9", "--no-auth"])
    assert (args.bundle, args.port, args.no_auth) == (tmp_path, 9, True)
    assert (args.host, args.impression_log, args.threads) == ("127.0.0.1", None, 4)


@pytest.mark.parametrize("server", [feed_server, search_server])
def test_case_study_servers_refuse_off_loopback_or_without_redis(
    server, tmp_path, monkeypatch, capsys
):
    assert server.main([str(tmp_path), "--host", "0.0.0.0"]) == 2
    assert "loopback only" in capsys.readouterr().err
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert server.main([str(tmp_path)]) == 2
    assert "REDIS_URL is not set" in capsys.readouterr().err
