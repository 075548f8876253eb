"""The in-process model server: same interface as Triton, no network.

Introduced in ``notebooks/00_environment.ipynb``.

Used where ``tritonserver`` cannot run (macOS, Windows, a container with too
little ``/dev/shm``), and as the no-network baseline in benchmarks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.tensors import BatchedInferFn, TensorSpec, check_inputs


@dataclass(frozen=True)
class BoundModel:
    """A model registered with a server: its function and its signature."""

    name: str
    #: None where the server runs the model from a file (a model repository).
    infer_fn: BatchedInferFn | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int


class ModelServerNotRunning(MlsdError, RuntimeError):
    """The model server was asked for something before ``start()`` or after
    ``stop()``."""


class UnknownModel(MlsdError, KeyError):
    """The request names a model the server does not host."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class ModelRegistryMixin:
    """Model bookkeeping shared by every model server."""

    def __init__(self) -> None:
        self._models: dict[str, BoundModel] = {}

    def _register(self, model: BoundModel) -> None:
        if model.max_batch_size < 1:
            raise ValueError(
                f"max_batch_size must be >= 1, got {model.max_batch_size}."
            )
        self._models[model.name] = model

    def _model(self, name: str) -> BoundModel:
        try:
            return self._models[name]
        except KeyError:
            raise UnknownModel(
                f"model {name!r} is not bound to this server "
                f"(bound: {sorted(self._models)})."
            ) from None

    @property
    def model_names(self) -> list[str]:
        return sorted(self._models)

    def has_model(self, name: str) -> bool:
        return name in self._models


class LoadsArtifactsHere:
    """``load_artifact`` for servers that run models in this process (and
    define ``bind``)."""

    def load_artifact(
        self,
        name: str,
        version: int,
        artifact: str | Path,
        *,
        sha256: str,
        format: str,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        max_batch_size: int,
        dynamic_batching: bool = True,
        max_queue_delay_us: int = 0,
    ) -> None:
        """Verify and load the artifact here, and bind it as ``name``.

        Same signature as
        :meth:`~mlsd_lib.serving.triton_repository_server.TritonRepositoryServer.load_artifact`,
        so the deployer does not care where the model will run.
        """
        from mlsd_lib.serving.artifacts import artifact_infer_fn

        infer_fn = artifact_infer_fn(
            artifact, sha256=sha256, format=format, inputs=inputs, outputs=outputs
        )
        self.bind(  # type: ignore[attr-defined]
            name,
            infer_fn,
            tuple(inputs),
            tuple(outputs),
            max_batch_size,
            **self._batching_options(dynamic_batching, max_queue_delay_us),
        )

    def _batching_options(
        self, dynamic_batching: bool, max_queue_delay_us: int
    ) -> dict[str, object]:
        """What ``bind`` takes of the batching options; a server without a
        batcher takes none of them."""
        return {}


class InProcessModelServer(LoadsArtifactsHere, ModelRegistryMixin):
    """Calls the bound function directly, after the same input checks Triton makes."""

    kind = "in-process"
    #: Whether ``infer`` may be called from several threads at once.
    thread_safe = True

    def __init__(self, reason: str = "requested") -> None:
        super().__init__()
        self.reason = reason

    def bind(
        self,
        name: str,
        infer_fn: BatchedInferFn,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        max_batch_size: int = 64,
    ) -> None:
        """Register a model. Works before or after :meth:`start`."""
        self._register(
            BoundModel(name, infer_fn, tuple(inputs), tuple(outputs), max_batch_size)
        )

    def start(self) -> InProcessModelServer:
        return self

    def infer(
        self, model: str, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        bound = self._model(model)
        check_inputs(bound.inputs, inputs)
        result = bound.infer_fn(**{k: np.asarray(v) for k, v in inputs.items()})
        return {spec.name: np.asarray(result[spec.name]) for spec in bound.outputs}

    def unload(self, name: str) -> None:
        """Forget ``name`` (its module is freed with the last reference)."""
        self._model(name)
        del self._models[name]

    def describe(self) -> str:
        return f"Model server: in-process (no network); {self.reason}"

    def stop(self) -> None:
        self._models.clear()

    def __enter__(self) -> InProcessModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
