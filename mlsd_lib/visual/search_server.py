"""``python -m mlsd_lib.visual.search_server BUNDLE``: visual search under uvicorn.

Introduced in ``casestudies/visual_search/06_serving.ipynb`` (step 6, "Serving"). Serves
``POST /v1/visual/search`` (:mod:`mlsd_lib.visual.gateway`) in a process of its own, as
a deployment would, from a bundle folder (:mod:`~mlsd_lib.visual.bundle`): the
production release of the bundle's registry (embedder and index, refused if they
disagree) is loaded, the embedder onto a model server
(:func:`~mlsd_lib.serving.model_server.start_model_server`: ``tritonserver`` over a
model repository, or the in-process server where it cannot run, with the reason
printed), faiss in this process; stock and the precomputed regions are read from the
Redis at ``REDIS_URL`` (where the stream processor and the region job write them; an
unset ``REDIS_URL`` is an error, since a private Redis would be empty).

Like ``python -m mlsd_lib.recsys.feed_server``: loopback only, a port the OS
picks unless ``--port`` says otherwise, ``gateway: http://HOST:PORT`` printed
once listening (wait on ``/readyz``), the API key from
``$MLSD_GATEWAY_API_KEY`` (else a random one, printed), SIGTERM drains
in-flight requests and stops the model server.
"""

from __future__ import annotations

import argparse
import sys

from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import FeatureRegistry
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
from mlsd_lib.visual.bundle import load_visual_bundle
from mlsd_lib.visual.gateway import (
    BODY_LIMIT_ADVICE,
    VisualService,
    add_visual_routes,
    visual_body_limit,
)
from mlsd_lib.visual.pipeline import VisualPipeline, VisualSettings
from mlsd_lib.visual.release import deploy_visual_release, staged_visual_release

__all__ = ["API_KEY_ENV", "main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bundle_service_parser(
        "python -m mlsd_lib.visual.search_server",
        "Serve visual search under uvicorn, on loopback.",
        "a folder save_visual_bundle wrote",
    )
    parser.add_argument("--redis-timeout-ms", type=float, default=50.0)
    parser.add_argument("--model-timeout-ms", type=float, default=200.0)
    parser.add_argument("--index-timeout-ms", type=float, default=200.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = service_start(
        args.host,
        args.no_auth,
        "visual search reads the stock the stream processor writes there, and "
        "the precomputed regions; point it at that Redis.",
    )
    if start is None:
        return 2
    bundle = load_visual_bundle(args.bundle)
    with redis_and_model_server(start.redis_url) as (client, server):
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
            api_key=start.api_key,
            auth_disabled=args.no_auth,
            max_body_bytes=visual_body_limit(settings.limits),
            body_limit_advice=BODY_LIMIT_ADVICE,
            feature_timeout_s=settings.redis_timeout_s,
            model_timeout_s=settings.model_timeout_s,
        )
        app = create_app(config, OnlineStore(client, FeatureRegistry([])), None)
        service = VisualService(pipeline, models, bundle.n_regions)
        add_visual_routes(app, service, start.api_key)
        serve_until_stopped(app, args.host, args.port, freeze_heap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
