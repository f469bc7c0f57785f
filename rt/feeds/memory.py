"""An in-process WebSocket: a trio-websocket client and server joined by memory streams.

Used to run the simulator inside rt serve (no port) and by tests as a fake upstream. The
bytes are real WebSocket frames, handshake included; only the socket is missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio
import trio.testing
from trio_websocket import (
    WebSocketConnection,
    WebSocketRequest,
    wrap_client_stream,
    wrap_server_stream,
)

__all__ = ["open_memory_websocket"]

Handler = Callable[[WebSocketRequest], Awaitable[None]]

#: How long both sides get to finish closing once the client leaves.
CLOSE_TIMEOUT_S = 1.0


@asynccontextmanager
async def open_memory_websocket(
    handler: Handler,
    *,
    resource: str = "/",
    max_message_size: int = 64 * 1024 * 1024,
) -> AsyncIterator[WebSocketConnection]:
    """Connect a client WebSocket to ``handler``, which gets the server side's request.

    Both sides live in a nursery of this block. Leaving it closes the client (the closing
    handshake), gives both sides up to `CLOSE_TIMEOUT_S` to finish, then cuts them off. An
    exception from the block comes out as itself, after that, not in an exception group.
    """
    client_stream, server_stream = trio.testing.memory_stream_pair()
    error: Exception | None = None

    async def serve(nursery: trio.Nursery) -> None:
        await handler(await wrap_server_stream(nursery, server_stream))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, nursery)
        ws = await wrap_client_stream(
            nursery,
            client_stream,  # type: ignore[arg-type]
            "memory",
            resource,
            max_message_size=max_message_size,
        )
        try:
            yield ws
        except Exception as exc:
            # Held until both sides are done: raised inside the nursery, it would cancel the
            # server side before it could finish its closing handshake.
            error = exc
        nursery.cancel_scope.deadline = trio.current_time() + CLOSE_TIMEOUT_S
        await ws.aclose()
    if error is not None:
        raise error
