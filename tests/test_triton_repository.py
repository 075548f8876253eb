"""Registered models served from a Triton model repository, in Triton's processes.

The writer is checked without a server; everything else runs the real
``tritonserver`` (marker ``triton``): parity with the eager model for
TorchScript and ``torch.export`` files, the sha256 check at load, dynamic
batching that cuts merged batches back correctly, unloading, and a server that
is killed or stopped leaving no process and no shared memory behind.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mlsd_lib.net import wait_until
from mlsd_lib.serving.export import export_program
from mlsd_lib.serving.gateway.deploy import torch_infer_fn
from mlsd_lib.serving.inprocess import InProcessModelServer, UnknownModel
from mlsd_lib.serving.model_repository import (
    InvalidModelConfig,
    read_model_config,
    write_python_backend_model,
)
from mlsd_lib.serving.registry import IntegrityError, sha256_of
from mlsd_lib.serving.tensors import TensorSpec
from mlsd_lib.serving.triton_cleanup import find_leftovers
from mlsd_lib.serving.triton_repository_server import (
    CallablesNotServed,
    ModelLoadFailed,
    TritonRepositoryServer,
)
from mlsd_lib.serving.triton_server import TritonServer

WIDTH = 6
INPUTS = (TensorSpec("features", np.float32, (WIDTH,)),)
OUTPUTS = (TensorSpec("score", np.float32, (1,)),)


def make_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(WIDTH, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)
    ).eval()


def eager(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


@pytest.fixture
def torchscript_file(tmp_path) -> tuple[torch.nn.Module, Path]:
    net = make_net()
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    return net, path


def load(server, name, version, path, **overrides):
    kwargs = dict(
        sha256=sha256_of(path),
        format="torchscript",
        inputs=INPUTS,
        outputs=OUTPUTS,
        max_batch_size=256,
    )
    kwargs.update(overrides)
    server.load_artifact(name, version, path, **kwargs)


# -- the writer, no server ----------------------------------------------------------
def test_writer_lays_out_one_pinned_version(tmp_path, torchscript_file):
    _, path = torchscript_file
    model_dir = write_python_backend_model(
        tmp_path / "repo",
        "ctr-v3",
        3,
        path,
        sha256=sha256_of(path),
        format="torchscript",
        inputs=INPUTS,
        outputs=OUTPUTS,
        max_batch_size=128,
        max_queue_delay_us=200,
    )
    assert sorted(p.name for p in model_dir.iterdir()) == ["3", "config.pbtxt"]
    assert sorted(p.name for p in (model_dir / "3").iterdir()) == [
        "artifact.json",
        "model.pt",
        "model.py",
    ]
    config = read_model_config(model_dir)
    assert config.backend == "python" and not config.platform
    assert list(config.version_policy.specific.versions) == [3]
    assert config.max_batch_size == 128
    assert config.dynamic_batching.max_queue_delay_microseconds == 200
    info = json.loads((model_dir / "3" / "artifact.json").read_text())
    assert info["sha256"] == sha256_of(model_dir / "3" / "model.pt") == sha256_of(path)
    assert info["inputs"] == [{"name": "features", "dims": [WIDTH], "dtype": "float32"}]


def test_writer_refuses_state_dicts_and_bad_names(tmp_path, torchscript_file):
    _, path = torchscript_file
    common = dict(sha256="x", inputs=INPUTS, outputs=OUTPUTS, max_batch_size=8)
    with pytest.raises(InvalidModelConfig, match=r"cannot be served.*torchscript"):
        write_python_backend_model(
            tmp_path, "m", 1, path, format="state_dict", **common
        )
    with pytest.raises(InvalidModelConfig, match="plain folder name"):
        write_python_backend_model(
            tmp_path, "../m", 1, path, format="torchscript", **common
        )
    with pytest.raises(InvalidModelConfig, match="versions start at 1"):
        write_python_backend_model(
            tmp_path, "m", 0, path, format="torchscript", **common
        )
    assert not any(p.name.startswith(".") for p in tmp_path.rglob("*"))


def test_in_process_server_loads_the_same_artifact(tmp_path, torchscript_file):
    net, path = torchscript_file
    server = InProcessModelServer("test")
    load(server, "ctr-v1", 1, path)
    x = np.random.default_rng(0).random((5, WIDTH), dtype=np.float32)
    np.testing.assert_allclose(
        server.infer("ctr-v1", {"features": x})["score"], eager(net, x), rtol=1e-6
    )
    with pytest.raises(IntegrityError, match="changed after registration"):
        load(server, "ctr-v2", 2, path, sha256="0" * 64)
    server.unload("ctr-v1")
    with pytest.raises(UnknownModel, match="ctr-v1"):
        server.infer("ctr-v1", {"features": x})


# -- the real server ----------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    from mlsd_lib.serving.triton_server import triton_unavailable_reason

    reason = triton_unavailable_reason()
    if reason is not None:
        pytest.skip(f"tritonserver cannot run here: {reason}")
    with TritonRepositoryServer(request_timeout_s=10.0) as server:
        yield server


@pytest.mark.triton
def test_torchscript_and_export_artifacts_match_the_eager_model(server, tmp_path):
    net = make_net(1)
    script = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(net), str(script))
    program = export_program(net, torch.zeros(4, WIDTH), tmp_path / "model.pt2")
    load(server, "parity-ts", 1, script)
    load(server, "parity-pt2", 1, program, format="pt2")
    rng = np.random.default_rng(1)
    for rows in (1, 7, 100):
        x = rng.normal(size=(rows, WIDTH)).astype(np.float32)
        want = eager(net, x)
        for name in ("parity-ts", "parity-pt2"):
            got = server.infer(name, {"features": x})["score"]
            assert got.shape == (rows, 1) and got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for name in ("parity-ts", "parity-pt2"):
        server.unload(name)


@pytest.mark.triton
def test_the_model_runs_in_tritons_process_not_this_one(server, torchscript_file):
    _, path = torchscript_file
    load(server, "where-v4", 4, path)
    stubs = [
        pid
        for pid in find_leftovers(server.shm_prefix).pids
        if b"where-v4/4/model.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(stubs) == 1
    parent = int(
        Path(f"/proc/{stubs[0]}/stat").read_text().rsplit(")", 1)[1].split()[1]
    )
    assert parent == server.server_pid != os.getpid()
    regions = len(server.leftovers().shm_files)
    server.unload("where-v4")  # returns once Triton has unloaded it
    assert wait_until(lambda: not Path(f"/proc/{stubs[0]}").exists(), timeout_s=2)
    assert len(server.leftovers().shm_files) == regions - 1  # its region is gone
    assert not (server.repository / "where-v4").exists()
    with pytest.raises(UnknownModel):
        server.infer("where-v4", {"features": np.zeros((1, WIDTH), np.float32)})


@pytest.mark.triton
def test_a_changed_file_is_refused_at_load(server, torchscript_file):
    _, path = torchscript_file
    with pytest.raises(ModelLoadFailed, match=r"sha256.*re-register"):
        load(server, "tampered-v1", 1, path, sha256="0" * 64)
    assert not server.has_model("tampered-v1")
    assert not (server.repository / "tampered-v1").exists()


@pytest.mark.triton
def test_concurrent_requests_are_batched_and_cut_back_correctly(
    server, torchscript_file
):
    net, path = torchscript_file
    load(server, "batched-v1", 1, path, max_queue_delay_us=2000)
    rng = np.random.default_rng(2)
    batches = [
        rng.normal(size=(int(rng.integers(1, 40)), WIDTH)).astype(np.float32)
        for _ in range(48)
    ]
    results: dict[int, np.ndarray] = {}

    def send(i: int) -> None:
        results[i] = server.infer("batched-v1", {"features": batches[i]})["score"]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, x in enumerate(batches):
        np.testing.assert_allclose(results[i], eager(net, x), rtol=1e-5, atol=1e-6)
    stats = server.client("http")
    try:
        raw = stats._client.get_inference_statistics("batched-v1")
    finally:
        stats.close()
    model_stats = raw["model_stats"][0]
    # Fewer executions than requests: the dynamic batcher merged some.
    assert model_stats["execution_count"] < model_stats["inference_count"]
    server.unload("batched-v1")


@pytest.mark.triton
def test_callables_are_refused_with_the_way_to_serve_them(server):
    with pytest.raises(CallablesNotServed, match=r"load_artifact.*TritonServer"):
        server.bind("f", lambda features: {"score": features}, INPUTS, OUTPUTS)


@pytest.mark.triton
def test_killed_or_stopped_server_leaves_nothing(requires_triton, torchscript_file):
    _, path = torchscript_file
    server = TritonRepositoryServer().start()
    try:
        load(server, "a-v1", 1, path)
        load(server, "b-v1", 1, path)
        before = server.leftovers()
        assert len(before.shm_files) == 2 and len(before.pids) == 3  # server + 2
        os.kill(server.server_pid, signal.SIGKILL)
        assert wait_until(lambda: not server.leftovers(), timeout_s=10)
    finally:
        server.stop()
    assert not server.leftovers()
    # And a clean stop, with models loaded, the same.
    server = TritonRepositoryServer().start()
    load(server, "c-v1", 1, path)
    assert server.leftovers()
    server.stop()
    assert not server.leftovers()
    server.stop()  # idempotent


@pytest.mark.triton
def test_a_killed_pytriton_server_leaves_nothing_after_stop(requires_triton, tmp_path):
    server = TritonServer().start()
    try:
        server.bind(
            "f", torch_infer_fn(make_net(), "features", "score"), INPUTS, OUTPUTS
        )
        x = np.zeros((2, WIDTH), np.float32)
        assert server.infer("f", {"features": x})["score"].shape == (2, 1)
        assert server.leftovers().shm_files
        path = tmp_path / "m.pt"
        torch.jit.save(torch.jit.script(make_net()), str(path))
        load(server, "unbatched", 1, path, dynamic_batching=False)
        assert server._batching["unbatched"] == (False, 0)  # passed on to PyTriton
        os.kill(server.server_pid, signal.SIGKILL)
        time.sleep(0.5)
    finally:
        server.stop()
    assert not server.leftovers()
