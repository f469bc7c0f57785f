"""Encoding the predictions dialect (seed 002): every message is a RealtimeEvent.

A published event is stored in the engine as the client receives it, so an update is its
data, sent as it is. A client that fell behind on a topic, and had events dropped for it, gets
one ``data_refresh`` event in their place (``reason: "resync"``, with the match or the
subscription type, and the topic's ``seq``): it should fetch what it shows again. Errors are
``{"event_type": "error", "data": {"code", "message"}, "timestamp"}``.
"""

from __future__ import annotations

from rt.dialects.base import ENGINE_BACK, ENGINE_LOST, ENGINE_UNAVAILABLE
from rt.dialects.predictions.events import DATA_REFRESH, realtime_event
from rt.jsontext import dumps
from rt.model import Json, Update
from rt.settings import wall_ms
from rt.topics import ALL_PREFIX, MATCH_PREFIX

__all__ = ["CODEC", "PredictionsCodec", "encode_error", "encode_event"]


def encode_event(event_type: str, data: Json, *, ms: int) -> str:
    return dumps(realtime_event(event_type, data, ms))


def encode_error(code: str, message: str, *, ms: int | None = None) -> str:
    data = {"code": code, "message": message}
    return encode_event("error", data, ms=wall_ms() if ms is None else ms)


def _refresh(topic: str, seq: int, ts: int, reason: str) -> str:
    data: dict[str, Json] = {"reason": reason}
    if topic.startswith(MATCH_PREFIX):
        data["match_id"] = int(topic[len(MATCH_PREFIX) :])
    elif topic.startswith(ALL_PREFIX):
        data["subscription_type"] = topic[len(ALL_PREFIX) :]
    data["seq"] = seq
    return encode_event(DATA_REFRESH, data, ms=ts or wall_ms())


class PredictionsCodec:
    """Stateless encoder; one shared instance, ``CODEC``."""

    name = "predictions"

    def encode_error(self, code: str, message: str) -> str:
        return encode_error(code, message)

    def encode_update(self, update: Update) -> str:
        return dumps(update.data)

    def encode_conflated(self, topic: str, *, from_seq: int, seq: int, ts: int, patch: Json) -> str:
        # Events are never merged (they are not patches); say what a merge would have lost.
        return _refresh(topic, seq, ts, "conflated")

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
        # Sessions join quietly (no snapshot); one comes only in place of dropped events.
        return _refresh(topic, seq, ts, reason or "resync")

    def encode_resumed(
        self, topic: str, *, recovered: bool, from_seq: int, to_seq: int, reason: str | None
    ) -> str:
        raise TypeError("the predictions dialect does not resume")  # its sessions never ask

    def encode_broadcast(self, event_type: str, data: Json, *, ts: int) -> str:
        return encode_event(event_type, data, ms=ts)

    def encode_engine_status(self, available: bool, topics: list[str], *, ts: int) -> list[str]:
        if available:
            return [encode_event("system_status", ENGINE_BACK, ms=ts)]
        return [encode_error(ENGINE_UNAVAILABLE, str(ENGINE_LOST["message"]), ms=ts)]


CODEC = PredictionsCodec()
