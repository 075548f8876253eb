"""Triton serving a model repository: the models run inside the server, not here.

Introduced in ``notebooks/model_serving.ipynb``. This is how a model server is
deployed: ``tritonserver`` is handed a *model repository* (``config.pbtxt`` and
versioned model files, see :mod:`~mlsd_lib.serving.model_repository`) and loads
models from it into processes of its own; the gateway is only a client. Here the
``tritonserver`` binary inside nvidia-pytriton runs each registered version with
its **Python backend**: one ``triton_python_backend_stub`` process per model
instance runs :mod:`~mlsd_lib.serving.triton_python_model`, which loads the
TorchScript or ``torch.export`` file (after checking its sha256) and executes
the batches Triton's dynamic batcher forms.

The other way, :class:`~mlsd_lib.serving.triton_server.TritonServer`, binds a
Python callable of the *calling* process into Triton (PyTriton): every request
goes from Triton through a stub to proxy threads in the caller and back. It is
handy for teaching and costs ~3x the latency (measured in the notebook).

What the library handles so a reader never meets it:

* **Launch**: explicit model-control mode (models are loaded and unloaded by
  :meth:`TritonRepositoryServer.load_artifact` and
  :meth:`~TritonRepositoryServer.unload`, through Triton's repository API), free
  loopback ports, the log in a file, a bounded wait for readiness, and the tail
  of the log in every error.
* **The stub**: nvidia-pytriton ships one Python-backend stub per Python
  version; the backend folder gets the one for the running interpreter.
  ``LD_LIBRARY_PATH`` puts this interpreter's ``libpython`` first (see
  :func:`~mlsd_lib.serving.triton_server.put_interpreter_libpython_first`) and
  then ``nvidia_pytriton.libs``; ``PATH`` starts with this environment's
  ``bin``, which is how the stub's embedded Python finds this environment's
  site-packages, and so torch.
* **Nothing left behind**: ``tritonserver`` runs in a process group of its own
  that dies with this process (``PR_SET_PDEATHSIG``); stopping it, or noticing
  that it was killed, kills the group and removes the shared-memory regions its
  stubs made (:mod:`~mlsd_lib.serving.triton_cleanup`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

from tritonclient.utils import InferenceServerException

from mlsd_lib.errors import MlsdError
from mlsd_lib.net import LOOPBACK, free_loopback_port, wait_until
from mlsd_lib.processes import die_with_parent, tail
from mlsd_lib.serving.inprocess import (
    BoundModel,
    ModelRegistryMixin,
    ModelServerNotRunning,
)
from mlsd_lib.serving.model_repository import write_python_backend_model
from mlsd_lib.serving.per_thread import PerThread
from mlsd_lib.serving.tensors import BatchedInferFn, TensorSpec
from mlsd_lib.serving.triton_cleanup import (
    Leftovers,
    find_leftovers,
    kill_process_group,
    new_shm_prefix,
    reap_python_backend,
)
from mlsd_lib.serving.triton_client import (
    LoopbackTritonFrontEnd,
    Protocol,
    TritonClient,
)
from mlsd_lib.serving.triton_server import (
    TritonStartError,
    TritonUnavailable,
    interpreter_lib_dir,
    triton_unavailable_reason,
    tritonserver_binary,
)

logger = logging.getLogger(__name__)

#: Each stub's shared-memory region starts at 1 MiB and grows by 1 MiB: a
#: 100 x 64 float32 request is 25 KiB, and Binder's /dev/shm is only 64 MiB.
SHM_DEFAULT_BYTES = 1 << 20
SHM_GROWTH_BYTES = 1 << 20


class ModelLoadFailed(MlsdError, RuntimeError):
    """Triton refused to load a model; the message holds Triton's reason."""


class CallablesNotServed(MlsdError, TypeError):
    """A model repository runs model files, not Python callables of this process."""


def prepare_backend_directory(folder: Path) -> Path:
    """A Triton backend folder whose Python backend has this interpreter's stub.

    The backend library and its ``triton_python_backend_utils.py`` are linked
    from nvidia-pytriton; the stub for ``python3.<minor>`` is copied.
    """
    binary = tritonserver_binary()
    if binary is None:
        raise TritonUnavailable("nvidia-pytriton (which ships tritonserver) is missing")
    dist = binary.parent.parent
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonUnavailable(
            f"nvidia-pytriton has no Python-backend stub for Python {version} "
            f"(looked for {stub})"
        )
    python = folder / "python"
    python.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        link = python / name
        if not link.exists():
            link.symlink_to(dist / "backends" / "python" / name)
    shutil.copy2(stub, python / "triton_python_backend_stub")
    return folder


def server_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment ``tritonserver`` and its stubs need (see the module notes)."""
    env = dict(environ)
    binary = tritonserver_binary()
    libs = [] if binary is None else [binary.parents[3] / "nvidia_pytriton.libs"]
    own = interpreter_lib_dir()
    first = [str(p) for p in ([own] if own else []) + libs]
    rest = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        first + [p for p in rest if p not in first]
    )
    env["PATH"] = os.pathsep.join(
        [str(Path(sys.exec_prefix) / "bin"), env.get("PATH", "")]
    )
    return env


class TritonRepositoryServer(LoopbackTritonFrontEnd, ModelRegistryMixin):
    """A ``tritonserver`` process on loopback serving a model repository.

    Usage::

        with TritonRepositoryServer() as server:
            server.load_artifact("ctr-v3", 3, "model.pt", sha256=..., format=
                "torchscript", inputs=(...), outputs=(...), max_batch_size=512)
            scores = server.infer("ctr-v3", {"features": X})
            server.unload("ctr-v3")

    ``infer`` speaks gRPC by default (Triton's HTTP front end stalls while a
    model loads; see :class:`~mlsd_lib.serving.triton_server.TritonServer`),
    with one client per calling thread so concurrent requests reach the dynamic
    batcher together.
    """

    def __init__(
        self,
        *,
        protocol: Protocol = "grpc",
        startup_timeout_s: float = 60.0,
        load_timeout_s: float = 120.0,
        request_timeout_s: float = 10.0,
        stop_timeout_s: float = 10.0,
        torch_threads: int = 1,
    ) -> None:
        super().__init__()
        self.protocol: Protocol = protocol
        self.startup_timeout_s = startup_timeout_s
        self.load_timeout_s = load_timeout_s
        self.request_timeout_s = request_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.torch_threads = torch_threads
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self.metrics_port: int | None = None
        self.shm_prefix = new_shm_prefix()
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._control: TritonClient | None = None
        self._clients: PerThread[TritonClient] | None = None
        self._repository_lock = threading.Lock()
        self._version = "unknown"
        #: What :meth:`reap` found the last time it ran (tests read it).
        self.last_reaped: Leftovers | None = None

    # -- lifecycle -----------------------------------------------------------------
    @property
    def repository(self) -> Path:
        if self._workdir is None:
            raise ModelServerNotRunning("TritonRepositoryServer is not running.")
        return self._workdir / "models"

    @property
    def log_path(self) -> Path | None:
        return None if self._workdir is None else self._workdir / "tritonserver.log"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def server_pid(self) -> int | None:
        """The ``tritonserver`` process id (fault-injection tests kill it)."""
        return None if self._process is None else self._process.pid

    def start(self) -> TritonRepositoryServer:
        """Start ``tritonserver`` over an empty repository and wait until ready."""
        if self.is_running:
            return self
        reason = triton_unavailable_reason()
        if reason is not None:
            raise TritonUnavailable(reason)
        self._stopping.clear()
        self._workdir = Path(tempfile.mkdtemp(prefix="mlsd-triton-"))
        self.repository.mkdir()
        backends = prepare_backend_directory(self._workdir / "backends")
        self.http_port, self.grpc_port, self.metrics_port = (
            free_loopback_port() for _ in range(3)
        )
        binary = tritonserver_binary()
        command = [
            str(binary),
            f"--model-repository={self.repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={backends}",
            f"--http-address={LOOPBACK}",
            f"--http-port={self.http_port}",
            f"--grpc-address={LOOPBACK}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={LOOPBACK}",
            f"--metrics-port={self.metrics_port}",
            f"--log-file={self.log_path}",
            "--exit-timeout-secs=5",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            f"--backend-config=python,shm-default-byte-size={SHM_DEFAULT_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTES}",
        ]
        self._spawn(command, server_environment())
        process = self._process
        assert process is not None
        probe = TritonClient(f"{LOOPBACK}:{self.http_port}", "http", timeout_s=1.0)
        try:
            ready = wait_until(
                probe.is_server_ready,
                timeout_s=self.startup_timeout_s,
                interval_s=0.1,
                give_up_if=lambda: process.poll() is not None,
            )
        finally:
            probe.close()
        if not ready:
            why = (
                f"did not become ready within {self.startup_timeout_s:.0f} s"
                if process.poll() is None
                else f"exited during start-up (code {process.poll()})"
            )
            log = self._read_log()
            self.stop()
            raise TritonStartError(
                f"tritonserver {why}. The server log ends:\n{tail(log, 25)}"
            )
        port = self.http_port if self.protocol == "http" else self.grpc_port
        address = f"{LOOPBACK}:{port}"
        self._control = TritonClient(address, self.protocol, self.load_timeout_s)
        self._clients = PerThread(
            lambda: TritonClient(address, self.protocol, self.request_timeout_s),
            TritonClient.close,
            f"the clients of {type(self).__name__}",
        )
        self._version = self._control.server_version()
        atexit.register(self.stop)  # a notebook kernel that exits stops it too
        return self

    def _spawn(self, command: list[str], env: dict[str, str]) -> None:
        """Start ``tritonserver`` from a thread that lives exactly as long as it.

        Linux sends ``PR_SET_PDEATHSIG`` when the *thread* that forked the child
        ends, so the thread that spawns it is the one that waits for it; when it
        exits without :meth:`stop` (killed, crashed), the thread reaps what it
        left: its stubs and their shared memory.
        """
        spawned = threading.Event()
        failure: list[BaseException] = []
        assert self._workdir is not None
        output = open(self._workdir / "tritonserver.out", "wb")  # noqa: SIM115

        def keeper() -> None:
            try:
                self._process = subprocess.Popen(
                    command,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent(),
                )
            except BaseException as error:
                failure.append(error)
                return
            finally:
                output.close()
                spawned.set()
            code = self._process.wait()
            if not self._stopping.is_set():
                found = self.reap()
                logger.warning(
                    "tritonserver (pid %s) exited with code %s; removed %d "
                    "process(es) and %d shared-memory region(s) it left",
                    self._process.pid,
                    code,
                    len(found.pids),
                    len(found.shm_files),
                )

        threading.Thread(target=keeper, name="tritonserver-keeper", daemon=True).start()
        spawned.wait()
        if failure:
            raise TritonStartError(f"tritonserver could not be started: {failure[0]}")

    def reap(self) -> Leftovers:
        """Kill whatever is left of this server's processes and shared memory."""
        if self._process is not None:
            kill_process_group(self._process.pid)
        self.last_reaped = reap_python_backend(self.shm_prefix)
        return self.last_reaped

    def leftovers(self) -> Leftovers:
        """This server's processes and shared-memory regions that still exist."""
        return find_leftovers(self.shm_prefix)

    def stop(self) -> None:
        """Stop the server (idempotent): unload, exit, reap, delete the workspace."""
        self._stopping.set()
        atexit.unregister(self.stop)
        if self._control is not None:
            self._control.close()
        if self._clients is not None:
            self._clients.close_all()
        self._control, self._clients = None, None
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()  # tritonserver unloads its models and exits
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("tritonserver ignored SIGTERM; killing it")
        if process is not None:
            self.reap()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(self.stop_timeout_s)  # SIGKILLed by reap(): quick
        self._models.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> TritonRepositoryServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _read_log(self) -> str:
        if self._workdir is None:
            return ""
        parts = []
        for name in ("tritonserver.out", "tritonserver.log"):
            path = self._workdir / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    # -- models --------------------------------------------------------------------
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
        """Write the version into the repository and have Triton load it.

        Returns once Triton reports the model ready; raises
        :class:`ModelLoadFailed` with Triton's reason (a changed file, a
        ``forward()`` that fails) otherwise, and removes the folder again.
        """
        control = self._require_control()
        model = BoundModel(name, None, tuple(inputs), tuple(outputs), max_batch_size)
        with self._repository_lock:
            write_python_backend_model(
                self.repository,
                name,
                version,
                artifact,
                sha256=sha256,
                format=format,
                inputs=inputs,
                outputs=outputs,
                max_batch_size=max_batch_size,
                dynamic_batching=dynamic_batching,
                max_queue_delay_us=max_queue_delay_us,
                threads=self.torch_threads,
            )
            try:
                control.load_model(name)
            except InferenceServerException as error:
                shutil.rmtree(self.repository / name, ignore_errors=True)
                raise ModelLoadFailed(
                    f"Triton could not load model {name!r} version {version}: "
                    f"{error.message()}. The server log ends:\n"
                    f"{tail(self._read_log(), 10)}"
                ) from None
            self._register(model)

    def unload(self, name: str) -> None:
        """Have Triton unload ``name`` and wait until it has: its stub process has
        exited (its memory and shared memory are free again); drop its folder.

        Triton finishes the requests already queued for the model first, and
        unloads in the background; the wait is bounded by ``stop_timeout_s``.
        """
        self._model(name)
        control = self._require_control()
        with self._repository_lock:
            self._models.pop(name, None)
            control.unload_model(name)
            gone = wait_until(
                lambda: control.model_state(name) not in ("READY", "UNLOADING"),
                timeout_s=self.stop_timeout_s,
                interval_s=0.05,
            )
            if not gone:
                logger.warning(
                    "model %s was still unloading after %.0f s",
                    name,
                    self.stop_timeout_s,
                )
            shutil.rmtree(self.repository / name, ignore_errors=True)

    def has_model(self, name: str) -> bool:
        return name in self._models

    def bind(
        self,
        name: str,
        infer_fn: BatchedInferFn,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        max_batch_size: int = 64,
    ) -> None:
        """Refused: a repository server runs model files, in its own processes."""
        raise CallablesNotServed(
            f"cannot bind {name!r}: a model repository serves model files, not "
            "Python callables of this process. Export the model "
            "(mlsd_lib.serving.export), register it and use load_artifact() or "
            "RegistryDeployer; or use TritonServer (PyTriton) to bind a callable."
        )

    # -- requests: infer() and client() come from LoopbackTritonFrontEnd ----------
    def _require_control(self) -> TritonClient:
        if self._control is None:
            raise ModelServerNotRunning(
                "TritonRepositoryServer is not running: use it as a context "
                "manager or call start()."
            )
        return self._control

    def describe(self) -> str:
        return (
            f"Model server: tritonserver {self._version} from nvidia-pytriton "
            f"{metadata.version('nvidia-pytriton')} on {LOOPBACK} "
            f"(HTTP :{self.http_port}, gRPC :{self.grpc_port}), serving a model "
            "repository: models run in its own processes"
        )
