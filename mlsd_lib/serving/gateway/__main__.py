"""``python -m mlsd_lib.serving.gateway --demo``: the gateway under uvicorn.

Introduced in ``notebooks/model_serving.ipynb``. Binds to loopback (a port the
OS picks unless ``--port`` says otherwise) and refuses any other address unless
``--allow-external`` is given: an ML gateway on a public interface with a demo
key is a data leak. Prints ``gateway: http://HOST:PORT`` on one line once the
socket is listening; wait on ``/readyz`` before sending traffic. SIGTERM or
Ctrl-C drains in-flight requests, writes the impression log and exits 0.

The API key comes from ``$MLSD_GATEWAY_API_KEY`` (not a flag: command lines are
visible to every user of the machine); without it a random key is generated and
printed. ``--no-auth`` disables the check, on loopback only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlsd_lib.config import load_settings
from mlsd_lib.net import LOOPBACK
from mlsd_lib.serving.gateway.app import create_app
from mlsd_lib.serving.gateway.config import GatewayConfig
from mlsd_lib.serving.gateway.demo import build_demo
from mlsd_lib.serving.gateway.service_process import (
    API_KEY_ENV,
    api_key_from_env,
    exit_on_sigterm,
    is_loopback,
    serve_until_stopped,
)

__all__ = ["API_KEY_ENV", "is_loopback", "main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlsd_lib.serving.gateway",
        description="Run the scoring gateway under uvicorn.",
    )
    parser.add_argument("--host", default=LOOPBACK, help="default: %(default)s")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument(
        "--allow-external",
        action="store_true",
        help="allow a host other than loopback",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="serve the demo deployment (ads example views, three tiny models)",
    )
    parser.add_argument("--no-auth", action="store_true", help="no API key check")
    parser.add_argument(
        "--impression-log",
        type=Path,
        default=None,
        help="JSON-lines file (default: $MLSD_DATA_DIR/gateway/impressions.jsonl)",
    )
    parser.add_argument("--canary-fraction", type=float, default=0.1)
    parser.add_argument("--max-candidates", type=int, default=500)
    parser.add_argument("--feature-timeout-ms", type=float, default=50.0)
    parser.add_argument("--model-timeout-ms", type=float, default=500.0)
    parser.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=0,
        help="Triton's dynamic batcher: longest wait for more requests (demo models)",
    )
    parser.add_argument(
        "--no-shadow",
        action="store_true",
        help="serve the demo without its shadow model (which doubles model calls)",
    )
    parser.add_argument(
        "--http",
        choices=("auto", "httptools", "h11"),
        default="auto",
        help="uvicorn's HTTP parser (auto: httptools when installed)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="the event loop (auto: uvloop when installed)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not is_loopback(args.host) and not args.allow_external:
        print(
            f"refusing to bind to {args.host}: the gateway listens on loopback only "
            "unless --allow-external is given (and then put TLS and a real key in "
            "front of it).",
            file=sys.stderr,
        )
        return 2
    if not args.demo:
        print(
            "nothing to serve: pass --demo, or build an app with "
            "mlsd_lib.serving.gateway.create_app() and run it with uvicorn.",
            file=sys.stderr,
        )
        return 2
    if args.no_auth and not is_loopback(args.host):
        print("--no-auth is allowed on loopback only.", file=sys.stderr)
        return 2
    api_key = api_key_from_env(args.no_auth)
    log_path = args.impression_log or (
        load_settings().data_dir / "gateway" / "impressions.jsonl"
    )

    exit_on_sigterm()  # a normal exit, running the clean-up below
    demo = build_demo(
        canary_fraction=args.canary_fraction,
        max_queue_delay_us=args.max_queue_delay_us,
        shadow=not args.no_shadow,
    )
    try:
        print(demo.describe(), flush=True)
        config = GatewayConfig(
            impression_log_path=str(log_path),
            api_key=api_key,
            auth_disabled=args.no_auth,
            max_candidates=args.max_candidates,
            feature_timeout_s=args.feature_timeout_ms / 1000,
            model_timeout_s=args.model_timeout_ms / 1000,
        )
        app = create_app(
            config, demo.store, demo.deployments, reload=demo.deployer.deployments
        )
        # graceful shutdown on SIGTERM/SIGINT
        serve_until_stopped(app, args.host, args.port, http=args.http, loop=args.loop)
    finally:
        demo.close()
        print("gateway: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
