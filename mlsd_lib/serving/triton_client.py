"""A small client for a Triton Inference Server, over HTTP or gRPC.

Introduced in ``notebooks/00_environment.ipynb``.

Both protocols speak Triton's KServe v2 API; ``tritonclient`` provides one
module per protocol with near-identical classes, so one thin wrapper serves both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import np_to_triton_dtype

from mlsd_lib.net import LOOPBACK
from mlsd_lib.serving.inprocess import ModelServerNotRunning
from mlsd_lib.serving.per_thread import PerThread
from mlsd_lib.serving.tensors import check_inputs

Protocol = Literal["http", "grpc"]


class TritonClient:
    """Send named numpy arrays to a model on a Triton server; get named arrays back.

    ``address`` is ``host:port`` without a scheme (the HTTP or gRPC port, to match
    ``protocol``). ``timeout_s`` bounds each request, so a stuck server cannot hang
    the caller.
    """

    def __init__(
        self, address: str, protocol: Protocol = "http", timeout_s: float = 10.0
    ):
        if protocol not in ("http", "grpc"):
            raise ValueError(f"protocol must be 'http' or 'grpc', got {protocol!r}.")
        self.address = address
        self.protocol = protocol
        self.timeout_s = timeout_s
        if protocol == "http":
            self._module = httpclient
            self._client = httpclient.InferenceServerClient(
                url=address, connection_timeout=timeout_s, network_timeout=timeout_s
            )
        else:
            self._module = grpcclient
            self._client = grpcclient.InferenceServerClient(url=address)

    def is_server_ready(self) -> bool:
        return bool(self._client.is_server_ready())

    def is_model_ready(self, model: str) -> bool:
        return bool(self._client.is_model_ready(model))

    def server_version(self) -> str:
        metadata = self._client.get_server_metadata()
        return metadata["version"] if isinstance(metadata, dict) else metadata.version

    def model_signature(
        self, model: str
    ) -> dict[str, list[tuple[str, str, tuple[int, ...]]]]:
        """``{"inputs": [(name, datatype, shape)], "outputs": [...]}`` as the server
        reports them (shapes include the batch axis, as -1, for batching models)."""
        metadata = self._client.get_model_metadata(model)

        def tensors(kind: str) -> list[tuple[str, str, tuple[int, ...]]]:
            if isinstance(metadata, dict):
                return [
                    (t["name"], t["datatype"], tuple(int(d) for d in t["shape"]))
                    for t in metadata[kind]
                ]
            return [
                (t.name, t.datatype, tuple(int(d) for d in t.shape))
                for t in getattr(metadata, kind)
            ]

        return {"inputs": tensors("inputs"), "outputs": tensors("outputs")}

    def infer(
        self, model: str, inputs: Mapping[str, np.ndarray], output_names: list[str]
    ) -> dict[str, np.ndarray]:
        """One inference request; arrays keep their batch axis."""
        requests = []
        for name, array in inputs.items():
            array = np.ascontiguousarray(array)
            tensor = self._module.InferInput(
                name, list(array.shape), np_to_triton_dtype(array.dtype)
            )
            tensor.set_data_from_numpy(array)
            requests.append(tensor)
        outputs = [self._module.InferRequestedOutput(name) for name in output_names]
        if self.protocol == "grpc":
            result = self._client.infer(
                model, requests, outputs=outputs, client_timeout=self.timeout_s
            )
        else:
            result = self._client.infer(model, requests, outputs=outputs)
        return {name: result.as_numpy(name) for name in output_names}

    def load_model(self, model: str) -> None:
        """Load (or reload) ``model`` from the server's repository; blocks until
        it is ready or has failed (``InferenceServerException`` says why)."""
        if self.protocol == "grpc":
            self._client.load_model(model, client_timeout=self.timeout_s)
        else:
            self._client.load_model(model)

    def model_state(self, model: str) -> str:
        """The model's state in the repository index: ``READY``, ``UNLOADING``,
        ``UNAVAILABLE``, ... (empty when Triton has never seen it)."""
        index = self._client.get_model_repository_index()
        entries = index if isinstance(index, list) else index.models
        for entry in entries:
            entry_name = entry["name"] if isinstance(entry, dict) else entry.name
            if entry_name == model:
                return str(
                    entry.get("state", "") if isinstance(entry, dict) else entry.state
                )
        return ""

    def unload_model(self, model: str) -> None:
        """Ask the server to unload ``model``; it finishes in-flight requests first."""
        self._client.unload_model(model)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LoopbackTritonFrontEnd:
    """``infer`` and ``client`` of a ``tritonserver`` this library started.

    Shared by the two ways the library runs Triton
    (:class:`~mlsd_lib.serving.triton_repository_server.TritonRepositoryServer`
    and :class:`~mlsd_lib.serving.triton_server.TritonServer`): requests are
    checked against the model's declared tensors here, then sent on this
    thread's own client (:class:`~mlsd_lib.serving.per_thread.PerThread`).
    """

    kind = "triton"
    #: Whether ``infer`` may be called from several threads at once.
    thread_safe = True
    protocol: Protocol
    request_timeout_s: float
    http_port: int | None
    grpc_port: int | None
    _clients: PerThread[TritonClient] | None

    def infer(
        self, model: str, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Score a batch through the server, after the in-process server's checks."""
        if self._clients is None:
            raise ModelServerNotRunning(
                f"{type(self).__name__} is not running: use it as a context manager "
                "or call start()."
            )
        bound = self._model(model)  # type: ignore[attr-defined]  # ModelRegistryMixin
        check_inputs(bound.inputs, inputs)
        outputs = [spec.name for spec in bound.outputs]
        return self._clients.get().infer(model, inputs, outputs)

    def client(self, protocol: Protocol | None = None) -> TritonClient:
        """A new client for this server (close it when done)."""
        if self._clients is None:
            raise ModelServerNotRunning(f"{type(self).__name__} is not running.")
        protocol = protocol or self.protocol
        port = self.http_port if protocol == "http" else self.grpc_port
        return TritonClient(f"{LOOPBACK}:{port}", protocol, self.request_timeout_s)
