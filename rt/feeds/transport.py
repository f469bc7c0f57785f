"""The I/O edge of a feed: how it connects to an upstream, and what a failure means.

`open_upstream` is the default `Connect` (a trio-websocket client); transport errors become
the few words of `explain`, which the feed logs and shows as its ``last_error``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    DisconnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from rt.ws.wire import close_client_stream

__all__ = ["MAX_UPSTREAM_MESSAGE_BYTES", "Connect", "UpstreamSocket", "explain", "open_upstream"]

#: The largest message accepted from an upstream (a snapshot of every event can be big).
MAX_UPSTREAM_MESSAGE_BYTES = 64 * 1024 * 1024


class UpstreamSocket(Protocol):
    """What the feed needs of a WebSocket (trio_websocket.WebSocketConnection has it)."""

    async def get_message(self) -> str | bytes: ...

    async def send_message(self, message: str | bytes) -> None: ...

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None: ...


#: Opens a connection to a URL: an async context manager yielding the socket. It raises
#: OSError or trio_websocket.HandshakeError when it cannot connect.
Connect = Callable[[str], AbstractAsyncContextManager[UpstreamSocket]]


@asynccontextmanager
async def open_upstream(url: str) -> AsyncIterator[UpstreamSocket]:
    """The default `Connect`: a trio-websocket client connection, 10 s to connect."""
    ws: WebSocketConnection | None = None
    try:
        async with open_websocket_url(
            url,
            connect_timeout=10.0,
            disconnect_timeout=2.0,
            max_message_size=MAX_UPSTREAM_MESSAGE_BYTES,
        ) as ws:
            yield ws
    finally:
        # The library leaves a client's TCP stream open after a server-side close.
        await close_client_stream(ws)


def explain(exc: BaseException) -> str:
    """What went wrong with the connection, in a few words (for logs and ``last_error``)."""
    if isinstance(exc, ConnectionClosed):
        if exc.reason is None:
            return "the connection closed"
        reason = exc.reason
        text = f"closed with {reason.code} {reason.name}"
        return f"{text} ({reason.reason})" if reason.reason else text
    if isinstance(exc, ConnectionRejected):
        return f"the upstream refused the WebSocket with HTTP {exc.status_code}"
    if isinstance(exc, ConnectionTimeout):
        return "connecting timed out"
    if isinstance(exc, DisconnectionTimeout):
        return "closing timed out"
    if isinstance(exc, HandshakeError) and exc.__cause__ is not None:
        return f"cannot connect: {exc.__cause__}"
    return str(exc) or type(exc).__name__
