"""Request guards that run before any parsing: body size and the API key.

Introduced in ``notebooks/model_serving.ipynb``.

**Size.** A JSON parser holds the whole body in memory, so a 1 GB body is a
cheap attack. :class:`BodyLimitMiddleware` answers 413 when ``Content-Length``
is over the limit, and otherwise reads the body itself, counting bytes, so a
chunked upload without a length is cut off at the limit too. Only a body
within the limit reaches FastAPI.

**Key.** :func:`api_key_checker` compares the ``X-API-Key`` header with the
configured key using :func:`hmac.compare_digest`, whose running time does not
depend on where the first differing byte is; ``==`` stops at the first
difference, and the time it takes leaks how much of a guess was right.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Security, status
from fastapi.security import APIKeyHeader

API_KEY_HEADER = "X-API-Key"

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


#: What a 413 tells the client to do, unless the gateway says otherwise.
DEFAULT_BODY_ADVICE = "Send fewer candidates per request."


class BodyLimitMiddleware:
    """Answer 413 to any HTTP request whose body exceeds ``max_body_bytes``.

    ``advice`` ends the message: what the client should send instead (a
    scoring gateway: fewer candidates; an image search: a smaller photo).
    """

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, advice: str = DEFAULT_BODY_ADVICE
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.advice = advice

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (
            not declared.isdigit() or int(declared) > self.max_body_bytes
        ):
            await self._too_large(send, declared.decode(errors="replace"))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(send, f"more than {size}")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send, size: str) -> None:
        detail = (
            f"request body is {size} bytes; this gateway accepts at most "
            f"{self.max_body_bytes} bytes. {self.advice}"
        )
        payload = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status.HTTP_413_CONTENT_TOO_LARGE,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def api_key_checker(
    api_key: str | None,
) -> Callable[[str | None], Awaitable[None]]:
    """A FastAPI dependency that admits a request only with the right key.

    ``api_key=None`` admits everyone;
    :class:`~mlsd_lib.serving.gateway.config.GatewayConfig` allows that only when
    ``auth_disabled=True`` was set explicitly.
    """
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
    expected = None if api_key is None else api_key.encode()

    # async: FastAPI runs a plain ``def`` dependency on a worker thread, a hand-off
    # that cost more CPU than the whole check (256 vs 109 us per request).
    async def check(given: str | None = Security(header)) -> None:
        if expected is None:
            return
        if not given:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"missing {API_KEY_HEADER} header: send the gateway's API key in it.",
                headers={"WWW-Authenticate": API_KEY_HEADER},
            )
        if not hmac.compare_digest(given.encode(), expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"the {API_KEY_HEADER} header does not hold a valid API key.",
                headers={"WWW-Authenticate": API_KEY_HEADER},
            )

    return check
