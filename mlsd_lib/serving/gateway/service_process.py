"""What every gateway command shares: loopback, API key, SIGTERM, uvicorn.

Introduced in ``notebooks/model_serving.ipynb`` (``python -m
mlsd_lib.serving.gateway``); the case studies' servers
(``python -m mlsd_lib.recsys.feed_server``, ``python -m
mlsd_lib.visual.search_server``) are the same command around another route.
Each binds to loopback only, takes the API key from ``$MLSD_GATEWAY_API_KEY``
(not a flag: command lines are visible to every user of the machine; without
it a random key is generated and printed), turns SIGTERM into a normal exit
that runs its clean-up, and prints ``gateway: http://HOST:PORT`` once the
socket listens. A case-study server serves a *bundle* folder: its arguments
(:func:`bundle_service_parser`), its start-up checks (:func:`service_start`)
and its dependencies, the Redis at ``REDIS_URL`` and a model server, held for
as long as it runs (:func:`redis_and_model_server`).
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import uvicorn
from fastapi import FastAPI

from mlsd_lib.net import LOOPBACK
from mlsd_lib.serving.gateway.server import loopback_listener
from mlsd_lib.serving.model_server import start_model_server

__all__ = [
    "API_KEY_ENV",
    "ServiceStart",
    "api_key_from_env",
    "bundle_service_parser",
    "exit_on_sigterm",
    "is_loopback",
    "redis_and_model_server",
    "serve_until_stopped",
    "service_start",
]

#: The environment variable the API key is read from.
API_KEY_ENV = "MLSD_GATEWAY_API_KEY"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key_from_env(no_auth: bool) -> str | None:
    """``$MLSD_GATEWAY_API_KEY``, or a random key (printed) when it is unset;
    None with ``no_auth``."""
    api_key = None if no_auth else os.environ.get(API_KEY_ENV)
    if not no_auth and not api_key:
        api_key = secrets.token_urlsafe(24)
        print(f"{API_KEY_ENV} is not set; this run's API key: {api_key}", flush=True)
    return api_key


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit(0)``.

    uvicorn handles SIGTERM while serving (draining requests), then re-raises
    it once done; this handler turns that, or a SIGTERM during start-up, into a
    normal exit that runs the caller's clean-up.
    """
    signal.signal(signal.SIGTERM, _exit_cleanly)


def serve_until_stopped(
    app: FastAPI,
    host: str = LOOPBACK,
    port: int = 0,
    *,
    freeze_heap: bool = False,
    **uvicorn_options: Any,
) -> None:
    """Serve ``app`` under uvicorn in this thread until SIGTERM or Ctrl-C
    (graceful: requests in flight finish), printing ``gateway: http://HOST:PORT``
    once listening.

    ``freeze_heap``: everything loaded so far lives as long as the process;
    moved out of the collector's sight, a full collection no longer walks the
    hundreds of thousands of objects torch, pandas and faiss bring (a pause of
    hundreds of ms on a request).
    """
    if freeze_heap:
        gc.collect()
        gc.freeze()
    sock = loopback_listener(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"gateway: http://{shown}:{bound_port}", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, **uvicorn_options)
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def bundle_service_parser(
    prog: str, description: str, bundle_help: str
) -> argparse.ArgumentParser:
    """The arguments every bundle server takes: the bundle folder, host, port,
    ``--no-auth``, ``--impression-log`` and ``--threads`` (per dependency
    pool); the caller adds its timeouts."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("bundle", type=Path, help=bundle_help)
    parser.add_argument("--host", default=LOOPBACK, help="default: %(default)s")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--no-auth", action="store_true", help="no API key check")
    parser.add_argument(
        "--impression-log",
        type=Path,
        default=None,
        help="JSON-lines file (default: BUNDLE/impressions.jsonl)",
    )
    parser.add_argument(
        "--threads", type=int, default=4, help="threads per dependency pool"
    )
    return parser


@dataclass(frozen=True)
class ServiceStart:
    """What a bundle server starts from: its Redis and its API key."""

    redis_url: str
    api_key: str | None


def service_start(host: str, no_auth: bool, redis_need: str) -> ServiceStart | None:
    """The start-up checks of a bundle server, or None (said on stderr) when
    it must not start: ``host`` off loopback, or ``REDIS_URL`` unset (a private
    Redis would be empty; ``redis_need`` says what the server reads there).
    Otherwise the API key (:func:`api_key_from_env`) and SIGTERM as a clean
    exit (:func:`exit_on_sigterm`)."""
    if not is_loopback(host):
        print(f"refusing to bind to {host}: loopback only.", file=sys.stderr)
        return None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        print(f"REDIS_URL is not set: {redis_need}", file=sys.stderr)
        return None
    api_key = api_key_from_env(no_auth)
    exit_on_sigterm()
    return ServiceStart(redis_url, api_key)


@contextmanager
def redis_and_model_server(redis_url: str) -> Iterator[tuple[redis.Redis, Any]]:
    """A Redis client (0.5 s timeouts) and a started model server
    (:func:`~mlsd_lib.serving.model_server.start_model_server`), stopped and
    closed on leaving, then ``gateway: stopped`` printed."""
    client = redis.Redis.from_url(
        redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    server = start_model_server()
    try:
        yield client, server
    finally:
        server.stop()
        client.close()
        print("gateway: stopped", flush=True)
