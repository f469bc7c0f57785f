"""SocketActor: the life of an actor that serves one WebSocket (a client connection, or a
/ws/publish producer): reading, the heartbeat, writing what the socket did not take at once,
and the close.

- One task reads, and between frames it keeps the heartbeat too: it writes a ping frame every
  ``ping_interval_s``, on schedule whether or not earlier pings were answered, and closes with
  4000 once nothing at all (no frame, no pong) has arrived for ``idle_timeout_s``. The Wire
  notes when it last received a byte (``heard_at``), so no task waits for a pong: an idle
  connection costs one task of its own. A frame being handled is never cut short by a ping
  falling due; a handling that waits (a join to a busy room) delays the ping instead.
- Bytes the socket did not take at once wait in the Wire; a writer task starts on demand
  (``_backlog``), finishes them and ends. A socket that takes nothing for ``write_deadline_s``
  is closed with 4001. Connection's writer also drains its outbox (``_drain``).
- A stop request (``on_stop_requested``, from the actors runtime) closes with 1001.
- Frames the client may not send (rt/ws/inbound.py: too big, too many fragments, binary on a
  JSON dialect, bad UTF-8, a protocol violation) end the stream the library reads; the reader
  then closes with the code the guard chose (1009, 1003, 1007, 1002).
- A token that expires while the socket is open (a deadline, on Trio's clock) closes it
  with 4401 TOKEN_EXPIRED: the client gets a fresh token and reconnects. A dialect
  that authenticates in-band sets another deadline (``set_deadline``): no ``auth`` in time
  closes with 4401 AUTH_TIMEOUT, and a successful one replaces it with the token's expiry.
- ``_end(code, reason)`` cancels the actor's tasks; the close frame is sent by
  ``close_socket`` once they have stopped (the first reason wins).

Close codes (docs/reliability.md has them all): 1000 normal, 1001 server going away, 1002,
1003, 1007, 1009 refused frames, 4000 HEARTBEAT_TIMEOUT, 4001 SLOW_CONSUMER, 4401
TOKEN_EXPIRED.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from actors import Actor
from rt.ws.frames import frame_close
from rt.ws.wire import Wire

if TYPE_CHECKING:
    from rt.settings import Settings

CLOSE_GOING_AWAY = 1001
CLOSE_HEARTBEAT_TIMEOUT = 4000
CLOSE_SLOW_CONSUMER = 4001
CLOSE_TOKEN_EXPIRED = 4401

#: A ping with no payload (FIN set, opcode 9), unmasked as every frame from a server is. The
#: peer's pong is not matched to it: any byte from the peer proves it alive.
PING_FRAME = b"\x89\x00"


class SocketActor(Actor, ABC):
    def __init__(self, ws: WebSocketConnection, settings: Settings) -> None:
        self.ws = ws
        self.settings = settings
        self.wire = Wire(ws)
        self.wire.on_backlog = self._backlog
        self._last_heard = trio.current_time()
        self._next_ping = math.inf
        self._close: tuple[int, str] | None = None
        #: The reading's cancel scope while it reads (``_end`` cancels it).
        self._scope: trio.CancelScope | None = None
        self._serving = False
        #: The writer's cancel scope while a writer runs; what it raised; its end, awaited.
        self._writer: trio.CancelScope | None = None
        self._writer_error: Exception | None = None
        self._writer_done: trio.Event | None = None
        #: When the socket closes whatever happens (on ``trio.current_time()``'s clock), with
        #: which code and reason: the token's expiry, or a deadline to authenticate by.
        self.deadline = math.inf
        self.deadline_close = (CLOSE_TOKEN_EXPIRED, "TOKEN_EXPIRED")

    def set_deadline(self, at: float, code: int, reason: str) -> None:
        """Close with ``code`` and ``reason`` at ``at`` unless moved again before then."""
        self.deadline = at
        self.deadline_close = (code, reason)

    # -- what a subclass says -------------------------------------------------------------

    @abstractmethod
    async def on_frame(self, message: str | bytes) -> bool:
        """Handle one frame received; False to stop reading (the socket is ending)."""

    def on_idle_timeout(self) -> None:
        """Nothing was received for ``idle_timeout_s`` (the socket closes with 4000)."""

    async def _drain(self) -> None:
        """The writer's work: write what waits in the Wire (a subclass may write more)."""
        if self.wire.pending:
            await self._flush()

    # -- the life of the socket -----------------------------------------------------------

    async def serve_socket(self) -> None:
        """Read and handle frames until the peer goes, a frame ends the reading, the idle
        timeout passes or ``_end`` is called.

        No nursery and no task of its own: the reading runs in the actor's task inside one
        cancel scope (``_end`` cancels it), whose deadline is the heartbeat's next moment
        while a frame is awaited and infinite while one is handled (so only the wait is cut
        short). The heartbeat falls due once per ping interval; only then is a new scope
        made. One coroutine, not two: its frame lasts the connection's life."""
        settings = self.settings
        idle_s = settings.idle_timeout_s
        ws = self.ws
        self._last_heard = now = trio.current_time()
        self._next_ping = now + settings.ping_interval_s
        self._serving = True
        try:
            opening = True
            while self._close is None:
                with trio.CancelScope() as scope:
                    self._scope = scope
                    if opening:
                        opening = False
                        await self.on_open()
                    while True:
                        scope.deadline = min(
                            self._heard_last() + idle_s, self._next_ping, self.deadline
                        )
                        message = await ws.get_message()
                        scope.deadline = math.inf
                        # Also here: the read trio-websocket had started before the Wire was
                        # in place reports its bytes to nobody.
                        self._last_heard = trio.current_time()
                        if not await self.on_frame(message):
                            return
                self._scope = None
                if self._writer_error is not None or not self._heartbeat():
                    return
        except ConnectionClosed:
            self._refused_frames()
        finally:
            self._scope = None
            self._serving = False
            await self._writer_stopped()
            if self._writer_error is not None:
                raise self._writer_error

    async def on_open(self) -> None:
        """Before the first frame is read (a subclass may say hello)."""

    async def close_socket(self) -> None:
        """Send the close frame ``_end`` asked for, if any (bounded, even when cancelled)."""
        if self._close is not None:
            code, reason = self._close
            with trio.move_on_after(4) as cleanup:  # the linger after a refusal included
                cleanup.shield = True
                if self.ws.closed is None:
                    await self.ws.aclose(code, reason)
                elif self.wire.violation is not None:
                    # The library stopped at the refused frame and will not close: say why
                    # here, then end the socket.
                    self.wire.write(frame_close(code, reason))
                    try:
                        await self.wire.flush()
                    except trio.BrokenResourceError:
                        pass  # the peer is gone already
                    await self.wire.aclose()

    def on_stop_requested(self) -> None:
        self._end(CLOSE_GOING_AWAY, "server shutting down")

    def _end(self, code: int, reason: str) -> None:
        """Close with ``code`` once the tasks have stopped (the first reason wins)."""
        if self._close is None:
            self._close = (code, reason)
        if self._scope is not None:
            self._scope.cancel()
        if self._writer is not None:
            self._writer.cancel()

    # -- reading, with the heartbeat between frames -------------------------------------------

    def _heard_last(self) -> float:
        """When the peer last sent anything: a frame, or any byte (a pong) the Wire saw."""
        return max(self._last_heard, self.wire.heard_at)

    def _refused_frames(self) -> None:
        """The stream trio-websocket reads ended: if rt's guard refused the client's frames,
        close with the code it chose (else the peer simply went)."""
        violation = self.wire.violation
        if violation is not None:
            self._log().info(
                "%s: refused a frame (%s), closing with %d",
                self.path,
                violation.reason,
                violation.code,
            )
            self._end(violation.code, violation.reason)

    def _heartbeat(self) -> bool:
        """The reading scope's deadline passed: ping, or close (idle, or the deadline).
        False when the socket is closing."""
        settings = self.settings
        now = trio.current_time()
        if now >= self.deadline:
            code, reason = self.deadline_close
            self._log().info("%s: %s, closing", self.path, reason)
            self._end(code, reason)
            return False
        if now >= self._heard_last() + settings.idle_timeout_s:
            self._idle_timeout(settings.idle_timeout_s)
            return False
        if now >= self._next_ping:
            self._ping()
            while self._next_ping <= now:
                self._next_ping += settings.ping_interval_s
        return True

    def _log(self) -> logging.Logger:
        """The subclass's module logger (rt.ws.connection, rt.ws.publisher): who closed it."""
        return logging.getLogger(type(self).__module__)

    def _idle_timeout(self, idle_s: float) -> None:
        self.on_idle_timeout()
        self._log().info("%s: no frame for %.0f s, closing", self.path, idle_s)
        self._end(CLOSE_HEARTBEAT_TIMEOUT, "HEARTBEAT_TIMEOUT")

    def _ping(self) -> None:
        self.wire.write(PING_FRAME)
        # The Wire says only when the socket first refuses bytes; these may wait behind others.
        if self.wire.pending:
            self._backlog()

    # -- writing what the socket did not take at once ----------------------------------------

    def _backlog(self) -> None:
        """Something waits for the socket: make sure a writer is on it. The writer is a
        short task in the actor system's helper nursery, with a cancel scope of its own
        (``_end`` cancels it); the reading waits for it to stop before the socket closes."""
        if self._writer is None and self._serving:
            scope = trio.CancelScope()
            try:
                self.system.start_helper(self._write, scope)
            except RuntimeError:
                return  # the system is shutting down: its nursery takes no new task
            self._writer = scope

    async def _write(self, scope: trio.CancelScope) -> None:
        try:
            with scope:
                await self._drain()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._end(1000, "")
        except Exception as exc:  # raised in the actor's task: its crash, as its own
            self._writer_error = exc
            if self._scope is not None:
                self._scope.cancel()
        finally:
            self._writer = None
            if self._writer_done is not None:
                self._writer_done.set()

    async def _writer_stopped(self) -> None:
        """Cancel the writer, if one runs, and wait until it has stopped: nothing may write
        once the socket is closing (bounded: a cancelled writer stops at once)."""
        if self._writer is not None:
            self._writer.cancel()
            self._writer_done = done = trio.Event()
            with trio.CancelScope(shield=True):
                await done.wait()
            self._writer_done = None

    async def _flush(self) -> bool:
        """Write what waits in the Wire. False if the socket took nothing for
        ``write_deadline_s`` (then it closes with 4001); raises trio.BrokenResourceError if
        the socket is gone."""
        deadline_s = self.settings.write_deadline_s
        if await self.wire.flush(deadline_s):
            return True
        self._log().info("%s: socket unwritable for %.0f s, closing as slow", self.path, deadline_s)
        self._end(CLOSE_SLOW_CONSUMER, "SLOW_CONSUMER")
        return False
