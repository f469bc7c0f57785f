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

from collections.abc import Callable, Iterable
from typing import Any

from rt import topics
from rt.dialects.base import Action, Join, Leave, ProtocolError, Send, parse_message
from rt.jsontext import dumps, show
from rt.model import Json, Update
from rt.topics import MARKET_PREFIX, market_id, market_of, market_topic

__all__ = [
    "CODEC",
    "KMarketCodec",
    "KMarketSession",
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


CODEC = KMarketCodec()


class KMarketSession:
    """One KMarket connection's protocol state: its scope and its subscriptions.

    ``handle_text`` never raises for bad input: a ProtocolError becomes a Send of the error
    message, and the connection goes on (the seed's protocol allows it for every error here).
    """

    def __init__(
        self,
        *,
        scope: frozenset[str] | None,
        max_markets: int,
        wall_ms: Callable[[], int],
    ) -> None:
        self.scope = scope
        self.max_markets = max_markets
        self._wall_ms = wall_ms
        self.subscribed: dict[str, None] = {}  # insertion-ordered set of canonical ids

    def opened(self) -> list[Action]:
        return []

    def subscriptions(self) -> int:
        return len(self.subscribed)

    def forget(self, topic: str) -> None:
        if topic.startswith(MARKET_PREFIX):
            self.subscribed.pop(topic[len(MARKET_PREFIX) :], None)

    def ticket_answer(self, answer: Json) -> str:
        raise TypeError("the KMarket dialect has no tickets")

    def handle_binary(self) -> list[Action]:
        return [
            Send(
                encode_error(
                    BINARY_NOT_SUPPORTED, "binary frames are not supported; send JSON text"
                ),
                error=True,
            )
        ]

    def handle_text(self, text: str) -> list[Action]:
        try:
            message = self._parse(text)
            kind = message["type"]
            if kind == "subscribe":
                return self._subscribe(message)
            if kind == "unsubscribe":
                return self._unsubscribe(message)
            if kind == "resume":
                return self._resume(message)
            if kind == "ping":
                return [Send(CODEC.encode_pong(message.get("ts", self._wall_ms())))]
            raise ProtocolError(
                UNKNOWN_TYPE,
                f"unknown message type {show(kind)}; "
                "expected subscribe, unsubscribe, resume or ping",
            )
        except ProtocolError as exc:
            return [Send(encode_error(exc.code, exc.message), error=True)]

    # -- parsing ----------------------------------------------------------------------

    @staticmethod
    def _parse(text: str) -> dict[str, Any]:
        return parse_message(text, bad_json=INVALID_JSON, bad_message=INVALID_MESSAGE)

    @staticmethod
    def _markets(message: dict[str, Any]) -> list[str]:
        if "markets" not in message:
            raise ProtocolError(INVALID_MESSAGE, "missing field: markets")
        raw = message["markets"]
        if not isinstance(raw, list) or not raw:
            raise ProtocolError(
                INVALID_MESSAGE, f"expected markets to be a non-empty list of ids, got {show(raw)}"
            )
        return list(dict.fromkeys(parse_market_id(v, field="each market id") for v in raw))

    # -- commands ---------------------------------------------------------------------

    def _split_scope(self, ids: Iterable[str]) -> tuple[list[str], list[str]]:
        allowed: list[str] = []
        refused: list[str] = []
        for mid in ids:
            (allowed if self.scope is None or mid in self.scope else refused).append(mid)
        return allowed, refused

    def _check_room_for(self, new: list[str]) -> None:
        fresh = [m for m in new if m not in self.subscribed]
        if len(self.subscribed) + len(fresh) > self.max_markets:
            raise ProtocolError(
                TOO_MANY_MARKETS,
                f"at most {self.max_markets} markets per connection; already subscribed to "
                f"{len(self.subscribed)}, asked for {len(fresh)} more",
            )

    def _forbidden(self, refused: list[str]) -> list[Action]:
        if not refused:
            return []
        ids = [market_id(m) for m in refused]
        return [
            Send(
                encode_error(
                    FORBIDDEN_MARKET,
                    f"the token does not allow markets {show(ids)}",
                    markets=ids,
                )
            )
        ]

    def _subscribe(self, message: dict[str, Any]) -> list[Action]:
        allowed, refused = self._split_scope(self._markets(message))
        self._check_room_for(allowed)
        actions: list[Action] = [
            Send(dumps({"type": "ack", "ok": True, "subscribed": [market_id(m) for m in allowed]}))
        ]
        actions += self._forbidden(refused)
        for mid in allowed:
            if mid not in self.subscribed:
                self.subscribed[mid] = None
                actions.append(Join(market_topic(mid)))
        return actions

    def _unsubscribe(self, message: dict[str, Any]) -> list[Action]:
        ids = self._markets(message)
        left = [m for m in ids if m in self.subscribed]
        actions: list[Action] = []
        for mid in left:
            del self.subscribed[mid]
            actions.append(Leave(market_topic(mid)))
        actions.append(
            Send(
                dumps(
                    {
                        "type": "ack",
                        "ok": True,
                        "unsubscribed": [market_id(m) for m in left],
                        "subscribed": [market_id(m) for m in self.subscribed],
                    }
                )
            )
        )
        return actions

    def _resume(self, message: dict[str, Any]) -> list[Action]:
        if "offsets" not in message:
            raise ProtocolError(INVALID_MESSAGE, "missing field: offsets")
        raw = message["offsets"]
        # An empty object is a valid no-op: the seed's client sends its offsets on every
        # open, and they start empty.
        if not isinstance(raw, dict):
            raise ProtocolError(
                INVALID_MESSAGE,
                f"expected offsets to be an object of marketId: lastSeq, got {show(raw)}",
            )
        positions: dict[str, tuple[int, str | None]] = {}
        for key, value in raw.items():
            mid = parse_market_id(key, field="each offsets key")
            positions[mid] = self._offset(key, value)
        allowed, refused = self._split_scope(positions)
        self._check_room_for(allowed)
        actions: list[Action] = [
            Send(
                dumps(
                    {
                        "type": "ack",
                        "ok": True,
                        "subscribed": [market_id(m) for m in allowed],
                        "resumed": [market_id(m) for m in allowed],
                    }
                )
            )
        ]
        actions += self._forbidden(refused)
        # Every Leave first, with the ack: a Join awaits, and a market still subscribed the
        # old way meanwhile would get updates after the ack that its replay then repeats.
        actions += [Leave(market_topic(mid)) for mid in allowed if mid in self.subscribed]
        for mid in allowed:
            self.subscribed[mid] = None
            seq, epoch = positions[mid]
            actions.append(Join(market_topic(mid), since=seq, epoch=epoch))
        return actions

    @staticmethod
    def _offset(key: str, value: object) -> tuple[int, str | None]:
        """An offset is lastSeq, or {"seq": lastSeq, "epoch": "..."} from a client that keeps
        the epoch of its last snapshot (then an epoch change is detected exactly)."""
        epoch = None
        if isinstance(value, dict):
            epoch = value.get("epoch")
            if epoch is not None and not isinstance(epoch, str):
                raise ProtocolError(
                    INVALID_MESSAGE, f"expected offsets[{key!r}].epoch to be a string"
                )
            value = value.get("seq")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ProtocolError(
                INVALID_MESSAGE,
                f"expected offsets[{key!r}] to be a last seq (an integer >= 0), got {show(value)}",
            )
        return value, epoch
