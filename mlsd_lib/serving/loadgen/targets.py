"""Where load may go: loopback only, and only once the service says it is ready.

Part of :mod:`mlsd_lib.serving.loadgen`, introduced in
``notebooks/model_serving.ipynb``.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urlsplit

import httpx

from mlsd_lib.errors import MlsdError
from mlsd_lib.net import wait_until
from mlsd_lib.serving.loadgen.limits import MAX_SECONDS, check_range


class NotLoopback(MlsdError, ValueError):
    """A load-test target is not on this machine's loopback interface."""


class ServiceNotReady(MlsdError, TimeoutError):
    """The readiness endpoint did not answer 2xx in time."""


def _is_loopback_address(host: str) -> bool:
    """True for an IP literal in 127.0.0.0/8 or ::1 (IPv4-mapped forms included)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def _localhost_is_loopback() -> bool:
    """Whether every address ``localhost`` resolves to is a loopback address.

    ``localhost`` is answered from ``/etc/hosts`` (or synthesized by the
    resolver), so this asks nothing of the network; a machine whose hosts file
    maps it elsewhere is refused rather than trusted.
    """
    try:
        infos = socket.getaddrinfo("localhost", None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(_is_loopback_address(info[4][0]) for info in infos)


def check_loopback(url: str) -> str:
    """Return ``url`` unchanged if it points at loopback, else raise NotLoopback.

    Load tests in this book only ever hit services on this machine. An IP
    literal must be in 127.0.0.0/8 or be ::1; the only name accepted is
    ``localhost``, after checking it resolves to loopback. Every other name is
    refused without being looked up, so a typo never sends traffic (not even a
    DNS query) anywhere. The host is read by both the standard library and
    httpx, which sends the requests, and both must agree: URLs that parsers
    read differently are refused, as are a user-info part or a backslash
    (``http://a.example\\@127.0.0.1``), which other clients read as another
    host. There is deliberately no override.
    """
    try:
        std_host = urlsplit(url).hostname or ""
        parsed = httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as error:
        raise NotLoopback(f"cannot parse load-test target {url!r}: {error}") from None
    if parsed.scheme not in ("http", "https"):
        raise NotLoopback(
            f"load-test target {url!r} must be an http:// or https:// URL "
            f"such as http://127.0.0.1:8000"
        )
    if "\\" in url or parsed.userinfo:
        raise NotLoopback(
            f"load-test target {url!r} is ambiguous: a user-info part or a "
            f"backslash lets parsers disagree on the host; write it plainly, "
            f"e.g. http://127.0.0.1:8000"
        )
    hosts = {std_host.lower(), parsed.host.lower()}
    if len(hosts) != 1:
        raise NotLoopback(
            f"load-test target {url!r} is ambiguous: its host reads as "
            f"{sorted(hosts)}; write it plainly, e.g. http://127.0.0.1:8000"
        )
    host = hosts.pop()
    if _is_loopback_address(host):
        return url
    if host == "localhost" and _localhost_is_loopback():
        return url
    raise NotLoopback(
        f"load-test target {url!r} is not on loopback (host {host!r}). Load tests "
        f"here only send traffic to 127.0.0.0/8, ::1 or localhost; start the "
        f"service on 127.0.0.1 (the library's servers already do)."
    )


def wait_until_ready(
    base_url: str,
    path: str = "/readyz",
    timeout_s: float = 30.0,
    *,
    interval_s: float = 0.05,
) -> float:
    """Block until ``GET base_url + path`` answers 2xx; return the seconds waited.

    Health before predict: a service that is still loading its model answers
    its readiness endpoint with 503, and load sent before then measures the
    start-up, not the service. Raises ServiceNotReady, with the last answer or
    error seen, if the endpoint is not ready within ``timeout_s``.
    """
    url = check_loopback(base_url.rstrip("/") + "/" + path.lstrip("/"))
    check_range("timeout_s", timeout_s, 0, MAX_SECONDS)
    last = ["no answer yet"]
    started = time.monotonic()

    def ready(client: httpx.Client) -> bool:
        try:
            response = client.get(url)
        except httpx.HTTPError as error:
            last[0] = f"{type(error).__name__}: {error}"
            return False
        last[0] = f"HTTP {response.status_code}: {response.text[:200]!r}"
        return response.is_success

    with httpx.Client(timeout=min(1.0, timeout_s), trust_env=False) as client:
        if wait_until(
            lambda: ready(client), timeout_s=timeout_s, interval_s=interval_s
        ):
            return time.monotonic() - started
    raise ServiceNotReady(
        f"{url} was not ready after {timeout_s:g} s (last: {last[0]}). Is the "
        f"service running, and is its model loaded?"
    )
