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

from rt.dialects.base import ENGINE_BACK, ENGINE_LOST
from rt.jsontext import dumps
from rt.model import Json, Update
from rt.topics import EVENT_PREFIX, event_of, is_user_topic

__all__ = ["CODEC", "UofCodec", "encode_error"]


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

    def encode_engine_status(self, available: bool, topics: list[str], *, ts: int) -> list[str]:
        notice = self.encode_broadcast(
            "system_status", ENGINE_BACK if available else ENGINE_LOST, ts=ts
        )
        if available:
            return [notice]
        # Every event stops taking bets, as a whole-event bet_stop (no marketId; outside the
        # event's stream, so no seq); its markets' real states come again when it is back.
        stops = [
            dumps(
                {
                    "type": "bet_stop",
                    "ts": ts,
                    "payload": {
                        "eventId": event_of(t),
                        "status": "suspended",
                        "reason": "engine_unavailable",
                    },
                }
            )
            for t in topics
            if t.startswith(EVENT_PREFIX)
        ]
        return [*stops, notice]


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
