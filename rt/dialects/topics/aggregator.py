"""Candles from ticks: a router that sees every tick, and one candle maker per instrument.

Producers publish ticks (``{symbol, type, price, volume, ts}``) through rt's publish paths
(docs/publishing.md) to the topic ``tick:{type}.{symbol}``. The ``router`` hears each one
from the engine, hands it to that instrument's maker (started on its first tick, under
``dialects/topics/makers``) and keeps each region's summary. A maker keeps the instrument's
candle in every interval (rt/dialects/topics/candles.py) and publishes them to
``candle:{type}.{symbol}.{interval}``, where rooms fan them out like any other topic:

- an open candle at most once a second per topic (a throttle; the latest wins);
- a closed candle at once, ``closed: true``: when a tick opens the next interval, or when the
  interval's end passes with no tick at all (then the next candle opens flat, at the last
  close, so a silent interval still yields one closed candle).

A tick is placed by its own ``ts`` when that is within the last minute of rt's clock, and at
rt's clock otherwise (a producer's clock that runs ahead cannot close a candle early, nor an
old replay open candles in the past); a tick older than its open candle is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from actors import Actor, ActorRef, ChildSpec, MailboxClosed, MailboxFull, NameTaken, Restart
from rt.dialects.topics.candles import Candle, CandleSeries, RegionSummary, Throttle
from rt.dialects.topics.names import INTERVALS
from rt.model import Json, Update
from rt.topics import TICK_PREFIX, candle_topic, summary_topic

if TYPE_CHECKING:
    from rt.delivery.hub import Hub

log = logging.getLogger(__name__)

#: Where the makers live, under the dialect's supervisor.
MAKERS = "dialects/topics/makers"
#: How often an open candle (or a region's summary) may be published, per topic.
THROTTLE_MS = 1000
#: A tick's own ``ts`` places it when it is at most this old; older or future ones count now.
LATE_TICK_MS = 60_000
#: The region of a tick that names none.
DEFAULT_REGION = "US"


@dataclass(frozen=True, slots=True)
class Tick:
    instrument: str  # {type}.{symbol}
    price: float
    volume: float
    ts: int


def candle_state(candle: Candle, now_ms: int) -> dict[str, Json]:
    """A candle as the engine keeps it (the codec writes the times as text)."""
    return {
        "open_time": candle.open_time_ms,
        "close_time": candle.close_time_ms,
        "open": candle.open,
        "high": candle.high,
        "low": candle.low,
        "close": candle.close,
        "volume": candle.volume,
        "trades": candle.trades,
        "closed": candle.closed,
        "updated": now_ms,
    }


class CandleMaker(Actor):
    """One instrument's candles in every interval."""

    kind: ClassVar[str] = "candles"
    mailbox_capacity: ClassVar[int] = 1024

    def __init__(self, instrument: str, hub: Hub, wall_ms: Callable[[], int]) -> None:
        self.instrument = instrument
        self.hub = hub
        self.wall_ms = wall_ms
        symbol = instrument.partition(".")[2]
        self.series = {interval: CandleSeries(symbol, interval) for interval in INTERVALS}
        self.topics = {interval: candle_topic(f"{instrument}.{interval}") for interval in INTERVALS}
        self.throttle = Throttle(THROTTLE_MS)
        self.ticks = 0
        self.published = 0
        self._wake = trio.Event()

    def describe(self) -> dict[str, Any]:
        return {"instrument": self.instrument, "ticks": self.ticks, "published": self.published}

    async def on_start(self) -> None:
        """After a restart (a crash), carry on from the candles the engine holds: an open
        one keeps its trades; a closed one is final, and the next tick opens the next."""
        symbol = self.instrument.partition(".")[2]
        for interval, series in self.series.items():
            state = (await self.hub.engine.snapshot(self.topics[interval])).state
            if state and state.get("closed") is False:
                series.resume(
                    Candle(
                        symbol,
                        interval,
                        1,
                        int(state["open_time"]),
                        int(state["close_time"]),
                        float(state["open"]),
                        float(state["high"]),
                        float(state["low"]),
                        float(state["close"]),
                        float(state["volume"]),
                        int(state["trades"]),
                    )
                )

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keep_time)
            async for message in self.mailbox:
                await self.dispatch(message)
            nursery.cancel_scope.cancel()

    async def receive(self, message: Any) -> None:
        if not isinstance(message, Tick):
            raise TypeError(f"{self.path}: cannot handle {message!r}")
        self.ticks += 1
        now = self.wall_ms()
        ts = message.ts if now - LATE_TICK_MS <= message.ts <= now else now
        for interval, series in self.series.items():
            for closed in series.tick(message.price, message.volume, ts):
                await self._publish(interval, closed, now)
            current = series.current
            if current is not None and self.throttle.offer(self.topics[interval], now):
                await self._publish(interval, current, now)
        self._wake.set()

    async def _keep_time(self) -> None:
        """Close candles at their interval's end, and send what the throttle held back."""
        by_topic = {topic: interval for interval, topic in self.topics.items()}
        while True:
            now = self.wall_ms()
            for interval, series in self.series.items():
                closed_any = False
                for closed in series.advance(now):
                    await self._publish(interval, closed, now)
                    closed_any = True
                if closed_any and series.current is not None:
                    # The next candle opens (flat, at the last close) as the last one closes.
                    await self._publish(interval, series.current, now)
            for topic in self.throttle.flush(now):
                current = self.series[by_topic[topic]].current
                if current is not None:
                    await self._publish(by_topic[topic], current, now)
            wait_ms = self._next_wake(now)
            self._wake = trio.Event()
            with trio.move_on_after(max(wait_ms, 1) / 1000):
                await self._wake.wait()

    def _next_wake(self, now: int) -> int:
        """Milliseconds until the next candle closes, or the throttle's period if it holds
        something back (a tick arriving meanwhile wakes us anyway)."""
        boundaries = [s.next_boundary_ms for s in self.series.values()]
        wait = min((b - now for b in boundaries if b is not None), default=60_000)
        if self.throttle.pending:
            wait = min(wait, THROTTLE_MS)
        return wait

    async def _publish(self, interval: str, candle: Candle, now: int) -> None:
        self.published += 1
        await self.hub.publish(self.topics[interval], candle_state(candle, now))
        if candle.closed:
            self.throttle.forget(self.topics[interval])


class TickRouter(Actor):
    """Hears every tick from the engine; feeds the makers and the regions' summaries."""

    kind: ClassVar[str] = "router"
    mailbox_capacity: ClassVar[int] = 10_000

    def __init__(self, hub: Hub, wall_ms: Callable[[], int]) -> None:
        self.hub = hub
        self.wall_ms = wall_ms
        self.makers: dict[str, ActorRef] = {}
        self.regions: dict[str, RegionSummary] = {}
        self.dropped = 0
        self.routed = 0
        self._changed = trio.Event()

    def describe(self) -> dict[str, Any]:
        return {
            "instruments": len(self.makers),
            "regions": sorted(self.regions),
            "routed": self.routed,
            "dropped": self.dropped,
        }

    def _on_update(self, update: Update) -> None:
        """The engine's callback (synchronous, never blocks): queue each tick for ``run``."""
        if update.topic.startswith(TICK_PREFIX):
            try:
                self.ref.tell_nowait(update)
            except (MailboxFull, MailboxClosed):
                self.dropped += 1

    async def run(self) -> None:
        self.hub.engine.add_listener(self._on_update)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._summaries)
                async for message in self.mailbox:
                    await self.dispatch(message)
                nursery.cancel_scope.cancel()
        finally:
            self.hub.engine.remove_listener(self._on_update)

    async def receive(self, message: Any) -> None:
        if not isinstance(message, Update):
            raise TypeError(f"{self.path}: cannot handle {message!r}")
        data = message.data
        assert isinstance(data, dict)
        instrument = message.topic[len(TICK_PREFIX) :]
        tick = Tick(instrument, float(data["price"]), float(data["volume"]), int(data["ts"]))
        maker = self.makers.get(instrument)
        if maker is None or not maker.alive:
            maker = await self._maker(instrument)
        try:
            maker.tell_nowait(tick)
            self.routed += 1
        except (MailboxFull, MailboxClosed):
            self.dropped += 1
        region = str(data.get("region") or DEFAULT_REGION)
        summary = self.regions.get(region)
        if summary is None:
            summary = self.regions[region] = RegionSummary(region)
        summary.update(instrument, tick.price, tick.volume, min(tick.ts, self.wall_ms()))
        self._changed.set()

    async def _maker(self, instrument: str) -> ActorRef:
        hub, wall_ms = self.hub, self.wall_ms
        spec = ChildSpec(
            instrument,
            lambda: CandleMaker(instrument, hub, wall_ms),
            restart=Restart.TRANSIENT,
        )
        try:
            ref = await self.system.spawn(spec, under=MAKERS)
        except NameTaken:
            found = self.system.lookup(f"{MAKERS}/{instrument}")
            assert found is not None
            ref = found
        self.makers[instrument] = ref
        return ref

    async def _summaries(self) -> None:
        """Each region's summary when a tick changed it, at most once a second."""
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            now = self.wall_ms()
            for region, summary in self.regions.items():
                if summary.changed:
                    await self.hub.publish(summary_topic(region), summary.snapshot(now))
            await trio.sleep(THROTTLE_MS / 1000)
