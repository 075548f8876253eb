"""``POST /v1/ads/score``: the ad-click API on top of the generic gateway.

Introduced in ``casestudies/ad_click/05_serving_and_ab_test.ipynb``. The generic
``/score`` takes ids and a free-form ``context`` and returns scores in request
order; an ads client wants a typed request (a user, the hour and device of the
request, the candidate ads) and the ads back **sorted by pCTR**, ready for the
auction. This route translates one into the other and reuses the whole scoring
path (routing, canary, features, model, fallback, shadow, impression log), so
nothing about serving is implemented twice. Candidates are scored for slot 0
(see :mod:`mlsd_lib.adclick.serving` on position bias).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from mlsd_lib.serving.gateway.limits import api_key_checker
from mlsd_lib.serving.gateway.schemas import ErrorResponse, ScoreRequest, Timings
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

    user_id: Annotated[StrictInt, Field(ge=0)]
    context: AdContext
    ad_ids: list[Annotated[StrictInt, Field(ge=0)]] = Field(
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


def add_ads_routes(app: FastAPI, api_key: str | None) -> FastAPI:
    """Add ``POST /v1/ads/score`` to a gateway made by ``create_app``.

    ``api_key`` must be the gateway's own key (``None`` when auth is disabled).
    """
    require_key = api_key_checker(api_key)

    @app.post(
        "/v1/ads/score",
        response_model=AdsScoreResponse,
        responses={
            401: {"model": ErrorResponse, "description": "missing or wrong API key"},
            503: {"model": ErrorResponse, "description": "no model could answer"},
        },
        dependencies=[Depends(require_key)],
        tags=["ads"],
    )
    async def score_ads(body: AdsScoreRequest) -> AdsScoreResponse:
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
        answer = await app.state.answer(generic)
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

    return app
