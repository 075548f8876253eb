"""Launch a real Triton Inference Server (the one inside nvidia-pytriton) on loopback.

Introduced in ``notebooks/00_environment.ipynb``. PyTriton ships a ``tritonserver``
binary that runs on CPU and binds Python callables as models through Triton's
Python backend; the model code (torch) runs in this process, Triton does the
HTTP/gRPC front end, scheduling and dynamic batching.

Three things the library handles so a reader never meets them:

* **The libpython mismatch.** The Python-backend stub links ``libpython3.11``
  and finds the system one first; under a pyenv or conda interpreter that
  library does not match the running standard library and the model fails to
  load (``'_thread.RLock' object has no attribute '_recursion_count'``). We put
  the running interpreter's own lib folder first on ``LD_LIBRARY_PATH``, which
  PyTriton copies into the server's environment, while it spawns the server
  only (:func:`libpython_first_while_spawning`).
* **Noise.** PyTriton echoes every server log line to stdout from a background
  thread, which would land in whatever notebook cell runs next. The log goes
  to a file instead, and its tail is shown when a start fails.
* **Ports.** HTTP, gRPC and metrics ports are free ones on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.net import LOOPBACK, free_loopback_port, wait_until
from mlsd_lib.processes import tail
from mlsd_lib.serving.inprocess import (
    BoundModel,
    LoadsArtifactsHere,
    ModelRegistryMixin,
    ModelServerNotRunning,
)
from mlsd_lib.serving.per_thread import PerThread
from mlsd_lib.serving.tensors import BatchedInferFn, TensorSpec
from mlsd_lib.serving.triton_cleanup import (
    Leftovers,
    find_leftovers,
    reap_python_backend,
)
from mlsd_lib.serving.triton_client import (
    LoopbackTritonFrontEnd,
    Protocol,
    TritonClient,
)

#: Below this much free ``/dev/shm`` we do not try: PyTriton moves every tensor
#: through shared memory (4 MiB per model to start, growing 1 MiB at a time), and
#: some container images (Docker's default is 64 MiB) leave little of it free.
MIN_FREE_SHM_BYTES = 32 * 1024 * 1024

_SUPPORTED_MACHINES = ("x86_64", "aarch64")


class TritonUnavailable(MlsdError, RuntimeError):
    """``tritonserver`` cannot run on this machine; the message says why."""


class TritonStartError(MlsdError, RuntimeError):
    """``tritonserver`` was started but did not become ready; shows its log tail."""


def tritonserver_binary() -> Path | None:
    """Where nvidia-pytriton keeps its ``tritonserver``, or None if not installed."""
    try:
        import pytriton
    except ImportError:
        return None
    binary = Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver"
    return binary if binary.exists() else None


def triton_unavailable_reason(shm_path: str = "/dev/shm") -> str | None:
    """Why ``tritonserver`` cannot run here, or None when it should.

    Checks what can be checked without starting it: the platform, the binary,
    and free shared memory.
    """
    machine = os.uname().machine if hasattr(os, "uname") else "unknown"
    if not sys.platform.startswith("linux"):
        return f"tritonserver runs on Linux only and this is {sys.platform}"
    if machine not in _SUPPORTED_MACHINES:
        return (
            f"nvidia-pytriton ships tritonserver for {_SUPPORTED_MACHINES}, "
            f"not {machine}"
        )
    binary = tritonserver_binary()
    if binary is None:
        return "nvidia-pytriton (which ships tritonserver) is not installed"
    if not os.access(binary, os.X_OK):
        return f"{binary} is not executable"
    try:
        free = shutil.disk_usage(shm_path).free
    except OSError:
        return f"{shm_path} is missing; Triton's Python backend needs shared memory"
    if free < MIN_FREE_SHM_BYTES:
        return (
            f"only {free / 2**20:.0f} MiB free in {shm_path}; Triton's Python backend "
            f"needs at least {MIN_FREE_SHM_BYTES / 2**20:.0f} MiB "
            "(e.g. docker run --shm-size=1g)"
        )
    return None


def interpreter_lib_dir() -> Path | None:
    """The folder holding this interpreter's own ``libpython``, if it is shared."""
    lib_dir = sysconfig.get_config_var("LIBDIR")
    library = sysconfig.get_config_var("LDLIBRARY")
    if not lib_dir or not library or not (Path(lib_dir) / library).exists():
        return None
    return Path(lib_dir)


def put_interpreter_libpython_first(
    environ: dict[str, str] | os._Environ[str] = os.environ,
) -> None:
    """Make the Python-backend stub load *this* interpreter's libpython.

    PyTriton starts ``tritonserver`` with a copy of ``os.environ``, so editing it
    here reaches the server. Idempotent. Changing ``LD_LIBRARY_PATH`` does not
    affect this process, whose libraries are already loaded.
    """
    lib_dir = interpreter_lib_dir()
    if lib_dir is None:
        return
    parts = [p for p in environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if parts[:1] != [str(lib_dir)]:
        environ["LD_LIBRARY_PATH"] = os.pathsep.join(
            [str(lib_dir), *[p for p in parts if p != str(lib_dir)]]
        )


@contextmanager
def libpython_first_while_spawning() -> Iterator[None]:
    """:func:`put_interpreter_libpython_first` for the block, then ``os.environ``
    as it was: the edit is for the ``tritonserver`` PyTriton spawns inside the
    block, not for every process this one starts later (a Jupyter kernel
    started by the same pytest run would inherit it)."""
    before = os.environ.get("LD_LIBRARY_PATH")
    put_interpreter_libpython_first()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = before


class TritonServer(LoopbackTritonFrontEnd, LoadsArtifactsHere, ModelRegistryMixin):
    """A ``tritonserver`` process on loopback serving Python callables (PyTriton).

    The model runs in *this* process: Triton forwards each request through its
    Python-backend stub, over shared memory, to proxy threads here. That is the
    way to put an ad-hoc function behind Triton; a registered model is served by
    :class:`~mlsd_lib.serving.triton_repository_server.TritonRepositoryServer`,
    in Triton's own processes. ``stop()`` (and a ``tritonserver`` that was
    killed) leaves no stub process or shared-memory region behind.

    Usage::

        with TritonServer() as server:
            server.bind("ctr", infer_fn, inputs=(...), outputs=(...))
            scores = server.infer("ctr", {"features": X})

    Models may be bound before or after the start. ``startup_timeout_s`` bounds
    the wait for readiness; a failure raises :class:`TritonStartError` with the
    tail of the server log.

    ``infer`` speaks gRPC by default. Triton's HTTP front end stops answering
    inference requests while a model loads (measured here: every HTTP request
    waited ~2 s while a new model was bound; gRPC requests did not notice), and
    loading a new version while serving the old one is exactly what a hot swap
    does. ``protocol="http"`` is there for comparison.
    """

    def __init__(
        self,
        *,
        protocol: Protocol = "grpc",
        startup_timeout_s: float = 120.0,
        request_timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        self.protocol: Protocol = protocol
        self.startup_timeout_s = startup_timeout_s
        self.request_timeout_s = request_timeout_s
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self.metrics_port: int | None = None
        self._workdir: Path | None = None
        self._triton: Any = None
        self._client: TritonClient | None = None
        self._version = "unknown"
        self._batching: dict[str, tuple[bool, int]] = {}
        self._clients: PerThread[TritonClient] | None = None
        #: The Python backend's shared-memory prefix PyTriton chose (in every
        #: stub's command line too): what :meth:`stop` reaps.
        self.shm_prefix: str | None = None

    # -- lifecycle ---------------------------------------------------------------
    @property
    def log_path(self) -> Path | None:
        return None if self._workdir is None else self._workdir / "tritonserver.log"

    @property
    def is_running(self) -> bool:
        return self._triton is not None

    @property
    def server_pid(self) -> int | None:
        """The ``tritonserver`` process id (fault-injection tests kill it)."""
        if self._triton is None:
            return None
        command = self._triton._triton_server._tritonserver_running_cmd
        return None if command is None else int(command.pid)

    def start(self) -> TritonServer:
        """Start the server, bind the models registered so far, wait until ready."""
        if self.is_running:
            return self
        reason = triton_unavailable_reason()
        if reason is not None:
            raise TritonUnavailable(reason)
        from pytriton.triton import Triton, TritonConfig

        self._workdir = Path(tempfile.mkdtemp(prefix="mlsd-triton-"))
        self.http_port, self.grpc_port, self.metrics_port = (
            free_loopback_port() for _ in range(3)
        )
        config = TritonConfig(
            http_address=LOOPBACK,
            http_port=self.http_port,
            grpc_address=LOOPBACK,
            grpc_port=self.grpc_port,
            metrics_address=LOOPBACK,
            metrics_port=self.metrics_port,
            log_file=self.log_path,
            exit_timeout_secs=5,
        )
        self._triton = Triton(config=config, workspace=self._workdir / "workspace")
        # PyTriton 0.7 echoes server output to stdout unless told otherwise, and
        # creates the object holding that flag lazily; both are private, which is
        # why nvidia-pytriton is pinned exactly and a test watches stdout.
        self._triton._initialize_server()
        self._triton._triton_server._verbose = False
        self.shm_prefix = str(
            self._triton._python_backend_config["shm-region-prefix-name"]
        )
        for model in self._models.values():
            self._bind_to_triton(model)
        with libpython_first_while_spawning():
            self._run_with_timeout()
        port = self.http_port if self.protocol == "http" else self.grpc_port
        address = f"{LOOPBACK}:{port}"
        self._client = TritonClient(address, self.protocol, self.request_timeout_s)
        self._clients = PerThread(
            lambda: TritonClient(address, self.protocol, self.request_timeout_s),
            TritonClient.close,
            f"the clients of {type(self).__name__}",
        )
        self._version = self._client.server_version()
        return self

    def _run_with_timeout(self) -> None:
        """Start ``tritonserver`` from *this* thread, wait for it, then load the models.

        The process must be spawned by a long-lived thread: PyTriton asks Linux to
        SIGTERM ``tritonserver`` when the thread that spawned it exits
        (``PR_SET_PDEATHSIG``). PyTriton's own ``run()`` waits up to 120 s for
        readiness whatever we ask, so we spawn with its ``_run_server()`` and do
        the bounded wait ourselves before ``connect()`` loads the bound models.
        """
        process = self._triton._triton_server
        self._triton._run_server()
        probe = TritonClient(f"{LOOPBACK}:{self.http_port}", "http", timeout_s=1.0)
        try:
            ready = wait_until(
                probe.is_server_ready,
                timeout_s=self.startup_timeout_s,
                interval_s=0.1,
                give_up_if=lambda: not process.is_alive(),
            )
        finally:
            probe.close()
        if not ready:
            why = (
                f"did not become ready within {self.startup_timeout_s:.0f} s"
                if process.is_alive()
                else "exited during start-up"
            )
            self._fail(why)
        try:
            self._triton.connect()
        except Exception as error:
            first_line = str(error).splitlines()[0] if str(error) else ""
            self._fail(
                f"could not load its models ({type(error).__name__}: {first_line})",
                error,
            )

    def _fail(self, why: str, cause: BaseException | None = None) -> None:
        log = self._read_log()
        self.stop()
        raise TritonStartError(
            f"tritonserver {why}. The server log ends:\n{tail(log, 25)}"
        ) from cause

    def _read_log(self) -> str:
        path = self.log_path
        return (
            path.read_text(errors="replace")
            if path is not None and path.exists()
            else ""
        )

    def stop(self) -> None:
        """Stop the server (idempotent) and delete its workspace."""
        if self._client is not None:
            self._client.close()
        if self._clients is not None:
            self._clients.close_all()
        self._client, self._clients = None, None
        triton, self._triton = self._triton, None
        if triton is not None:
            triton.stop()
        if self.shm_prefix is not None:
            # A killed tritonserver orphans its stubs (which ignore SIGTERM) and
            # their regions; PyTriton's stop() does not remove them.
            reap_python_backend(self.shm_prefix)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- models ------------------------------------------------------------------
    def bind(
        self,
        name: str,
        infer_fn: BatchedInferFn,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        max_batch_size: int = 64,
        *,
        dynamic_batching: bool = True,
        max_queue_delay_us: int = 0,
    ) -> None:
        """Serve ``infer_fn`` as model ``name``.

        ``dynamic_batching`` lets Triton merge concurrent requests into one call of
        ``infer_fn`` (up to ``max_batch_size`` rows), waiting at most
        ``max_queue_delay_us`` for more to arrive.
        """
        model = BoundModel(
            name, infer_fn, tuple(inputs), tuple(outputs), max_batch_size
        )
        self._register(model)
        self._batching[name] = (dynamic_batching, max_queue_delay_us)
        if self.is_running:
            try:
                self._bind_to_triton(model)
            except Exception as error:
                raise TritonStartError(
                    f"model {name!r} did not load ({type(error).__name__}: {error}). "
                    f"The server log ends:\n{tail(self._read_log())}"
                ) from error

    def _batching_options(
        self, dynamic_batching: bool, max_queue_delay_us: int
    ) -> dict[str, object]:
        return {
            "dynamic_batching": dynamic_batching,
            "max_queue_delay_us": max_queue_delay_us,
        }

    def _bind_to_triton(self, model: BoundModel) -> None:
        from pytriton.decorators import batch
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

        dynamic_batching, delay_us = self._batching.get(model.name, (True, 0))
        infer_fn = model.infer_fn

        @batch
        def triton_infer(**arrays: np.ndarray) -> dict[str, np.ndarray]:
            result = infer_fn(**arrays)
            return {spec.name: np.asarray(result[spec.name]) for spec in model.outputs}

        self._triton.bind(
            model_name=model.name,
            infer_func=triton_infer,
            inputs=[
                Tensor(name=s.name, dtype=s.dtype, shape=s.shape) for s in model.inputs
            ],
            outputs=[
                Tensor(name=s.name, dtype=s.dtype, shape=s.shape) for s in model.outputs
            ],
            # The batch axis stays either way (batching=True keeps max_batch_size);
            # only the dynamic batcher, which merges concurrent requests, is
            # switched. PyTriton's batching=False would drop the batch axis.
            config=ModelConfig(
                max_batch_size=model.max_batch_size,
                batching=True,
                batcher=(
                    DynamicBatcher(max_queue_delay_microseconds=delay_us)
                    if dynamic_batching
                    else None
                ),
            ),
            strict=True,
        )

    # -- requests: infer() and client() come from LoopbackTritonFrontEnd ----------
    def leftovers(self) -> Leftovers:
        """This server's stub processes and shared-memory regions that still exist."""
        if self.shm_prefix is None:
            return Leftovers((), ())
        return find_leftovers(self.shm_prefix)

    def client(self, protocol: Protocol | None = None) -> TritonClient:
        """A new client for this server (close it when done)."""
        if not self.is_running:
            raise ModelServerNotRunning("TritonServer is not running.")
        protocol = protocol or self.protocol
        port = self.http_port if protocol == "http" else self.grpc_port
        return TritonClient(f"{LOOPBACK}:{port}", protocol, self.request_timeout_s)

    def describe(self) -> str:
        return (
            f"Model server: tritonserver {self._version} from nvidia-pytriton "
            f"{metadata.version('nvidia-pytriton')} on {LOOPBACK} "
            f"(HTTP :{self.http_port}, gRPC :{self.grpc_port})"
        )
