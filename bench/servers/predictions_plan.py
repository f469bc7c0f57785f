"""S6's events: what the benchmark publishes on the predictions dialect, as a function of the
match and the match's publish number n, so that the load generator can tell, for each client,
exactly which events it must receive (and so count a missing one as a gap)."""

from __future__ import annotations

from typing import Any

#: The event type of publish n of a match: ROTATION[n % 10].
ROTATION = (
    "prediction_created",
    "odds_updated",
    "prediction_updated",
    "odds_updated",
    "match_score_changed",
    "odds_updated",
    "prediction_created",
    "odds_updated",
    "match_started",
    "prediction_completed",
)
#: A match's league: LEAGUES[match % 4].
LEAGUES = ("英超", "西甲", "意甲", "德甲")
#: Publish n's confidence: CONFIDENCES[n % 50] (0.50 to 0.99).
CONFIDENCES = tuple(0.5 + ((n * 7) % 50) / 100 for n in range(50))
#: Market names the plan publishes to: "match:<id>" (KMarket markets are plain numbers).
PREFIX = "match:"


def event(market: str, n: int, patch: dict[str, Any]) -> dict[str, Any]:
    """Publish n of ``market`` as a RealtimeEvent (the plan's stamps ``pt``, ``st`` kept)."""
    match_id = int(market.removeprefix(PREFIX))
    data = {
        "match_id": match_id,
        "league": LEAGUES[match_id % 4],
        "confidence": CONFIDENCES[n % 50],
        "n": n,
        "pt": patch["pt"],
        "st": patch["st"],
    }
    return {"event_type": ROTATION[n % 10], "data": data}


def rules() -> dict[str, Any]:
    """The same, for the load generator."""
    return {"rotation": ROTATION, "leagues": LEAGUES, "confidences": CONFIDENCES}
