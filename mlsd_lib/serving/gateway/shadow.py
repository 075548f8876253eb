"""Shadow scoring: a candidate model sees live traffic, and nobody sees its scores.

Introduced in ``notebooks/model_serving.ipynb``. Before a new model serves anyone
(even a canary), it can score the same requests as production, off the request
path: the request handler puts a job on a bounded queue and returns; one worker
thread fetches the shadow's features (reusing the request's when the input refs
match), calls the shadow model and writes the scores to the impression log as a
``"kind": "shadow"`` line with the request's id. Comparing the two on the same
requests is the safest first test of a model.

The queue is bounded and ``put`` never waits: when the shadow falls behind, jobs
are dropped and counted (``dropped``), because a shadow must never slow down the
requests it observes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from mlsd_lib.serving.gateway.background import STOP, BoundedWorker
from mlsd_lib.serving.gateway.config import Deployment
from mlsd_lib.serving.gateway.impressions import ImpressionLog
from mlsd_lib.serving.gateway.scoring import FeatureMatrix, ModelFailed, Scorer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowJob:
    """What the shadow needs from one served request."""

    deployment: Deployment
    """The shadow model, as configured when the request started."""
    request_id: str
    user_id: int
    candidate_ids: list[int]
    refs: tuple[str, ...]
    features: FeatureMatrix
    """The features the request fetched for ``refs`` (reused when they match)."""
    context: dict[str, float]
    """The request's context values."""


class ShadowScorer(BoundedWorker):
    """One worker thread scoring each job's shadow deployment from a bounded queue."""

    def __init__(
        self,
        scorer: Scorer,
        log: ImpressionLog,
        max_queued: int = 256,
    ) -> None:
        super().__init__("shadow-scorer", max_queued)
        self.scorer = scorer
        self.log = log
        self.failed = 0
        self.scored = 0

    def submit(self, job: ShadowJob) -> bool:
        """Queue a job without waiting; False (and counted) when the queue is full."""
        return self._offer(job)

    def drain(self) -> None:
        """Wait until every queued job is scored (or has failed)."""
        self._wait_idle()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is STOP:
                    return
                self._score(job)
            finally:
                self._queue.task_done()

    def _score(self, job: ShadowJob) -> None:
        deployment = job.deployment
        try:
            features = job.features
            if deployment.input_refs != job.refs:
                features = self.scorer.read_features(
                    deployment.input_refs, job.user_id, job.candidate_ids
                )
            values = self.scorer.model_input(deployment, features.values, job.context)
            scores = self.scorer.score_blocking(deployment, values)
        except ModelFailed as error:
            self.failed += 1
            logger.warning("shadow %s: %s", deployment.version, error)
            return
        except Exception:  # a shadow must never take the worker down
            self.failed += 1
            logger.exception("shadow %s failed", deployment.version)
            return
        self.scored += 1
        self.log.append(
            {
                "kind": "shadow",
                "request_id": job.request_id,
                "time": time.time(),
                "user_id": job.user_id,
                "candidate_ids": job.candidate_ids,
                "scores": scores.tolist(),
                "model_version": deployment.version,
                "degraded": features.degraded,
            }
        )
