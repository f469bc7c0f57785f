"""The demo source of seed-002 events: a few matches, their predictions, goals and odds.

It exists so that ``rt serve`` alone shows events on ``/realtime/ws``: matches kick off, score,
have their odds and predictions updated, end and kick off again. Seeded, so a demo run can be
repeated; it publishes through the same publisher as POST /realtime/broadcast.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from actors import Actor
from rt.dialects.predictions.events import iso, realtime_event

if TYPE_CHECKING:
    from rt.dialects.predictions.publisher import EventPublisher

#: (match id, home, away, league)
MATCHES: tuple[tuple[int, str, str, str], ...] = (
    (456, "曼联", "切尔西", "英超"),
    (457, "阿森纳", "利物浦", "英超"),
    (458, "皇家马德里", "巴塞罗那", "西甲"),
    (459, "马德里竞技", "塞维利亚", "西甲"),
    (460, "国际米兰", "AC米兰", "意甲"),
    (461, "拜仁慕尼黑", "多特蒙德", "德甲"),
)


class DemoEvents(Actor):
    kind: ClassVar[str] = "feed"

    def __init__(
        self,
        publisher: EventPublisher,
        *,
        seed: int | None,
        interval_s: float,
        wall_ms: Callable[[], int],
    ) -> None:
        self.publisher = publisher
        self.random = random.Random(seed)
        self.interval_s = interval_s
        self.wall_ms = wall_ms
        self.scores = {m[0]: [0, 0] for m in MATCHES}
        self.kicked_off: set[int] = set()
        self.next_prediction = 1
        self.published = 0

    def describe(self) -> dict[str, Any]:
        return {"feed": "demo-events", "matches": len(MATCHES), "published": self.published}

    async def run(self) -> None:
        while True:
            await self.tick()
            with trio.move_on_after(self.interval_s):
                await self.stop_requested.wait()
                return

    async def tick(self) -> None:
        """One event for each match."""
        for match in MATCHES:
            await self._one(*match)

    async def _one(self, match_id: int, home: str, away: str, league: str) -> None:
        rnd = self.random
        teams = {"match_id": match_id, "home_team": home, "away_team": away, "league": league}
        roll = rnd.random()
        if match_id not in self.kicked_off:
            self.kicked_off.add(match_id)
            self.scores[match_id] = [0, 0]
            event_type = "match_started"
            data = {**teams, "start_time": self._now(), "venue": f"{home} 主场"}
        elif roll > 0.97:  # full time: the match kicks off again at the next tick (a demo)
            self.kicked_off.discard(match_id)
            home_score, away_score = self.scores[match_id]
            event_type = "match_ended"
            data = {**teams, "home_score": home_score, "away_score": away_score}
        elif roll < 0.4:
            event_type = "prediction_created" if roll < 0.3 else "prediction_updated"
            home_p = round(rnd.uniform(0.2, 0.7), 2)
            draw_p = round(rnd.uniform(0.1, 1 - home_p - 0.05), 2)
            away_p = round(1 - home_p - draw_p, 2)
            outcome = max((home_p, "home_win"), (draw_p, "draw"), (away_p, "away_win"))[1]
            data = {
                "prediction_id": self.next_prediction,
                **teams,
                "prediction": outcome,
                "confidence": round(rnd.uniform(0.5, 0.95), 2),
                "home_win_prob": home_p,
                "draw_prob": draw_p,
                "away_win_prob": away_p,
                "expected_value": round(rnd.uniform(-0.05, 0.2), 2),
                "strategy": "ml_ensemble",
            }
            self.next_prediction += 1
        elif roll < 0.55:
            event_type = "match_score_changed"
            side = rnd.randrange(2)
            self.scores[match_id][side] += 1
            data = {
                **teams,
                "home_score": self.scores[match_id][0],
                "away_score": self.scores[match_id][1],
                "scoring_team": ("home", "away")[side],
                "minute": rnd.randint(1, 90),
                "timestamp": self._now(),
            }
        else:
            event_type = "odds_updated"
            data = {
                **teams,
                "home_odds": round(rnd.uniform(1.3, 4.0), 2),
                "draw_odds": round(rnd.uniform(2.8, 4.2), 2),
                "away_odds": round(rnd.uniform(1.3, 6.0), 2),
                "bookmaker": "demo",
            }
        event = realtime_event(event_type, data, self.wall_ms(), source="demo")
        await self.publisher.publish(event)
        self.published += 1

    def _now(self) -> str:
        return iso(self.wall_ms())
