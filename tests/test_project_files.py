"""The files that tie the project together agree with each other."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENVIRONMENT = yaml.safe_load((ROOT / "environment.yml").read_text())


def _pins(requirements: list[str]) -> dict[str, str]:
    """``{"torch": "2.13.0"}`` for every ``name[extras]==version`` requirement."""
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(
            r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*==\s*([^\s;]+).*", requirement
        )
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(3)
    return pins


def _conda_dependencies() -> tuple[list[str], list[str]]:
    conda, pip = [], []
    for dependency in ENVIRONMENT["dependencies"]:
        if isinstance(dependency, dict):
            pip.extend(dependency["pip"])
        else:
            conda.append(dependency)
    return conda, pip


def test_python_version_agrees():
    conda, _ = _conda_dependencies()
    assert "python=3.11" in conda
    assert PYPROJECT["project"]["requires-python"] == ">=3.11,<3.12"


def test_binder_installs_this_package_with_an_extra_that_exists():
    _, pip = _conda_dependencies()
    local = [line for line in pip if re.fullmatch(r"-e \.(\[[a-z,]+\])?", line)]
    assert local == ["-e .[book]"]
    assert "book" in PYPROJECT["project"]["optional-dependencies"]


def test_no_package_is_pinned_differently_in_the_two_files():
    conda, pip = _conda_dependencies()
    ours = _pins(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        ours.update(_pins(extra))
    theirs = _pins(pip)
    theirs.update(
        {
            name.lower(): version
            for name, _, version in (d.partition("=") for d in conda)
            if version
        }
    )
    theirs.pop("python", None)
    clashes = {n: (ours[n], v) for n, v in theirs.items() if n in ours and ours[n] != v}
    assert clashes == {}


def test_torch_is_pinned_exactly():
    assert "torch==2.13.0" in PYPROJECT["project"]["dependencies"]


def test_binder_gets_a_real_redis():
    conda, _ = _conda_dependencies()
    assert "redis-server" in conda
    start = (ROOT / "start").read_text()
    assert re.search(r"^redis-server .*--bind 127\.0\.0\.1", start, re.M)
    assert "export REDIS_URL=redis://127.0.0.1:6379/0" in start
    assert start.rstrip().endswith('exec "$@"')
    assert os.access(ROOT / "start", os.X_OK)


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme


def test_ci_script_is_executable_and_requires_real_backends():
    run = ROOT / ".ci" / "run"
    assert os.access(run, os.X_OK)
    text = run.read_text()
    assert "MLSD_REQUIRE_REAL_BACKENDS=1" in text
    assert text.rstrip().splitlines()[-1] == "make test"  # its summary line ends CI


def _toc_files(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["file"]] if "file" in node else []
        if "root" in node:
            found.append(node["root"])
        return found + [f for value in node.values() for f in _toc_files(value)]
    if isinstance(node, list):
        return [f for item in node for f in _toc_files(item)]
    return []


TOC = _toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))


@pytest.mark.parametrize("entry", TOC)
def test_every_toc_entry_exists(entry):
    assert any((ROOT / f"{entry}{suffix}").exists() for suffix in (".md", ".ipynb")), (
        entry
    )


def test_every_notebook_is_in_the_book():
    notebooks = {
        str(path.relative_to(ROOT).with_suffix(""))
        for folder in ("notebooks", "casestudies")
        for path in (ROOT / folder).rglob("*.ipynb")
        if ".ipynb_checkpoints" not in path.parts
    }
    assert notebooks - set(TOC) == set()


def test_every_notebook_takes_its_seed_from_mlsd_seed():
    """The README promises that MLSD_SEED seeds the notebooks: each parameters
    cell reads it through load_settings() instead of hard-coding a number."""
    import json

    notebooks = sorted(ROOT.glob("notebooks/*.ipynb")) + sorted(
        ROOT.glob("casestudies/*/*.ipynb")
    )
    assert notebooks
    hard_coded = []
    for path in notebooks:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        parameters = next((c for c in code if c.startswith("# Parameters")), "")
        if "SEED" in parameters and "SEED = load_settings().seed" not in parameters:
            hard_coded.append(path.name)
    assert hard_coded == [], f"these notebooks hard-code SEED: {hard_coded}"
