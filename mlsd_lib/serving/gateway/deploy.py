"""From the model registry's stages to the deployments a gateway serves.

Introduced in ``notebooks/model_serving.ipynb``. The registry says *which*
version is in production, canary and shadow; this module makes that true on a
model server: it loads each staged version's file (checksum verified, nothing
unpickled) onto the server under a name that includes its version, and
returns the :class:`~mlsd_lib.serving.gateway.config.Deployments` to route to.
The version's recorded input schema *is* the list of feature references the
gateway fetches, in column order, so a model can never be fed features in an
order it was not trained on; ``request:<name>`` entries at its end name the
request-time context columns that follow them.

The release procedure is then: register, ``promote`` in the registry, and
``POST /admin/reload`` on the gateway, which calls
:meth:`RegistryDeployer.deployments` and hot-swaps
(:mod:`~mlsd_lib.serving.gateway.hotswap`).
``rollback`` followed by a reload is the way back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import torch

from mlsd_lib.serving.gateway.config import (
    Deployment,
    Deployments,
    GatewayConfigError,
)
from mlsd_lib.serving.model_server import ModelServer
from mlsd_lib.serving.registry import ModelRegistry, ModelVersion, RegistryError
from mlsd_lib.serving.tensors import BatchedInferFn, TensorSpec
from mlsd_lib.validation import require_fraction


def torch_infer_fn(
    module: Callable[[torch.Tensor], torch.Tensor],
    input_name: str = "features",
    output_name: str = "score",
) -> BatchedInferFn:
    """Wrap a loaded ``features [n, k] -> scores [n] or [n, 1]`` module for a
    model server: numpy in, ``{output_name: float32 [n, 1]}`` out."""

    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = module(torch.from_numpy(np.ascontiguousarray(inputs[input_name])))
        return {output_name: out.reshape(-1, 1).numpy().astype(np.float32)}

    return infer


#: Input-schema entries with this prefix come from the request, not the store.
REQUEST_PREFIX = "request:"


def split_schema(names: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A recorded input schema as (store refs, request context names).

    The store's ``view:feature`` references come first, then ``request:<name>``
    entries; a schema that mixes the two orders is refused, because the gateway
    always appends the context after the store's columns.
    """
    context_at = [i for i, n in enumerate(names) if n.startswith(REQUEST_PREFIX)]
    if context_at and context_at != list(range(context_at[0], len(names))):
        raise GatewayConfigError(
            f"input schema {names} interleaves store features and request context; "
            f"list every {REQUEST_PREFIX!r} entry after the store's references."
        )
    cut = context_at[0] if context_at else len(names)
    context = tuple(n.removeprefix(REQUEST_PREFIX) for n in names[cut:])
    return tuple(names[:cut]), context


def served_name(record: ModelVersion) -> str:
    """The name a version is bound under on a model server: ``ctr-v3``."""
    return f"{record.name}-v{record.version}"


def load_registered(
    registry: ModelRegistry,
    record: ModelVersion,
    server: ModelServer,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    *,
    max_batch_size: int,
    max_queue_delay_us: int = 0,
) -> str:
    """Load ``record`` onto ``server`` under :func:`served_name` unless a
    model of that name is there already; the file is verified against the
    registry's sha256 first. Returns the served name."""
    model_name = served_name(record)
    if not server.has_model(model_name):
        record = registry.verify(record.name, record.version)
        server.load_artifact(
            model_name,
            record.version,
            record.artifact,
            sha256=record.sha256,
            format=record.format,
            inputs=inputs,
            outputs=outputs,
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
        )
    return model_name


class RegistryDeployer:
    """Loads the registry's staged versions onto a model server, on demand.

    Each version is loaded from its registered file (sha256 verified) with the
    server's ``load_artifact``: on
    :class:`~mlsd_lib.serving.triton_repository_server.TritonRepositoryServer`
    it is written into Triton's model repository and runs in Triton's own
    processes. ``fallback_server`` (usually in-process) also gets the
    production version, which becomes the fallback deployment: same file, no
    network. A version is loaded when a stage first names it; after a hot swap
    has drained, the versions no stage names any more are unloaded
    (``Deployment.unload_when_retired``), and a rollback loads its version again.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        name: str,
        server: ModelServer,
        *,
        fallback_server: ModelServer | None = None,
        canary_fraction: float = 0.1,
        max_batch_size: int = 512,
        max_queue_delay_us: int = 0,
        input_name: str = "features",
        output_name: str = "score",
    ) -> None:
        self.registry = registry
        self.name = name
        self.server = server
        self.fallback_server = fallback_server
        self.canary_fraction = require_fraction(
            "canary_fraction", canary_fraction, zero=True, error=GatewayConfigError
        )
        self.max_batch_size = max_batch_size
        self.max_queue_delay_us = max_queue_delay_us
        self.input_name = input_name
        self.output_name = output_name
        self._lock = threading.Lock()

    def deployments(self) -> Deployments:
        """The deployments the registry's stages name now (loading what is new)."""
        with self._lock:
            staged = {
                stage: self.registry.stage_version(self.name, stage)
                for stage in ("production", "canary", "shadow")
            }
            if staged["production"] is None:
                raise RegistryError(
                    f"no version of {self.name!r} is in production; promote one "
                    "before deploying."
                )
            # A canary or shadow that has been promoted to production is done: it
            # serves everyone now, and one version cannot be two deployments.
            for stage in ("canary", "shadow"):
                if staged[stage] == staged["production"]:
                    staged[stage] = None
            made = {
                stage: self._deploy(self.server, self.registry.get(self.name, v))
                for stage, v in staged.items()
                if v is not None
            }
            fallback = None
            if self.fallback_server is not None:
                record = self.registry.get(self.name, staged["production"])
                fallback = self._deploy(self.fallback_server, record, "-inprocess")
            canary = made.get("canary")
            return Deployments(
                production=made["production"],
                canary=canary,
                canary_fraction=self.canary_fraction if canary is not None else 0.0,
                shadow=made.get("shadow"),
                fallback=fallback,
            )

    def _deploy(
        self, server: ModelServer, record: ModelVersion, suffix: str = ""
    ) -> Deployment:
        refs, context = split_schema(record.feature_names)
        width = len(refs) + len(context)
        model_name = load_registered(
            self.registry,
            record,
            server,
            (TensorSpec(self.input_name, np.float32, (width,)),),
            (TensorSpec(self.output_name, np.float32, (1,)),),
            max_batch_size=self.max_batch_size,
            max_queue_delay_us=self.max_queue_delay_us,
        )
        return Deployment(
            version=model_name + suffix,
            server=server,
            model_name=model_name,
            input_refs=refs,
            input_name=self.input_name,
            output_name=self.output_name,
            context=context,
            unload_when_retired=True,
        )
