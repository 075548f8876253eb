"""Choose the model server: real Triton where it can run, in-process otherwise.

Introduced in ``notebooks/00_environment.ipynb``. Both servers have the same
interface (:class:`ModelServer`), so notebooks and the gateway do not care which
one they got; they only print :meth:`ModelServer.describe` so the reader knows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from mlsd_lib.config import Settings, load_settings
from mlsd_lib.redis_backend import RealBackendRequired
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.remote_triton import RemoteTritonServer
from mlsd_lib.serving.tensors import BatchedInferFn, TensorSpec
from mlsd_lib.serving.triton_repository_server import TritonRepositoryServer
from mlsd_lib.serving.triton_server import (
    TritonStartError,
    triton_unavailable_reason,
)

__all__ = ["ModelServer", "TensorSpec", "start_model_server"]


class ModelServer(Protocol):
    """What every model server offers.

    ``bind`` serves a Python callable (refused by the repository server, which
    runs model files only); ``load_artifact`` serves a registered TorchScript or
    ``torch.export`` file, wherever the server runs its models.
    """

    kind: str
    thread_safe: bool

    def bind(
        self,
        name: str,
        infer_fn: BatchedInferFn,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        max_batch_size: int = 64,
    ) -> None:
        """Serve the Python callable ``infer_fn`` as model ``name``: batched
        ``inputs`` in, batched ``outputs`` out, at most ``max_batch_size`` rows."""
        ...

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
        """Serve registered ``version`` of a model from its file as ``name``,
        after checking the file's ``sha256``; return once it answers."""
        ...

    def has_model(self, name: str) -> bool:
        """Whether ``name`` is served now."""
        ...

    def infer(
        self, model: str, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Score one batch: named arrays in (batch axis first), named arrays out.
        Inputs that do not match the model's tensors are refused with
        :class:`~mlsd_lib.serving.tensors.MalformedRequest` before they reach it."""
        ...

    def describe(self) -> str:
        """One line saying which server this is and where, for the notebook."""
        ...

    def stop(self) -> None:
        """Stop the server and everything it started (idempotent)."""
        ...

    def __enter__(self) -> ModelServer: ...

    def __exit__(self, *exc_info: object) -> None: ...


def start_model_server(
    settings: Settings | None = None, *, announce: bool = True
) -> TritonRepositoryServer | InProcessModelServer | RemoteTritonServer:
    """Connect to ``TRITON_URL`` if set; else start Triton over a model repository
    (:class:`~mlsd_lib.serving.triton_repository_server.TritonRepositoryServer`)
    if it can run here, else the in-process server; and say which.

    A Triton that is expected to run but fails to start falls back too, with the
    reason in the announcement, unless ``MLSD_REQUIRE_REAL_BACKENDS`` is set, in
    which case the failure is raised. An unreachable ``TRITON_URL`` is always an
    error: a reader who named a server wants that server.
    """
    settings = settings or load_settings()
    server: TritonRepositoryServer | InProcessModelServer | RemoteTritonServer
    if settings.triton_url:
        server = RemoteTritonServer(settings.triton_url).start()
        if announce:
            print(server.describe())
        return server
    reason = triton_unavailable_reason()
    if reason is None:
        try:
            server = TritonRepositoryServer().start()
        except TritonStartError as error:
            if settings.require_real_backends:
                raise
            server = InProcessModelServer(f"tritonserver failed to start: {error}")
    else:
        server = InProcessModelServer(f"{reason}")
    if settings.require_real_backends and server.kind != "triton":
        raise RealBackendRequired(
            "MLSD_REQUIRE_REAL_BACKENDS is set, but tritonserver cannot run here: "
            f"{reason}."
        )
    if announce:
        print(server.describe())
    return server
