"""A file-based model registry: versions, checksums, metadata and stages.

Introduced in ``notebooks/model_serving.ipynb``. Between training and serving
sits a record of *what* was trained: which file, on which data window, with
which features in which order, scoring what offline, from which commit. Without
it a rollback is guesswork. This registry keeps that record as plain files::

    root/<name>/versions/<n>/model.pt | model.pt2 | state_dict.pt
    root/<name>/versions/<n>/metadata.json
    root/<name>/stages/<stage>.json        # production, canary, shadow

Every JSON file is written to a temporary file and moved into place with
``os.replace``, so a reader never sees half a file. Each version's artifact is
hashed (sha256) when registered and re-hashed before every load: a file that
changed on disk is refused with :class:`IntegrityError`. Nothing is unpickled:
TorchScript is read by ``torch.jit.load``, ``.pt2`` by ``torch.export.load``, and
state dicts only by ``torch.load(weights_only=True)``, which accepts tensors and
plain containers and refuses arbitrary classes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.export import load_program, load_torchscript

ArtifactFormat = Literal["torchscript", "pt2", "state_dict"]
Stage = Literal["production", "canary", "shadow"]

#: The artifact's file name inside a version folder, by format.
ARTIFACT_FILES: dict[str, str] = {
    "torchscript": "model.pt",
    "pt2": "model.pt2",
    "state_dict": "state_dict.pt",
}
STAGES: tuple[str, ...] = ("production", "canary", "shadow")
_CHUNK = 1 << 20


class RegistryError(MlsdError, LookupError):
    """A name, version or stage the registry lacks; the message lists what exists."""


class IntegrityError(MlsdError, RuntimeError):
    """An artifact's bytes no longer match the sha256 recorded at registration."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model and everything known about it."""

    name: str
    version: int
    format: ArtifactFormat
    artifact: Path
    sha256: str
    size_bytes: int
    input_schema: tuple[tuple[str, str], ...]
    training_window: tuple[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    created_at: str = ""
    git_commit: str | None = None

    @property
    def feature_names(self) -> list[str]:
        return [feature for feature, _ in self.input_schema]

    def to_json(self) -> dict[str, Any]:
        """The version's ``metadata.json``: the on-disk format of the registry.

        ``artifact`` is the file's name only (never a path, so a registry folder
        can move), ``input_schema`` the ordered ``[feature, dtype]`` pairs the
        gateway fetches, ``training_window`` two ISO dates, ``metrics`` the
        offline figures, ``git_commit`` the code that trained it (or null).
        """
        return {
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "artifact": self.artifact.name,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "input_schema": [list(pair) for pair in self.input_schema],
            "training_window": list(self.training_window),
            "metrics": self.metrics,
            "created_at": self.created_at,
            "git_commit": self.git_commit,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], folder: Path) -> ModelVersion:
        """Read :meth:`to_json`'s format back; the artifact lives in ``folder``.

        An artifact name that is not one of the registry's own file names is
        refused (:class:`IntegrityError`): metadata never points outside its
        version folder.
        """
        artifact = str(data["artifact"])
        if artifact not in ARTIFACT_FILES.values():
            # Never follow a path from metadata out of the version folder.
            raise IntegrityError(
                f"{folder / 'metadata.json'} names artifact {artifact!r}, which is "
                f"not one of {sorted(ARTIFACT_FILES.values())}: the metadata was "
                "edited by hand or corrupted; re-register the model."
            )
        return cls(
            name=str(data["name"]),
            version=int(data["version"]),
            format=data["format"],
            artifact=folder / artifact,
            sha256=str(data["sha256"]),
            size_bytes=int(data["size_bytes"]),
            input_schema=tuple((str(f), str(d)) for f, d in data["input_schema"]),
            training_window=(
                str(data["training_window"][0]),
                str(data["training_window"][1]),
            ),
            metrics={str(k): float(v) for k, v in data["metrics"].items()},
            created_at=str(data["created_at"]),
            git_commit=data["git_commit"],
        )


def sha256_of(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def current_git_commit(cwd: str | Path | None = None) -> str | None:
    """``git rev-parse HEAD`` in ``cwd``, or None outside a repository (or no git)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def _write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2, sort_keys=True)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dtype_name(dtype: object) -> str:
    if isinstance(dtype, torch.dtype):
        return str(dtype).removeprefix("torch.")
    try:
        return np.dtype(dtype).name
    except TypeError:
        raise ValueError(
            f"{dtype!r} is not a dtype: use a name such as 'float32' or 'int64', "
            "a numpy dtype or a torch dtype."
        ) from None


def _normalize_schema(
    input_schema: Sequence[tuple[str, object]],
) -> tuple[tuple[str, str], ...]:
    if not input_schema:
        raise ValueError(
            "input_schema is empty: give the model's features in the order it "
            "reads them, e.g. [('user_ctr_7d', 'float32'), ...]."
        )
    schema = tuple(
        (str(feature), _dtype_name(dtype)) for feature, dtype in input_schema
    )
    names = [feature for feature, _ in schema]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"input_schema lists features twice: {duplicates}.")
    return schema


def _iso(value: date | datetime | str) -> tuple[str, datetime]:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise ValueError(
                f"training window bound {value!r} is not an ISO date or datetime "
                "(e.g. '2024-01-31' or '2024-01-31T00:00:00+00:00')."
            ) from None
    text = value if isinstance(value, str) else value.isoformat()
    return text, moment


def _normalize_window(
    training_window: tuple[date | datetime | str, date | datetime | str],
) -> tuple[str, str]:
    (start, start_at), (end, end_at) = (_iso(bound) for bound in training_window)
    try:
        backwards = start_at > end_at
    except TypeError:
        raise ValueError(
            f"training window {start!r}..{end!r} mixes timezone-aware and naive "
            "times: give both with a timezone or neither."
        ) from None
    if backwards:
        raise ValueError(f"training window ends ({end}) before it starts ({start}).")
    return start, end


class ModelRegistry:
    """Versions, metadata and stages of models, kept as files under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    # -- versions ---------------------------------------------------------------

    def register(
        self,
        name: str,
        artifact_path: str | Path,
        *,
        input_schema: Sequence[tuple[str, object]],
        training_window: tuple[date | datetime | str, date | datetime | str],
        metrics: Mapping[str, float],
        format: ArtifactFormat,
        source_dir: str | Path | None = None,
    ) -> ModelVersion:
        """Copy ``artifact_path`` in as the next version of ``name`` and record it.

        The artifact is opened in its declared ``format`` first, so a file that
        is not what it claims (a pickled module passed as a ``state_dict``) is
        refused here rather than on the serving path. ``git_commit`` is
        ``git rev-parse HEAD`` in ``source_dir`` (default: the working
        directory), or null outside a repository.
        """
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(
                f"model name {name!r} must be a plain folder name (no slashes, "
                "not starting with a dot)."
            )
        if format not in ARTIFACT_FILES:
            raise ValueError(
                f"format must be one of {sorted(ARTIFACT_FILES)}, not {format!r}."
            )
        source = Path(artifact_path)
        if not source.is_file():
            raise FileNotFoundError(f"artifact {source} does not exist.")
        schema = _normalize_schema(input_schema)
        window = _normalize_window(training_window)
        clean_metrics = {str(key): float(value) for key, value in metrics.items()}
        _open_artifact(source, format)

        folder = self._new_version_folder(name)
        version = int(folder.name)
        try:
            artifact = folder / ARTIFACT_FILES[format]
            digest, size = _copy_and_hash(source, artifact)
            record = ModelVersion(
                name=name,
                version=version,
                format=format,
                artifact=artifact,
                sha256=digest,
                size_bytes=size,
                input_schema=schema,
                training_window=window,
                metrics=clean_metrics,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                git_commit=current_git_commit(source_dir),
            )
            # metadata.json last: its presence is what makes the version exist.
            _write_json_atomic(folder / "metadata.json", record.to_json())
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return record

    def _new_version_folder(self, name: str) -> Path:
        versions = self.root / name / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        taken = [int(p.name) for p in versions.iterdir() if p.name.isdigit()]
        number = max(taken, default=0) + 1
        while True:  # mkdir is atomic: two writers never get the same number
            try:
                (versions / str(number)).mkdir()
                return versions / str(number)
            except FileExistsError:
                number += 1

    def models(self) -> list[str]:
        """Names of every model with at least one registered version."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and any((p / "versions").glob("*/metadata.json"))
        )

    def versions(self, name: str) -> list[ModelVersion]:
        """Every registered version of ``name``, oldest first."""
        folder = self.root / name / "versions"
        numbers = sorted(
            int(p.parent.name)
            for p in folder.glob("*/metadata.json")
            if p.parent.name.isdigit()
        )
        if not numbers:
            raise RegistryError(
                f"no model named {name!r} in registry {self.root} "
                f"(known: {self.models()}); register it first."
            )
        return [self._read(name, number) for number in numbers]

    def get(self, name: str, version: int) -> ModelVersion:
        """The record of one version; errors list the versions that exist."""
        metadata = self.root / name / "versions" / str(version) / "metadata.json"
        if not metadata.is_file():
            known = [v.version for v in self.versions(name)]
            raise RegistryError(
                f"model {name!r} has no version {version!r} (versions: {known})."
            )
        return self._read(name, int(version))

    def latest(self, name: str) -> ModelVersion:
        """The most recently registered version of ``name``."""
        return self.versions(name)[-1]

    def _read(self, name: str, version: int) -> ModelVersion:
        folder = self.root / name / "versions" / str(version)
        data = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        return ModelVersion.from_json(data, folder)

    # -- loading ----------------------------------------------------------------

    def verify(self, name: str, version: int) -> ModelVersion:
        """Re-hash the artifact; raise :class:`IntegrityError` if it changed."""
        record = self.get(name, version)
        if not record.artifact.is_file():
            raise IntegrityError(
                f"{name} v{version}: artifact {record.artifact} is missing; "
                "re-register the model from a trusted copy."
            )
        actual = sha256_of(record.artifact)
        if actual != record.sha256:
            raise IntegrityError(
                f"{name} v{version}: {record.artifact} has sha256 {actual}, but "
                f"{record.sha256} was recorded at registration. The file changed "
                "after it was registered (corruption or tampering); refusing to "
                "load it. Re-register the model from a trusted copy."
            )
        return record

    def load(self, name: str, version: int) -> Any:
        """Verify the checksum, then load the artifact without unpickling.

        Returns a callable module for ``torchscript`` and ``pt2``, and the
        tensors of a ``state_dict`` (build the module and ``load_state_dict``).
        """
        record = self.verify(name, version)
        return _open_artifact(record.artifact, record.format)

    # -- stages -----------------------------------------------------------------

    def _stage_file(self, name: str, stage: str) -> Path:
        if stage not in STAGES:
            raise RegistryError(f"unknown stage {stage!r}; stages are {list(STAGES)}.")
        return self.root / name / "stages" / f"{stage}.json"

    def stage_history(self, name: str, stage: Stage) -> list[dict[str, Any]]:
        """Every promote, rollback and withdraw of ``stage``, oldest first."""
        path = self._stage_file(name, stage)
        if not path.is_file():
            return []
        return list(json.loads(path.read_text(encoding="utf-8"))["history"])

    @staticmethod
    def _stack(history: list[dict[str, Any]]) -> list[int]:
        stack: list[int] = []
        for event in history:
            if event["action"] == "promote":
                stack.append(int(event["version"]))
            else:
                stack.pop()
        return stack

    def stage_version(self, name: str, stage: Stage) -> int | None:
        """The version serving ``stage`` now, or None if nothing was promoted."""
        self.versions(name)  # unknown model: an error that lists the known ones
        stack = self._stack(self.stage_history(name, stage))
        return stack[-1] if stack else None

    def promote(self, name: str, version: int, stage: Stage) -> ModelVersion:
        """Point ``stage`` at ``version``; the previous one is remembered."""
        record = self.get(name, version)
        history = self.stage_history(name, stage)
        stack = self._stack(history)
        if stack and stack[-1] == record.version:
            return record  # already there: recording it twice would skew rollback
        history.append(
            {
                "action": "promote",
                "version": record.version,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        _write_json_atomic(
            self._stage_file(name, stage), {"stage": stage, "history": history}
        )
        return record

    def rollback(self, name: str, stage: Stage) -> ModelVersion:
        """Return ``stage`` to the version promoted before the current one."""
        history = self.stage_history(name, stage)
        stack = self._stack(history)
        if len(stack) < 2:
            current = stack[-1] if stack else None
            raise RegistryError(
                f"cannot roll back {name!r} {stage}: no earlier version was "
                f"promoted to it (current: {current}). Promote a version instead."
            )
        history.append(
            {
                "action": "rollback",
                "version": stack[-2],
                "from_version": stack[-1],
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        _write_json_atomic(
            self._stage_file(name, stage), {"stage": stage, "history": history}
        )
        return self.get(name, stack[-2])

    def withdraw(self, name: str, stage: Stage, reason: str = "") -> ModelVersion:
        """Take the current version off ``stage``, leaving the version promoted
        before it there (none, for a first canary); returns the withdrawn one.

        This is the way back from a canary that fails its checks: unlike
        :meth:`rollback`, it works when nothing was promoted to the stage before,
        and the history records why (``reason``), so the post-mortem can read it.
        """
        history = self.stage_history(name, stage)
        stack = self._stack(history)
        if not stack:
            raise RegistryError(
                f"cannot withdraw {name!r} from {stage}: no version is there. "
                f"Check stage_version({name!r}, {stage!r}) before withdrawing."
            )
        history.append(
            {
                "action": "withdraw",
                "version": stack[-2] if len(stack) > 1 else None,
                "from_version": stack[-1],
                "reason": reason,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        _write_json_atomic(
            self._stage_file(name, stage), {"stage": stage, "history": history}
        )
        return self.get(name, stack[-1])

    def load_stage(self, name: str, stage: Stage) -> Any:
        """Load whatever version ``stage`` points at (checksum verified)."""
        version = self.stage_version(name, stage)
        if version is None:
            raise RegistryError(
                f"no version of {name!r} is in {stage}; promote one first "
                f"(versions: {[v.version for v in self.versions(name)]})."
            )
        return self.load(name, version)


def _copy_and_hash(source: Path, destination: Path) -> tuple[str, int]:
    """Copy a file while hashing the bytes written, so the hash is of the copy."""
    digest = hashlib.sha256()
    size = 0
    tmp = destination.with_name(f".{destination.name}.tmp")
    with open(source, "rb") as reader, open(tmp, "wb") as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
            size += len(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    os.replace(tmp, destination)
    return digest.hexdigest(), size


def _open_artifact(path: Path, format: str) -> Any:
    if format == "torchscript":
        return load_torchscript(path)
    if format == "pt2":
        return load_program(path)
    if format == "state_dict":
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(
                f"{path} is not a weights-only state dict ({type(error).__name__}); "
                "save one with torch.save(model.state_dict(), path), not the model "
                "object, which would need unpickling arbitrary code to load."
            ) from error
    raise ValueError(f"unknown artifact format {format!r}.")
