"""``python -m mlsd_lib.recsys.feed_server BUNDLE``: the feed gateway under uvicorn.

Introduced in ``casestudies/recommender/index.md`` (step 6, "Serving"). Serves
``POST /v1/recs/feed`` (:mod:`mlsd_lib.recsys.gateway`) in a process of its
own, as a deployment would, from a bundle folder
(:mod:`~mlsd_lib.recsys.feed_bundle`): the production release of the bundle's
registry is loaded onto a model server
(:func:`~mlsd_lib.serving.model_server.start_model_server`: ``tritonserver``
over a model repository, or the in-process server where it cannot run, with
the reason printed), the histories are read from the Redis at ``REDIS_URL``
(where the stream processor writes them; an unset ``REDIS_URL`` is an error,
since a private Redis would be empty).

Like ``python -m mlsd_lib.serving.gateway``: loopback only, a port the OS picks
unless ``--port`` says otherwise, ``gateway: http://HOST:PORT`` printed once
listening (wait on ``/readyz``), the API key from ``$MLSD_GATEWAY_API_KEY``
(else a random one, printed), SIGTERM drains in-flight requests and stops the
model server.
"""

from __future__ import annotations

import argparse
import sys

from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.recsys.feed import FeedPipeline, FeedSettings
from mlsd_lib.recsys.feed_bundle import load_bundle
from mlsd_lib.recsys.gateway import FeedService, add_feed_routes
from mlsd_lib.recsys.serving import deploy_release, staged_release
from mlsd_lib.serving.gateway.app import create_app
from mlsd_lib.serving.gateway.budgets import DependencyPools
from mlsd_lib.serving.gateway.config import GatewayConfig
from mlsd_lib.serving.gateway.service_process import (
    API_KEY_ENV,
    bundle_service_parser,
    redis_and_model_server,
    serve_until_stopped,
    service_start,
)

__all__ = ["API_KEY_ENV", "main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bundle_service_parser(
        "python -m mlsd_lib.recsys.feed_server",
        "Serve the recommender's feed under uvicorn, on loopback.",
        "a folder save_bundle wrote",
    )
    parser.add_argument("--feature-timeout-ms", type=float, default=50.0)
    parser.add_argument("--model-timeout-ms", type=float, default=200.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = service_start(
        args.host,
        args.no_auth,
        "the feed reads the histories the stream processor writes there; point "
        "it at that Redis.",
    )
    if start is None:
        return 2
    bundle = load_bundle(args.bundle)
    with redis_and_model_server(start.redis_url) as (client, server):
        release = staged_release(bundle.registry)
        models = deploy_release(bundle.registry, release, server, bundle.item_features)
        print(f"serving {release.name}: {models.versions()}", flush=True)
        settings = FeedSettings(
            feature_timeout_s=args.feature_timeout_ms / 1000,
            model_timeout_s=args.model_timeout_ms / 1000,
        )
        pipeline = FeedPipeline(
            client,
            bundle.fold,
            bundle.tables,
            DependencyPools(("redis", "models"), threads=args.threads),
            clock=bundle.clock(),
            world_epoch=bundle.world_epoch,
            settings=settings,
        )
        log_path = args.impression_log or args.bundle / "impressions.jsonl"
        config = GatewayConfig(
            impression_log_path=str(log_path),
            api_key=start.api_key,
            auth_disabled=args.no_auth,
            feature_timeout_s=settings.feature_timeout_s,
            model_timeout_s=settings.model_timeout_s,
        )
        app = create_app(config, OnlineStore(client, FeatureRegistry([])), None)
        add_feed_routes(app, FeedService(pipeline, models), start.api_key)
        serve_until_stopped(app, args.host, args.port, freeze_heap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
