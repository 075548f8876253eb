"""``POST /v1/visual/search``: visual search on the generic gateway.

Introduced in ``casestudies/visual_search/06_serving.ipynb`` (panel B). The route runs
the visual pipeline (:class:`~mlsd_lib.visual.pipeline.VisualPipeline`) and takes
everything else from the generic gateway: the app, the API key and body-size guards,
``/healthz`` and ``/readyz`` (plus its own readiness check), the impression log and the
counters. Build it with::

    app = create_app(GatewayConfig(..., max_body_bytes=visual_body_limit(limits)),
                     store, deployments=None)
    add_visual_routes(app, VisualService(pipeline, models, n_regions), api_key)

**The request is JSON, the photo base64 inside it.** Multipart would save the
base64 third (a 64 x 64 PNG is ~10 KB, so ~3 KB) and one decode of a few
microseconds; JSON keeps one request schema with the rest of the gateway
(pydantic validation and ``/docs``, the same body-size guard, the load
generator's JSON senders, a request id in the log next to its fields) and
needs no multipart parser on the request path. Where photos are megabytes, a
mobile client uploads to object storage and sends a URL; the gateway's
``max_body_bytes`` is then what stops a stranger's 1 GB body.

* Request: ``image`` (base64) and an optional ``box`` ``[x0, y0, x1, y1]``
  in its pixels, **or** a ``region_id`` of a precomputed region; the
  shopper's ``region`` (stock, shipping); ``n_products`` (at most 20).
* Response: the products best first (``product_id``, ``position``,
  ``score``: the cosine of its best image, null on a degraded page,
  ``category_id``), the ``versions`` (release, embedder, index),
  ``degraded`` and why, the ``path`` (``image`` or ``region``), how many
  candidates each stage left, and the milliseconds of each stage that ran
  (the precomputed path has no ``decode``, ``crop``, ``resize`` or
  ``embed``).
* Errors: 413 for an image over ``max_bytes`` or ``max_pixels``; 422 for an
  empty or undecodable image, a bad box, or a request with both or neither of
  ``image`` and ``region_id``; 404 for an unknown ``region_id``; each names
  the limit or the rule. Never a 5xx for a user: a dependency that fails gives
  the degraded page, and so does an unexpected error (also logged, once a
  second with a count).
* Impression log: one line per answer with the query **region's embedding**
  (not the photo: 128 floats, not 100 KB of someone's living room), the
  products, positions, scores, versions, the stage counts and the filters'
  survival, and the timings.
* :attr:`VisualService.models` is one reference, read once per request:
  :meth:`VisualService.swap` puts a new release (embedder and index
  together, checked when the :class:`~mlsd_lib.visual.release.VisualModels`
  were made) in front of the next request; none mixes two.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.gateway.budgets import StageClock
from mlsd_lib.serving.gateway.limits import api_key_checker
from mlsd_lib.serving.gateway.model_calls import call_model
from mlsd_lib.serving.gateway.schemas import (
    EntityId,
    ErrorResponse,
    floats_or_none,
    json_response,
)
from mlsd_lib.serving.gateway.score_route import UNAUTHORIZED
from mlsd_lib.serving.gateway.service import PipelineService, add_service
from mlsd_lib.serving.gateway.state import GatewayDep, GatewayState
from mlsd_lib.visual.pipeline import (
    IMAGE_PATH,
    REGION_PATH,
    UnknownRegion,
    VisualAnswer,
    VisualPipeline,
    VisualQuery,
)
from mlsd_lib.visual.query_image import ImageLimits, ImageRejected
from mlsd_lib.visual.release import VisualModels
from mlsd_lib.visual.served_embedder import PIXELS

logger = logging.getLogger(__name__)

__all__ = [
    "BODY_LIMIT_ADVICE",
    "MAX_PRODUCTS",
    "NotARelease",
    "VisualSearchRequest",
    "VisualSearchResponse",
    "VisualService",
    "add_visual_routes",
    "impression_line",
    "response_body",
    "visual_body_limit",
    "visual_router",
]

#: The most products one request may ask for (the page shows 20).
MAX_PRODUCTS = 20
#: Room in a request body for the JSON around the base64 image.
JSON_SLACK_BYTES = 4096
#: What a 413 for a body over the gateway's limit tells the client (set it as
#: the gateway's ``body_limit_advice``).
BODY_LIMIT_ADVICE = (
    "Send a smaller photo (the embedder sees a small square of it), or a "
    "region_id for a region detected offline."
)


class NotARelease(MlsdError, TypeError):
    """Something other than a release's models was offered to a swap."""


def visual_body_limit(limits: ImageLimits) -> int:
    """The gateway's ``max_body_bytes`` for ``limits``: the base64 of the
    largest image accepted plus the JSON around it, so that an image over its
    limit reaches the route and gets the 413 that names ``max_bytes``."""
    return limits.max_base64_chars + JSON_SLACK_BYTES


class VisualSearchRequest(BaseModel):
    """A photo (or a precomputed region) to search, and who is asking."""

    model_config = ConfigDict(extra="forbid")

    image: StrictStr | None = Field(
        None, description="The photo's bytes (JPEG, PNG, WebP), base64."
    )
    box: tuple[StrictInt, StrictInt, StrictInt, StrictInt] | None = Field(
        None,
        description="The query region [x0, y0, x1, y1] in the photo's pixels "
        "(end exclusive); none: the whole photo.",
    )
    region_id: EntityId | None = Field(
        None,
        description="A region detected and embedded offline: sent instead of "
        "the photo, it skips decoding and the embedder.",
    )
    region: Annotated[
        StrictInt, Field(ge=0, description="The shopper's region (stock, shipping).")
    ]
    n_products: Annotated[StrictInt, Field(ge=1, le=MAX_PRODUCTS)] = MAX_PRODUCTS


class Product(BaseModel):
    product_id: int
    position: int
    score: float | None = Field(
        description="Cosine of the product's best image with the query region "
        "(null on a degraded page)."
    )
    category_id: int


class VisualVersions(BaseModel):
    release: str
    embedder: str
    index: str = Field(description="The embedder version that built the index.")


class VisualSearchResponse(BaseModel):
    """The products, best first, and how they were found."""

    request_id: str
    products: list[Product]
    path: Literal["image", "region"]
    versions: VisualVersions
    degraded: bool = Field(
        description="True when a dependency failed or ran out of time: the page "
        "is the most popular available products of a category (or overall)."
    )
    degraded_reason: str | None
    category_id: int | None = Field(
        description="The category a degraded page answered (null: overall)."
    )
    counts: dict[str, int] = Field(
        description="ANN images, then products after collapse, dedup, filters."
    )
    timings: dict[str, float] = Field(
        description="Milliseconds of each stage that ran, and in total, "
        "measured inside the gateway."
    )
    over_budget: list[str]


class VisualService(PipelineService):
    """The pipeline and the release it serves, as the route uses them.

    ``n_regions``: the shoppers' regions (a request's ``region`` must be
    below it). Counters go to the gateway's: ``visual_requests``,
    ``visual_degraded``, ``visual_region_requests`` (precomputed path),
    ``visual_embedder_calls`` and ``visual_rejected`` (4xx answers).
    """

    pipeline: VisualPipeline
    #: What new requests are served by; :meth:`swap` replaces it.
    models: VisualModels
    swap = PipelineService.swap  # on this class too: the API pages cite its swap

    def __init__(
        self, pipeline: VisualPipeline, models: VisualModels, n_regions: int
    ) -> None:
        super().__init__(pipeline, models, logger)
        self.n_regions = int(n_regions)

    def check_models(self, models: VisualModels) -> None:
        """:meth:`swap` takes a whole release (embedder and index together)."""
        if not isinstance(models, VisualModels):
            raise NotARelease(
                f"swap takes the VisualModels of a release (deploy_visual_release), "
                f"got {type(models).__name__}."
            )

    async def search(self, query: VisualQuery) -> VisualAnswer:
        """The pipeline's answer; the overall popular page on an unexpected
        error (the client's errors, 4xx, pass through)."""
        models = self.models  # one snapshot for the whole request
        try:
            return await self.pipeline.serve(models, query)
        except (ImageRejected, UnknownRegion):
            raise
        except Exception as error:  # a bug must not cost a shopper her page
            self.failures.warning(models.release, f"{type(error).__name__}: {error}")
            logger.debug("visual search failed", exc_info=True)
            return await self.pipeline.degraded(
                models,
                query,
                REGION_PATH if query.region_id is not None else IMAGE_PATH,
                StageClock(self.pipeline.settings.budgets_ms),
                None,
                f"internal error: {type(error).__name__}: {error}",
                None,
            )

    async def ready(self, timeout_s: float) -> None:
        """Raise unless Redis answers and the embedder embeds a blank image."""
        pools, models = self.pipeline.pools, self.models
        await pools.call("redis", timeout_s, self.pipeline.client.ping, "Redis")
        size = models.image_size
        blank = {PIXELS: np.full((1, size, size, 3), 255, np.uint8)}
        await pools.call(
            "models", timeout_s, lambda: call_model(models.embedder, blank),
            "the embedder",
        )  # fmt: skip


def response_body(request_id: str, answer: VisualAnswer) -> dict[str, Any]:
    """The JSON body (the documented :class:`VisualSearchResponse`) of an answer."""
    scores = floats_or_none(answer.scores)
    categories = answer.category_ids.tolist()
    return {
        "request_id": request_id,
        "products": [
            {
                "product_id": product,
                "position": position,
                "score": scores[position],
                "category_id": categories[position],
            }
            for position, product in enumerate(answer.product_ids.tolist())
        ],
        "path": answer.path,
        "versions": answer.versions,
        "degraded": answer.degraded,
        "degraded_reason": answer.reason or None,
        "category_id": answer.category_id,
        "counts": answer.counts,
        "timings": answer.timings_ms,
        "over_budget": list(answer.over_budget),
    }


def impression_line(
    request_id: str, answer: VisualAnswer, body: dict[str, Any]
) -> dict[str, Any]:
    """The impression log's line: the region embedding (never the photo), the
    page as columns, and how it was made."""
    query, report = answer.query, answer.filters
    return {
        "kind": "visual_search",
        "request_id": request_id,
        "time": time.time(),
        "region": query.region,
        "path": answer.path,
        "region_id": query.region_id,
        "box": None if query.box is None else list(query.box),
        "embedding": None
        if answer.embedding is None
        else np.round(answer.embedding.astype(np.float64), 6).tolist(),
        "products": answer.product_ids.tolist(),
        "positions": list(range(len(answer))),
        "scores": [p["score"] for p in body["products"]],
        "category_ids": answer.category_ids.tolist(),
        "versions": answer.versions,
        "degraded": answer.degraded,
        "reason": answer.reason,
        "category_id": answer.category_id,
        "counts": answer.counts,
        "filters": None if report is None else report.to_dict(),
        "timings": body["timings"],
    }


async def visual_service(request: Request) -> VisualService:
    """FastAPI dependency: the visual service of the app serving ``request``."""
    return request.app.state.visual


def _count(gateway: GatewayState, name: str) -> None:
    gateway.counters[name] = gateway.counters.get(name, 0) + 1


def _client_error(gateway: GatewayState, code: int, detail: str) -> HTTPException:
    _count(gateway, "visual_rejected")
    return HTTPException(code, detail)


def visual_router(api_key: str | None) -> APIRouter:
    """``POST /v1/visual/search``, behind the gateway's ``api_key`` (None: no
    auth)."""
    router = APIRouter()
    errors = {
        404: {"model": ErrorResponse, "description": "unknown region_id"},
        413: {"model": ErrorResponse, "description": "image too large"},
        422: {"model": ErrorResponse, "description": "image or box unusable"},
    }

    @router.post(
        "/v1/visual/search",
        response_model=VisualSearchResponse,
        responses={401: UNAUTHORIZED, **errors},
        dependencies=[Depends(api_key_checker(api_key))],
        tags=["visual"],
    )
    async def visual_search(
        body: VisualSearchRequest,
        gateway: GatewayDep,
        service: Annotated[VisualService, Depends(visual_service)],
    ) -> Response:
        """Up to ``n_products`` products that look like the photo's region (or
        the precomputed region), best first; a category-level page, flagged
        ``degraded``, when the model server, the index or Redis fails."""
        unprocessable = status.HTTP_422_UNPROCESSABLE_CONTENT
        if (body.image is None) == (body.region_id is None):
            raise _client_error(
                gateway,
                unprocessable,
                "send exactly one of image (a base64 photo, with an optional box) "
                "and region_id (a precomputed region).",
            )
        if body.region_id is not None and body.box is not None:
            raise _client_error(
                gateway,
                unprocessable,
                "box applies to an uploaded image: a precomputed region_id already "
                "is a region; leave box out.",
            )
        if body.region >= service.n_regions:
            raise _client_error(
                gateway,
                unprocessable,
                f"region must be below {service.n_regions}; got {body.region}.",
            )
        query = VisualQuery(
            region=body.region,
            image=body.image,
            box=body.box,
            region_id=body.region_id,
            n_products=body.n_products,
        )
        try:
            answer = await service.search(query)
        except ImageRejected as error:
            raise _client_error(gateway, error.status, str(error)) from None
        except UnknownRegion as error:
            not_found = status.HTTP_404_NOT_FOUND
            raise _client_error(gateway, not_found, str(error)) from None
        request_id = uuid.uuid4().hex
        _count(gateway, "visual_requests")
        if answer.degraded:
            _count(gateway, "visual_degraded")
        if answer.path == REGION_PATH:
            _count(gateway, "visual_region_requests")
        elif "embed" in answer.timings_ms:
            _count(gateway, "visual_embedder_calls")
        content = response_body(request_id, answer)
        gateway.log.append(impression_line(request_id, answer, content))
        return json_response(content)

    return router


def add_visual_routes(
    app: FastAPI, service: VisualService, api_key: str | None
) -> FastAPI:
    """Include :func:`visual_router` in a gateway made by ``create_app``.

    Puts ``service`` at ``app.state.visual``, adds its readiness check to
    ``/readyz`` and starts and stops its thread pools with the app.
    ``api_key`` must be the gateway's own (None when auth is disabled).
    """
    return add_service(app, "visual", service, visual_router(api_key))
