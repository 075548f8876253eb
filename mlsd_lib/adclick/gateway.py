"""``POST /v1/ads/score``: the ad-click API on top of the generic gateway.

Introduced in ``casestudies/ad_click/05_serving_and_ab_test.ipynb``. The generic
``/score`` takes ids and a free-form ``context`` and returns scores in request
order; an ads client wants a typed request (a user, the hour and device of the
request, the candidate ads) and the ads back **sorted by pCTR**, ready for the
auction. This route translates one into the other and reuses the whole scoring
path (routing, canary, features, model, fallback, shadow, impression log)
through :meth:`~mlsd_lib.serving.gateway.state.GatewayState.answer`, so nothing
about serving is implemented twice. Candidates are scored for slot 0
(see :mod:`mlsd_lib.adclick.serving` on position bias).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from mlsd_lib.serving.gateway.limits import api_key_checker
from mlsd_lib.serving.gateway.schemas import EntityId, ScoreRequest, Timings
from mlsd_lib.serving.gateway.score_route import UNAUTHORIZED, UNAVAILABLE
from mlsd_lib.serving.gateway.state import GatewayDep
from mlsd_lib.worlds.ads_config import DEVICES

Device = Literal[DEVICES]  # type: ignore[valid-type]


class AdContext(BaseModel):
    """When and where the ad request was made."""

    model_config = ConfigDict(extra="forbid")

    hour: Annotated[StrictInt, Field(ge=0, le=23, description="Local hour, 0-23.")]
    device: Device = Field(description=f"One of {list(DEVICES)}.")


class AdsScoreRequest(BaseModel):
    """A user, the request's context, and the ads competing for the slot."""

    model_config = ConfigDict(extra="forbid")

    user_id: EntityId
    context: AdContext
    ad_ids: list[EntityId] = Field(
        min_length=1, max_length=500, description="Candidate ads (distinct)."
    )


class ScoredAd(BaseModel):
    ad_id: int
    pctr: float = Field(description="Calibrated p(click) if shown in slot 0.")


class AdsScoreResponse(BaseModel):
    """The candidates sorted by pCTR (highest first), and who scored them."""

    request_id: str
    model_version: str
    route: Literal["production", "canary"]
    ads: list[ScoredAd]
    degraded: bool
    fallback: bool
    timings: Timings


def ads_router(api_key: str | None) -> APIRouter:
    """``POST /v1/ads/score``, for a gateway made by ``create_app`` to include.

    ``api_key`` must be the gateway's own key (``None`` when auth is disabled).
    """
    router = APIRouter()

    @router.post(
        "/v1/ads/score",
        response_model=AdsScoreResponse,
        responses={
            401: UNAUTHORIZED,
            503: UNAVAILABLE,
        },
        dependencies=[Depends(api_key_checker(api_key))],
        tags=["ads"],
    )
    async def score_ads(body: AdsScoreRequest, gateway: GatewayDep) -> AdsScoreResponse:
        """Score each candidate ad for this user and context; sorted by pCTR."""
        if len(set(body.ad_ids)) != len(body.ad_ids):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "ad_ids repeats an ad; send each candidate once.",
            )
        generic = ScoreRequest(
            user_id=body.user_id,
            candidate_ids=body.ad_ids,
            context={
                "hour": float(body.context.hour),
                "device": float(DEVICES.index(body.context.device)),
                "position": 0.0,
            },
        )
        answer = await gateway.answer(generic)
        ranked = sorted(
            zip(body.ad_ids, answer["scores"], strict=True),
            key=lambda pair: (-pair[1], pair[0]),
        )
        return AdsScoreResponse(
            request_id=answer["request_id"],
            model_version=answer["model_version"],
            route=answer["route"],
            ads=[ScoredAd(ad_id=ad, pctr=p) for ad, p in ranked],
            degraded=answer["degraded"],
            fallback=answer["fallback"],
            timings=Timings(**answer["timings"]),
        )

    return router


def add_ads_routes(app: FastAPI, api_key: str | None) -> FastAPI:
    """Include :func:`ads_router` in a gateway made by ``create_app``; returns it."""
    app.include_router(ads_router(api_key))
    return app
