"""The file-based model registry: versions, checksums, metadata, stages."""

from __future__ import annotations

import json
import subprocess
from datetime import date, datetime
from pathlib import Path

import pytest
import torch

from mlsd_lib.serving.export import export_program, export_torchscript
from mlsd_lib.serving.registry import (
    IntegrityError,
    ModelRegistry,
    RegistryError,
    current_git_commit,
    sha256_of,
)

SCHEMA = [("user_ctr_7d", "float32"), ("ad_ctr_7d", "float32"), ("hour", "int64")]
WINDOW = ("2024-01-01", "2024-01-31")


@pytest.fixture
def linear() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1).eval()


@pytest.fixture
def torchscript_file(tmp_path: Path, linear: torch.nn.Module) -> Path:
    return export_torchscript(linear, torch.randn(4, 3), tmp_path / "src" / "m.pt")


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    # Keep git from finding a repository above tmp_path: git_commit must be null.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.chdir(tmp_path)
    return ModelRegistry(tmp_path / "registry")


def _register(registry: ModelRegistry, path: Path, auc: float = 0.75, **kw):
    return registry.register(
        "ctr",
        path,
        input_schema=SCHEMA,
        training_window=WINDOW,
        metrics={"auc": auc, "log_loss": 0.41},
        format="torchscript",
        **kw,
    )


def test_register_copies_hashes_and_round_trips_metadata(
    registry: ModelRegistry, torchscript_file: Path
) -> None:
    record = _register(registry, torchscript_file)

    assert record.version == 1
    assert record.artifact.parent == registry.root / "ctr" / "versions" / "1"
    assert record.artifact.read_bytes() == torchscript_file.read_bytes()
    assert record.sha256 == sha256_of(torchscript_file)
    assert record.size_bytes == torchscript_file.stat().st_size
    assert record.git_commit is None  # tmp_path is not inside a repository
    assert datetime.fromisoformat(record.created_at).utcoffset().total_seconds() == 0
    # what comes back from disk is exactly what was registered
    assert registry.get("ctr", 1) == record
    on_disk = json.loads((record.artifact.parent / "metadata.json").read_text())
    assert on_disk["input_schema"] == [list(pair) for pair in SCHEMA]
    assert on_disk["training_window"] == list(WINDOW)
    assert on_disk["metrics"] == {"auc": 0.75, "log_loss": 0.41}
    assert record.feature_names == ["user_ctr_7d", "ad_ctr_7d", "hour"]


def test_versions_increase_and_dtypes_are_normalized(
    registry: ModelRegistry, torchscript_file: Path
) -> None:
    _register(registry, torchscript_file)
    second = registry.register(
        "ctr",
        torchscript_file,
        input_schema=[("a", torch.float32), ("b", "int64"), ("c", bool)],
        training_window=(date(2024, 2, 1), datetime(2024, 2, 29, 23, 59)),
        metrics={"auc": 0.8},
        format="torchscript",
    )
    assert second.version == 2
    assert second.input_schema == (("a", "float32"), ("b", "int64"), ("c", "bool"))
    assert second.training_window == ("2024-02-01", "2024-02-29T23:59:00")
    assert [v.version for v in registry.versions("ctr")] == [1, 2]
    assert registry.latest("ctr").version == 2
    assert registry.models() == ["ctr"]


def test_git_commit_is_recorded_inside_a_repository(
    registry: ModelRegistry, torchscript_file: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()

    record = _register(registry, torchscript_file, source_dir=repo)
    assert record.git_commit == head == current_git_commit(repo)
    assert len(head) == 40


def test_load_verifies_the_checksum_and_refuses_a_tampered_artifact(
    registry: ModelRegistry, torchscript_file: Path, linear: torch.nn.Module
) -> None:
    record = _register(registry, torchscript_file)
    x = torch.randn(5, 3)
    with torch.no_grad():
        torch.testing.assert_close(registry.load("ctr", 1)(x), linear(x))

    data = bytearray(record.artifact.read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit
    record.artifact.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="changed after it was registered"):
        registry.load("ctr", 1)

    record.artifact.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        registry.load("ctr", 1)


def test_metadata_cannot_point_outside_the_version_folder(
    registry: ModelRegistry, torchscript_file: Path
) -> None:
    record = _register(registry, torchscript_file)
    metadata = record.artifact.parent / "metadata.json"
    data = json.loads(metadata.read_text())
    data["artifact"] = "../../../../etc/passwd"
    metadata.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="edited by hand or corrupted"):
        registry.load("ctr", 1)


def test_pt2_and_state_dict_formats_load(
    registry: ModelRegistry, linear: torch.nn.Module, tmp_path: Path
) -> None:
    pt2 = export_program(linear, torch.randn(4, 3), tmp_path / "m.pt2")
    weights = tmp_path / "weights.pt"
    torch.save(linear.state_dict(), weights)
    kwargs = {"input_schema": SCHEMA, "training_window": WINDOW, "metrics": {}}
    registry.register("p", pt2, format="pt2", **kwargs)
    registry.register("s", weights, format="state_dict", **kwargs)

    x = torch.randn(6, 3)
    with torch.no_grad():
        torch.testing.assert_close(registry.load("p", 1)(x), linear(x))
    state = registry.load("s", 1)
    assert set(state) == {"weight", "bias"}
    assert torch.equal(state["weight"], linear.weight)


def test_a_pickled_module_is_refused_as_a_state_dict(
    registry: ModelRegistry, linear: torch.nn.Module, tmp_path: Path
) -> None:
    pickled = tmp_path / "whole_model.pt"
    torch.save(linear, pickled)  # the whole object: loading it would unpickle code
    with pytest.raises(ValueError, match="not a weights-only state dict"):
        registry.register(
            "bad",
            pickled,
            input_schema=SCHEMA,
            training_window=WINDOW,
            metrics={},
            format="state_dict",
        )
    assert not (registry.root / "bad" / "versions" / "1").exists()


def test_promote_and_rollback_restore_the_previous_version(
    registry: ModelRegistry, torchscript_file: Path
) -> None:
    for auc in (0.70, 0.72, 0.74):
        _register(registry, torchscript_file, auc=auc)
    assert registry.stage_version("ctr", "production") is None

    registry.promote("ctr", 1, "production")
    registry.promote("ctr", 2, "production")
    registry.promote("ctr", 2, "production")  # a no-op, not a second entry
    registry.promote("ctr", 3, "production")
    registry.promote("ctr", 3, "canary")
    assert registry.stage_version("ctr", "production") == 3

    assert registry.rollback("ctr", "production").version == 2
    assert registry.stage_version("ctr", "production") == 2
    assert registry.rollback("ctr", "production").version == 1
    assert registry.stage_version("ctr", "canary") == 3  # other stages untouched
    with pytest.raises(RegistryError, match=r"no earlier version.*current: 1"):
        registry.rollback("ctr", "production")

    # the history survives a fresh registry object (it is on disk)
    actions = [
        (e["action"], e["version"])
        for e in ModelRegistry(registry.root).stage_history("ctr", "production")
    ]
    assert actions == [
        ("promote", 1),
        ("promote", 2),
        ("promote", 3),
        ("rollback", 2),
        ("rollback", 1),
    ]
    assert not list((registry.root / "ctr" / "stages").glob("*.tmp"))


def test_unknown_names_versions_and_stages_list_what_exists(
    registry: ModelRegistry, torchscript_file: Path
) -> None:
    _register(registry, torchscript_file)
    with pytest.raises(RegistryError, match=r"'ranker'.*known: \['ctr'\]"):
        registry.versions("ranker")
    with pytest.raises(RegistryError, match=r"no version 7 \(versions: \[1\]\)"):
        registry.get("ctr", 7)
    with pytest.raises(RegistryError, match=r"'staging'.*production.*canary.*shadow"):
        registry.promote("ctr", 1, "staging")
    with pytest.raises(RegistryError, match="promote one first"):
        registry.load_stage("ctr", "shadow")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_schema": []}, "input_schema is empty"),
        ({"input_schema": [("a", "float32"), ("a", "int64")]}, "twice"),
        ({"input_schema": [("a", "not-a-dtype")]}, "not a dtype"),
        ({"training_window": ("2024-02-01", "2024-01-01")}, "before it starts"),
        ({"training_window": ("yesterday", "2024-01-01")}, "not an ISO date"),
        ({"format": "onnx"}, "format must be one of"),
    ],
)
def test_bad_registration_is_refused(
    registry: ModelRegistry, torchscript_file: Path, change: dict, message: str
) -> None:
    kwargs = {
        "input_schema": SCHEMA,
        "training_window": WINDOW,
        "metrics": {},
        "format": "torchscript",
    }
    with pytest.raises(ValueError, match=message):
        registry.register("ctr", torchscript_file, **{**kwargs, **change})
    assert registry.models() == []
