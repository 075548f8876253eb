"""``python -m mlsd_lib.visual.search_server BUNDLE``: visual search under uvicorn.

Introduced in ``casestudies/visual_search/index.md`` (step 6, "Serving").
Serves ``POST /v1/visual/search`` (:mod:`mlsd_lib.visual.gateway`) in a process
of its own, as a deployment would, from a bundle folder
(:mod:`~mlsd_lib.visual.bundle`): the production release of the bundle's
registry (embedder and index, refused if they disagree) is loaded, the
embedder onto a model server
(:func:`~mlsd_lib.serving.model_server.start_model_server`: ``tritonserver``
over a model repository, or the in-process server where it cannot run, with
the reason printed), faiss in this process; stock and the precomputed regions
are read from the Redis at ``REDIS_URL`` (where the stream processor and the
region job write them; an unset ``REDIS_URL`` is an error, since a private
Redis would be empty).

Like ``python -m mlsd_lib.recsys.feed_server``: loopback only, a port the OS
picks unless ``--port`` says otherwise, ``gateway: http://HOST:PORT`` printed
once listening (wait on ``/readyz``), the API key from
``$MLSD_GATEWAY_API_KEY`` (else a random one, printed), SIGTERM drains
in-flight requests and stops the model server.
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import signal
import sys
from pathlib import Path

import redis
import uvicorn

from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.net import LOOPBACK
from mlsd_lib.serving.gateway.__main__ import is_loopback
from mlsd_lib.serving.gateway.app import create_app
from mlsd_lib.serving.gateway.budgets import DependencyPools
from mlsd_lib.serving.gateway.config import GatewayConfig
from mlsd_lib.serving.gateway.server import loopback_listener
from mlsd_lib.serving.model_server import start_model_server
from mlsd_lib.visual.bundle import load_visual_bundle
from mlsd_lib.visual.gateway import (
    BODY_LIMIT_ADVICE,
    VisualService,
    add_visual_routes,
    visual_body_limit,
)
from mlsd_lib.visual.pipeline import VisualPipeline, VisualSettings
from mlsd_lib.visual.release import deploy_visual_release, staged_visual_release

API_KEY_ENV = "MLSD_GATEWAY_API_KEY"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlsd_lib.visual.search_server",
        description="Serve visual search under uvicorn, on loopback.",
    )
    parser.add_argument("bundle", type=Path, help="a folder save_visual_bundle wrote")
    parser.add_argument("--host", default=LOOPBACK, help="default: %(default)s")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--no-auth", action="store_true", help="no API key check")
    parser.add_argument(
        "--impression-log",
        type=Path,
        default=None,
        help="JSON-lines file (default: BUNDLE/impressions.jsonl)",
    )
    parser.add_argument("--redis-timeout-ms", type=float, default=50.0)
    parser.add_argument("--model-timeout-ms", type=float, default=200.0)
    parser.add_argument("--index-timeout-ms", type=float, default=200.0)
    parser.add_argument(
        "--threads", type=int, default=4, help="threads per dependency pool"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not is_loopback(args.host):
        print(f"refusing to bind to {args.host}: loopback only.", file=sys.stderr)
        return 2
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        print(
            "REDIS_URL is not set: visual search reads the stock the stream "
            "processor writes there, and the precomputed regions; point it at "
            "that Redis.",
            file=sys.stderr,
        )
        return 2
    api_key = None if args.no_auth else os.environ.get(API_KEY_ENV)
    if not args.no_auth and not api_key:
        api_key = secrets.token_urlsafe(24)
        print(f"{API_KEY_ENV} is not set; this run's API key: {api_key}", flush=True)
    signal.signal(signal.SIGTERM, _exit_cleanly)

    bundle = load_visual_bundle(args.bundle)
    client = redis.Redis.from_url(
        redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    server = start_model_server()
    try:
        release = staged_visual_release(bundle.registry)
        models = deploy_visual_release(bundle.registry, release, server)
        print(f"serving {release.name}: {models.versions()}", flush=True)
        settings = VisualSettings(
            redis_timeout_s=args.redis_timeout_ms / 1000,
            model_timeout_s=args.model_timeout_ms / 1000,
            index_timeout_s=args.index_timeout_ms / 1000,
        )
        pipeline = VisualPipeline(
            client,
            bundle.availability(client),
            bundle.fallback(),
            DependencyPools(("redis", "models", "index"), threads=args.threads),
            snapshot=bundle.snapshot(),
            settings=settings,
        )
        log_path = args.impression_log or args.bundle / "impressions.jsonl"
        config = GatewayConfig(
            impression_log_path=str(log_path),
            api_key=api_key,
            auth_disabled=args.no_auth,
            max_body_bytes=visual_body_limit(settings.limits),
            body_limit_advice=BODY_LIMIT_ADVICE,
            feature_timeout_s=settings.redis_timeout_s,
            model_timeout_s=settings.model_timeout_s,
        )
        app = create_app(config, OnlineStore(client, FeatureRegistry([])), None)
        service = VisualService(pipeline, models, bundle.n_regions)
        add_visual_routes(app, service, api_key)
        # Everything loaded so far lives as long as the process: out of the
        # collector's sight, a full collection no longer walks the objects
        # torch, pandas and faiss brought (a pause of hundreds of ms).
        gc.collect()
        gc.freeze()
        sock = loopback_listener(args.host, args.port)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"gateway: http://{shown}:{port}", flush=True)
        uvicorn_server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False)
        )
        try:
            uvicorn_server.run(sockets=[sock])
        finally:
            sock.close()
    finally:
        server.stop()
        client.close()
        print("gateway: stopped", flush=True)
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
