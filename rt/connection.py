"""Connection: one actor per WebSocket, with a reader, a writer and a heartbeat.

- The reader feeds each text frame to the dialect's sans-IO session and carries out the
  actions it returns. It runs inside one cancel scope whose deadline moves forward on every
  frame received (and on every pong), so a silent client is closed after ``idle_timeout_s``
  with code 4000, without a task waking up to check.
- The writer drains the outbox in batches. Each send must finish within
  ``write_deadline_s``; a socket that stays unwritable longer is closed with code 4001: the
  last step of the slow-consumer policy (see rt/outbox.py for the first two).
- The heartbeat sends a WebSocket ping every ``ping_interval_s``.

Close codes (docs/protocol/kmarket.md): 1000 normal, 1001 server going away, 1009 message
too big (from trio-websocket), 4000 HEARTBEAT_TIMEOUT, 4001 SLOW_CONSUMER. A bad token never
gets this far: the listener refuses the handshake with HTTP 401.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, ClassVar

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from actors import Actor

from .hub import Hub
from .outbox import Outbox, OutboxStatistics
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

if TYPE_CHECKING:
    from .desk import DeskClient

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_HEARTBEAT_TIMEOUT = 4000
CLOSE_SLOW_CONSUMER = 4001

#: Upper bounds (seconds) of the publish-to-send latency histogram's buckets (+Inf follows).
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ConnectionStats:
    """Counters shared by every connection of a server (read by /api/ws/health, /metrics).

    Plain integers bumped by the connections' own tasks (one thread, no locks); the writer
    touches them once per batch, never per message.
    """

    def __init__(self) -> None:
        self.open = 0
        self.open_by_dialect: dict[str, int] = {}
        self.accepted = 0
        self.messages_sent = 0
        self.messages_received = 0
        self.bytes_sent = 0  # UTF-8 bytes of the text frames written (no WebSocket framing)
        self.heartbeat_timeouts = 0
        self.slow_closes = 0
        # The outbox counters of connections that have ended (live ones are read from their
        # outboxes at scrape time, so the hot path never touches these).
        self.ended_coalesced = 0
        self.ended_resyncs = 0
        self.ended_duplicates_dropped = 0
        # Publish-to-send latency, one observation per batch: counts per bucket of
        # LATENCY_BUCKETS_S (the last one is +Inf), and their sum in seconds.
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.latency_sum_s = 0.0

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum_s += seconds

    def outbox_ended(self, stats: OutboxStatistics) -> None:
        self.ended_coalesced += stats.coalesced
        self.ended_resyncs += stats.resyncs
        self.ended_duplicates_dropped += stats.duplicates_dropped


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
        self.outbox = Outbox(
            codec,
            capacity=settings.outbox_capacity,
            high_water=settings.outbox_high_water,
            control_capacity=settings.control_capacity,
            request_resync=self._request_resync,
            on_overflow=self._on_overflow,
        )
        self._idle = trio.CancelScope()
        self._close: tuple[int, str] | None = None
        self._nursery: trio.Nursery | None = None

    def describe(self) -> dict[str, Any]:
        stats = self.outbox.statistics()
        return {
            "user": self.user_id,
            "dialect": self.outbox.codec.name,
            "remote": _address(self.ws.remote),
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
                nursery.start_soon(self._write)
                nursery.start_soon(self._heartbeat)
                nursery.start_soon(self._await_stop)
                await self._read()
                nursery.cancel_scope.cancel()
        finally:
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

    async def _write(self) -> None:
        deadline_s = self.settings.write_deadline_s
        wall_ms = self.settings.wall_ms
        ws = self.ws
        stats = self.stats
        outbox = self.outbox
        with trio.CancelScope() as scope:
            try:
                while True:
                    batch = await outbox.take_batch()
                    if not batch:
                        return
                    oldest_ts = outbox.batch_ts
                    sent_bytes = 0
                    for text in batch:
                        scope.deadline = trio.current_time() + deadline_s
                        await ws.send_message(text)
                        # isascii() is O(1) in CPython: only non-ASCII text pays an encode.
                        sent_bytes += len(text) if text.isascii() else len(text.encode())
                    scope.deadline = math.inf
                    outbox.batch_written()
                    stats.messages_sent += len(batch)
                    stats.bytes_sent += sent_bytes
                    if oldest_ts:
                        stats.observe_latency(max(0.0, (wall_ms() - oldest_ts) / 1000))
            except ConnectionClosed:
                self._end(1000, "")
                return
        if scope.cancelled_caught:
            stats.slow_closes += 1
            log.info("%s: socket unwritable for %.0f s, closing as slow", self.path, deadline_s)
            self._end(CLOSE_SLOW_CONSUMER, "SLOW_CONSUMER")

    def _on_overflow(self) -> None:
        self.stats.slow_closes += 1
        self._end(CLOSE_SLOW_CONSUMER, "SLOW_CONSUMER")

    def _request_resync(self, topic: str) -> None:
        self.hub.request_resync(topic, self.outbox)

    # -- heartbeat and stop ------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """A ping every interval, on schedule whether or not earlier pings were answered."""
        assert self._nursery is not None
        while True:
            await trio.sleep(self.settings.ping_interval_s)
            self._nursery.start_soon(self._ping_once)

    async def _ping_once(self) -> None:
        idle_s = self.settings.idle_timeout_s
        with trio.move_on_after(idle_s):
            try:
                await self.ws.ping()
            except ConnectionClosed:
                return
            self._idle.deadline = trio.current_time() + idle_s  # a pong is a frame too

    async def _await_stop(self) -> None:
        await self.stop_requested.wait()
        self._end(CLOSE_GOING_AWAY, "server shutting down")


def _address(endpoint: object) -> str:
    """``host:port`` of a trio-websocket Endpoint (or its text for anything else)."""
    address, port = getattr(endpoint, "address", None), getattr(endpoint, "port", None)
    return f"{address}:{port}" if address is not None else str(endpoint)
