"""One KMarket connection's protocol state: client text in, actions out (sans-IO)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rt.dialects.base import Action, Join, Leave, ProtocolError, Send, parse_message
from rt.dialects.kmarket.codec import (
    BINARY_NOT_SUPPORTED,
    CODEC,
    FORBIDDEN_MARKET,
    INVALID_JSON,
    INVALID_MESSAGE,
    TOO_MANY_MARKETS,
    UNKNOWN_TYPE,
    encode_error,
    parse_market_id,
)
from rt.jsontext import dumps, show
from rt.model import Json
from rt.topics import MARKET_PREFIX, market_id, market_topic


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
