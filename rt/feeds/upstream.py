"""UpstreamFeed: one actor per upstream odds producer, turning its messages into publishes.

Theory of operation. The feed is *up* only while it is connected, the upstream is speaking,
and the snapshot it asked for on (re)connecting has been published. Its ``state``:

    connecting --snapshot published--> connected --silent for grace_s--> down
        ^  |                               |                               |
        |  +--fails--> backoff <--lost-----+<---silent for reconnect_after_silent_s
        +-----------------+                                                |
    down --any message: snapshot_request sent again--> connecting <--------+

- **connecting**: opening the WebSocket, or waiting for the answer to its ``snapshot_request``
  (for up to ``snapshot_timeout_s``; then the connection is dropped).
- **connected**: up. Each upstream message becomes at most one publish (see events.py).
- **down**: connected, but nothing (not even ``alive``) for ``grace_s``. The first message
  after that sends a new ``snapshot_request``; ``reconnect_after_silent_s`` of silence drops
  the connection instead.
- **backoff**: waiting before the next connection attempt.

Producer down. Whenever the feed stops being up (connection lost or refused, silence beyond
the grace period, the actor stopping or restarting), every market it owns (has published)
that is active gets one suspension update, and the feed remembers that it suspended it.
While not up nothing is reopened: ``odds_change`` messages are not published (the snapshot
that follows carries their odds), ``bet_stop`` and ``bet_settlement`` are (they never reopen
anything). The snapshot is published one update per market, each market becoming what the
upstream says (active ones reopen with the snapshot's odds), and only then is the feed up.

The grace timer is a cancel scope around each wait for a message, its deadline
``grace_s`` after the previous message was handled: moved forward by every message, never
polled, and never cancelling the handling of a message half-way.

Reconnecting is a tenacity retry: ``wait_exponential_jitter`` (0.5 s doubling, up to +0.5 s
of jitter, capped at 30 s) between failed attempts; a connection that was up for
``healthy_after_s`` and is then lost starts the count again, with an immediate attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NoReturn, Protocol

import tenacity
import trio
from trio_websocket import ConnectionClosed, HandshakeError

from actors import Actor
from rt.feeds.events import EventView, Patch
from rt.feeds.messages import (
    Alive,
    BetSettlement,
    BetStop,
    FeedProtocolError,
    FeedSnapshot,
    OddsChange,
    SnapshotRequest,
    Unknown,
    UpstreamMessage,
    decode_upstream,
    encode,
)
from rt.feeds.transport import Connect, UpstreamSocket, explain, open_upstream
from rt.topics import event_topic

__all__ = [
    "FeedSink",
    "FeedState",
    "Ledger",
    "UpstreamFeed",
    "UpstreamLost",
    "default_backoff",
]

log = logging.getLogger(__name__)

#: Fault point where a drop cuts the upstream connection (POST /debug/faults "cut").
CUT_POINT = "upstream"

FeedState = Literal["connecting", "connected", "backoff", "down"]


class _HasState(Protocol):
    @property
    def state(self) -> Mapping[str, Any]: ...


class FeedSink(Protocol):
    """Where a feed publishes: a topic's state to read, merge patches to publish."""

    async def publish(self, topic: str, patch: dict[str, Any]) -> object: ...

    async def snapshot(self, topic: str) -> _HasState: ...


def default_backoff() -> tenacity.wait.wait_base:
    """0.5-1 s, then 1-1.5 s, 2-2.5 s, … doubling, never more than 30 s."""
    return tenacity.wait_exponential_jitter(multiplier=0.5, max=30.0, jitter=0.5)


@dataclass
class Ledger:
    """What a feed owns, kept across restarts of its actor (one per upstream, see feed_specs).

    A restarted feed is not up, so it suspends what its previous incarnation published
    before it has even connected: no stale odds survive a crash.
    """

    #: event id -> ids of the markets this feed has published (events not yet ended)
    owned: dict[str, set[str]] = field(default_factory=dict)
    #: (event id, market id) of the markets the feed suspended while its producer was down
    suspended: set[tuple[str, str]] = field(default_factory=set)

    def own(self, event_id: str, market_id: str) -> None:
        self.owned.setdefault(event_id, set()).add(market_id)

    def forget_event(self, event_id: str) -> None:
        self.owned.pop(event_id, None)
        self.suspended = {k for k in self.suspended if k[0] != event_id}

    def market_count(self) -> int:
        return sum(len(m) for m in self.owned.values())


class UpstreamLost(Exception):
    """The connection to the upstream failed or ended; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        #: The connection had been up for healthy_after_s: the retry count starts again.
        self.healthy = False


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, UpstreamLost) and not exc.healthy


class UpstreamFeed(Actor):
    """Connects to one upstream, keeps it connected, and publishes what it says."""

    kind: ClassVar[str] = "feed"
    mailbox_capacity: ClassVar[int] = 8

    def __init__(
        self,
        url: str,
        sink: FeedSink,
        *,
        grace_s: float = 5.0,
        connect: Connect = open_upstream,
        backoff: tenacity.wait.wait_base | None = None,
        healthy_after_s: float = 30.0,
        reconnect_after_silent_s: float = 30.0,
        snapshot_timeout_s: float = 30.0,
        ledger: Ledger | None = None,
    ) -> None:
        self.url = url
        self.sink = sink
        self.grace_s = grace_s
        self.connect = connect
        self.backoff = backoff if backoff is not None else default_backoff()
        self.healthy_after_s = healthy_after_s
        self.reconnect_after_silent_s = reconnect_after_silent_s
        self.snapshot_timeout_s = snapshot_timeout_s
        self.ledger = ledger if ledger is not None else Ledger()

        self.state: FeedState = "connecting"
        self.up = False
        self.attempt = 0  # in the current run of retries
        self.attempts_total = 0
        self.last_error: str | None = None
        self.last_delay_s: float | None = None
        self.published = 0
        self.snapshots = 0
        self.odds_held = 0  # odds_change messages not published because the feed was not up
        self._next_attempt_at: float | None = None
        self._up_since: float | None = None
        self._healthy = False
        self._last_message_at: float | None = None
        self._last_alive_at: float | None = None
        self._quiet_from = 0.0
        self._request_id = 0
        self._requested_at = 0.0
        self._views: dict[str, EventView] = {}
        self._unknown_types: set[str] = set()

    def describe(self) -> dict[str, Any]:
        now = trio.current_time()

        def age(at: float | None) -> float | None:
            return None if at is None else round(now - at, 3)

        return {
            "url": self.url,
            "state": self.state,
            "up": self.up,
            "attempt": self.attempt,
            "attempts_total": self.attempts_total,
            "last_error": self.last_error,
            "next_delay_s": self.last_delay_s if self.state == "backoff" else None,
            "next_attempt_in_s": (
                None if self._next_attempt_at is None else round(self._next_attempt_at - now, 3)
            ),
            "last_delay_s": self.last_delay_s,
            "up_for_s": age(self._up_since),
            "last_alive_age_s": age(self._last_alive_at),
            "last_message_age_s": age(self._last_message_at),
            "grace_s": self.grace_s,
            "markets_owned": self.ledger.market_count(),
            "markets_suspended": len(self.ledger.suspended),
            "published": self.published,
            "snapshots": self.snapshots,
            "odds_held": self.odds_held,
        }

    # -- life -----------------------------------------------------------------------------

    async def run(self) -> None:
        crash: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._stop_when_asked, nursery.cancel_scope)
            try:
                if self.ledger.owned:
                    await self._producer_down("the feed restarted")
                await self._connect_forever()
            except Exception as exc:
                crash = exc
                nursery.cancel_scope.cancel(reason="the feed crashed")
        if crash is not None:
            raise crash  # after the nursery, so the supervisor sees it, not a group around it
        # Stopped: the producer is gone as far as anyone downstream can tell.
        await self._producer_down("the feed stopped")

    async def _stop_when_asked(self, scope: trio.CancelScope) -> None:
        await self.stop_requested.wait()
        scope.cancel(reason="stop requested")

    async def _connect_forever(self) -> NoReturn:
        while True:
            retrying = tenacity.AsyncRetrying(
                sleep=self._sleep_before_retry,
                wait=self.backoff,
                retry=tenacity.retry_if_exception(_retryable),
            )
            try:
                await retrying(self._attempt)
            except UpstreamLost as lost:  # only a healthy connection's loss gets here
                log.info(
                    "%s: lost after more than %g s up (%s); reconnecting at once",
                    self.url,
                    self.healthy_after_s,
                    lost.reason,
                )
                self.attempt = 0

    async def _sleep_before_retry(self, delay: float) -> None:
        delay = float(delay)
        self.state = "backoff"
        self.last_delay_s = delay
        self._next_attempt_at = trio.current_time() + delay
        log.warning(
            "%s: attempt %d failed (%s); next attempt in %.2f s",
            self.url,
            self.attempt,
            self.last_error,
            delay,
        )
        try:
            await trio.sleep(delay)
        finally:
            self._next_attempt_at = None

    async def _attempt(self) -> NoReturn:
        """One connection: connect, sync, publish until it is lost. Always raises UpstreamLost."""
        self.attempt += 1
        self.attempts_total += 1
        self.state = "connecting"
        self._healthy = False
        log.info("%s: attempt %d: connecting", self.url, self.attempt)
        try:
            async with self.connect(self.url) as ws:
                await self._session(ws)
        except UpstreamLost as exc:
            lost = exc
        except (OSError, HandshakeError, ConnectionClosed) as exc:
            lost = UpstreamLost(explain(exc))
            lost.__cause__ = exc
        self.last_error = lost.reason
        await self._producer_down(lost.reason)
        lost.healthy = self._healthy
        raise lost

    async def _session(self, ws: UpstreamSocket) -> NoReturn:
        log.info("%s: connected (attempt %d); requesting a snapshot", self.url, self.attempt)
        self._quiet_from = trio.current_time()
        await self._request_snapshot(ws)
        while True:
            deadline = self._quiet_from + self.grace_s
            if not self.up:
                deadline = min(deadline, self._requested_at + self.snapshot_timeout_s)
            message = await self._next(ws, deadline)
            waited_s = trio.current_time() - self._requested_at
            if message is None and not self.up and waited_s >= self.snapshot_timeout_s:
                raise UpstreamLost(f"no snapshot within {self.snapshot_timeout_s:g} s")
            if message is None:
                # Nothing, not even alive, for grace_s: the odds can no longer be trusted.
                await self._producer_down(f"no message for {self.grace_s:g} s")
                self.state = "down"
                message = await self._next(ws, self._quiet_from + self.reconnect_after_silent_s)
                if message is None:
                    raise UpstreamLost(f"no message for {self.reconnect_after_silent_s:g} s")
                log.info("%s: the upstream speaks again; requesting a snapshot", self.url)
                self.state = "connecting"
                await self._request_snapshot(ws)
            if await self.fault_point(CUT_POINT):  # an operator cuts the upstream (/debug)
                raise UpstreamLost("the upstream connection was cut by an armed fault")
            if not await self.fault_point("upstream_message"):  # True: a fault drops it
                await self._handle(message)
            self._quiet_from = trio.current_time()

    async def _next(self, ws: UpstreamSocket, deadline: float) -> UpstreamMessage | None:
        """The next message, or None if none came before ``deadline``."""
        text: str | bytes | None = None
        with trio.move_on_at(deadline):
            try:
                text = await ws.get_message()
            except ConnectionClosed as exc:
                raise UpstreamLost(explain(exc)) from exc
        if text is None:
            return None
        self._last_message_at = trio.current_time()
        try:
            return decode_upstream(text)
        except FeedProtocolError as exc:
            log.error("%s: bad message from the upstream: %s", self.url, exc)
            with trio.move_on_after(2.0):
                await ws.aclose(1008, str(exc)[:120])
            raise UpstreamLost(f"bad message: {exc}") from exc

    async def _request_snapshot(self, ws: UpstreamSocket) -> None:
        self._request_id += 1
        self._requested_at = trio.current_time()
        try:
            await ws.send_message(encode(SnapshotRequest(request_id=self._request_id)))
        except ConnectionClosed as exc:
            raise UpstreamLost(explain(exc)) from exc

    # -- messages -------------------------------------------------------------------------

    async def _handle(self, message: UpstreamMessage) -> None:
        match message:
            case Alive():
                self._last_alive_at = trio.current_time()
            case FeedSnapshot():
                await self._apply_snapshot(message)
            case OddsChange():
                await self._odds_change(message)
            case BetStop():
                await self._bet_stop(message)
            case BetSettlement():
                await self._bet_settlement(message)
            case Unknown(type=kind):
                if kind not in self._unknown_types:
                    self._unknown_types.add(kind)
                    log.warning("%s: ignoring messages of unknown type %r", self.url, kind)

    async def _odds_change(self, message: OddsChange) -> None:
        if not self.up:
            self.odds_held += 1  # the snapshot that brings the feed up carries these odds
            return
        view = await self._open_view(message.event_id, message)
        if view is None:
            return
        if view.market_status(message.market_id) == "settled":
            log.warning(
                "%s: odds for settled market %s of %s ignored",
                self.url,
                message.market_id,
                message.event_id,
            )
            return
        self.ledger.suspended.discard((message.event_id, message.market_id))
        await self._publish(view, view.odds(message.market_id, message.outcomes))

    async def _bet_stop(self, message: BetStop) -> None:
        view = await self._open_view(message.event_id, message)
        if view is None:
            return
        markets = list(view.markets) if message.market_id is None else [message.market_id]
        for market_id in markets:
            await self._publish(view, view.suspend(market_id))

    async def _bet_settlement(self, message: BetSettlement) -> None:
        view = await self._open_view(message.event_id, message)
        if view is None:
            return
        await self._publish(view, view.settle(message.market_id, message.result))

    async def _apply_snapshot(self, snapshot: FeedSnapshot) -> None:
        if snapshot.request_id is not None and snapshot.request_id != self._request_id:
            log.info(
                "%s: ignoring the answer to snapshot request %d (waiting for %d)",
                self.url,
                snapshot.request_id,
                self._request_id,
            )
            return
        before = self.published
        for event in snapshot.events:
            view = await self._view(event.event_id)
            if view.ended:
                continue  # ended is final: nothing of it changes any more
            for patch in view.reconcile(event):
                await self._publish(view, patch)
            for market_id in event.markets:
                self.ledger.suspended.discard((event.event_id, market_id))
        self.snapshots += 1
        if not self.up:
            self.up = True
            self.state = "connected"
            self._up_since = trio.current_time()
            log.info(
                "%s: up: snapshot of %d events published in %d updates; "
                "%d markets it does not list stay suspended",
                self.url,
                len(snapshot.events),
                self.published - before,
                len(self.ledger.suspended),
            )

    # -- events and publishing ------------------------------------------------------------

    async def _view(self, event_id: str) -> EventView:
        view = self._views.get(event_id)
        if view is None:
            snapshot = await self.sink.snapshot(event_topic(event_id))
            view = EventView(event_id, snapshot.state)
            if not view.ended:
                self._views[event_id] = view
        return view

    async def _open_view(self, event_id: str, message: object) -> EventView | None:
        view = await self._view(event_id)
        if view.ended:
            log.warning("%s: %s is for an ended event; ignored", self.url, message)
            return None
        return view

    async def _publish(self, view: EventView, patch: Patch | None) -> None:
        if patch is None:
            return
        await self.sink.publish(event_topic(view.event_id), patch)
        view.apply(patch)
        self.published += 1
        if view.ended:
            self._views.pop(view.event_id, None)
            self.ledger.forget_event(view.event_id)
        else:
            for market_id in patch["markets"]:
                self.ledger.own(view.event_id, market_id)

    async def _producer_down(self, reason: str) -> None:
        """Suspend every active market the feed owns; it is no longer up."""
        if self.up and self._up_since is not None:
            up_for = trio.current_time() - self._up_since
            self._healthy = self._healthy or up_for >= self.healthy_after_s
        self.up = False
        self._up_since = None
        suspended = 0
        for event_id, markets in list(self.ledger.owned.items()):
            view = await self._view(event_id)
            for market_id in view.active_markets(sorted(markets)):
                await self._publish(view, view.suspend(market_id))
                self.ledger.suspended.add((event_id, market_id))
                suspended += 1
        if suspended:
            log.warning("%s: producer down (%s): suspended %d markets", self.url, reason, suspended)
