"""Connection: one actor per client WebSocket, speaking one dialect.

- The reader (rt/ws/socket_actor.py: heartbeat, idle timeout, close) feeds each text frame to
  the dialect's sans-IO session and carries out the actions it returns.
- Most messages never meet a task: rooms write them to the socket at once through the
  connection's Wire (rt/ws/wire.py) while it is idle. A writer task exists only under
  backpressure: started when something is queued, it finishes what the socket did not take,
  then drains the outbox in batches, one write per batch, and ends when both are empty. A
  socket that takes nothing for ``write_deadline_s`` is closed with code 4001: the last step
  of the slow-consumer policy (see rt/delivery/outbox.py for the first two).

So an idle connection costs one task of its own, the reader. A bad token never gets this
far: the listener refuses the handshake with HTTP 401.

Limits on what a client sends, the same for every dialect (rt/ws/limits.py; each a setting):
an inbound rate (``inbound_rate_per_s``, burst ``inbound_burst_messages``) and a budget of
invalid messages (``max_invalid_messages`` per ``invalid_window_s``: each one the session
answered with an error), past either of which the connection closes with 4429; and, on each
join, the subscription cap (``max_markets_per_connection``) and a cap on topics it may open
that nobody has open and nothing was published to (``max_new_topics_per_minute``), which
refuse that one join with the dialect's error and keep the connection. Bad input is logged
in one line, rate limited for the whole server, never with a traceback.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import trio
from trio_websocket import WebSocketConnection

from actors import MailboxClosed, MailboxFull
from rt.delivery.hub import Hub
from rt.delivery.outbox import Outbox
from rt.dialects.base import (
    FROM_LAST_DELIVERED,
    Codec,
    Join,
    Leave,
    ProtocolError,
    ReportStats,
    Send,
    Session,
    SetDeadline,
    SetInterest,
    SignIn,
    Submit,
    Tell,
)
from rt.settings import Settings
from rt.topics import is_user_topic
from rt.ws.exclusive import ExclusiveKeys
from rt.ws.limits import TokenBucket, WindowBudget
from rt.ws.socket_actor import (
    CLOSE_GOING_AWAY,
    CLOSE_HEARTBEAT_TIMEOUT,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOKEN_EXPIRED,
    SocketActor,
)
from rt.ws.stats import ConnectionStats
from rt.ws.wire import Wire

if TYPE_CHECKING:
    from rt.dialects.uof.desk import DeskClient

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_HEARTBEAT_TIMEOUT",
    "CLOSE_LIMIT",
    "CLOSE_SLOW_CONSUMER",
    "Connection",
]

log = logging.getLogger(__name__)

#: Too many messages, or too many invalid ones: the close reason says which.
CLOSE_LIMIT = 4429
#: How long a connection closing for a limit may take to write what it has queued.
LAST_WORDS_S = 1.0
#: How long a Tell may wait for room in the actor's mailbox before the client is told
#: that the service is unavailable.
TELL_TIMEOUT_S = 5.0


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
        endpoint: str = "",
        exclusive: tuple[ExclusiveKeys, str] | None = None,
    ) -> None:
        self.remote = _remote(ws)  # read before the Wire takes the stream's place
        #: The path the client connected to, without its query (never logged: tokens).
        self.endpoint = endpoint
        self._received = 0
        super().__init__(ws, settings)
        if token_expires_at_ms is not None:
            self._token_expires(token_expires_at_ms)
        self.hub = hub
        #: The registry and the key this connection holds alone, if its dialect has one.
        self.exclusive = exclusive
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
        now = self.opened_at = trio.current_time()
        self._inbound = TokenBucket(
            settings.inbound_rate_per_s, settings.inbound_burst_messages, now=now
        )
        self._invalid = WindowBudget(settings.max_invalid_messages, settings.invalid_window_s)
        self._new_topics = WindowBudget(settings.max_new_topics_per_minute, 60.0)

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
        if self.exclusive is not None:
            keys, key = self.exclusive
            keys.take(key, self)
        try:
            await self.serve_socket()
            if self._close is not None and self._close[0] == CLOSE_LIMIT:
                await self._last_words()
        finally:
            self.stats.open -= 1
            by_dialect[dialect] -= 1
            self.outbox.close()
            self.stats.outbox_ended(self.outbox.statistics())
            self.hub.user_disconnected(self.user_id, self.outbox)
            if self.exclusive is not None:
                keys, key = self.exclusive
                keys.release(key, self)
            for topic in self.outbox.topics():
                self.hub.leave(topic, self.outbox)
        # Only now, with the outbox closed: no frame may follow the close frame.
        await self.close_socket()
        self._log_closed(trio.current_time() - self.opened_at)

    def _log_closed(self, duration_s: float) -> None:
        """One INFO line per connection, for operators: who, how long, how it ended."""
        if self._close is not None:
            code, reason = self._close
        else:
            closed = self.ws.closed
            code, reason = (closed.code, closed.reason or "") if closed else (1006, "")
        log.info(
            "%s: closed %s dialect=%s user=%s remote=%s duration=%.1fs code=%d reason=%r "
            "in=%d out=%d",
            self.path,
            self.endpoint,
            self.outbox.codec.name,
            self.user_id,
            self.remote,
            duration_s,
            code,
            reason,
            self._received,
            self.outbox.statistics().sent,
        )

    # -- reading ---------------------------------------------------------------------------

    async def on_open(self) -> None:
        await self._carry_out(self.session.opened())

    async def on_frame(self, message: str | bytes) -> bool:
        self.stats.messages_received += 1
        self._received += 1
        if not self._inbound.take(trio.current_time()):
            settings = self.settings
            self._close_for_limit(
                "RATE_LIMITED",
                f"more than {settings.inbound_rate_per_s:g} messages/s "
                f"(burst {settings.inbound_burst_messages})",
            )
            return False
        if isinstance(message, str):
            actions = self.session.handle_text(message)
        else:
            actions = self.session.handle_binary()
        await self._carry_out(actions)
        return self._close is None

    def _log_bad_input(self, what: str, detail: str) -> None:
        """One line about a client's bad input, within the server's budget of such lines."""
        held = self.stats.bad_input_log.take(trio.current_time())
        if held is not None:
            more = f" ({held} more not logged)" if held else ""
            log.info("%s: %s from %s: %.200s%s", self.path, what, self.remote, detail, more)

    def _refused(self, text: str) -> None:
        """The client's message was answered with an error (``text``, already queued)."""
        self.stats.invalid_messages += 1
        self._log_bad_input("refused a message", text)
        if not self._invalid.spend(trio.current_time()):
            settings = self.settings
            self._close_for_limit(
                "TOO_MANY_INVALID_MESSAGES",
                f"more than {settings.max_invalid_messages} invalid messages within "
                f"{settings.invalid_window_s:g} s",
            )

    async def _last_words(self) -> None:
        """Before closing for a limit, write what is queued (the error saying why), for at
        most a second: a client flooding us may not be reading."""
        with trio.move_on_after(LAST_WORDS_S):
            try:
                await self._drain()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client is gone: nobody to tell

    def _close_for_limit(self, reason: str, why: str) -> None:
        self.stats.limit_closes += 1
        self._log_bad_input(f"closing with {CLOSE_LIMIT}", why)
        self._end(CLOSE_LIMIT, reason)

    def _refusal(self, topic: str) -> tuple[str, str] | None:
        """Why joining ``topic`` would pass a limit (an error code and message), or None."""
        if is_user_topic(topic):
            return None  # the user's own stream: opened by the server, not the client
        settings = self.settings
        joined = [t for t in self.outbox.topics() if not is_user_topic(t)]
        limit = settings.max_markets_per_connection
        if topic not in joined and len(joined) >= limit:
            return (
                "TOO_MANY_SUBSCRIPTIONS",
                f"at most {limit} subscriptions per connection; {topic} was not subscribed",
            )
        if self.hub.opens_new_topic(topic) and not self._new_topics.spend(trio.current_time()):
            return (
                "TOO_MANY_NEW_TOPICS",
                f"at most {settings.max_new_topics_per_minute} topics a minute that nobody "
                f"has open and that have no data yet; {topic} was not subscribed, try later",
            )
        return None

    def displace(self, code: int, reason: str) -> None:
        """A newer connection took this one's exclusive key: close (rt/ws/exclusive.py)."""
        self._end(code, reason)

    def on_idle_timeout(self) -> None:
        self.stats.heartbeat_timeouts += 1

    async def _carry_out(self, actions: list[Any]) -> None:
        for action in actions:
            if self._close is not None:
                return  # a limit is closing the connection: carry out nothing more
            if type(action) is Send:
                self.outbox.send_text(action.text)
                if action.error:
                    self._refused(action.text)
            elif type(action) is Join:
                refusal = self._refusal(action.topic)
                if refusal is not None:
                    self.stats.refused_joins += 1
                    self.session.forget(action.topic)
                    text = self.outbox.codec.encode_error(*refusal)
                    self.outbox.send_text(text)
                    self._refused(text)
                    continue
                since = action.since
                if since == FROM_LAST_DELIVERED:
                    since = self.hub.user_position(self.user_id)
                await self.hub.join(
                    action.topic,
                    self.outbox,
                    since=since,
                    epoch=action.epoch,
                    announce=action.announce,
                    quiet=action.quiet,
                )
            elif type(action) is Leave:
                self.hub.leave(action.topic, self.outbox)
            elif type(action) is SetInterest:
                self.outbox.interest = action.interest
            elif type(action) is ReportStats:
                self.outbox.send_text(action.answer(self._counts()))
            elif type(action) is Tell:
                await self._tell(action)
            elif type(action) is SignIn:
                why_not = self._sign_in(action.user_id, action.expires_at_ms)
                await self._carry_out(action.then(why_not))
            elif type(action) is SetDeadline:
                at = trio.current_time() + action.after_s
                self.set_deadline(at, action.code, action.reason)
            elif type(action) is Submit:
                answer: Any
                if self.desk is None:
                    answer = ProtocolError("UNAVAILABLE", "tickets are not taken on this server")
                else:
                    answer = await self.desk.submit(self.user_id, action.ticket)
                self.outbox.send_text(self.session.ticket_answer(answer))

    async def _tell(self, action: Tell) -> None:
        actor = self.system.lookup(action.path)
        told = False
        if actor is not None:
            with trio.move_on_after(TELL_TIMEOUT_S):
                try:
                    told = await actor.tell(action.make(self.outbox.send_text))
                except (MailboxClosed, MailboxFull):
                    pass  # stopping, or swamped: the client hears it is unavailable
        if not told and action.unavailable is not None:
            self.outbox.send_text(action.unavailable)

    def _sign_in(self, user_id: str, expires_at_ms: int) -> str | None:
        """Become ``user_id``'s connection (see SignIn); why not, if it may not."""
        if str(self.user_id) != user_id:
            hub = self.hub
            limit = self.settings.max_connections_per_user
            if hub.user_connections(user_id) >= limit:
                return f"user {user_id} already has {limit} connections open (the limit)"
            hub.user_disconnected(self.user_id, self.outbox)
            hub.user_connected(user_id)
            self.user_id = user_id
        self._token_expires(expires_at_ms)
        return None

    def _token_expires(self, at_ms: int) -> None:
        """Close with 4401 TOKEN_EXPIRED once the token's expiry (plus the leeway) passes.
        The expiry is wall-clock time; the close is timed on Trio's clock."""
        settings = self.settings
        left_s = (at_ms - settings.wall_ms()) / 1000 + settings.jwt_leeway_s
        self.set_deadline(trio.current_time() + left_s, CLOSE_TOKEN_EXPIRED, "TOKEN_EXPIRED")

    def _counts(self) -> dict[str, Any]:
        stats = self.outbox.statistics()
        return {
            "messages_received": self._received,
            "messages_sent": stats.sent,
            "bytes_sent": stats.bytes_sent,
            "connected_seconds": round(trio.current_time() - self.opened_at, 3),
            "outbox_depth": stats.depth,
            "coalesced": stats.coalesced,
            "resyncs": stats.resyncs,
        }

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
