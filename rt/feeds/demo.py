"""The built-in demo odds feed: a few markets whose moneyline odds random-walk.

It exists so that ``rt serve`` alone shows live odds. A later feed actor (the UOF simulator)
replaces it; it publishes through the same Hub path as every producer.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import trio

from actors import Actor
from rt.delivery.hub import Hub
from rt.settings import Settings
from rt.topics import market_topic


class DemoFeed(Actor):
    kind: ClassVar[str] = "feed"

    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub = hub
        self.markets = settings.demo_markets
        self.interval_s = settings.demo_interval_s
        self.random = random.Random(settings.demo_seed)
        self.published = 0
        self.odds: dict[str, dict[str, float]] = {}

    def describe(self) -> dict[str, Any]:
        return {
            "feed": "demo",
            "state": "running",
            "markets": len(self.markets),
            "published": self.published,
        }

    async def on_start(self) -> None:
        for market in self.markets:
            snapshot = await self.hub.engine.snapshot(market_topic(market))
            current = snapshot.state.get("moneyline")
            if isinstance(current, dict) and {"home", "away"} <= current.keys():
                self.odds[market] = {"home": current["home"], "away": current["away"]}
            else:
                self.odds[market] = {"home": 1.90, "away": 1.90}
                await self._publish(market)

    async def run(self) -> None:
        while not self.stop_requested.is_set():
            with trio.move_on_after(self.interval_s):
                await self.stop_requested.wait()
                return
            market = self.random.choice(self.markets)
            side = self.random.choice(("home", "away"))
            step = self.random.choice((-0.05, -0.02, 0.02, 0.05))
            self.odds[market][side] = round(min(15.0, max(1.01, self.odds[market][side] + step)), 2)
            await self._publish(market)

    async def _publish(self, market: str) -> None:
        await self.hub.publish(market_topic(market), {"moneyline": dict(self.odds[market])})
        self.published += 1
