"""The session rules of the root ``conftest.py``: warnings fail a run unless a
commented filter explains them, and the reader's Redis is left as found."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[1]


def test_every_warning_filter_says_why():
    """Each entry of pyproject's filterwarnings (after the first, which turns a
    warning into an error) sits right under a comment explaining it."""
    text = (ROOT / "pyproject.toml").read_text()
    filters = tomllib.loads(text)["tool"]["pytest"]["ini_options"]["filterwarnings"]
    lines = text.splitlines()
    for entry in filters:
        if entry.startswith("error"):
            continue
        number = next(i for i, line in enumerate(lines) if f'"{entry}"' in line)
        assert lines[number - 1].strip().startswith("#"), (
            f"the filter {entry!r} has no comment above it saying why it is harmless"
        )


def _run(tmp_path: Path, test: str, **env: str) -> subprocess.CompletedProcess:
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_case.py").write_text(test)
    (tmp_path / "test_zz_later.py").write_text("def test_later():\n    pass\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def test_a_warning_fails_the_run(tmp_path):
    done = _run(
        tmp_path,
        "import warnings\n\ndef test_warns():\n    warnings.warn('unexplained')\n",
    )
    assert done.returncode == 1, done.stdout
    assert "warnings that fail this run" in done.stdout
    assert "UserWarning: unexplained" in done.stdout


@pytest.mark.redis
def test_a_file_that_leaves_keys_in_the_readers_redis_fails(tmp_path, real_redis_url):
    client = redis.Redis.from_url(real_redis_url)
    client.flushdb()
    client.set("readers:own", "kept")  # the reader's key, there before the run
    leak = (
        "import os, redis\n\n"
        "def test_writes():\n"
        "    redis.Redis.from_url(os.environ['REDIS_URL']).set('mine:1', 'x')\n"
    )
    try:
        done = _run(tmp_path, leak, REDIS_URL=real_redis_url)
        assert done.returncode == 1, done.stdout
        assert "test_case.py did not leave REDIS_URL" in done.stdout
        assert "left 1 keys behind (e.g. 'mine:1')" in done.stdout
        assert "2 passed, 1 error" in done.stdout  # one error: the leaking file
        client.delete("mine:1")
        tidy = (
            leak
            + "    redis.Redis.from_url(os.environ['REDIS_URL']).delete('mine:1')\n"
        )
        done = _run(tmp_path, tidy, REDIS_URL=real_redis_url)
        assert done.returncode == 0, done.stdout
        assert client.get("readers:own") == b"kept"
    finally:
        client.flushdb()
        client.close()
