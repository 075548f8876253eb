"""A Triton you run yourself (``TRITON_URL``): models are deployed there, not here.

Introduced in ``notebooks/00_environment.ipynb``.

In production the model server is its own deployment (the official Triton
container serving a model repository), and the application only checks the
contract: the model is loaded, and its inputs and outputs are the ones the
caller will send and read. :meth:`RemoteTritonServer.bind` does exactly that
check, so a notebook written against the local server runs unchanged against a
real deployment, or fails saying which model or tensor does not match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.inprocess import (
    BoundModel,
    ModelRegistryMixin,
    ModelServerNotRunning,
)
from mlsd_lib.serving.tensors import BatchedInferFn, TensorSpec, check_inputs
from mlsd_lib.serving.triton_client import TritonClient
from mlsd_lib.serving.triton_server import TritonUnavailable


class ModelNotDeployed(MlsdError, LookupError):
    """The remote server does not serve the model, or serves a different signature."""


def _expected_signature(
    specs: tuple[TensorSpec, ...], max_batch_size: int
) -> list[tuple[str, str, tuple[int, ...]]]:
    batch_axis = (-1,) if max_batch_size > 0 else ()
    return [
        (s.name, np_to_triton_dtype(np.dtype(s.dtype)), batch_axis + tuple(s.shape))
        for s in specs
    ]


class RemoteTritonServer(ModelRegistryMixin):
    """Talks to the Triton at ``url`` (``http://host:port`` or ``grpc://host:port``)."""

    kind = "remote-triton"
    #: Whether ``infer`` may be called from several threads at once.
    thread_safe = False  # one shared client

    def __init__(self, url: str, request_timeout_s: float = 10.0) -> None:
        super().__init__()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "grpc") or not parts.hostname or not parts.port:
            raise ValueError(
                f"TRITON_URL={url!r} must look like http://host:8000 or grpc://host:8001."
            )
        self.url = url
        self.protocol = parts.scheme
        self.address = f"{parts.hostname}:{parts.port}"
        self.request_timeout_s = request_timeout_s
        self._client: TritonClient | None = None
        self._version = "unknown"

    def start(self) -> RemoteTritonServer:
        client = TritonClient(self.address, self.protocol, self.request_timeout_s)
        try:
            ready = client.is_server_ready()
            self._version = client.server_version()
        except Exception as error:
            client.close()
            raise TritonUnavailable(
                f"TRITON_URL={self.url} does not answer "
                f"({type(error).__name__}: {error}). Start that server, fix "
                "TRITON_URL, or unset it to let the library start "
                "its own tritonserver."
            ) from error
        if not ready:
            client.close()
            raise TritonUnavailable(
                f"TRITON_URL={self.url} answers but reports not ready."
            )
        self._client = client
        return self

    def bind(
        self,
        name: str,
        infer_fn: BatchedInferFn,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        max_batch_size: int = 64,
    ) -> None:
        """Check that the server already serves ``name`` with this signature.

        ``infer_fn`` is not sent anywhere (the deployed artifact is what runs); it is
        kept so callers can compare the served scores with the local model.
        """
        self._check_deployed(name, tuple(inputs), tuple(outputs), max_batch_size)
        self._register(
            BoundModel(name, infer_fn, tuple(inputs), tuple(outputs), max_batch_size)
        )

    def _check_deployed(
        self,
        name: str,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        max_batch_size: int,
    ) -> None:
        client = self._require_client()
        try:
            ready = client.is_model_ready(name)
        except InferenceServerException:
            ready = False
        if not ready:
            raise ModelNotDeployed(
                f"model {name!r} is not loaded on TRITON_URL={self.url}: deploy it "
                "there "
                "(a model repository entry with its config.pbtxt) or unset TRITON_URL."
            )
        served = client.model_signature(name)
        expected = {
            "inputs": _expected_signature(tuple(inputs), max_batch_size),
            "outputs": _expected_signature(tuple(outputs), max_batch_size),
        }
        for kind in ("inputs", "outputs"):
            if sorted(served[kind]) != sorted(expected[kind]):
                raise ModelNotDeployed(
                    f"model {name!r} on TRITON_URL={self.url} has {kind} "
                    f"{sorted(served[kind])}, the caller expects "
                    f"{sorted(expected[kind])} (name, datatype, shape)."
                )

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
        """Check that the server serves ``name`` with this signature.

        The artifact is not sent: on a server you run yourself, the deployment
        pipeline puts it in that server's model repository
        (:func:`~mlsd_lib.serving.model_repository.write_python_backend_model`
        or :func:`~mlsd_lib.serving.model_repository.write_triton_repository`).
        """
        self._check_deployed(name, tuple(inputs), tuple(outputs), max_batch_size)
        self._register(
            BoundModel(name, None, tuple(inputs), tuple(outputs), max_batch_size)
        )

    def infer(
        self, model: str, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        bound = self._model(model)
        check_inputs(bound.inputs, inputs)
        return self._require_client().infer(
            model, inputs, [s.name for s in bound.outputs]
        )

    def _require_client(self) -> TritonClient:
        if self._client is None:
            raise ModelServerNotRunning(
                "RemoteTritonServer is not connected: call start() first."
            )
        return self._client

    def describe(self) -> str:
        return (
            f"Model server: tritonserver {self._version} at {self.url} "
            "(from TRITON_URL)"
        )

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> RemoteTritonServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
