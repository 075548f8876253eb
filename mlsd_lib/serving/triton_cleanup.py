"""Leave nothing behind: the processes and shared memory of Triton's Python backend.

Introduced in ``notebooks/model_serving.ipynb``. Every model instance on Triton's
Python backend is a ``triton_python_backend_stub`` process (a few hundred MB
once it has imported torch) talking to ``tritonserver`` through a
shared-memory region in ``/dev/shm``. When ``tritonserver`` exits cleanly it
stops them and removes the regions; when it is killed, they are orphaned, and
on a machine with a small ``/dev/shm`` (Binder and Docker give 64 MB) a few such
crashes are enough for the next Triton not to start.

Every server the library starts therefore gives its regions a prefix of its own
(``--backend-config=python,shm-region-prefix-name=...``); the stub carries that
prefix on its command line. :func:`reap_python_backend` kills every process whose
command line holds the prefix and deletes every region whose name starts with
it: exactly what that server created, never anyone else's.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path

SHM_DIR = Path("/dev/shm")


@dataclass(frozen=True)
class Leftovers:
    """Processes and shared-memory files that belong to one server's prefix."""

    pids: tuple[int, ...]
    shm_files: tuple[Path, ...]

    def __bool__(self) -> bool:
        return bool(self.pids or self.shm_files)


def new_shm_prefix(tag: str = "mlsd") -> str:
    """A prefix unique to one server: ``mlsd<pid>x<random>-``."""
    return f"{tag}{os.getpid()}x{secrets.token_hex(4)}-"


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone, or not ours to read
        return b""


def find_leftovers(prefix: str, shm_dir: Path = SHM_DIR) -> Leftovers:
    """What still exists of the server that used ``prefix``."""
    if len(prefix) < 8:
        raise ValueError(
            f"prefix {prefix!r} is too short to be unique to one server; use "
            "new_shm_prefix()."
        )
    token = prefix.encode()
    me = os.getpid()
    pids = tuple(
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and int(entry.name) != me
        and token in _command_line(int(entry.name))
    )
    try:
        files = tuple(sorted(shm_dir.glob(f"{prefix}*")))
    except OSError:
        files = ()
    return Leftovers(pids, files)


def reap_python_backend(prefix: str, shm_dir: Path = SHM_DIR) -> Leftovers:
    """SIGKILL the processes and delete the regions of ``prefix``; say what was found.

    SIGKILL, because an orphaned stub does not always act on SIGTERM.
    """
    found = find_leftovers(prefix, shm_dir)
    for pid in found.pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for path in found.shm_files:
        path.unlink(missing_ok=True)
    return found


#: The prefixes our servers use: ours (``mlsd<pid>x<hex>-``) and PyTriton's
#: (``pytrtion<pid>-<hex>``); the pid is the process that started the server.
OWNED_PREFIX = re.compile(rb"(mlsd(\d+)x[0-9a-f]{8}-|pytrtion(\d+)-[0-9a-f]{8})")


def _owner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphaned_leftovers(
    shm_dir: Path = SHM_DIR, *, including_mine: bool = False
) -> dict[str, Leftovers]:
    """Leftovers, by prefix, of servers whose starting process is gone.

    ``including_mine`` also counts servers started by this process (at the end
    of a test session, nothing it started should be left).
    """

    def orphaned(match: re.Match[bytes]) -> bool:
        owner = int(match.group(2) or match.group(3))
        return not _owner_alive(owner) or (including_mine and owner == os.getpid())

    prefixes: set[str] = set()
    names = [p.name.encode() for p in shm_dir.glob("*")] if shm_dir.is_dir() else []
    commands = [
        _command_line(int(e.name)) for e in Path("/proc").iterdir() if e.name.isdigit()
    ]
    for text in (*names, *commands):
        for match in OWNED_PREFIX.finditer(text):
            if orphaned(match):
                prefixes.add(match.group(1).decode())
    found = {prefix: find_leftovers(prefix, shm_dir) for prefix in sorted(prefixes)}
    return {prefix: left for prefix, left in found.items() if left}


def kill_process_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal every process of a group; False if none was left."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
