"""The KMarket dialect (seed 001): ``/ws/odds?token=JWT``.

Client -> server: subscribe {markets}, unsubscribe {markets}, resume {offsets}, ping {ts}.
Server -> client: ack, pong, snapshot, odds_update, resumed, error. docs/protocol/kmarket.md
is the reference; the choices this module makes where the seed is silent are listed there.

Market ids. The seed sends ids as strings ("1001") and echoes them as numbers (1001). A market
id here is canonically a string: a non-negative integer (sent as a number or a digit string,
leading zeros dropped) or a name of 1-64 characters from [A-Za-z0-9_.:-]. It is written back
as a JSON number when it is an integer, else as a string. Its topic is ``market:<id>``.
"""

from __future__ import annotations

from rt import topics
from rt.dialects.base import ENGINE_BACK, ENGINE_LOST, ProtocolError
from rt.jsontext import dumps
from rt.model import Json, Update
from rt.topics import MARKET_PREFIX, market_of

__all__ = [
    "CODEC",
    "KMarketCodec",
    "parse_market_id",
]


# Error codes, in the seed's UPPER_SNAKE style (it names UNAUTHORIZED and SERVICE_UNAVAILABLE).
INVALID_JSON = "INVALID_JSON"
INVALID_MESSAGE = "INVALID_MESSAGE"
UNKNOWN_TYPE = "UNKNOWN_TYPE"
BINARY_NOT_SUPPORTED = "BINARY_NOT_SUPPORTED"
TOO_MANY_MARKETS = "TOO_MANY_MARKETS"
FORBIDDEN_MARKET = "FORBIDDEN_MARKET"


def parse_market_id(value: object, *, field: str = "market id") -> str:
    """The canonical id of a market id as a client sent it, or a ProtocolError naming it."""
    try:
        return topics.parse_market_id(value, field=field)
    except ValueError as exc:
        raise ProtocolError(INVALID_MESSAGE, str(exc)) from None


def encode_error(code: str, message: str, **extra: Json) -> str:
    return dumps({"type": "error", "code": code, "message": message, **extra})


class KMarketCodec:
    """Stateless encoder for KMarket messages; one shared instance, ``CODEC``."""

    name = "kmarket"

    def encode_error(self, code: str, message: str) -> str:
        return encode_error(code, message)

    def encode_update(self, update: Update) -> str:
        return dumps(
            {
                "type": "odds_update",
                "marketId": market_of(update.topic),
                "seq": update.seq,
                "ts": update.ts,
                "payload": update.data,
            }
        )

    def encode_conflated(self, topic: str, *, from_seq: int, seq: int, ts: int, patch: Json) -> str:
        return dumps(
            {
                "type": "odds_update",
                "marketId": market_of(topic),
                "seq": seq,
                "ts": ts,
                "payload": patch,
                "conflated": True,
                "fromSeq": from_seq,
            }
        )

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
        message: dict[str, Json] = {
            "type": "snapshot",
            "marketId": market_of(topic),
            "seq": seq,
            "ts": ts,
            "payload": state,
            "epoch": epoch,
        }
        if resync:
            message["resync"] = True
        if recovered is not None:
            message["recovered"] = recovered
        if reason is not None:
            message["reason"] = reason
        return dumps(message)

    def encode_resumed(
        self, topic: str, *, recovered: bool, from_seq: int, to_seq: int, reason: str | None
    ) -> str:
        message: dict[str, Json] = {
            "type": "resumed",
            "marketId": market_of(topic),
            "recovered": recovered,
            "fromSeq": from_seq,
            "toSeq": to_seq,
        }
        if reason is not None:
            message["reason"] = reason
        return dumps(message)

    def encode_pong(self, ts: Json) -> str:
        return dumps({"type": "pong", "ts": ts})

    def encode_broadcast(self, event_type: str, data: Json, *, ts: int) -> str:
        return dumps({"type": "broadcast", "event_type": event_type, "data": data, "timestamp": ts})

    def encode_engine_status(self, available: bool, topics: list[str], *, ts: int) -> list[str]:
        if available:
            return [self.encode_broadcast("system_status", ENGINE_BACK, ts=ts)]
        markets = [market_of(t) for t in topics if t.startswith(MARKET_PREFIX)]
        return [
            self.encode_broadcast("system_status", {**ENGINE_LOST, "marketIds": markets}, ts=ts)
        ]


CODEC = KMarketCodec()
