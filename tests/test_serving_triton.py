"""The real tritonserver from nvidia-pytriton: start, serve, fail loudly, stay quiet."""

import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from mlsd_lib.config import load_settings
from mlsd_lib.net import free_loopback_port
from mlsd_lib.redis_backend import RealBackendRequired
from mlsd_lib.serving import model_server, triton_server
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.remote_triton import ModelNotDeployed, RemoteTritonServer
from mlsd_lib.serving.tensors import MalformedRequest, TensorSpec
from mlsd_lib.serving.triton_server import (
    TritonServer,
    TritonStartError,
    TritonUnavailable,
    interpreter_lib_dir,
    put_interpreter_libpython_first,
    triton_unavailable_reason,
)

FEATURES = TensorSpec("features", np.float32, (4,))
P_CLICK = TensorSpec("p_click", np.float32, (1,))


def make_scorer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Sigmoid()).eval()

    def score(features: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {"p_click": model(torch.from_numpy(features)).numpy()}

    return score


# -- what can be decided without starting anything ------------------------------
def test_unavailable_off_linux(monkeypatch):
    monkeypatch.setattr(triton_server.sys, "platform", "darwin")
    assert "Linux only" in triton_unavailable_reason()


def test_unavailable_with_too_little_shared_memory(monkeypatch, tmp_path):
    usage = shutil.disk_usage(tmp_path)._replace(free=8 * 2**20)
    monkeypatch.setattr(triton_server.shutil, "disk_usage", lambda path: usage)
    reason = triton_unavailable_reason(str(tmp_path))
    if sys.platform.startswith("linux") and triton_server.tritonserver_binary():
        assert "only 8 MiB free" in reason and "--shm-size" in reason


def test_libpython_folder_goes_first_once():
    lib_dir = interpreter_lib_dir()
    if lib_dir is None:
        pytest.skip("this interpreter has no shared libpython")
    env = {"LD_LIBRARY_PATH": f"/opt/other:{lib_dir}"}
    put_interpreter_libpython_first(env)
    put_interpreter_libpython_first(env)
    assert env["LD_LIBRARY_PATH"] == f"{lib_dir}:/opt/other"


def test_start_model_server_falls_back_and_says_why(monkeypatch, capsys):
    monkeypatch.setattr(
        model_server, "triton_unavailable_reason", lambda: "no Triton on Mars"
    )
    server = model_server.start_model_server(load_settings({}))
    assert isinstance(server, InProcessModelServer)
    assert (
        capsys.readouterr().out
        == "Model server: in-process (no network); no Triton on Mars\n"
    )


def test_fallback_is_an_error_when_real_backends_are_required(monkeypatch):
    monkeypatch.setattr(
        model_server, "triton_unavailable_reason", lambda: "no Triton on Mars"
    )
    with pytest.raises(RealBackendRequired, match="no Triton on Mars"):
        model_server.start_model_server(
            load_settings({"MLSD_REQUIRE_REAL_BACKENDS": "1"})
        )


def test_start_refuses_clearly_where_triton_cannot_run(monkeypatch):
    monkeypatch.setattr(
        triton_server, "triton_unavailable_reason", lambda: "no Triton on Mars"
    )
    with pytest.raises(TritonUnavailable, match="no Triton on Mars"):
        TritonServer().start()


# -- the real server --------------------------------------------------------------
@pytest.fixture(scope="module")
def running_triton():
    reason = triton_unavailable_reason()
    if reason is not None:
        pytest.skip(f"tritonserver cannot run here: {reason}")
    score = make_scorer()
    with TritonServer() as server:
        server.bind("ctr", score, (FEATURES,), (P_CLICK,), max_batch_size=16)
        yield server, score


@pytest.mark.triton
def test_scores_over_http_and_grpc_match_the_model(running_triton):
    server, score = running_triton
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    expected = score(X)["p_click"]
    np.testing.assert_allclose(
        server.infer("ctr", {"features": X})["p_click"], expected, atol=1e-6
    )
    for protocol in ("http", "grpc"):
        with server.client(protocol) as client:
            assert client.is_model_ready("ctr")
            got = client.infer("ctr", {"features": X}, ["p_click"])["p_click"]
            np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.triton
def test_serves_on_loopback_ports_and_describes_itself(running_triton):
    server, _ = running_triton
    line = server.describe()
    assert line.startswith("Model server: tritonserver 2.")
    assert f"HTTP :{server.http_port}" in line and "127.0.0.1" in line
    assert len({server.http_port, server.grpc_port, server.metrics_port}) == 3


@pytest.mark.triton
def test_malformed_requests_are_refused_before_the_server(running_triton):
    server, _ = running_triton
    with pytest.raises(MalformedRequest, match="dtype float64"):
        server.infer("ctr", {"features": np.zeros((1, 4), np.float64)})


@pytest.mark.triton
def test_server_output_stays_out_of_stdout(requires_triton, capfd):
    """PyTriton echoes the server log to stdout by default; in a notebook that
    would land in whatever cell runs next and break nbval."""
    with TritonServer() as server:
        server.bind("ctr", make_scorer(), (FEATURES,), (P_CLICK,))
        server.infer("ctr", {"features": np.zeros((1, 4), np.float32)})
        log_path = server.log_path
        assert log_path.exists() and log_path.stat().st_size > 0
    captured = capfd.readouterr()
    assert captured.out == ""
    assert "I1" not in captured.err  # Triton's info lines look like I1121 ...
    assert not log_path.exists()  # the workspace is removed on stop


@pytest.mark.triton
def test_a_start_that_times_out_says_so_and_cleans_up(requires_triton, monkeypatch):
    # A server that never reports ready (a hung start-up, as seen with a starved
    # /dev/shm): the wait is bounded by startup_timeout_s, not PyTriton's 120 s.
    monkeypatch.setattr(
        triton_server.TritonClient, "is_server_ready", lambda self: False
    )
    server = TritonServer(startup_timeout_s=1.0)
    with pytest.raises(
        TritonStartError, match="did not become ready within 1 s"
    ) as error:
        server.start()
    assert "The server log ends" in str(error.value)
    assert not server.is_running and server.log_path is None


def _system_libpython_shadows_ours() -> bool:
    ours = interpreter_lib_dir()
    system = Path("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0")
    return ours is not None and system.exists() and ours != system.parent


@pytest.mark.triton
@pytest.mark.skipif(
    not _system_libpython_shadows_ours(),
    reason="the interpreter's libpython is the system one: no mismatch to show",
)
def test_without_the_libpython_fix_the_model_fails_to_load_and_the_log_shows_why(
    requires_triton, monkeypatch
):
    """Why put_interpreter_libpython_first exists: on this machine (a pyenv
    interpreter beside a system libpython3.11) the stub loads the wrong library."""
    monkeypatch.setattr(triton_server, "put_interpreter_libpython_first", lambda: None)
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    server = TritonServer()
    server.bind("ctr", make_scorer(), (FEATURES,), (P_CLICK,))
    with pytest.raises(TritonStartError) as error:
        server.start()
        server.infer("ctr", {"features": np.zeros((1, 4), np.float32)})
    server.stop()
    assert "The server log ends" in str(error.value)
    assert "_recursion_count" in str(error.value)


# -- a Triton run elsewhere (TRITON_URL) ---------------------------------------------
@pytest.mark.triton
@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_triton_url_serves_models_deployed_there(running_triton, scheme, capsys):
    server, score = running_triton
    port = server.http_port if scheme == "http" else server.grpc_port
    url = f"{scheme}://127.0.0.1:{port}"
    with model_server.start_model_server(load_settings({"TRITON_URL": url})) as remote:
        assert isinstance(remote, RemoteTritonServer)
        assert capsys.readouterr().out.startswith("Model server: tritonserver 2.")
        remote.bind("ctr", score, (FEATURES,), (P_CLICK,), max_batch_size=16)
        X = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
        np.testing.assert_allclose(
            remote.infer("ctr", {"features": X})["p_click"],
            score(X)["p_click"],
            atol=1e-6,
        )


@pytest.mark.triton
def test_triton_url_refuses_models_that_are_missing_or_differ(running_triton):
    server, score = running_triton
    with RemoteTritonServer(f"http://127.0.0.1:{server.http_port}") as remote:
        with pytest.raises(
            ModelNotDeployed, match="'absent' is not loaded on TRITON_URL"
        ):
            remote.bind("absent", score, (FEATURES,), (P_CLICK,))
        wider = TensorSpec("features", np.float32, (5,))
        with pytest.raises(ModelNotDeployed, match=r"has inputs .*'FP32', \(-1, 4\)"):
            remote.bind("ctr", score, (wider,), (P_CLICK,))


def test_unreachable_triton_url_is_an_error_that_names_triton_url():
    url = f"http://127.0.0.1:{free_loopback_port()}"
    with pytest.raises(TritonUnavailable, match=r"TRITON_URL=.*unset it"):
        model_server.start_model_server(load_settings({"TRITON_URL": url}))


def test_malformed_triton_url_says_what_it_should_look_like():
    with pytest.raises(ValueError, match="http://host:8000"):
        RemoteTritonServer("http://127.0.0.1")


@pytest.mark.triton
def test_concurrent_callers_each_get_a_working_client(running_triton):
    """tritonclient's HTTP client is gevent-based and breaks when shared across
    threads; infer() must be safe to call from many threads at once."""
    server, score = running_triton
    X = np.random.default_rng(2).normal(size=(4, 4)).astype(np.float32)
    expected = score(X)["p_click"]

    def call(_: int) -> np.ndarray:
        return server.infer("ctr", {"features": X})["p_click"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(call, range(40)))
    for got in results:
        np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.triton
def test_without_dynamic_batching_the_batch_axis_stays(running_triton):
    server, score = running_triton
    server.bind(
        "ctr_unbatched", score, (FEATURES,), (P_CLICK,), 16, dynamic_batching=False
    )
    X = np.random.default_rng(3).normal(size=(7, 4)).astype(np.float32)
    np.testing.assert_allclose(
        server.infer("ctr_unbatched", {"features": X})["p_click"],
        score(X)["p_click"],
        atol=1e-6,
    )
    with server.client() as client:
        # Triton reports the batch axis (-1) and no dynamic batcher for it.
        signature = client.model_signature("ctr_unbatched")
        assert signature["inputs"] == [("features", "FP32", (-1, 4))]
