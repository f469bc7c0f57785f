"""SocketActor: the life of an actor that serves one WebSocket (a client connection, or a
/ws/publish producer): reading with an idle timeout, the heartbeat, and the close.

- Frames are read inside one cancel scope whose deadline moves forward on every frame (and
  on every pong), so a silent peer is closed after ``idle_timeout_s`` with code 4000 without
  a task waking up to check.
- The heartbeat task sends a WebSocket ping every ``ping_interval_s``, on schedule whether or
  not earlier pings were answered, and ends the socket (1001) when the actor is asked to stop.
- ``_end(code, reason)`` cancels the actor's tasks; the close frame is sent by
  ``close_socket`` once they have stopped (the first reason wins).

Close codes (docs/protocol/kmarket.md): 1000 normal, 1001 server going away, 1009 message
too big (from trio-websocket), 4000 HEARTBEAT_TIMEOUT, 4001 SLOW_CONSUMER.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from actors import Actor

if TYPE_CHECKING:
    from .settings import Settings

CLOSE_GOING_AWAY = 1001
CLOSE_HEARTBEAT_TIMEOUT = 4000
CLOSE_SLOW_CONSUMER = 4001


class SocketActor(Actor, ABC):
    def __init__(self, ws: WebSocketConnection, settings: Settings) -> None:
        self.ws = ws
        self.settings = settings
        self._idle = trio.CancelScope()
        self._close: tuple[int, str] | None = None
        self._nursery: trio.Nursery | None = None

    # -- what a subclass says -------------------------------------------------------------

    @abstractmethod
    async def on_frame(self, message: str | bytes) -> bool:
        """Handle one frame received; False to stop reading (the socket is ending)."""

    def on_idle_timeout(self) -> None:
        """Nothing was received for ``idle_timeout_s`` (the socket closes with 4000)."""

    # -- the life of the socket -----------------------------------------------------------

    async def serve_socket(self) -> None:
        """Read until the peer goes, the idle timeout passes or ``_end`` is called."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._heartbeat)
                await self._read()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None

    async def close_socket(self) -> None:
        """Send the close frame ``_end`` asked for, if any (bounded, even when cancelled)."""
        if self._close is not None:
            code, reason = self._close
            with trio.move_on_after(2) as cleanup:
                cleanup.shield = True
                await self.ws.aclose(code, reason)

    def _end(self, code: int, reason: str) -> None:
        """Close with ``code`` once the tasks have stopped (the first reason wins)."""
        if self._close is None:
            self._close = (code, reason)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _read(self) -> None:
        idle_s = self.settings.idle_timeout_s
        ws = self.ws
        with self._idle:
            self._idle.deadline = trio.current_time() + idle_s
            try:
                while True:
                    message = await ws.get_message()
                    self._idle.deadline = trio.current_time() + idle_s
                    if not await self.on_frame(message):
                        return
            except ConnectionClosed:
                return
        if self._idle.cancelled_caught:
            self.on_idle_timeout()
            # Logged as the subclass's module (rt.connection, rt.publisher_ws): who closed it.
            log = logging.getLogger(type(self).__module__)
            log.info("%s: no frame for %.0f s, closing", self.path, idle_s)
            self._end(CLOSE_HEARTBEAT_TIMEOUT, "HEARTBEAT_TIMEOUT")

    async def _heartbeat(self) -> None:
        assert self._nursery is not None
        while True:
            with trio.move_on_after(self.settings.ping_interval_s):
                await self.stop_requested.wait()
                self._end(CLOSE_GOING_AWAY, "server shutting down")
                return
            self._nursery.start_soon(self._ping_once)

    async def _ping_once(self) -> None:
        idle_s = self.settings.idle_timeout_s
        with trio.move_on_after(idle_s):
            try:
                await self.ws.ping()
            except ConnectionClosed:
                return
            self._idle.deadline = trio.current_time() + idle_s  # a pong is a frame too
