"""What each dialect's clients are told when the shared store (Redis) is lost and back, in
their own terms (rt/ws/notices.py; the end-to-end case with a real redis-server is in
tests/rt/e2e/test_redis.py)."""

from __future__ import annotations

import json

from rt.dialects import DIALECTS, by_name

TS = 1_710_001_113_000
TOPICS = ["market:1001", "event:sr:match:1", "user:7", "match:3", "orderbook:IX2301"]


def told(dialect: str, available: bool) -> list[dict[str, object]]:
    codec = by_name(dialect).codec
    return [json.loads(t) for t in codec.encode_engine_status(available, TOPICS, ts=TS)]


def test_kmarket_hears_its_markets_are_suspended() -> None:
    [lost] = told("kmarket", False)
    assert (lost["type"], lost["event_type"]) == ("broadcast", "system_status")
    assert lost["data"]["markets"] == "suspended"  # type: ignore[index]
    assert lost["data"]["marketIds"] == [1001]  # type: ignore[index]


def test_uof_hears_a_bet_stop_for_each_event_it_follows() -> None:
    stop, notice = told("uof", False)
    assert stop == {
        "type": "bet_stop",
        "ts": TS,
        "payload": {"eventId": "sr:match:1", "status": "suspended", "reason": "engine_unavailable"},
    }
    assert "seq" not in stop  # outside the event's stream
    assert notice["type"] == "broadcast"


def test_the_other_dialects_hear_an_error() -> None:
    [predictions] = told("predictions", False)
    assert predictions["event_type"] == "error"
    assert predictions["data"]["code"] == "ENGINE_UNAVAILABLE"  # type: ignore[index]
    [topics] = told("topics", False)
    assert (topics["type"], topics["error_code"]) == ("error", "engine_unavailable")
    [trading] = told("trading", False)
    assert (trading["type"], trading["code"]) == ("error", 1010)


def test_every_dialect_hears_the_store_is_back() -> None:
    for dialect in DIALECTS:
        [back] = told(dialect.name, True)
        assert "system_status" in json.dumps(back), (dialect.name, back)
        assert '"available"' in json.dumps(back)
