"""The demo tick source: a seeded random walk for a few instruments of each type.

It exists so that ``rt serve`` alone streams ``stock.AAPL.1m`` (and ``crypto.BTC.5m``,
``futures.CL.1h``, ``market.US.summary``, ...). It publishes through the hub, as a producer's
ticks through the publish paths do, so the candles come out of the same router and makers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from actors import Actor
from rt.topics import tick_topic

if TYPE_CHECKING:
    from rt.delivery.hub import Hub

#: (type, symbol, region, starting price): a handful of each type.
INSTRUMENTS: tuple[tuple[str, str, str, float], ...] = (
    ("stock", "AAPL", "US", 190.0),
    ("stock", "MSFT", "US", 420.0),
    ("stock", "TSLA", "US", 240.0),
    ("crypto", "BTC", "CRYPTO", 65_000.0),
    ("crypto", "ETH", "CRYPTO", 3_200.0),
    ("futures", "CL", "US", 78.0),
    ("futures", "ES", "US", 5_300.0),
    ("options", "AAPL-C200", "US", 4.2),
    ("commodity", "GOLD", "GLOBAL", 2_350.0),
    ("commodity", "SILVER", "GLOBAL", 28.0),
    ("market", "SPX", "US", 5_300.0),
    ("market", "NDX", "US", 18_500.0),
)


class DemoTicks(Actor):
    kind: ClassVar[str] = "feed"

    def __init__(
        self,
        hub: Hub,
        *,
        seed: int | None,
        interval_s: float,
        wall_ms: Callable[[], int],
    ) -> None:
        self.hub = hub
        self.random = random.Random(seed)
        self.interval_s = interval_s
        self.wall_ms = wall_ms
        self.prices = {(kind, symbol): price for kind, symbol, _, price in INSTRUMENTS}
        self.published = 0

    def describe(self) -> dict[str, Any]:
        return {"feed": "demo-ticks", "instruments": len(INSTRUMENTS), "published": self.published}

    async def run(self) -> None:
        while True:
            for kind, symbol, region, _ in INSTRUMENTS:
                await self._tick(kind, symbol, region)
            with trio.move_on_after(self.interval_s):
                await self.stop_requested.wait()
                return

    async def _tick(self, kind: str, symbol: str, region: str) -> None:
        price = self.prices[kind, symbol]
        # A step of up to 0.2 % either way, rounded to the cent (never below one).
        price = max(0.01, round(price * (1 + self.random.uniform(-0.002, 0.002)), 2))
        self.prices[kind, symbol] = price
        tick = {
            "symbol": symbol,
            "type": kind,
            "price": price,
            "volume": float(self.random.randint(1, 500)),
            "ts": self.wall_ms(),
            "region": region,
        }
        await self.hub.publish(tick_topic(f"{kind}.{symbol}"), tick, kind="event")
        self.published += 1
