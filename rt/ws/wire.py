"""The send side of a server WebSocket: every byte to one client goes out through its Wire.

Why this exists. trio-websocket sends each message by encoding it with wsproto, taking a lock
and awaiting ``send_all``: tens of microseconds and several objects per message per client,
which made fan-out to many clients cost ~15x the CPU of the best Python servers. rt frames
each update once (rt/ws/frames.py) and a Wire writes those shared bytes straight to the socket,
synchronously, from the room's fan-out loop, whenever nothing is waiting ahead of them. Only
when the socket cannot take everything does the rest wait here for the connection's writer
task (``flush``), and the outbox queues what comes next (where the slow-consumer policy of
rt/delivery/outbox.py applies).

trio-websocket still does the handshake, reads every frame, answers pings and runs the close
handshake. So that its own frames (pong, close) cannot cut into ours, the Wire puts itself
between trio-websocket and the TCP stream: it is a stream, and replaces the connection's
private ``_stream``; its ``send_all`` queues behind what is pending here, and reading notes
when the peer was last heard from (``heard_at``: how the idle timeout sees pongs, which
trio-websocket reports only to a task waiting on that ping). Over rt's GuardedStream, which
notes it itself, a read goes straight to it: no frame of the Wire's waits on every socket.
Reading the client's address from a handshake request (``request_peer``: the library gives
it only for a bare socket stream, and rt's are wrapped by rt/ws/inbound_stream.py) also reaches
inside (``WebSocketRequest._connection``), and so does closing a client connection's TCP
stream (``close_client_stream``, for the upstream feeds). This is the one place rt leans on
trio-websocket's internals; pyproject.toml pins the version and tests/rt/test_wire.py fails
loudly if an upgrade moves them.

A stream without a socket (the in-memory streams of some tests) gets no direct writes:
everything goes through ``flush``, which awaits the stream's own ``send_all``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Coroutine
from typing import Any

import trio
from trio_websocket import WebSocketConnection, WebSocketRequest

from rt.ws.inbound import Violation
from rt.ws.inbound_stream import GuardedStream

__all__ = ["Wire", "WireUnsupported", "close_client_stream", "request_peer"]


class WireUnsupported(RuntimeError):
    """The trio-websocket connection does not look the way this module was written for."""


class Wire(trio.abc.HalfCloseableStream):
    def __init__(self, ws: WebSocketConnection) -> None:
        stream = getattr(ws, "_stream", None)
        if not isinstance(stream, trio.abc.Stream):
            raise WireUnsupported(
                "trio_websocket.WebSocketConnection has no _stream: rt/ws/wire.py needs updating "
                "for this trio-websocket version"
            )
        self._stream = stream
        #: rt's guarded socket stream, which notes when the peer was heard itself, or None.
        self._guarded = stream if isinstance(stream, GuardedStream) else None
        self._heard_at = -math.inf
        # With a socket, bytes are written with os.write on its (non-blocking) descriptor,
        # asked of the socket each time: once it is closed (by whoever), the number may
        # already belong to another client's socket.
        self._socket = (
            stream.socket if isinstance(stream, trio.SocketStream | GuardedStream) else None
        )
        self._pending = bytearray()
        # Made at the first flush: most connections never have bytes wait.
        self._flushing: trio.Lock | None = None
        self.closed = False
        #: Nothing is pending and the socket can be written now: ``write`` goes straight out.
        #: A plain attribute, read once per message per client by the outbox.
        self.idle = self._socket is not None
        #: Called (synchronously) when a write first leaves bytes pending (the socket refused
        #: some): the writer should ``flush``. Not again while they wait, and never for a
        #: stream without a socket, whose bytes always wait: whoever writes then says so.
        self.on_backlog: Callable[[], None] | None = None
        ws._stream = self

    @staticmethod
    def remote_of(ws: WebSocketConnection) -> str | None:
        """``address:port`` of the client of ``ws`` when rt's GuardedStream carries it (the
        library can name only a bare socket stream's peer)."""
        stream = getattr(ws, "_stream", None)
        if isinstance(stream, Wire):
            stream = stream._stream
        return stream.remote if isinstance(stream, GuardedStream) else None

    @property
    def heard_at(self) -> float:
        """When the peer last sent anything (Trio's clock), a pong included: the proof of
        life the idle timeout wants, seen without a task waiting for a pong."""
        return self._guarded.heard_at if self._guarded is not None else self._heard_at

    @property
    def violation(self) -> Violation | None:
        """Why the client's frames were refused (rt/ws/inbound.py), once they were."""
        return self._guarded.violation if self._guarded is not None else None

    async def aclose(self) -> None:
        """Close the socket: trio-websocket's close, or ours after a close frame written here
        (trio-websocket, which saw the refused frames' stream end, no longer closes it).
        Closed here first, so that no write can reach the descriptor once the socket is
        closed and its number possibly given to another connection."""
        self._close()
        await self._stream.aclose()

    @property
    def pending(self) -> int:
        """Bytes accepted and not yet written to the socket."""
        return len(self._pending)

    def write(self, data: bytes) -> None:
        """Send ``data`` after everything before it: now, as far as the socket takes it, and
        the rest at the next ``flush``. Never blocks, never raises: a broken socket closes the
        Wire, and the connection learns of it from the reader or the next ``flush``."""
        if self.closed:
            return
        if not self.idle:
            self._pending += data
            return
        assert self._socket is not None  # idle implies a socket
        try:
            written = os.write(self._socket.fileno(), data)
        except BlockingIOError:
            written = 0
        except OSError:
            self._close()
            return
        if written < len(data):
            self._pending += memoryview(data)[written:]
            self.idle = False
            if self.on_backlog is not None:
                self.on_backlog()

    async def flush(self, stall_timeout_s: float = math.inf) -> bool:
        """Write everything pending. False if the socket took nothing for ``stall_timeout_s``
        (the client stopped reading); raises trio.BrokenResourceError if it is gone."""
        if self._flushing is None:
            self._flushing = trio.Lock()
        async with self._flushing:
            with trio.CancelScope() as scope:
                scope.deadline = trio.current_time() + stall_timeout_s
                while self._pending:
                    if self.closed:
                        raise trio.BrokenResourceError("the connection's socket is closed")
                    if self._socket is None:
                        data = bytes(self._pending)
                        self._pending.clear()
                        await self._stream.send_all(data)
                        continue
                    await trio.lowlevel.wait_writable(self._socket)
                    try:
                        written = os.write(self._socket.fileno(), self._pending)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        self._close()
                        raise trio.BrokenResourceError(str(exc)) from exc
                    del self._pending[:written]
                    scope.deadline = trio.current_time() + stall_timeout_s  # it moved
            if scope.cancelled_caught:
                return False
            self.idle = self._socket is not None and not self.closed
            return True

    def _close(self) -> None:
        self.closed = True
        self.idle = False
        self._pending.clear()

    # -- the stream trio-websocket reads and writes through --------------------------------

    @property
    def socket(self) -> Any:
        return getattr(self._stream, "socket", None)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            raise trio.BrokenResourceError("the connection's socket is closed")
        self.write(bytes(data))
        if not self.idle:
            await self.flush()

    async def wait_send_all_might_not_block(self) -> None:
        await self.flush()

    def receive_some(self, max_bytes: int | None = None) -> Coroutine[Any, Any, bytes | bytearray]:
        if self._guarded is not None:
            return self._guarded.receive_some(max_bytes)
        return self._receive_noting(max_bytes)

    async def _receive_noting(self, max_bytes: int | None) -> bytes | bytearray:
        data = await self._stream.receive_some(max_bytes)
        if data:
            self._heard_at = trio.current_time()
        return data

    async def send_eof(self) -> None:
        if isinstance(self._stream, trio.abc.HalfCloseableStream):
            await self._stream.send_eof()


def request_peer(request: WebSocketRequest) -> str:
    """The address of the client asking for ``request`` (rt's GuardedStream knows it; the
    library offers it only for a bare socket stream)."""
    stream = getattr(getattr(request, "_connection", None), "_stream", None)
    if isinstance(stream, GuardedStream):
        return stream.peer
    remote = request.remote
    return str(getattr(remote, "address", remote))


async def close_client_stream(ws: WebSocketConnection | None) -> None:
    """Close the TCP stream of a client WebSocket ``ws`` (the upstream feeds' connections).

    trio-websocket 0.12 never closes a client's TCP stream after the server closed the
    WebSocket (it waits for the server's TCP close, then drops the socket unclosed): without
    this, every reconnect after a server-side close would leak a socket.
    """
    stream = getattr(ws, "_stream", None)
    if stream is not None:
        await trio.aclose_forcefully(stream)
