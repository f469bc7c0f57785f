"""Every byte a WebSocket client sends passes a `FrameGuard` before trio-websocket reads it.

`GuardedListener` wraps the TCP listener, so each accepted socket is a `GuardedStream` from
its first byte: the request head passes as it is (its target picks the limits: a dialect's,
or the test echo's), then every frame is checked from its header (rt/ws/inbound.py). At the
first violation the stream hands over the bytes before it, then reports end of stream: the
library stops reading, the socket's actor finds ``violation`` and closes with its code
(rt/ws/socket_actor.py). Writes pass straight through.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import trio

from rt.ws.front_door import ReplayStream
from rt.ws.inbound import FrameGuard, GuardLimits, HeadScanner, Violation

__all__ = ["GuardedListener", "GuardedStream"]

LimitsFor = Callable[[str], GuardLimits]

#: The longest a refused client's socket is kept, draining, once its close frame is sent.
LINGER_S = 2.0


class GuardedStream(ReplayStream):
    """``replay``: what the front door read already (the request head), given back first.
    ``heard_at``: when the peer last sent anything (on Trio's clock), pongs included: the
    idle timeout's proof of life (rt/ws/socket_actor.py)."""

    def __init__(
        self, stream: trio.SocketStream, limits_for: LimitsFor, *, replay: bytes = b""
    ) -> None:
        super().__init__(stream, replay)
        self._limits_for = limits_for
        self.heard_at = -math.inf
        self._head: HeadScanner | None = HeadScanner()
        self._guard: FrameGuard | None = None
        #: Why the client's frames were refused (None while they are fine).
        self.violation: Violation | None = None
        #: The client's address, and ``address:port``.
        self.peer = "unknown"  # a socket without an address (a test's socketpair)
        self.remote = "unknown"
        try:
            address, port, *_ = stream.socket.getpeername()
            self.peer, self.remote = str(address), f"{address}:{port}"
        except (OSError, ValueError, TypeError):
            pass

    def __repr__(self) -> str:
        return f"<GuardedStream from {self.peer}>"

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        while self.violation is None:
            data = await super().receive_some(max_bytes)
            if not data:
                return data
            self.heard_at = trio.current_time()
            if self._guard is None:
                assert self._head is not None
                end = self._head.feed(data)
                if end is None:
                    return data
                self._guard = FrameGuard(self._limits_for(self._head.target.partition("?")[0]))
                self._head = None
                passed = bytes(data[:end]) + self._guard.feed(memoryview(data)[end:])
            else:
                passed = self._guard.feed(data)
            self.violation = self._guard.violation
            if passed:
                # (Bytes held back before may make this up to one control frame longer than
                # ``max_bytes``; trio-websocket only feeds them to its parser.)
                return passed  # after a violation, the end of stream comes at the next call
            # Nothing to pass yet (part of a header, of a control frame): read on, and never
            # report an end of stream that is not one.
        return b""

    async def aclose(self) -> None:
        if self.violation is not None:
            await self._linger()
        await self.transport.aclose()

    async def _linger(self) -> None:
        """After a refusal, let the close frame reach the client: closing a socket whose
        client is still sending (the rest of a message too big) resets the connection, and a
        reset can discard the close frame before the client reads it. So say that nothing
        more is coming and read (and drop) what arrives until the client hangs up, for at
        most ``LINGER_S``."""
        with trio.move_on_after(LINGER_S):
            try:
                await self.transport.send_eof()
                while await self.transport.receive_some(64 * 1024):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


class GuardedListener(trio.abc.Listener[GuardedStream]):
    def __init__(self, listener: trio.SocketListener, limits_for: LimitsFor) -> None:
        self.transport = listener
        self._limits_for = limits_for

    @property
    def socket(self) -> Any:
        return self.transport.socket

    async def accept(self) -> GuardedStream:
        return GuardedStream(await self.transport.accept(), self._limits_for)

    async def aclose(self) -> None:
        await self.transport.aclose()
