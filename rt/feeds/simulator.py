"""An upstream odds producer to develop and demo against: it speaks the feed protocol.

Theory of operation. `Simulator` is the simulated world and does no I/O and reads no clock:
each `step()` advances it by one message (an ``odds_change``, ``bet_stop`` or
``bet_settlement``) drawn from its own seeded random generator, so a seed fixes the whole
sequence. Simulated time is ``steps / rate`` seconds; it decides when matches end.

- Events ``sr:match:1`` … ``sr:match:N`` start live, each with markets ``1`` … ``M`` of three
  outcomes ``"1"``, ``"2"``, ``"3"``, all active.
- A step picks a live event and one of its markets: a market not announced yet is opened
  (``odds_change``); a suspended one reopens with moved odds; an active one is suspended
  (``bet_stop``) with a small probability, else its odds random-walk (rounded to 2 decimals,
  within 1.01 … 50).
- A match lasts about ``match_s`` simulated seconds (0.5 to 1.5 times it). Once it is over,
  each step settles one of its markets (``bet_settlement``, winner drawn by the odds); after
  the last one the event has ended and the next match id takes its place, its markets
  announced one by one as steps pick it.

`SimulatorServer` serves one Simulator to any number of WebSocket clients: every client gets
every step's message, an ``alive`` every second, and a ``snapshot`` when it asks. Time comes
only from ``trio.sleep_until``/``trio.current_time``, so it runs on a virtual clock too;
``ts`` fields come from the injected ``wall_ms``. Clients connect over TCP
(`serve_simulator`, ``rt sim``) or in process (`SimulatorServer.connect`, no socket).
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from rt.feeds.memory import open_memory_websocket
from rt.feeds.messages import (
    Alive,
    BetSettlement,
    BetStop,
    EventState,
    FeedProtocolError,
    FeedSnapshot,
    MarketState,
    MarketStatus,
    OddsChange,
    SnapshotRequest,
    decode_request,
    encode,
)
from rt.settings import wall_ms as default_wall_ms

__all__ = [
    "MAX_ODDS",
    "MIN_ODDS",
    "Listening",
    "Simulator",
    "SimulatorServer",
    "serve_simulator",
]

log = logging.getLogger(__name__)

MIN_ODDS = 1.01
MAX_ODDS = 50.0
OUTCOMES = ("1", "2", "3")

Step = OddsChange | BetStop | BetSettlement


@dataclass(slots=True)
class _Market:
    status: MarketStatus = "active"
    outcomes: dict[str, float] = field(default_factory=dict)
    result: dict[str, str] | None = None


@dataclass(slots=True)
class _Event:
    event_id: str
    ends_at_s: float
    markets: dict[str, _Market] = field(default_factory=dict)
    unannounced: list[str] = field(default_factory=list)

    @property
    def over(self) -> bool:
        return not self.unannounced and all(m.status == "settled" for m in self.markets.values())


class Simulator:
    """The simulated world of an odds producer, one message per `step()`. No I/O, no clock."""

    def __init__(
        self,
        *,
        seed: int | None = 0,
        events: int = 3,
        markets: int = 3,
        rate: float = 5.0,
        match_s: float = 120.0,
        suspend_p: float = 0.05,
        keep_ended: int | None = None,
    ) -> None:
        if events < 1 or markets < 1:
            raise ValueError(f"need at least one event and one market, got {events} and {markets}")
        if not rate >= 0 or not match_s > 0:
            raise ValueError(f"need rate >= 0 and match_s > 0, got {rate} and {match_s}")
        self.random = random.Random(seed)
        self.seed = seed
        self.market_count = markets
        self.rate = rate
        self.match_s = match_s
        self.suspend_p = suspend_p
        self.steps = 0
        self._next_id = 1
        self._live: list[_Event] = []
        self._ended: deque[_Event] = deque(maxlen=events if keep_ended is None else keep_ended)
        for _ in range(events):
            event = self._new_event()
            for market_id in event.unannounced:
                event.markets[market_id] = _Market("active", self._initial_odds())
            event.unannounced.clear()
            self._live.append(event)

    @property
    def now_s(self) -> float:
        """Simulated seconds: steps taken / rate (with rate 0, time stands still)."""
        return self.steps / self.rate if self.rate else 0.0

    # -- the world ------------------------------------------------------------------------

    def _new_event(self) -> _Event:
        event_id = f"sr:match:{self._next_id}"
        self._next_id += 1
        length = self.match_s * self.random.uniform(0.5, 1.5)
        markets = [str(m) for m in range(1, self.market_count + 1)]
        return _Event(event_id, ends_at_s=self.now_s + length, unannounced=markets)

    def _initial_odds(self) -> dict[str, float]:
        weights = [self.random.uniform(0.5, 2.0) for _ in OUTCOMES]
        total = sum(weights) * 1.05  # a bookmaker's margin of 5%
        return {o: _bound(total / w) for o, w in zip(OUTCOMES, weights, strict=True)}

    def _walk(self, odds: dict[str, float]) -> dict[str, float]:
        return {o: _bound(p * math.exp(self.random.gauss(0.0, 0.04))) for o, p in odds.items()}

    def step(self) -> Step:
        """Advance the world by one message and return it."""
        self.steps += 1
        for event in self._live:
            if self.now_s >= event.ends_at_s and not event.unannounced:
                return self._settle_next(event)
        event = self.random.choice(self._live)
        if event.unannounced:
            market_id = event.unannounced.pop(0)
            market = event.markets[market_id] = _Market("active", self._initial_odds())
            return OddsChange(event.event_id, market_id, dict(market.outcomes))
        market_id = self.random.choice(list(event.markets))
        market = event.markets[market_id]
        if market.status == "active" and self.random.random() < self.suspend_p:
            market.status = "suspended"
            return BetStop(event.event_id, market_id)
        market.status = "active"
        market.outcomes = self._walk(market.outcomes)
        return OddsChange(event.event_id, market_id, dict(market.outcomes))

    def _settle_next(self, event: _Event) -> BetSettlement:
        market_id, market = next((k, m) for k, m in event.markets.items() if m.status != "settled")
        outcomes = list(market.outcomes)
        weights = [1 / market.outcomes[o] for o in outcomes]
        winner = self.random.choices(outcomes, weights=weights)[0]
        market.status = "settled"
        market.result = {o: "win" if o == winner else "lose" for o in outcomes}
        if event.over:
            index = self._live.index(event)
            self._ended.append(event)
            self._live[index] = self._new_event()
        return BetSettlement(event.event_id, market_id, dict(market.result))

    # -- what it looks like ---------------------------------------------------------------

    def _events(self) -> list[_Event]:
        """Every event with something announced: the ended ones kept, then the live ones."""
        return [*self._ended, *(e for e in self._live if e.markets)]

    def snapshot(self, *, request_id: int | None = None, ts: int | None = None) -> FeedSnapshot:
        """The whole world as the ``snapshot`` message says it."""
        events = tuple(
            EventState(
                event_id=e.event_id,
                status="ended" if e.over else "live",
                markets={
                    k: MarketState(
                        status=m.status,
                        outcomes=dict(m.outcomes),
                        result=None if m.result is None else dict(m.result),
                    )
                    for k, m in e.markets.items()
                },
            )
            for e in self._events()
        )
        return FeedSnapshot(events=events, request_id=request_id, ts=ts)

    def state(self) -> dict[str, dict[str, Any]]:
        """Each event as its rt topic state (event id -> state): what rt should show."""
        states: dict[str, dict[str, Any]] = {}
        for e in self._events():
            markets: dict[str, Any] = {}
            for k, m in e.markets.items():
                body: dict[str, Any] = {"status": m.status, "outcomes": dict(m.outcomes)}
                if m.result is not None:
                    body["result"] = dict(m.result)
                markets[k] = body
            states[e.event_id] = {
                "eventId": e.event_id,
                "status": "ended" if e.over else "live",
                "markets": markets,
            }
        return states

    def statistics(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "steps": self.steps,
            "live_events": [e.event_id for e in self._live],
            "ended_events": len(self._ended),
        }


def _bound(odds: float) -> float:
    return round(min(MAX_ODDS, max(MIN_ODDS, odds)), 2)


# -- serving it -----------------------------------------------------------------------------


class _Client:
    """One connected client: its bounded queue of frames and the scope of its tasks."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.send, self.receive = trio.open_memory_channel[str](capacity)
        self.scope = trio.CancelScope()
        self.sent = 0

    def offer(self, frame: str) -> None:
        try:
            self.send.send_nowait(frame)
        except trio.WouldBlock:
            log.warning("simulator: client %s is too slow; disconnecting it", self.name)
            self.scope.cancel(reason="slow client")


class SimulatorServer:
    """Serves one `Simulator` to WebSocket clients: its steps, alive, snapshots on request.

    `run()` is the producer (steps at ``rate`` per second, ``alive`` every second); each
    connection is served by `serve_connection`, by `handle_request` for a TCP server, or in
    process through `connect`. ``rate=0`` sends only ``alive``. ``max_steps`` stops the world
    after that many steps (``alive`` goes on). `set_available(False)` simulates an outage:
    clients are disconnected and new ones refused until it is set back.
    """

    def __init__(
        self,
        simulator: Simulator,
        *,
        rate: float | None = None,
        wall_ms: Callable[[], int] = default_wall_ms,
        alive_interval_s: float = 1.0,
        max_steps: int | None = None,
        client_capacity: int = 4096,
    ) -> None:
        self.simulator = simulator
        self.rate = simulator.rate if rate is None else rate
        if self.rate < 0:
            raise ValueError(f"rate must be 0 or more, got {self.rate}")
        self.wall_ms = wall_ms
        self.alive_interval_s = alive_interval_s
        self.max_steps = max_steps
        self.client_capacity = client_capacity
        self.running = False
        self.available = True
        self.snapshots_sent = 0
        self._clients: dict[str, _Client] = {}
        self._ids = 0
        self.world_stopped = trio.Event()

    # -- the producer ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Produce until cancelled; clients are disconnected when it ends."""
        self.running = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._tick)
                nursery.start_soon(self._generate)
                task_status.started()
        finally:
            self.running = False
            for client in list(self._clients.values()):
                client.scope.cancel(reason="simulator stopped")

    async def _tick(self) -> NoReturn:
        deadline = trio.current_time()
        while True:
            deadline += self.alive_interval_s
            await trio.sleep_until(deadline)
            self._broadcast(encode(Alive(ts=self.wall_ms())))

    async def _generate(self) -> None:
        if self.rate == 0:
            return
        interval = 1.0 / self.rate
        deadline = trio.current_time()
        while self.max_steps is None or self.simulator.steps < self.max_steps:
            deadline += interval
            await trio.sleep_until(deadline)
            self._broadcast(encode(self.simulator.step()))
        self.world_stopped.set()

    def _broadcast(self, frame: str) -> None:
        for client in list(self._clients.values()):
            client.offer(frame)

    # -- connections ----------------------------------------------------------------------

    def set_available(self, available: bool) -> None:
        """Refuse (False) or accept (True) connections; False also drops every client."""
        self.available = available
        if not available:
            for client in list(self._clients.values()):
                client.scope.cancel(reason="simulated outage")

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def handle_request(self, request: WebSocketRequest) -> None:
        """The handler for `trio_websocket.serve_websocket`: any path is the feed."""
        if not (self.available and self.running):
            await request.reject(503, body=b"simulated outage\n")
            return
        await self.serve_connection(await request.accept())

    async def serve_connection(self, ws: WebSocketConnection) -> None:
        """Serve one client until it leaves, is too slow, or the simulator goes away."""
        self._ids += 1
        client = _Client(f"c{self._ids}", self.client_capacity)
        self._clients[client.name] = client
        log.info("simulator: client %s connected", client.name)
        try:
            with client.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write, ws, client)
                    await self._read(ws, client)
                    nursery.cancel_scope.cancel()
        finally:
            del self._clients[client.name]
            log.info("simulator: client %s gone", client.name)
            # Say goodbye even when the simulator is cancelled. The close frame goes out at once;
            # the reply may never come if the connection's reader was cancelled too.
            with trio.move_on_after(0.2) as cleanup:
                cleanup.shield = True
                await ws.aclose(1001, "simulator going away")

    async def _write(self, ws: WebSocketConnection, client: _Client) -> None:
        async for frame in client.receive:
            try:
                await ws.send_message(frame)
            except ConnectionClosed:
                client.scope.cancel(reason="connection closed")
                return
            client.sent += 1

    async def _read(self, ws: WebSocketConnection, client: _Client) -> None:
        while True:
            try:
                text = await ws.get_message()
            except ConnectionClosed:
                return
            try:
                message = decode_request(text)
            except FeedProtocolError as exc:
                log.warning("simulator: client %s sent a bad message: %s", client.name, exc)
                continue
            if isinstance(message, SnapshotRequest):
                # Queued behind every step sent so far and before every later one, so the
                # snapshot is exactly the world as of its place in this client's stream.
                snapshot = self.simulator.snapshot(request_id=message.request_id, ts=self.wall_ms())
                client.offer(encode(snapshot))
                self.snapshots_sent += 1
            else:
                log.info("simulator: client %s sent %s; ignored", client.name, message.type)

    def connect(
        self, url: str = "sim://in-process"
    ) -> AbstractAsyncContextManager[WebSocketConnection]:
        """An in-process client connection (no socket): the same WebSocket over memory streams.

        Usable as an UpstreamFeed's ``connect``. Raises OSError while the simulator is not
        running or not available, as a refused TCP connection would.
        """
        if not (self.available and self.running):
            raise OSError(f"{url}: connection refused (the simulator is not serving)")
        return open_memory_websocket(self.handle_request)

    def statistics(self) -> dict[str, Any]:
        return {
            **self.simulator.statistics(),
            "rate": self.rate,
            "running": self.running,
            "available": self.available,
            "clients": self.clients,
            "snapshots_sent": self.snapshots_sent,
        }


@dataclass(frozen=True, slots=True)
class Listening:
    """What `serve_simulator` reports once it listens."""

    host: str
    port: int
    server: SimulatorServer

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"


async def serve_simulator(
    host: str,
    port: int,
    *,
    seed: int | None = 0,
    events: int = 3,
    markets: int = 3,
    rate: float = 5.0,
    match_s: float = 120.0,
    max_steps: int | None = None,
    wall_ms: Callable[[], int] = default_wall_ms,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve a new simulated upstream on ``host:port`` (0: any free port) until cancelled.

    With ``nursery.start`` it returns a `Listening` (the bound port, the URL, the server)
    once connections are accepted. ``max_steps``: see `SimulatorServer`.
    """
    simulator = Simulator(seed=seed, events=events, markets=markets, rate=rate, match_s=match_s)
    server = SimulatorServer(simulator, wall_ms=wall_ms, max_steps=max_steps)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        ws_server = await nursery.start(
            partial(
                serve_websocket,
                server.handle_request,
                host,
                port,
                None,
                handler_nursery=nursery,
                max_message_size=1024 * 1024,
            )
        )
        task_status.started(Listening(host, ws_server.port, server))
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover
