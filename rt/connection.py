"""Connection: one actor per WebSocket, with a reader, a writer and a heartbeat.

- The reader feeds each text frame to the dialect's sans-IO session and carries out the
  actions it returns. It runs inside one cancel scope whose deadline moves forward on every
  frame received (and on every pong), so a silent client is closed after ``idle_timeout_s``
  with code 4000, without a task waking up to check.
- Most messages never meet a task: rooms write them to the socket at once through the
  connection's Wire (rt/wire.py) while it is idle. A writer task exists only under
  backpressure: started when something is queued, it finishes what the socket did not take,
  then drains the outbox in batches, one write per batch, and ends when both are empty. A
  socket that takes nothing for ``write_deadline_s`` is closed with code 4001: the last step
  of the slow-consumer policy (see rt/outbox.py for the first two).
- The heartbeat sends a WebSocket ping every ``ping_interval_s``, and ends the connection
  (1001) when the actor is asked to stop. So an idle connection costs two tasks of its own.

Close codes (docs/protocol/kmarket.md): 1000 normal, 1001 server going away, 1009 message
too big (from trio-websocket), 4000 HEARTBEAT_TIMEOUT, 4001 SLOW_CONSUMER. A bad token never
gets this far: the listener refuses the handshake with HTTP 401.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from actors import Actor

from .hub import Hub
from .outbox import Outbox
from .protocol._base import (
    FROM_LAST_DELIVERED,
    Codec,
    Join,
    Leave,
    ProtocolError,
    Send,
    Session,
    Submit,
)
from .settings import Settings
from .stats import ConnectionStats
from .wire import Wire

if TYPE_CHECKING:
    from .desk import DeskClient

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_HEARTBEAT_TIMEOUT = 4000
CLOSE_SLOW_CONSUMER = 4001


class Connection(Actor):
    kind: ClassVar[str] = "connection"
    mailbox_capacity: ClassVar[int] = 8

    def __init__(
        self,
        ws: WebSocketConnection,
        *,
        hub: Hub,
        settings: Settings,
        stats: ConnectionStats,
        user_id: int | str,
        session: Session,
        codec: Codec,
        desk: DeskClient | None = None,
    ) -> None:
        self.ws = ws
        self.hub = hub
        self.settings = settings
        self.stats = stats
        self.user_id = user_id
        self.session = session
        self.desk = desk
        self.remote = _remote(ws)  # read before the Wire takes the stream's place
        self.wire = Wire(ws)
        self.outbox = Outbox(
            codec,
            capacity=settings.outbox_capacity,
            high_water=settings.outbox_high_water,
            control_capacity=settings.control_capacity,
            request_resync=self._request_resync,
            on_overflow=self._on_overflow,
            sink=self.wire,
            on_queued=self._backlog,
        )
        self.wire.on_backlog = self.outbox.wake
        self._writing = False
        self._idle = trio.CancelScope()
        self._close: tuple[int, str] | None = None
        self._nursery: trio.Nursery | None = None

    def describe(self) -> dict[str, Any]:
        stats = self.outbox.statistics()
        return {
            "user": self.user_id,
            "dialect": self.outbox.codec.name,
            "remote": self.remote,
            "subscriptions": self.session.subscriptions(),
            "outbox_depth": stats.depth,
            "outbox_capacity": stats.capacity,
            "sent": stats.sent,
            "coalesced": stats.coalesced,
            "resyncs": stats.resyncs,
        }

    async def run(self) -> None:
        dialect = self.outbox.codec.name
        by_dialect = self.stats.open_by_dialect
        self.stats.open += 1
        by_dialect[dialect] = by_dialect.get(dialect, 0) + 1
        self.stats.accepted += 1
        self.hub.user_connected(self.user_id)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._heartbeat)
                await self._read()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self.stats.open -= 1
            by_dialect[dialect] -= 1
            self.outbox.close()
            self.stats.outbox_ended(self.outbox.statistics())
            self.hub.user_disconnected(self.user_id, self.outbox)
            for topic in self.outbox.topics():
                self.hub.leave(topic, self.outbox)
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

    # -- reading ---------------------------------------------------------------------------

    async def _read(self) -> None:
        idle_s = self.settings.idle_timeout_s
        ws = self.ws
        await self._carry_out(self.session.opened())
        with self._idle:
            self._idle.deadline = trio.current_time() + idle_s
            try:
                while True:
                    message = await ws.get_message()
                    self._idle.deadline = trio.current_time() + idle_s
                    self.stats.messages_received += 1
                    if isinstance(message, str):
                        actions = self.session.handle_text(message)
                    else:
                        actions = self.session.handle_binary()
                    await self._carry_out(actions)
            except ConnectionClosed:
                return
        if self._idle.cancelled_caught:
            self.stats.heartbeat_timeouts += 1
            log.info("%s: no frame for %.0f s, closing", self.path, idle_s)
            self._end(CLOSE_HEARTBEAT_TIMEOUT, "HEARTBEAT_TIMEOUT")

    async def _carry_out(self, actions: list[Any]) -> None:
        for action in actions:
            if type(action) is Send:
                self.outbox.send_text(action.text)
            elif type(action) is Join:
                since = action.since
                if since == FROM_LAST_DELIVERED:
                    since = self.hub.user_position(self.user_id)
                await self.hub.join(
                    action.topic,
                    self.outbox,
                    since=since,
                    epoch=action.epoch,
                    announce=action.announce,
                )
            elif type(action) is Leave:
                self.hub.leave(action.topic, self.outbox)
            elif type(action) is Submit:
                answer: Any
                if self.desk is None:
                    answer = ProtocolError("UNAVAILABLE", "tickets are not taken on this server")
                else:
                    answer = await self.desk.submit(self.user_id, action.ticket)
                self.outbox.send_text(self.session.ticket_answer(answer))

    # -- writing ---------------------------------------------------------------------------

    def _backlog(self) -> None:
        """Something waits for the socket: make sure a writer is on it."""
        if not self._writing and self._nursery is not None:
            try:
                self._nursery.start_soon(self._write)
            except RuntimeError:
                return  # the connection is ending: its nursery takes no new task
            self._writing = True

    async def _write(self) -> None:
        """The backlog: what the socket did not take at once, then the queue, in batches,
        until both are empty (the next backlog starts another writer)."""
        deadline_s = self.settings.write_deadline_s
        wall_ms = self.settings.wall_ms
        wire = self.wire
        outbox = self.outbox
        try:
            while True:
                batch = outbox.take_ready()
                if batch:
                    wire.write(b"".join(batch))
                elif not wire.pending:
                    return  # drained: nothing awaits between this check and the flag below
                oldest_ts = outbox.batch_ts
                if wire.pending and not await wire.flush(deadline_s):
                    self.stats.slow_closes += 1
                    log.info(
                        "%s: socket unwritable for %.0f s, closing as slow", self.path, deadline_s
                    )
                    self._end(CLOSE_SLOW_CONSUMER, "SLOW_CONSUMER")
                    return
                if wire.closed:
                    raise trio.BrokenResourceError  # not written: positions must not move
                outbox.batch_written()
                if oldest_ts:
                    self.stats.observe_latency(max(0.0, (wall_ms() - oldest_ts) / 1000))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._end(1000, "")
        finally:
            self._writing = False

    def _on_overflow(self) -> None:
        self.stats.slow_closes += 1
        self._end(CLOSE_SLOW_CONSUMER, "SLOW_CONSUMER")

    def _request_resync(self, topic: str) -> None:
        self.hub.request_resync(topic, self.outbox)

    # -- heartbeat and stop ------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """A ping every interval, on schedule whether or not earlier pings were answered;
        and, in the same task, the end of the connection when the actor is asked to stop."""
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


def _remote(ws: WebSocketConnection) -> str:
    """``host:port`` of the peer (or trio-websocket's text for a stream that has none)."""
    try:
        endpoint = ws.remote
    except ValueError:  # a Unix socket: its peer has no address
        return "unix"
    address, port = getattr(endpoint, "address", None), getattr(endpoint, "port", None)
    return f"{address}:{port}" if address is not None else str(endpoint)
