"""One running gateway's parts, shared by every route family.

Introduced in ``notebooks/model_serving.ipynb``. The scoring, health and admin
routes (and a case study's own routes, such as the ad-click
``POST /v1/ads/score``) are separate modules; what they share is one
:class:`GatewayState`: the configuration, the deployment switch, the scorer,
the impression log, the shadow scorer and the counters. ``create_app`` puts it
at ``app.state.gateway``; a handler receives it by declaring a parameter of type
:data:`GatewayDep`.

A route built on the gateway calls :meth:`GatewayState.answer` with a
:class:`~mlsd_lib.serving.gateway.schemas.ScoreRequest` and gets the body
``/score`` would answer, so routing, canary, features, model, fallback, shadow
and the impression log are implemented once.

A gateway may also carry only a case study's own routes (the recommender's
``POST /v1/recs/feed`` calls two models per request, not one ``/score``
deployment): made with ``deployments=None`` it has no ``/score``, and such a
route adds what ``/readyz`` must check to :attr:`GatewayState.readiness_checks`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.serving.gateway.config import Deployments, GatewayConfig
from mlsd_lib.serving.gateway.hotswap import DeploymentSwitch
from mlsd_lib.serving.gateway.impressions import ImpressionLog
from mlsd_lib.serving.gateway.schemas import ScoreRequest
from mlsd_lib.serving.gateway.score_path import score_with
from mlsd_lib.serving.gateway.scoring import Scorer
from mlsd_lib.serving.gateway.shadow import ShadowScorer
from mlsd_lib.serving.gateway.throttled_log import ThrottledLog

logger = logging.getLogger(__name__)

#: A readiness check: raises (any exception, its message the reason) unless the
#: dependency it checks answers within the timeout it is given, in seconds.
ReadinessCheck = Callable[[float], Awaitable[None]]


class NoScoreDeployments(MlsdError, RuntimeError):
    """A gateway made without ``/score`` deployments was asked to score."""


class GatewayState:
    """The parts of a running gateway; ``app.state.gateway`` in handlers and tests.

    ``reload``, when given, builds the deployments to serve next; ``POST
    /admin/reload`` calls it and hot-swaps to what it returns. ``deployments``
    is None for a gateway that serves only a case study's own routes.
    """

    def __init__(
        self,
        config: GatewayConfig,
        store: OnlineStore,
        deployments: Deployments | None,
        *,
        reload: Callable[[], Deployments] | None = None,
    ) -> None:
        self.config = config
        self.reload = reload
        self.switch = None if deployments is None else DeploymentSwitch(deployments)
        #: Extra ``/readyz`` checks by name, added by the routes that need them.
        self.readiness_checks: dict[str, ReadinessCheck] = {}
        self.scorer = Scorer(
            store,
            config.entities,
            feature_timeout_s=config.feature_timeout_s,
            model_timeout_s=config.model_timeout_s,
            threads=config.worker_threads,
        )
        self.log = ImpressionLog(
            config.impression_log_path, config.impression_queue_size
        )
        self.shadow = ShadowScorer(self.scorer, self.log, config.shadow_queue_size)
        #: Model failures, one line per version per second (not one per request).
        self.failures = ThrottledLog(logger)
        self.counters = {
            "requests": 0,
            "degraded": 0,
            "fallback": 0,
            "unavailable": 0,
            "swaps": 0,
        }

    @property
    def has_deployments(self) -> bool:
        """Whether this gateway scores through ``/score`` deployments."""
        return self.switch is not None

    @property
    def deployments(self) -> Deployments:
        """What new requests are served by (a hot swap replaces it)."""
        return self._switch().current

    def _switch(self) -> DeploymentSwitch:
        if self.switch is None:
            raise NoScoreDeployments(
                "this gateway was made without /score deployments "
                "(create_app(..., deployments=None)); pass Deployments to score "
                "through it."
            )
        return self.switch

    async def answer(self, body: ScoreRequest) -> dict[str, Any]:
        """Score ``body`` as ``/score`` does and return its JSON body.

        The one entry point for routes built on the gateway: it takes a snapshot
        of the deployments and runs the whole scoring path (see
        :func:`~mlsd_lib.serving.gateway.score_path.score_with`). Raises
        :class:`~fastapi.HTTPException` (422 for missing context, 503 when no
        model could answer) as ``/score`` does.
        """
        with self._switch().snapshot() as deployments:
            return await score_with(self, deployments, body)

    def start(self) -> None:
        self.scorer.start()
        self.log.start()
        self.shadow.start()

    def close(self) -> None:
        """Finish shadow jobs, write every queued line, stop the thread pools."""
        self.shadow.close()
        self.log.close()
        self.scorer.close()

    def drain(self) -> None:
        """Wait until every shadow job and log line so far is written (tests use it)."""
        self.shadow.drain()
        self.log.flush()

    def stats(self) -> dict[str, int]:
        return {
            **self.counters,
            "impressions_written": self.log.written,
            "impressions_dropped": self.log.dropped,
            "shadow_scored": self.shadow.scored,
            "shadow_dropped": self.shadow.dropped,
            "shadow_failed": self.shadow.failed,
        }

    async def swap(self, new: Deployments) -> dict[str, Any]:
        """Hot-swap to ``new`` (warm up, switch, drain); SwapRefused keeps the old."""
        new.check_refs(self.scorer.store.registry)
        report = await self._switch().swap(
            new,
            self.scorer,
            warmup_timeout_s=self.config.warmup_timeout_s,
            drain_timeout_s=self.config.drain_timeout_s,
        )
        self.counters["swaps"] += 1
        logger.info("hot swap: %s -> %s", report.before, report.after)
        return report.to_json()


async def gateway_state(request: Request) -> GatewayState:
    """FastAPI dependency: the state of the gateway serving ``request``."""
    return request.app.state.gateway


#: A handler parameter annotated with this receives the gateway's state.
GatewayDep = Annotated[GatewayState, Depends(gateway_state)]
