"""The feed protocol: what an upstream odds producer and rt say to each other (sans-IO).

Every message is one JSON object in a WebSocket text frame, with a ``type``:

    upstream -> rt   alive, odds_change, bet_stop, bet_settlement, snapshot
    rt -> upstream   snapshot_request

`decode_upstream` turns a frame from the upstream into one of the message classes below, or
raises `FeedProtocolError` naming the field and the value it got; `encode` does the reverse
for any message (the simulator encodes upstream messages, the feed its requests). A message
type this module does not know decodes to `Unknown`, so an upstream may send more than rt
understands. docs/feeds.md is the reference, with an example of every message.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from rt.jsontext import dumps, loads, show

__all__ = [
    "Alive",
    "BetSettlement",
    "BetStop",
    "EventState",
    "FeedProtocolError",
    "FeedSnapshot",
    "MarketState",
    "MarketStatus",
    "OddsChange",
    "SnapshotRequest",
    "Unknown",
    "UpstreamMessage",
    "decode_request",
    "decode_upstream",
    "encode",
    "to_json",
]

MarketStatus = Literal["active", "suspended", "settled"]
EventStatus = Literal["live", "ended"]
Outcome = Literal["win", "lose"]

_MARKET_STATUSES = ("active", "suspended", "settled")
_EVENT_STATUSES = ("live", "ended")
_OUTCOMES = ("win", "lose")
#: The event ids a client dialect lets its clients subscribe to (rt/dialects/uof/codec.py).
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_MAX_ID = 64


class FeedProtocolError(ValueError):
    """The upstream sent something the feed protocol does not allow (the upstream's fault)."""


@dataclass(frozen=True, slots=True)
class Alive:
    """The upstream is alive; sent every second. ``ts``: its wall clock, in ms."""

    ts: int


@dataclass(frozen=True, slots=True)
class OddsChange:
    """A market's odds, and that it takes bets: it opens (or reopens) the market."""

    event_id: str
    market_id: str
    outcomes: dict[str, float]


@dataclass(frozen=True, slots=True)
class BetStop:
    """A market (or, with no market id, every market of the event) stops taking bets."""

    event_id: str
    market_id: str | None


@dataclass(frozen=True, slots=True)
class BetSettlement:
    """A market is settled: the result of each of its outcomes."""

    event_id: str
    market_id: str
    result: dict[str, str]


@dataclass(frozen=True, slots=True)
class MarketState:
    """One market as a snapshot reports it."""

    status: MarketStatus
    outcomes: dict[str, float] = field(default_factory=dict)
    result: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class EventState:
    """One event as a snapshot reports it."""

    event_id: str
    status: EventStatus
    markets: dict[str, MarketState]


@dataclass(frozen=True, slots=True)
class FeedSnapshot:
    """The upstream's whole state: its answer to a `SnapshotRequest`."""

    events: tuple[EventState, ...]
    request_id: int | None = None
    ts: int | None = None


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """rt asks for a snapshot; ``request_id`` comes back in the answer."""

    request_id: int | None = None


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message of a type this module does not know (ignored by whoever receives it)."""

    type: str


UpstreamMessage = Alive | OddsChange | BetStop | BetSettlement | FeedSnapshot | Unknown


# -- decoding -------------------------------------------------------------------------------


def _load(text: str | bytes) -> tuple[str, dict[str, Any]]:
    if not isinstance(text, str):
        raise FeedProtocolError("expected a text message, got a binary one")
    try:
        message = loads(text)
    except ValueError as exc:
        raise FeedProtocolError(f"invalid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise FeedProtocolError(f"expected a JSON object, got {show(message)}")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise FeedProtocolError(f"expected type to be a string, got {show(kind)}")
    return kind, message


def _event_id(where: str, value: Any) -> str:
    if not isinstance(value, str) or not _EVENT_ID.fullmatch(value):
        raise FeedProtocolError(
            f"{where}: expected eventId to be 1-64 of A-Z a-z 0-9 _ . : -, got {show(value)}"
        )
    return value


def _id(where: str, name: str, value: Any) -> str:
    """A market or outcome id: a string, or an integer taken as its decimal string."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and 0 < len(value) <= _MAX_ID:
        return value
    raise FeedProtocolError(
        f"{where}: expected {name} to be a non-empty string or an integer, got {show(value)}"
    )


def _ts(where: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise FeedProtocolError(
        f"{where}: expected ts to be milliseconds (an integer), got {show(value)}"
    )


def _odds(where: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise FeedProtocolError(
            f"{where}: expected outcomes to be an object of outcomeId: odds, got {show(value)}"
        )
    odds: dict[str, float] = {}
    for key, price in value.items():
        outcome = _id(where, "an outcome id", key)
        if (
            isinstance(price, bool)
            or not isinstance(price, int | float)
            or not math.isfinite(price)
            or price <= 1
        ):
            raise FeedProtocolError(
                f"{where}: expected outcomes[{key!r}] to be odds above 1, got {show(price)}"
            )
        odds[outcome] = float(price)
    return odds


def _result(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise FeedProtocolError(
            f'{where}: expected result to be an object of outcomeId: "win" | "lose", '
            f"got {show(value)}"
        )
    result: dict[str, str] = {}
    for key, outcome in value.items():
        if outcome not in _OUTCOMES:
            raise FeedProtocolError(
                f'{where}: expected result[{key!r}] to be "win" or "lose", got {show(outcome)}'
            )
        result[_id(where, "an outcome id", key)] = outcome
    return result


def _market_state(where: str, value: Any) -> MarketState:
    if not isinstance(value, dict):
        raise FeedProtocolError(f"{where}: expected a market object, got {show(value)}")
    status = value.get("status")
    if status not in _MARKET_STATUSES:
        raise FeedProtocolError(
            f"{where}: expected status to be active, suspended or settled, got {show(status)}"
        )
    outcomes = value.get("outcomes")
    if status == "active" or outcomes is not None:
        odds = _odds(where, outcomes)
    else:
        odds = {}
    result = _result(where, value.get("result")) if status == "settled" else None
    return MarketState(status=status, outcomes=odds, result=result)


def _event_state(where: str, value: Any) -> EventState:
    if not isinstance(value, dict):
        raise FeedProtocolError(f"{where}: expected an event object, got {show(value)}")
    event_id = _event_id(where, value.get("eventId"))
    where = f"{where} {event_id}"
    status = value.get("status", "live")
    if status not in _EVENT_STATUSES:
        raise FeedProtocolError(f"{where}: expected status to be live or ended, got {show(status)}")
    markets = value.get("markets")
    if not isinstance(markets, dict):
        raise FeedProtocolError(
            f"{where}: expected markets to be an object of marketId: market, got {show(markets)}"
        )
    return EventState(
        event_id=event_id,
        status=status,
        markets={
            _id(where, "a market id", k): _market_state(f"{where} market {k}", v)
            for k, v in markets.items()
        },
    )


def _request_id(where: str, value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise FeedProtocolError(f"{where}: expected requestId to be an integer, got {show(value)}")


def decode_upstream(text: str | bytes) -> UpstreamMessage:
    """Decode one frame from the upstream; FeedProtocolError says what is wrong with it."""
    kind, m = _load(text)
    if kind == "alive":
        return Alive(ts=_ts(kind, m.get("ts")))
    if kind == "odds_change":
        return OddsChange(
            event_id=_event_id(kind, m.get("eventId")),
            market_id=_id(kind, "marketId", m.get("marketId")),
            outcomes=_odds(kind, m.get("outcomes")),
        )
    if kind == "bet_stop":
        market = m.get("marketId")
        return BetStop(
            event_id=_event_id(kind, m.get("eventId")),
            market_id=None if market is None else _id(kind, "marketId", market),
        )
    if kind == "bet_settlement":
        return BetSettlement(
            event_id=_event_id(kind, m.get("eventId")),
            market_id=_id(kind, "marketId", m.get("marketId")),
            result=_result(kind, m.get("result")),
        )
    if kind == "snapshot":
        events = m.get("events")
        if not isinstance(events, list):
            raise FeedProtocolError(
                f"snapshot: expected events to be a list of events, got {show(events)}"
            )
        ts = m.get("ts")
        return FeedSnapshot(
            events=tuple(_event_state("snapshot", e) for e in events),
            request_id=_request_id(kind, m.get("requestId")),
            ts=None if ts is None else _ts(kind, ts),
        )
    return Unknown(type=kind)


def decode_request(text: str | bytes) -> SnapshotRequest | Unknown:
    """Decode one frame from rt (the upstream's side of the protocol)."""
    kind, m = _load(text)
    if kind == "snapshot_request":
        return SnapshotRequest(request_id=_request_id(kind, m.get("requestId")))
    return Unknown(type=kind)


# -- encoding -------------------------------------------------------------------------------


def _market_json(market: MarketState) -> dict[str, Any]:
    body: dict[str, Any] = {"status": market.status}
    if market.outcomes:
        body["outcomes"] = market.outcomes
    if market.result is not None:
        body["result"] = market.result
    return body


def _event_json(event: EventState) -> dict[str, Any]:
    return {
        "eventId": event.event_id,
        "status": event.status,
        "markets": {k: _market_json(v) for k, v in event.markets.items()},
    }


def to_json(message: UpstreamMessage | SnapshotRequest) -> dict[str, Any]:
    """The JSON object of a message (what `encode` serialises)."""
    match message:
        case Alive(ts=ts):
            return {"type": "alive", "ts": ts}
        case OddsChange(event_id=e, market_id=m, outcomes=o):
            return {"type": "odds_change", "eventId": e, "marketId": m, "outcomes": o}
        case BetStop(event_id=e, market_id=m):
            out: dict[str, Any] = {"type": "bet_stop", "eventId": e}
            if m is not None:
                out["marketId"] = m
            return out
        case BetSettlement(event_id=e, market_id=m, result=r):
            return {"type": "bet_settlement", "eventId": e, "marketId": m, "result": r}
        case FeedSnapshot(events=events, request_id=request_id, ts=ts):
            out = {"type": "snapshot"}
            if request_id is not None:
                out["requestId"] = request_id
            if ts is not None:
                out["ts"] = ts
            out["events"] = [_event_json(e) for e in events]
            return out
        case SnapshotRequest(request_id=request_id):
            out = {"type": "snapshot_request"}
            if request_id is not None:
                out["requestId"] = request_id
            return out
        case Unknown(type=kind):
            return {"type": kind}
    raise TypeError(f"not a feed message: {message!r}")  # pragma: no cover


def encode(message: UpstreamMessage | SnapshotRequest) -> str:
    """One message as the text of a WebSocket frame."""
    return dumps(to_json(message))
