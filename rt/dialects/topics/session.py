"""One topics-dialect connection (seed 004): client text in, actions out (sans-IO).

``subscribe`` answers ``subscribe_ack`` and then joins the topic, so the first message after
the ack is the current candle (the room's snapshot). ``unsubscribe`` answers
``unsubscribe_ack``; ``ping`` answers ``pong``. Every error is an ``error`` message and the
connection stays: ``invalid_message`` (not JSON, not an object, no or an unknown ``type``, no
string ``topic``), ``invalid_topic`` (the topic's form, type, symbol or interval), and
``subscription_failed`` (no source for it, or the per-connection cap). Subscribing twice, or
unsubscribing from a topic not subscribed, is acknowledged and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rt.dialects.base import Action, Join, Leave, ProtocolError, Send, parse_message
from rt.dialects.topics.codec import (
    INVALID_MESSAGE,
    INVALID_TOPIC,
    SUBSCRIPTION_FAILED,
    encode_error,
    iso,
)
from rt.dialects.topics.names import INTERVALS, TYPES, InvalidTopic, Topic, parse_topic
from rt.jsontext import dumps, show
from rt.model import Json

#: What the client may send.
COMMANDS = ("subscribe", "unsubscribe", "ping")


class TopicsSession:
    def __init__(
        self,
        *,
        client_id: str,
        has_source: Callable[[Topic], bool],
        max_topics: int,
        messages_per_s: float,
        burst: int,
        wall_ms: Callable[[], int],
    ) -> None:
        self.client_id = client_id
        self.has_source = has_source
        self.max_topics = max_topics
        self.messages_per_s = messages_per_s
        self.burst = burst
        self._wall_ms = wall_ms
        #: Client topic -> rt's topic, in subscription order.
        self.subscribed: dict[str, str] = {}

    def _now(self) -> str:
        return iso(self._wall_ms())

    def _error(self, code: str, message: str) -> Send:
        return Send(encode_error(code, message, ms=self._wall_ms()), error=True)

    def opened(self) -> list[Action]:
        ack = {
            "type": "connection_ack",
            "client_id": self.client_id,
            "timestamp": self._now(),
            # Beyond the seed: what a client would otherwise have to guess.
            "limits": {
                "topics_per_connection": self.max_topics,
                "messages_per_second": self.messages_per_s,
                "burst": self.burst,
            },
            "types": list(TYPES),
            "intervals": list(INTERVALS),
        }
        return [Send(dumps(ack))]

    def subscriptions(self) -> int:
        return len(self.subscribed)

    def forget(self, topic: str) -> None:
        for name, internal in list(self.subscribed.items()):
            if internal == topic:
                del self.subscribed[name]

    def ticket_answer(self, answer: Json) -> str:
        raise TypeError("the topics dialect has no tickets")

    def handle_binary(self) -> list[Action]:
        return [self._error(INVALID_MESSAGE, "binary frames are not supported; send JSON text")]

    def handle_text(self, text: str) -> list[Action]:
        try:
            message = parse_message(text, bad_json=INVALID_MESSAGE, bad_message=INVALID_MESSAGE)
            kind = message["type"]
            if kind == "ping":
                return [Send(dumps({"type": "pong", "timestamp": self._now()}))]
            if kind == "subscribe":
                return self._subscribe(self._topic(message))
            if kind == "unsubscribe":
                return self._unsubscribe(self._topic(message))
            raise ProtocolError(
                INVALID_MESSAGE,
                f"unknown message type {show(kind)}; valid types: {', '.join(COMMANDS)}",
            )
        except ProtocolError as exc:
            return [self._error(exc.code, exc.message)]

    def _topic(self, message: dict[str, Any]) -> Topic:
        raw = message.get("topic")
        if not isinstance(raw, str):
            what = "missing" if raw is None else f"expected a string, got {show(raw)}"
            raise ProtocolError(INVALID_MESSAGE, f"{message['type']}: topic is {what}")
        try:
            return parse_topic(raw)
        except InvalidTopic as exc:
            raise ProtocolError(INVALID_TOPIC, str(exc)) from None

    def _ack(self, kind: str, topic: Topic) -> Send:
        return Send(dumps({"type": kind, "topic": str(topic), "timestamp": self._now()}))

    def _subscribe(self, topic: Topic) -> list[Action]:
        name = str(topic)
        if name in self.subscribed:
            return [self._ack("subscribe_ack", topic)]
        if len(self.subscribed) >= self.max_topics:
            raise ProtocolError(
                SUBSCRIPTION_FAILED,
                f"cannot subscribe to {name}: at most {self.max_topics} topics per connection",
            )
        if not self.has_source(topic):
            what = f"region {topic.symbol}" if topic.is_summary else topic.instrument
            raise ProtocolError(
                SUBSCRIPTION_FAILED, f"cannot subscribe to {name}: no data source for {what}"
            )
        self.subscribed[name] = topic.internal
        return [self._ack("subscribe_ack", topic), Join(topic.internal)]

    def _unsubscribe(self, topic: Topic) -> list[Action]:
        internal = self.subscribed.pop(str(topic), None)
        ack = self._ack("unsubscribe_ack", topic)
        return [ack] if internal is None else [Leave(internal), ack]
