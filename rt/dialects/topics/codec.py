"""Encoding the topics dialect (seed 004): rt's events in, the seed's JSON text out.

Every message has a ``type`` and a ``timestamp``. Timestamps are written as the seed shows
them: ISO 8601 in UTC without an offset, to the microsecond (``2025-09-22T05:16:02.800339``);
candle times the same way.

A candle topic's state in the engine is the current candle (times in ms since the epoch); a
summary topic's state is the region's latest summary. Every publish carries the whole candle,
so an update, a conflated run of updates (latest wins) and a snapshot are all one ``candle``
message: the client's view is always a whole candle. ``seq`` is the topic's sequence number:
it grows by one with every message rt publishes on the topic, so a gap means the client
missed some (a client that fell behind gets the latest candle instead of the ones between).
"""

from __future__ import annotations

from datetime import UTC, datetime

from rt.dialects.base import ENGINE_BACK, ENGINE_LOST, ENGINE_UNAVAILABLE
from rt.dialects.topics.names import client_topic
from rt.jsontext import dumps
from rt.model import Json, Update
from rt.settings import wall_ms
from rt.topics import SUMMARY_PREFIX

__all__ = ["CODEC", "TopicsCodec", "encode_error", "iso"]

# The seed's error codes.
INVALID_TOPIC = "invalid_topic"
INVALID_MESSAGE = "invalid_message"
SUBSCRIPTION_FAILED = "subscription_failed"

#: rt's shared refusals (rt/ws/connection.py, rt/ws/listener.py) in the seed's codes: a
#: subscription refused by a limit failed; anything else about a message is invalid_message.
_SHARED_CODES = {
    "TOO_MANY_SUBSCRIPTIONS": SUBSCRIPTION_FAILED,
    "TOO_MANY_NEW_TOPICS": SUBSCRIPTION_FAILED,
    "FORBIDDEN_MARKET": SUBSCRIPTION_FAILED,
    "TOO_MANY_CONNECTIONS": "too_many_connections",
    "ENGINE_UNAVAILABLE": "engine_unavailable",
}


def iso(ms: int) -> str:
    """``ms`` since the epoch as the seed writes times: UTC, no offset, microseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def encode_error(code: str, message: str, *, ms: int | None = None) -> str:
    code = _SHARED_CODES.get(code, code if code.islower() else INVALID_MESSAGE)
    return dumps(
        {
            "type": "error",
            "error_code": code,
            "error_message": message,
            "timestamp": iso(wall_ms() if ms is None else ms),
        }
    )


def _message(topic: str, seq: int, state: Json) -> dict[str, Json]:
    assert isinstance(state, dict)
    if topic.startswith(SUMMARY_PREFIX):
        return {
            "type": "summary",
            "topic": client_topic(topic),
            "seq": seq,
            **{k: v for k, v in state.items() if k != "as_of"},
            "timestamp": iso(state["as_of"]),
        }
    return {
        "type": "candle",
        "topic": client_topic(topic),
        "seq": seq,
        "open_time": iso(state["open_time"]),
        "close_time": iso(state["close_time"]),
        "open": state["open"],
        "high": state["high"],
        "low": state["low"],
        "close": state["close"],
        "volume": state["volume"],
        "trades": state["trades"],
        "closed": state["closed"],
        "timestamp": iso(state["updated"]),
    }


class TopicsCodec:
    """Stateless encoder; one shared instance, ``CODEC``."""

    name = "topics"

    def encode_error(self, code: str, message: str) -> str:
        return encode_error(code, message)

    def encode_update(self, update: Update) -> str:
        return dumps(_message(update.topic, update.seq, update.data))

    def encode_conflated(self, topic: str, *, from_seq: int, seq: int, ts: int, patch: Json) -> str:
        # Every publish holds the whole candle (or summary): the merged patch is the latest.
        return dumps(_message(topic, seq, patch))

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
        return dumps(_message(topic, seq, state))

    def encode_resumed(
        self, topic: str, *, recovered: bool, from_seq: int, to_seq: int, reason: str | None
    ) -> str:
        raise TypeError("the topics dialect does not resume")  # its sessions never ask to

    def encode_broadcast(self, event_type: str, data: Json, *, ts: int) -> str:
        return dumps(
            {"type": "broadcast", "event_type": event_type, "data": data, "timestamp": iso(ts)}
        )

    def encode_engine_status(self, available: bool, topics: list[str], *, ts: int) -> list[str]:
        if available:
            return [self.encode_broadcast("system_status", ENGINE_BACK, ts=ts)]
        return [encode_error(ENGINE_UNAVAILABLE, str(ENGINE_LOST["message"]), ms=ts)]


CODEC = TopicsCodec()
