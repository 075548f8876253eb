"""A gateway command run as a process of its own, for as long as a ``with`` block.

Introduced in ``casestudies/recommender/index.md`` (step 6: the feed measured
over HTTP). A benchmark must not run the gateway in the load generator's
process: the two would share one interpreter lock, and the generator's threads
would be counted as the gateway's latency. :class:`GatewayProcess` starts any
command that prints ``gateway: http://HOST:PORT`` once it listens (``python -m
mlsd_lib.serving.gateway --demo``, ``python -m mlsd_lib.recsys.feed_server``),
waits for that line, checks the address is loopback, keeps the output for
error messages, and on exit (also after an error) sends SIGTERM, which drains
requests and stops what the gateway started, then SIGKILL if it hangs.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Mapping, Sequence

from mlsd_lib.errors import MlsdError
from mlsd_lib.processes import tail
from mlsd_lib.serving.loadgen.targets import check_loopback

__all__ = ["GatewayDidNotStart", "GatewayProcess"]

#: The line a gateway prints once its socket listens.
ADDRESS_PREFIX = "gateway: http://"


class GatewayDidNotStart(MlsdError, RuntimeError):
    """The gateway process exited or stayed silent; the message has its output."""


class GatewayProcess:
    """``command`` as a subprocess with ``env``; ``url`` once it listens."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        *,
        start_timeout_s: float = 180.0,
        stop_timeout_s: float = 20.0,
    ) -> None:
        self.command = list(command)
        self.env = dict(env)
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._url_seen = threading.Event()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def output(self) -> str:
        """Everything the process printed so far."""
        return "\n".join(self._lines)

    def __enter__(self) -> GatewayProcess:
        self._process = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read_output, daemon=True).start()
        try:
            if not self._url_seen.wait(self.start_timeout_s) or not self.url:
                raise GatewayDidNotStart(
                    f"{' '.join(self.command[:4])} ... did not print its address "
                    f"within {self.start_timeout_s:.0f} s. Its output ends:\n"
                    f"{tail(self.output, 25)}"
                )
            check_loopback(self.url)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.append(line.rstrip("\n"))
            if line.startswith(ADDRESS_PREFIX) and not self.url:
                self.url = line.split(" ", 1)[1].strip()
                self._url_seen.set()
        self._url_seen.set()  # exited: stop waiting

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout_s`` (idempotent)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
