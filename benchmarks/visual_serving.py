"""Visual search over HTTP, with real Redis, real Triton and faiss.

    python benchmarks/visual_serving.py [--quick]

Builds a seeded release
(:func:`mlsd_lib.visual.quick_release.build_quick_visual_release`) of the
``small`` recipe: its world, about 1,230 listings and 4,900 catalogue images,
and the tuned embedder recipe; ``--quick``: the same, the embedder trained for
30 steps instead of 300 (latency depends on the architecture and the
catalogue, not on how long the embedder trained). It streams the stock through
the real stream processor into the Redis at ``REDIS_URL`` (unset:
:func:`mlsd_lib.redis_backend.get_redis` starts a private redis-server;
fakeredis cannot be shared with another process, so it is refused), stores the
same photos' regions as precomputed regions, and starts the search gateway as
a process of its own (``python -m mlsd_lib.visual.search_server``: uvicorn on
127.0.0.1, the embedder in ``tritonserver`` from its model repository, faiss
IVF over the catalogue in the gateway process). It waits for ``/readyz``,
warms up, then sends ``POST /v1/visual/search``, each request a different user
photo (phone style, of a product never seen in training, PNG, with its box,
from a region where the product is in stock), 20 products per page:

* ``1 client`` in a closed loop: ``search_p50_ms``, ``search_p99_ms`` (the
  client's end-to-end latency) and each stage's p99 inside the gateway
  (``stage_<name>_p99_ms``: decode, crop, resize, embed, ann, rerank,
  collapse, dedup, filters, and ``stage_total_p99_ms``, the gateway's own
  time); the same photos as precomputed regions: ``region_p50_ms``,
  ``region_p99_ms``, ``stage_region_p99_ms`` (the Redis read that replaces
  decode to embed);
* ``4 clients`` in a closed loop on photos: ``rps_4_clients``,
  ``p99_4_clients_ms``.

``failed_requests`` counts non-2xx answers and errors; ``degraded_requests``
the degraded pages (a dependency failed or ran out of time); ``found_at_20``
the share of the first 100 photos whose page shows the photographed product (a sanity
check of what is served, not the quality bar, which is
``benchmarks/visual_quality.py``'s). Every run is bounded in requests and
seconds, all traffic stays on loopback, the gateway (and its Triton) is
stopped and the Redis keys this run wrote are deleted, also on error. The last
stdout line is one JSON object. Targets: ``search_p99_ms`` <= 60,
``failed_requests`` = 0.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
from _common import gateway_run, print_stages, real_backends

from mlsd_lib.models.training import torch_threads
from mlsd_lib.serving.gateway.service_process import API_KEY_ENV
from mlsd_lib.serving.loadgen import (
    LoadResult,
    RotatingBodySender,
    check_loopback,
    format_table,
    run_closed_loop,
    wait_until_ready,
)
from mlsd_lib.visual.pipeline import VISUAL_STAGE_BUDGETS_MS
from mlsd_lib.visual.quick_release import (
    QuickVisualRelease,
    build_quick_visual_release,
)
from mlsd_lib.visual.recipes import visual_recipe
from mlsd_lib.visual.search_load import (
    RecordingSender,
    percentiles,
    photo_bodies,
    region_bodies,
    stage_samples,
)
from mlsd_lib.worlds.images import QuerySet

CONCURRENCY = 4
STREAM = "visual_bench_events"
FIRST_REGION_ID = 900_000
#: Photos sent once more, one by one, to check the page shows their product.
N_CHECKED = 100


def queries(
    release: QuickVisualRelease, n: int, seed: int
) -> tuple[QuerySet, np.ndarray]:
    """``n`` photos of test products in stock somewhere (cycling through them),
    and for each a region that stocks it."""
    test = release.world.test_products
    sold = test[release.stock[test] > 0]
    products = np.resize(np.random.default_rng(seed).permutation(sold), n)
    bits = (release.stock[products][:, None] >> np.arange(release.n_regions)) & 1
    with torch_threads(1):
        photos = release.photos(products, seed=seed + 11)
    return photos, np.argmax(bits, axis=1)


def run(
    send: RecordingSender, clients: int, n: int, max_seconds: float
) -> tuple[LoadResult, list[dict]]:
    result = run_closed_loop(send, clients, max_requests=n, max_seconds=max_seconds)
    return result, send.take()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller world, fewer requests"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n_single, n_multi = (300, 600) if args.quick else (2_000, 4_000)
    max_seconds = 60.0 if args.quick else 120.0
    recipe = visual_recipe("small", seed=args.seed, steps=30 if args.quick else None)

    backend, redis_url = real_backends()

    started = time.perf_counter()
    api_key = secrets.token_urlsafe(24)
    release: QuickVisualRelease | None = None
    with tempfile.TemporaryDirectory(prefix="mlsd-bench-visual-") as workdir:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit
                release = build_quick_visual_release(
                    Path(workdir) / "release", recipe, stream=STREAM, num_threads=1
                )
            built_s = time.perf_counter() - started
            print(f"release {release.release.name} built in {built_s:.0f} s")
            applied = release.load_stock(backend.client)
            print(f"{applied} stock events streamed into {backend.kind}")
            shots, shopper = queries(release, n_single, args.seed)
            products = shots.images.product_ids
            ids = FIRST_REGION_ID + np.arange(len(products))
            photos = photo_bodies(shots.images.images, shots.boxes, shopper)
            regions = region_bodies(ids, shopper)
            with torch_threads(1), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                stored = release.store_regions(backend.client, shots, ids)
            print(f"{stored} precomputed regions stored")
            bundle = release.save_bundle(Path(workdir) / "bundle")
            env = {**os.environ, "REDIS_URL": redis_url, API_KEY_ENV: api_key}
            command = [
                sys.executable, "-m", "mlsd_lib.visual.search_server", str(bundle)
            ]  # fmt: skip
            with gateway_run(command, env) as gateway:
                waited = wait_until_ready(gateway.url, "/readyz", timeout_s=180.0)
                print(f"search gateway ready after {waited:.2f} s at {gateway.url}")
                url = f"{gateway.url}/v1/visual/search"
                headers = {"X-API-Key": api_key}
                with RotatingBodySender(url, photos, headers) as photo_sender:
                    send = RecordingSender(photo_sender)
                    run(send, CONCURRENCY, 200, 30)  # warm-up, not measured
                    run(send, 1, 100, 30)
                    single, one = run(send, 1, n_single, max_seconds)
                    multi, four = run(send, CONCURRENCY, n_multi, max_seconds)
                with RotatingBodySender(url, regions, headers) as region_sender:
                    send = RecordingSender(region_sender)
                    run(send, 1, 50, 30)
                    taps, tapped = run(send, 1, n_single, max_seconds)
                with httpx.Client(timeout=5.0, trust_env=False) as http:
                    pages = [
                        http.post(url, json=body, headers=headers).json()
                        for body in photos[:N_CHECKED]
                    ]
                    health = http.get(check_loopback(f"{gateway.url}/healthz"))
                    counters = health.json()
        finally:
            if release is not None:
                release.clear_stock(backend.client)
                release.clear_regions(backend.client)

    print("POST /v1/visual/search, one user photo per request, 20 products:")
    print(format_table([single, multi, taps]))
    photo_stages = stage_samples(one, "image")
    p50, p99 = percentiles(photo_stages, 50), percentiles(photo_stages, 99)
    region_stages = stage_samples(tapped, "region")
    note = "1 client, photos, inside the gateway"
    print_stages(VISUAL_STAGE_BUDGETS_MS, p50, p99, note)
    for result in (single, multi, taps):
        for error in result.errors_sample:
            print(f"error: {error}")
    answers = one + four + tapped
    degraded = [a.get("degraded_reason") for a in answers if a["degraded"]]
    for why in sorted(set(degraded))[:5]:
        print(f"degraded: {why}")
    found = np.mean(
        [
            int(product) in [x["product_id"] for x in page["products"]]
            for page, product in zip(pages, products, strict=False)
        ]
    )

    results: dict[str, object] = {
        "quick": args.quick,
        "redis_backend": backend.kind,
        "n_products": int(release.world.n_products),
        "n_catalogue_images": len(release.catalogue),
        "embedder_steps": recipe.embedder.steps,
        "search_p50_ms": round(single.p50_ms, 3),
        "search_p99_ms": round(single.p99_ms, 3),
        "search_samples": single.successes,
        "rps_4_clients": round(multi.throughput_rps, 1),
        "p50_4_clients_ms": round(multi.p50_ms, 3),
        "p99_4_clients_ms": round(multi.p99_ms, 3),
        "samples_4_clients": multi.successes,
        "region_p50_ms": round(taps.p50_ms, 3),
        "region_p99_ms": round(taps.p99_ms, 3),
        **{f"stage_{name}_p99_ms": value for name, value in p99.items()},
        **{f"stage_{name}_p50_ms": value for name, value in p50.items()},
        "stage_region_p99_ms": percentiles(region_stages, 99, ["region"])["region"],
        "stage_p99_4_clients_ms": percentiles(stage_samples(four, "image"), 99),
        "failed_requests": single.failures + multi.failures + taps.failures,
        "degraded_requests": len(degraded),
        "found_at_20": round(found, 3),
        "gateway_visual_requests": counters.get("visual_requests", 0),
        "gateway_embedder_calls": counters.get("visual_embedder_calls", 0),
        "versions": one[0]["versions"] if one else {},
    }
    results["targets_met"] = {
        "search_p99_le_60ms": results["search_p99_ms"] <= 60.0,
        "zero_failed_requests": results["failed_requests"] == 0,
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
