"""Connection: one actor per client WebSocket, speaking one dialect.

- The reader (rt/socket_actor.py: heartbeat, idle timeout, close) feeds each text frame to
  the dialect's sans-IO session and carries out the actions it returns.
- Most messages never meet a task: rooms write them to the socket at once through the
  connection's Wire (rt/wire.py) while it is idle. A writer task exists only under
  backpressure: started when something is queued, it finishes what the socket did not take,
  then drains the outbox in batches, one write per batch, and ends when both are empty. A
  socket that takes nothing for ``write_deadline_s`` is closed with code 4001: the last step
  of the slow-consumer policy (see rt/outbox.py for the first two).

So an idle connection costs one task of its own, the reader. A bad token never gets this
far: the listener refuses the handshake with HTTP 401.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import trio
from trio_websocket import WebSocketConnection

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
from .socket_actor import (
    CLOSE_GOING_AWAY,
    CLOSE_HEARTBEAT_TIMEOUT,
    CLOSE_SLOW_CONSUMER,
    SocketActor,
)
from .stats import ConnectionStats
from .wire import Wire

if TYPE_CHECKING:
    from .desk import DeskClient

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_HEARTBEAT_TIMEOUT",
    "CLOSE_SLOW_CONSUMER",
    "Connection",
]


class Connection(SocketActor):
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
        token_expires_at_ms: int | None = None,
    ) -> None:
        self.remote = _remote(ws)  # read before the Wire takes the stream's place
        super().__init__(ws, settings)
        if token_expires_at_ms is not None:
            # The token's expiry is wall-clock time; the close is timed on Trio's clock.
            left_s = (token_expires_at_ms - settings.wall_ms()) / 1000 + settings.jwt_leeway_s
            self.token_expires_at = trio.current_time() + left_s
        self.hub = hub
        self.stats = stats
        self.user_id = user_id
        self.session = session
        self.desk = desk
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
            await self.serve_socket()
        finally:
            self.stats.open -= 1
            by_dialect[dialect] -= 1
            self.outbox.close()
            self.stats.outbox_ended(self.outbox.statistics())
            self.hub.user_disconnected(self.user_id, self.outbox)
            for topic in self.outbox.topics():
                self.hub.leave(topic, self.outbox)
        # Only now, with the outbox closed: no frame may follow the close frame.
        await self.close_socket()

    # -- reading ---------------------------------------------------------------------------

    async def _read(self) -> None:
        await self._carry_out(self.session.opened())
        await super()._read()

    async def on_frame(self, message: str | bytes) -> bool:
        self.stats.messages_received += 1
        if isinstance(message, str):
            actions = self.session.handle_text(message)
        else:
            actions = self.session.handle_binary()
        await self._carry_out(actions)
        return True

    def on_idle_timeout(self) -> None:
        self.stats.heartbeat_timeouts += 1

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

    async def _drain(self) -> None:
        """The writer's work: what the socket did not take at once, then the queue, in
        batches, until both are empty (the next backlog starts another writer)."""
        wall_ms = self.settings.wall_ms
        wire = self.wire
        outbox = self.outbox
        while True:
            batch = outbox.take_ready()
            if batch:
                wire.write(b"".join(batch))
            elif not wire.pending:
                return  # drained: nothing awaits between this check and the writer's end
            oldest_ts = outbox.batch_ts
            if wire.pending and not await self._flush():
                self.stats.slow_closes += 1
                return
            if wire.closed:
                raise trio.BrokenResourceError  # not written: positions must not move
            outbox.batch_written()
            if oldest_ts:
                self.stats.observe_latency(max(0.0, (wall_ms() - oldest_ts) / 1000))

    def _on_overflow(self) -> None:
        self.stats.slow_closes += 1
        self._end(CLOSE_SLOW_CONSUMER, "SLOW_CONSUMER")

    def _request_resync(self, topic: str) -> None:
        self.hub.request_resync(topic, self.outbox)


def _remote(ws: WebSocketConnection) -> str:
    """``host:port`` of the peer (or trio-websocket's text for a stream that has none)."""
    remote = Wire.remote_of(ws)
    if remote is not None:
        return remote
    try:
        endpoint = ws.remote
    except ValueError:  # a Unix socket: its peer has no address
        return "unix"
    address, port = getattr(endpoint, "address", None), getattr(endpoint, "port", None)
    return f"{address}:{port}" if address is not None else str(endpoint)
