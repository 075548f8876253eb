"""Child processes that die with their parent.

Introduced in ``notebooks/00_environment.ipynb``.

The servers this library starts for a notebook (a private ``redis-server``, a
``tritonserver``) must not outlive the kernel that started them, even when the
kernel is killed and ``atexit`` never runs. On Linux the kernel can send the
child a signal when its parent dies (``PR_SET_PDEATHSIG``); elsewhere we rely on
``atexit`` alone.
"""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when we die.

    Returns None on other platforms. Note: Linux ties this to the *thread* that
    forked the child, so start servers from a long-lived thread (the main one).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def _preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return _preexec


def tail(text: str, lines: int = 20) -> str:
    """The last ``lines`` lines of a log, indented, for an error message."""
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join("    " + line for line in kept) if kept else "    (empty log)"
