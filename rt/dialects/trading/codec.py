"""Encoding the trading dialect (seed 003): every message is a JSON object with a ``type``.

- ``orderbook:<instrument>``: the topic's state is the whole book, ``{"bids": {price:
  [volume, order_count]}, "asks": {...}, "checksum": n}``, and each update a merge patch of the
  levels that changed (``null``: the level is gone). A snapshot is sent as a full book
  (``"snapshot": true``, ``prev_seq`` -1); an update as the changed levels (volume 0 for a
  level gone), with ``seq``, ``prev_seq`` (the seq before the first change it holds: several
  merged for a slow client say so) and the checksum of the book after it.
- ``trade:<instrument>``: public prints, sent as published; ``ticker:<instrument>``: the last
  print and the best prices after it.
- ``user:<id>``: the user's pushes (``order_status``, ``trade``, ``account_update``) as the
  exchange wrote them, with the stream's ``seq``. Another dialect's private event (a bet
  ticket's result) comes as ``{"type": "notification", "data": ...}``.

A client that fell behind on prints or had a stream it cannot be given again gets
``{"type": "resync", ...}`` saying what it missed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rt.dialects.base import ENGINE_BACK, ENGINE_LOST
from rt.dialects.trading.ledger import EXCHANGE_UNAVAILABLE
from rt.jsontext import dumps
from rt.model import Json, Update
from rt.topics import channel_of, is_user_topic

__all__ = ["CODEC", "TradingCodec", "encode_error"]

#: The shared layer's own refusals (named) as this dialect's numbers; any other name is 400.
_SHARED_CODES = {
    "TOO_MANY_SUBSCRIPTIONS": 429,
    "TOO_MANY_NEW_TOPICS": 429,
    "TOO_MANY_CONNECTIONS": 429,
    "RATE_LIMITED": 429,
}


def encode_error(code: str | int, message: str) -> str:
    """``{"type": "error", "code", "message"}``, as the seed writes it. A refusal of the
    shared layer (a name, such as RATE_LIMITED) gets a number, and its name leads the
    message."""
    if isinstance(code, str) and not code.isdigit():
        message = f"{code}: {message}"
        code = _SHARED_CODES.get(code, 400)
    return dumps({"type": "error", "code": int(code), "message": message})


def _levels(side: Json, *, descending: bool, full: bool) -> list[dict[str, Json]]:
    if not isinstance(side, dict):
        return []
    levels = []
    for price in sorted(side, key=Decimal, reverse=descending):
        level = side[price]
        if level is None and full:
            continue  # a full book lists the levels there are
        volume, count = (0, 0) if level is None else level
        levels.append({"price": float(price), "volume": float(volume), "order_count": count})
    return levels


def _book(
    instrument_id: str, data: dict[str, Any], *, seq: int, prev_seq: int, ts: int, full: bool
) -> str:
    return dumps(
        {
            "type": "orderbook",
            "instrument_id": instrument_id,
            "snapshot": full,
            "bids": _levels(data.get("bids"), descending=True, full=full),
            "asks": _levels(data.get("asks"), descending=False, full=full),
            "seq": seq,
            "prev_seq": prev_seq,
            "checksum": data.get("checksum", 0),
            "timestamp": ts,
        }
    )


def _is_reset(patch: dict[str, Any]) -> bool:
    """A new book's first update (rt/dialects/trading/exchange.py: EMPTY_BOOK), alone or
    with what followed it merged in: either way, the whole book."""
    return patch.get("reset") is True


def _ticker(instrument_id: str, data: dict[str, Any], ts: int) -> str:
    return dumps(
        {
            "type": "ticker",
            "instrument_id": instrument_id,
            "last_price": data.get("last_price"),
            "volume": data.get("volume", 0.0),
            "best_bid": data.get("best_bid"),
            "best_ask": data.get("best_ask"),
            "total_volume": data.get("total_volume", 0.0),
            "timestamp": data.get("timestamp", ts),
        }
    )


def _resync(topic: str, seq: int, what: str) -> str:
    if is_user_topic(topic):
        where: dict[str, Json] = {"channel": "private"}
    else:
        channel, instrument_id = channel_of(topic)
        where = {"channel": channel, "instrument_id": instrument_id}
    return dumps({"type": "resync", **where, "seq": seq, "message": what})


class TradingCodec:
    """Stateless encoder; one shared instance, ``CODEC``."""

    name = "trading"

    def encode_error(self, code: str, message: str) -> str:
        return encode_error(code, message)

    def encode_update(self, update: Update) -> str:
        topic, data = update.topic, update.data
        if is_user_topic(topic):
            if isinstance(data, dict) and isinstance(data.get("type"), str):
                return dumps({**data, "seq": update.seq})
            return dumps({"type": "notification", "data": data, "seq": update.seq})
        channel, instrument_id = channel_of(topic)
        if channel == "orderbook":
            if _is_reset(data):
                return _book(
                    instrument_id, {}, seq=update.seq, prev_seq=-1, ts=update.ts, full=True
                )
            return _book(
                instrument_id,
                data,
                seq=update.seq,
                prev_seq=update.seq - 1,
                ts=update.ts,
                full=False,
            )
        if channel == "ticker":
            return _ticker(instrument_id, data, update.ts)
        return dumps({**data, "seq": update.seq})  # a print

    def encode_conflated(self, topic: str, *, from_seq: int, seq: int, ts: int, patch: Json) -> str:
        channel, instrument_id = channel_of(topic)
        if channel == "orderbook":
            if _is_reset(patch):
                return _book(instrument_id, patch, seq=seq, prev_seq=-1, ts=ts, full=True)
            return _book(instrument_id, patch, seq=seq, prev_seq=from_seq - 1, ts=ts, full=False)
        return _ticker(instrument_id, patch, ts)  # prints and pushes are events: never merged

    def encode_snapshot(
        self,
        topic: str,
        *,
        epoch: str,
        seq: int,
        ts: int,
        state: Json,
        resync: bool = False,
        recovered: bool | None = None,
        reason: str | None = None,
    ) -> str:
        if not is_user_topic(topic):
            channel, instrument_id = channel_of(topic)
            if channel == "orderbook":
                return _book(instrument_id, state, seq=seq, prev_seq=-1, ts=ts, full=True)
            if channel == "ticker" and state:
                return _ticker(instrument_id, state, ts)
        return _resync(
            topic,
            seq,
            "messages before seq were skipped (the connection fell behind, or they are no "
            "longer held); query_order, query_account and query_position give the state",
        )

    def encode_resumed(
        self, topic: str, *, recovered: bool, from_seq: int, to_seq: int, reason: str | None
    ) -> str:
        raise TypeError("the trading dialect does not announce resumes")  # it never asks

    def encode_broadcast(self, event_type: str, data: Json, *, ts: int) -> str:
        return dumps({"type": event_type, "data": data, "timestamp": ts})

    def encode_engine_status(self, available: bool, topics: list[str], *, ts: int) -> list[str]:
        if available:
            return [self.encode_broadcast("system_status", ENGINE_BACK, ts=ts)]
        return [
            encode_error(EXCHANGE_UNAVAILABLE, f"Exchange unavailable: {ENGINE_LOST['message']}")
        ]


CODEC = TradingCodec()
