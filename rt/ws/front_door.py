"""One port for HTTP and WebSocket: read a connection's request head, then hand it on.

Every seed's clients reach REST and WebSocket on one host:port. The listener accepts TCP
itself and reads the first request's head (up to ``MAX_HEAD_BYTES``, within the handshake
timeout) without using it up: the stream it hands on replays those bytes first. h11 parses
the head; a WebSocket upgrade goes to trio-websocket, anything else (including a head h11
refuses, which Hypercorn then answers with 400) to Hypercorn. rt parses no HTTP itself.

A client that upgrades on a connection that has already served HTTP requests reaches
Hypercorn, which has no WebSocket routes; every client library opens a fresh connection for
a WebSocket, so that is not a path clients take.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import h11
import trio

__all__ = [
    "MAX_HEAD_BYTES",
    "ChannelListener",
    "ReplayStream",
    "StreamWrapper",
    "is_websocket_upgrade",
    "read_head",
]

#: A request head longer than this is not read further: Hypercorn gets it and refuses it.
MAX_HEAD_BYTES = 16 * 1024
_END_OF_HEAD = b"\r\n\r\n"


async def read_head(stream: trio.abc.ReceiveStream) -> bytes:
    """What the client sent up to the end of its first request head (it may be more than the
    head), or less when the client stopped sending or the head grew past MAX_HEAD_BYTES."""
    received = bytearray()
    while _END_OF_HEAD not in received and len(received) < MAX_HEAD_BYTES:
        data = await stream.receive_some(MAX_HEAD_BYTES)
        if not data:
            break
        received += data
    return bytes(received)


def is_websocket_upgrade(head: bytes) -> bool:
    """Whether ``head`` is a GET asking to upgrade to WebSocket (RFC 6455 section 4.1).
    Whether the rest of the handshake is valid is trio-websocket's to say."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(head)
    try:
        event = connection.next_event()
    except h11.RemoteProtocolError:
        return False
    if not isinstance(event, h11.Request) or event.method != b"GET":
        return False
    for name, value in event.headers:
        if name == b"upgrade" and value.strip().lower() == b"websocket":
            return True
    return False


class StreamWrapper(trio.abc.HalfCloseableStream):
    """A stream over a socket stream (or another wrapper) that passes writes, the socket and
    the close straight through; subclasses change how it is read."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    @property
    def socket(self) -> Any:
        return self.transport.socket

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.transport.receive_some(max_bytes)  # type: ignore[no-any-return]

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.transport.send_eof()

    async def aclose(self) -> None:
        await self.transport.aclose()


class ReplayStream(StreamWrapper):
    """A socket stream that first gives back the bytes read from it already."""

    def __init__(self, stream: trio.SocketStream, replay: bytes) -> None:
        super().__init__(stream)
        self._replay = replay

    def receive_some(self, max_bytes: int | None = None) -> Coroutine[Any, Any, bytes | bytearray]:
        # Once the replay is given back, the socket's own read: no frame of ours waits on it
        # (a GuardedStream's wait lasts the connection's life).
        if self._replay:
            return self._replayed(max_bytes)
        return self.transport.receive_some(max_bytes)  # type: ignore[no-any-return]

    async def _replayed(self, max_bytes: int | None) -> bytes:
        size = len(self._replay) if max_bytes is None else max_bytes
        data, self._replay = self._replay[:size], self._replay[size:]
        await trio.lowlevel.checkpoint()
        return data


class ChannelListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener whose connections are handed to it (by the front door) rather than
    accepted from a socket: trio-websocket's server serves them as it would its own."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](0)

    async def hand_over(self, stream: trio.abc.Stream) -> None:
        await self._send.send(stream)

    async def accept(self) -> trio.abc.Stream:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise trio.ClosedResourceError from None

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()
