"""The largest request body the HTTP API reads: 413 as soon as it is known to be too big.

An ASGI middleware in front of every route. A Content-Length over the limit is refused at
once, before a byte of the body is read; a body without one (chunked) is counted as it
arrives and refused at the first byte past the limit, without waiting for its end. The
limit is ``Settings.max_http_body_bytes`` (64 KiB); a route may have its own (the batch
publish route takes more: rt/http/app.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp as App
from starlette.types import Message, Receive, Scope, Send

from rt.http.errors import error_response

__all__ = ["BodyLimit", "BodyTooLarge"]


class BodyTooLarge(HTTPException):
    """Raised from the body's reading; a Starlette HTTPException so that FastAPI's own body
    parsing lets it through (it turns any other error there into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body may be at most {limit} bytes")
        self.limit = limit


class BodyLimit:
    def __init__(
        self, app: App, *, max_bytes: int, per_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope.get("path", ""), self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, receive, send, limit)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(scope, receive, send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 refuses it before the app is called anyway
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    message = BodyTooLarge(limit).detail
    response = error_response(413, "PAYLOAD_TOO_LARGE", message, headers={"Connection": "close"})
    await response(scope, receive, send)
