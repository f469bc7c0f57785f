"""One UOF connection's protocol state: client text in, actions out (sans-IO)."""

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
from rt.dialects.uof.codec import (
    BINARY_NOT_SUPPORTED,
    INVALID_JSON,
    INVALID_MESSAGE,
    TOO_MANY_SUBSCRIPTIONS,
    UNKNOWN_TYPE,
    encode_error,
)
from rt.jsontext import dumps, show
from rt.model import Json
from rt.topics import EVENT_PREFIX, event_of, event_topic, user_topic

#: What an event id may be: 1-64 characters of a safe set.
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


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
