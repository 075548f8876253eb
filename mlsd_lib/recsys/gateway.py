"""``POST /v1/recs/feed``: the recommender's feed on the generic gateway.

Introduced in ``casestudies/recommender/index.md`` (panel B). The ad-click
route (:mod:`mlsd_lib.adclick.gateway`) translates its request into one
``/score`` call; a feed is five stages and two models, so this route runs the
feed pipeline (:class:`~mlsd_lib.recsys.feed.FeedPipeline`) instead, and takes
from the generic gateway everything else: the app, the API key and body-size
guards, ``/healthz`` and ``/readyz`` (the feed adds its own readiness check),
the impression log and the counters. Build it with::

    app = create_app(config, store, deployments=None)   # no /score
    add_feed_routes(app, FeedService(pipeline, models), api_key)

* The request is typed: ``user_id``, the profile's ``region`` and
  ``maturity_limit`` (a client app knows its profile's setting, as an ads
  client knows the hour), and ``page_size`` (at most 50).
* The response lists the items best first, each with its ``position``, its
  candidate ``source`` (``retrieval``, ``continue_watching``, ``trending``,
  ``explore``, or ``popular`` in the degraded feed), its scores (the two-tower
  ``retrieval`` score, ``p_play``, ``e_minutes``, ``final``; null where a slot
  has none) and, for an exploration slot, the ``propensity`` it was drawn
  with; then the ``versions`` that served it, ``degraded`` and why, and the
  milliseconds of each stage.
* **Never a 5xx for a user**: a dependency that fails or runs out of time
  gives the popular-in-region feed (``degraded: true``); so does an
  unexpected error, which is also logged (once a second, with a count).
* **Impression log**: one line per request with every returned item, its
  position, source, scores and propensity, the versions, the candidate counts
  per source and the filters' survival (the gateway's
  :class:`~mlsd_lib.serving.gateway.impressions.ImpressionLog`).
* :attr:`FeedService.models` is one reference, read once per request, so a
  release can be swapped in (:meth:`FeedService.swap`) without a request
  ever mixing two releases.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from mlsd_lib.recsys.feed import (
    EXPLORE,
    POPULAR,
    SOURCES,
    FeedModels,
    FeedPipeline,
    FeedResult,
    FeedUser,
)
from mlsd_lib.recsys.feed_features import ranker_schema
from mlsd_lib.serving.gateway.limits import api_key_checker
from mlsd_lib.serving.gateway.model_calls import call_model
from mlsd_lib.serving.gateway.schemas import EntityId, floats_or_none, json_response
from mlsd_lib.serving.gateway.score_route import UNAUTHORIZED
from mlsd_lib.serving.gateway.service import PipelineService, add_service
from mlsd_lib.serving.gateway.state import GatewayDep

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_PAGE_SIZE",
    "FeedContext",
    "FeedItem",
    "FeedRequestBody",
    "FeedResponseBody",
    "FeedService",
    "add_feed_routes",
    "feed_router",
]

#: The most items one feed request may ask for.
MAX_PAGE_SIZE = 50
Source = Literal[(*SOURCES, EXPLORE, POPULAR)]  # type: ignore[valid-type]


class FeedContext(BaseModel):
    """The profile the feed is for: where it is watched and its maturity setting."""

    model_config = ConfigDict(extra="forbid")

    region: Annotated[StrictInt, Field(ge=0, description="The profile's region.")]
    maturity_limit: Annotated[
        StrictInt,
        Field(ge=0, description="Highest maturity rating the profile may see."),
    ]


class FeedRequestBody(BaseModel):
    """One user's feed request."""

    model_config = ConfigDict(extra="forbid")

    user_id: EntityId
    context: FeedContext
    page_size: Annotated[StrictInt, Field(ge=1, le=MAX_PAGE_SIZE)] = 20


class ItemScores(BaseModel):
    """What each stage thought of the item (null where it did not score it)."""

    retrieval: float | None = Field(description="Two-tower inner product <u, v>.")
    p_play: float | None = Field(description="Ranker: P(engaged play) at slot 0.")
    e_minutes: float | None = Field(description="Ranker: E[minutes | engaged].")
    final: float | None = Field(description="p_play x e_minutes, what ranked it.")


class FeedItem(BaseModel):
    item_id: int
    position: int
    source: Source
    scores: ItemScores
    propensity: float | None = Field(
        description="For an exploration slot: the probability it was drawn with."
    )


class FeedVersions(BaseModel):
    release: str
    user_tower: str
    ranker: str
    index: str = Field(description="The model version that embedded the index.")


class FeedResponseBody(BaseModel):
    """The page, best first, and how it was made."""

    request_id: str
    items: list[FeedItem]
    versions: FeedVersions
    degraded: bool = Field(
        description="True when a dependency failed or ran out of time and the "
        "popular-in-region feed answered."
    )
    degraded_reason: str | None
    timings: dict[str, float] = Field(
        description="Milliseconds per stage (features, user_tower, ann, ranker, "
        "rerank) and in total, measured inside the gateway."
    )
    over_budget: list[str] = Field(
        description="Stages that took longer than their p99 budget this time."
    )


class FeedService(PipelineService):
    """The feed pipeline and the release it serves, as the route uses them."""

    pipeline: FeedPipeline
    #: What new requests are served by; :meth:`swap` replaces it.
    models: FeedModels
    swap = PipelineService.swap  # on this class too: the API pages cite its swap

    def __init__(self, pipeline: FeedPipeline, models: FeedModels) -> None:
        super().__init__(pipeline, models, logger)

    @property
    def n_regions(self) -> int:
        return self.models.catalogue.n_regions

    async def feed(self, user: FeedUser) -> FeedResult:
        """The pipeline's answer; the popular feed on an unexpected error too."""
        models = self.models  # one snapshot for the whole request
        try:
            return await self.pipeline.serve(models, user)
        except Exception as error:  # a bug must not cost a user their feed
            self.failures.warning(models.release, f"{type(error).__name__}: {error}")
            logger.debug("feed request failed", exc_info=True)
            page = self.pipeline.degraded(user, None)
            return FeedResult(
                user=user,
                versions=models.versions(),
                degraded=True,
                reason=f"internal error: {type(error).__name__}: {error}",
                timings_ms={},
                over_budget=(),
                **page,
            )

    async def ready(self, timeout_s: float) -> None:
        """Raise unless Redis answers and both models score a row."""
        pools, models = self.pipeline.pools, self.models
        await pools.call("redis", timeout_s, self.pipeline.client.ping, "Redis")
        history_len = models.history_len
        user_row = {
            "history": np.full((1, history_len), -1, np.int64),
            "dense": np.zeros((1, len(models.user_tower.columns["dense"])), np.float32),
            "categorical": np.zeros(
                (1, len(models.user_tower.columns["categorical"])), np.int64
            ),
        }
        await pools.call(
            "models", timeout_s, lambda: call_model(models.user_tower, user_row),
            "the user tower",
        )  # fmt: skip
        widths = {name: 0 for name in ("dense", "categorical")}
        for name, _ in ranker_schema():
            widths[name.split(":")[0]] += 1
        ranker_row = {
            "dense": np.zeros((1, widths["dense"]), np.float32),
            "categorical": np.zeros((1, widths["categorical"]), np.int64),
        }
        await pools.call(
            "models", timeout_s, lambda: call_model(models.ranker, ranker_row),
            "the ranker",
        )  # fmt: skip


def response_body(request_id: str, result: FeedResult) -> dict[str, Any]:
    """The JSON body (the documented :class:`FeedResponseBody`) of a result."""
    retrieval, p_play = (
        floats_or_none(result.retrieval_score),
        floats_or_none(result.p_play),
    )
    e_minutes, final = floats_or_none(result.e_minutes), floats_or_none(result.final)
    propensity = floats_or_none(result.propensity)
    items = [
        {
            "item_id": item,
            "position": position,
            "source": result.sources[position],
            "scores": {
                "retrieval": retrieval[position],
                "p_play": p_play[position],
                "e_minutes": e_minutes[position],
                "final": final[position],
            },
            "propensity": propensity[position],
        }
        for position, item in enumerate(result.items.tolist())
    ]
    return {
        "request_id": request_id,
        "items": items,
        "versions": result.versions,
        "degraded": result.degraded,
        "degraded_reason": result.reason or None,
        "timings": result.timings_ms,
        "over_budget": list(result.over_budget),
    }


def impression_line(
    request_id: str, result: FeedResult, body: dict[str, Any]
) -> dict[str, Any]:
    """The impression log's line: columns of the page, and how it was made."""
    report = result.filters
    return {
        "kind": "feed",
        "request_id": request_id,
        "time": time.time(),
        "user_id": result.user.user_id,
        "region": result.user.region,
        "maturity_limit": result.user.maturity_limit,
        "items": result.items.tolist(),
        "positions": list(range(len(result))),
        "sources": result.sources,
        "retrieval_score": result.retrieval_score.tolist(),
        "p_play": result.p_play.tolist(),
        "e_minutes": result.e_minutes.tolist(),
        "final": result.final.tolist(),
        "propensity": result.propensity.tolist(),
        "versions": result.versions,
        "degraded": result.degraded,
        "reason": result.reason,
        "candidates": result.candidates,
        "filters": None if report is None else report.to_dict(),
        "unmet": list(result.unmet),
        "timings": body["timings"],
    }


async def feed_service(request: Request) -> FeedService:
    """FastAPI dependency: the feed service of the app serving ``request``."""
    return request.app.state.feed


def feed_router(api_key: str | None) -> APIRouter:
    """``POST /v1/recs/feed``, behind the gateway's ``api_key`` (None: no auth)."""
    router = APIRouter()

    @router.post(
        "/v1/recs/feed",
        response_model=FeedResponseBody,
        responses={401: UNAUTHORIZED},
        dependencies=[Depends(api_key_checker(api_key))],
        tags=["recs"],
    )
    async def recs_feed(
        body: FeedRequestBody,
        gateway: GatewayDep,
        service: Annotated[FeedService, Depends(feed_service)],
    ) -> Response:
        """The user's feed: ``page_size`` items, best first, each with its
        source, position and scores; the popular-in-region feed, flagged
        ``degraded``, when Redis or the model server fails or is too slow."""
        n_regions, n_limits = service.n_regions, service.pipeline.tables.n_maturity
        context = body.context
        if context.region >= n_regions or context.maturity_limit >= n_limits:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"region must be below {n_regions} and maturity_limit below "
                f"{n_limits}; got {context.region} and {context.maturity_limit}.",
            )
        user = FeedUser(
            body.user_id, context.region, context.maturity_limit, body.page_size
        )
        result = await service.feed(user)
        request_id = uuid.uuid4().hex
        counters = gateway.counters
        counters["feed_requests"] = counters.get("feed_requests", 0) + 1
        if result.degraded:
            counters["feed_degraded"] = counters.get("feed_degraded", 0) + 1
        answer = response_body(request_id, result)
        gateway.log.append(impression_line(request_id, result, answer))
        return json_response(answer)

    return router


def add_feed_routes(app: FastAPI, service: FeedService, api_key: str | None) -> FastAPI:
    """Include :func:`feed_router` in a gateway made by ``create_app``.

    Puts ``service`` at ``app.state.feed``, adds its readiness check to
    ``/readyz`` and starts and stops its thread pools with the app.
    ``api_key`` must be the gateway's own (None when auth is disabled).
    """
    return add_service(app, "feed", service, feed_router(api_key))
