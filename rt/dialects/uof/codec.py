"""The UOF/MTS dialect (seed 000): ``/ws?userId=&token=``.

Every message is ``{"type": ..., "payload": {...}}`` as in the seed; messages of a stream
(an event's odds, or the user's bet results) also carry ``seq`` (and ``ts``), so a client can
detect a gap and resume. docs/protocol/uof.md is the reference.

Streams. Each event ``sr:match:1`` is the topic ``event:sr:match:1``, whose state is
``{"eventId", "status", "markets": {"<marketId>": {"status", "outcomes": {...}, "result"}}}``
(docs/feeds.md). A feed publishes one market per update, so each update becomes exactly one
client message: ``odds_change``, ``bet_stop`` or ``bet_settlement`` by the market's new status.
The user's private stream is the topic ``user:<userId>``; each update there is a bet result.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rt.dialects.base import (
    FROM_LAST_DELIVERED,
    Action,
    Join,
    Leave,
    ProtocolError,
    Send,
    Submit,
    parse_message,
)
from rt.jsontext import dumps, show
from rt.model import Json, Update
from rt.topics import EVENT_PREFIX, event_of, event_topic, is_user_topic, user_topic

__all__ = ["CODEC", "UofCodec", "UofSession", "event_topic", "user_topic"]


_EVENT_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")

INVALID_JSON = "INVALID_JSON"
INVALID_MESSAGE = "INVALID_MESSAGE"
UNKNOWN_TYPE = "UNKNOWN_TYPE"
BINARY_NOT_SUPPORTED = "BINARY_NOT_SUPPORTED"
TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"


def _wire_id(key: str) -> int | str:
    return int(key) if key.isdigit() else key


def encode_error(code: str, message: str) -> str:
    return dumps({"type": "error", "payload": {"code": code, "message": message}})


def _outcomes(outcomes: Json) -> list[dict[str, Json]]:
    if not isinstance(outcomes, dict):
        return []
    return [{"outcomeId": k, "odds": v} for k, v in outcomes.items() if v is not None]


def _market_view(market_id: str, market: Json) -> dict[str, Json]:
    market = market if isinstance(market, dict) else {}
    view: dict[str, Json] = {"marketId": _wire_id(market_id)}
    if "status" in market:
        view["status"] = market["status"]
    if "outcomes" in market:
        view["outcomes"] = _outcomes(market["outcomes"])
    if isinstance(market.get("result"), dict):
        view["result"] = [{"outcomeId": k, "result": v} for k, v in market["result"].items()]
    return view


class UofCodec:
    """Stateless encoder for the UOF dialect; one shared instance, ``CODEC``."""

    name = "uof"

    def encode_error(self, code: str, message: str) -> str:
        return encode_error(code, message)

    def _stream_message(self, kind: str, seq: int, ts: int, payload: Json, **extra: Json) -> str:
        return dumps({"type": kind, "seq": seq, "ts": ts, **extra, "payload": payload})

    def encode_update(self, update: Update) -> str:
        if is_user_topic(update.topic):
            return self._stream_message("bet_result", update.seq, update.ts, update.data)
        kind, payload = self._event_message(event_of(update.topic), update.data)
        return self._stream_message(kind, update.seq, update.ts, payload)

    @staticmethod
    def _event_message(event_id: str, patch: Json) -> tuple[str, dict[str, Json]]:
        markets = patch.get("markets") if isinstance(patch, dict) else None
        if isinstance(markets, dict) and len(markets) == 1:
            ((market_id, market),) = markets.items()
            view = _market_view(market_id, market)
            payload: dict[str, Json] = {"eventId": event_id, **view}
            if isinstance(patch, dict) and "status" in patch:
                payload["eventStatus"] = patch["status"]
            status = view.get("status")
            if status == "settled":
                payload["outcomes"] = payload.pop("result", [])
                return "bet_settlement", payload
            if status == "suspended" and "outcomes" not in view:
                return "bet_stop", payload
            return "odds_change", payload
        # Not one market (an admin patch, a coalesced backlog): the changed markets as a list.
        return "event_update", _event_view(event_id, patch)

    def encode_conflated(self, topic: str, *, from_seq: int, seq: int, ts: int, patch: Json) -> str:
        if is_user_topic(topic):  # never happens: the user lane is lossless
            raise ValueError("user streams are never conflated")
        payload = _event_view(event_of(topic), patch)
        return self._stream_message(
            "event_update", seq, ts, payload, conflated=True, fromSeq=from_seq
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
        extra: dict[str, Json] = {"epoch": epoch}
        if resync:
            extra["resync"] = True
        if recovered is not None:
            extra["recovered"] = recovered
        if reason is not None:
            extra["reason"] = reason
        if is_user_topic(topic):
            return self._stream_message("user_snapshot", seq, ts, {}, **extra)
        payload = _event_view(event_of(topic), state)
        return self._stream_message("snapshot", seq, ts, payload, **extra)

    def encode_resumed(
        self, topic: str, *, recovered: bool, from_seq: int, to_seq: int, reason: str | None
    ) -> str:
        payload: dict[str, Json] = {
            "stream": _stream_name(topic),
            "recovered": recovered,
            "fromSeq": from_seq,
            "toSeq": to_seq,
        }
        if reason is not None:
            payload["reason"] = reason
        return dumps({"type": "resumed", "payload": payload})

    def encode_broadcast(self, event_type: str, data: Json, *, ts: int) -> str:
        payload: dict[str, Json] = {"eventType": event_type, "data": data, "serverTime": ts}
        return dumps({"type": "broadcast", "payload": payload})


def _event_view(event_id: str, state: Json) -> dict[str, Json]:
    state = state if isinstance(state, dict) else {}
    view: dict[str, Json] = {"eventId": event_id}
    if "status" in state:
        view["status"] = state["status"]
    markets = state.get("markets")
    view["markets"] = (
        [_market_view(k, v) for k, v in markets.items() if v is not None]
        if isinstance(markets, dict)
        else []
    )
    return view


def _stream_name(topic: str) -> str:
    return "user" if is_user_topic(topic) else event_of(topic)


CODEC = UofCodec()


class UofSession:
    """One UOF connection: its user, its subscribed events, its ticket submissions."""

    def __init__(
        self,
        *,
        user_id: int | str,
        connection_id: str,
        max_subscriptions: int,
        wall_ms: Callable[[], int],
    ) -> None:
        self.user_id = user_id
        self.connection_id = connection_id
        self.max_subscriptions = max_subscriptions
        self._wall_ms = wall_ms
        self.subscribed: dict[str, None] = {}

    def opened(self) -> list[Action]:
        hello = {
            "type": "connection_established",
            "payload": {
                "userId": self.user_id,
                "connectionId": self.connection_id,
                "serverTime": self._wall_ms(),
            },
        }
        return [
            Send(dumps(hello)),
            Join(user_topic(self.user_id), since=FROM_LAST_DELIVERED, announce=False),
        ]

    def subscriptions(self) -> int:
        return len(self.subscribed)

    def forget(self, topic: str) -> None:
        if topic.startswith(EVENT_PREFIX):
            self.subscribed.pop(event_of(topic), None)

    def handle_binary(self) -> list[Action]:
        return [
            Send(
                encode_error(BINARY_NOT_SUPPORTED, "binary frames are not supported; send JSON"),
                error=True,
            )
        ]

    def handle_text(self, text: str) -> list[Action]:
        try:
            message = self._parse(text)
            kind = message["type"]
            if kind == "subscribe":
                return self._subscribe(self._event_ids(message))
            if kind == "unsubscribe":
                return self._unsubscribe(self._event_ids(message))
            if kind == "ping":
                return [Send(dumps({"type": "pong", "payload": {"serverTime": self._wall_ms()}}))]
            if kind == "resume":
                return self._resume(message)
            if kind == "submit_ticket":
                return [Submit(self._payload(message))]
            raise ProtocolError(
                UNKNOWN_TYPE,
                f"unknown message type {show(kind)}; "
                "expected subscribe, unsubscribe, ping, resume or submit_ticket",
            )
        except ProtocolError as exc:
            return [Send(encode_error(exc.code, exc.message), error=True)]

    def ticket_answer(self, answer: Json) -> str:
        if isinstance(answer, ProtocolError):
            return encode_error(answer.code, answer.message)
        return dumps({"type": "ticket_received", "payload": answer})

    # -- parsing ----------------------------------------------------------------------

    @staticmethod
    def _parse(text: str) -> dict[str, Any]:
        return parse_message(text, bad_json=INVALID_JSON, bad_message=INVALID_MESSAGE)

    @staticmethod
    def _payload(message: dict[str, Any]) -> dict[str, Any]:
        payload = message.get("payload")
        if not isinstance(payload, dict):
            raise ProtocolError(
                INVALID_MESSAGE, f"expected payload to be an object, got {show(payload)}"
            )
        return payload

    def _event_ids(self, message: dict[str, Any]) -> list[str]:
        # The seed wraps fields in "payload"; a bare {"eventIds": [...]} is accepted too.
        source = message.get("payload", message)
        if not isinstance(source, dict) or "eventIds" not in source:
            raise ProtocolError(INVALID_MESSAGE, "missing field: payload.eventIds")
        raw = source["eventIds"]
        if not isinstance(raw, list) or not raw:
            raise ProtocolError(
                INVALID_MESSAGE,
                f"expected payload.eventIds to be a non-empty list of event ids, got {show(raw)}",
            )
        for value in raw:
            if not isinstance(value, str) or not _EVENT_ID.fullmatch(value):
                raise ProtocolError(
                    INVALID_MESSAGE,
                    "expected each event id to be a string of 1-64 characters "
                    f"[A-Za-z0-9_.:-] such as 'sr:match:12345', got {show(value)}",
                )
        return list(dict.fromkeys(raw))

    # -- commands ---------------------------------------------------------------------

    def _check_room_for(self, ids: list[str]) -> None:
        fresh = [e for e in ids if e not in self.subscribed]
        if len(self.subscribed) + len(fresh) > self.max_subscriptions:
            raise ProtocolError(
                TOO_MANY_SUBSCRIPTIONS,
                f"at most {self.max_subscriptions} events per connection; already subscribed "
                f"to {len(self.subscribed)}, asked for {len(fresh)} more",
            )

    def _subscribe(self, ids: list[str]) -> list[Action]:
        self._check_room_for(ids)
        actions: list[Action] = [Send(dumps({"type": "subscribed", "payload": {"eventIds": ids}}))]
        for event_id in ids:
            if event_id not in self.subscribed:
                self.subscribed[event_id] = None
                actions.append(Join(event_topic(event_id)))
        return actions

    def _unsubscribe(self, ids: list[str]) -> list[Action]:
        left = [e for e in ids if e in self.subscribed]
        actions: list[Action] = []
        for event_id in left:
            del self.subscribed[event_id]
            actions.append(Leave(event_topic(event_id)))
        actions.append(Send(dumps({"type": "unsubscribed", "payload": {"eventIds": left}})))
        return actions

    def _resume(self, message: dict[str, Any]) -> list[Action]:
        payload = self._payload(message)
        offsets = payload.get("offsets")
        if not isinstance(offsets, dict) or not offsets:
            raise ProtocolError(
                INVALID_MESSAGE,
                "expected payload.offsets to be a non-empty object of stream: lastSeq "
                f'(an event id, or "user"), got {show(offsets)}',
            )
        positions: dict[str, int] = {}
        for stream, seq in offsets.items():
            if stream != "user" and not _EVENT_ID.fullmatch(stream):
                raise ProtocolError(INVALID_MESSAGE, f"unknown stream {show(stream)} in offsets")
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                raise ProtocolError(
                    INVALID_MESSAGE,
                    f"expected offsets[{stream!r}] to be a last seq (an integer >= 0), "
                    f"got {show(seq)}",
                )
            positions[stream] = seq
        events = [s for s in positions if s != "user"]
        self._check_room_for(events)
        actions: list[Action] = [
            Send(dumps({"type": "subscribed", "payload": {"eventIds": events, "resumed": True}}))
        ]
        topics = {
            stream: user_topic(self.user_id) if stream == "user" else event_topic(stream)
            for stream in positions
        }
        # Every Leave first: a Join awaits, and a stream still joined the old way meanwhile
        # would get live messages that its replay then repeats.
        actions += [Leave(topics[s]) for s in positions if s == "user" or s in self.subscribed]
        for stream, seq in positions.items():
            if stream != "user":
                self.subscribed[stream] = None
            actions.append(Join(topics[stream], since=seq))
        return actions
