"""The predictions dialect (seed 002) over real sockets: connect, subscribe with filters,
tiers, events published with POST /realtime/broadcast, stats, and every bad input."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio

from rt.dialects.predictions.events import iso
from rt.server import Server
from tests.rt.ops._support import scrape

from ._support import FIXED_TS, TIMEOUT_S, Peer, connect, make_token, open_peer, upgrade_status

ROOT = Path(__file__).parents[3]
SEED_002 = ROOT.parent / "shared" / "seeds" / "002_03fd2fb7a028a3c2.txt"
STAMP = iso(FIXED_TS)

PREDICTION = {
    "prediction_id": 123,
    "match_id": 456,
    "home_team": "曼联",
    "away_team": "切尔西",
    "prediction": "home_win",
    "confidence": 0.75,
    "home_win_prob": 0.65,
    "draw_prob": 0.25,
    "away_win_prob": 0.10,
    "expected_value": 0.12,
    "strategy": "ml_ensemble",
}
KICK_OFF = {
    "match_id": 456,
    "home_team": "曼联",
    "away_team": "切尔西",
    "league": "英超",
    "start_time": "2025-10-29T20:00:00Z",
    "venue": "老特拉福德球场",
}


@asynccontextmanager
async def predictions_peer(
    server: Server, resource: str = "/realtime/ws"
) -> AsyncIterator[tuple[Peer, dict[str, Any]]]:
    """A client on ``resource``, past its connection_status (returned with it)."""
    async with trio.open_nursery() as nursery:
        peer = await open_peer(nursery, server, resource)
        try:
            status = await peer.recv()
            assert status["event_type"] == "connection_status", status
            yield peer, status
        finally:
            await peer.aclose()


async def subscribe(peer: Peer, kind: str | None, **filters: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"filters": filters}
    if kind is not None:
        data["subscription_type"] = kind
    await peer.send({"type": "subscribe", "data": data})
    changed = await peer.recv()
    assert changed["event_type"] == "user_subscription_changed", changed
    return changed


async def broadcast(
    http: httpx.AsyncClient, admin: dict[str, str], event_type: str, data: Any, **extra: Any
) -> dict[str, Any]:
    body = {"event_type": event_type, "data": data, **extra}
    response = await http.post("/realtime/broadcast", json=body, headers=admin)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def next_is(peer: Peer, *expected: dict[str, Any]) -> None:
    """The next messages are ``expected``, and nothing before the heartbeat's answer."""
    for event in expected:
        assert await peer.recv() == event
    await peer.send({"type": "heartbeat"})
    assert (await peer.recv())["event_type"] == "heartbeat"


def event(event_type: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"event_type": event_type, "data": data, "timestamp": STAMP, **extra}


async def test_connection_status_comes_first_and_every_change_is_confirmed(
    server: Server,
) -> None:
    async with predictions_peer(server, "/realtime/ws?user_id=user123&session_id=s-1") as (
        peer,
        status,
    ):
        assert status["timestamp"] == STAMP
        data = status["data"]
        assert data["status"] == "connected"
        assert (data["user_id"], data["session_id"], data["tier"]) == ("user123", "s-1", "free")
        assert data["authenticated"] is False
        assert data["event_types"] == ["prediction_created", "match_started"]
        assert data["subscription_types"] == [
            "predictions",
            "matches",
            "odds",
            "system_alerts",
            "analytics",
        ]
        changed = await subscribe(peer, "predictions", min_confidence=0.7)
        assert changed == event(
            "user_subscription_changed",
            {
                "action": "subscribe",
                "subscription_types": ["predictions"],
                "tier": "free",
                "subscriptions": [
                    {
                        "subscription_type": "predictions",
                        "filters": {"min_confidence": 0.7},
                        "event_types": ["prediction_created"],
                        "held_back_event_types": [
                            "prediction_updated",
                            "prediction_completed",
                            "data_refresh",
                        ],
                    }
                ],
            },
        )
        await subscribe(peer, "matches", match_ids=[456])
        await peer.send({"type": "unsubscribe", "data": {"subscription_type": "predictions"}})
        changed = await peer.recv()
        assert changed["data"]["action"] == "unsubscribe"
        assert [s["subscription_type"] for s in changed["data"]["subscriptions"]] == ["matches"]


async def test_events_reach_the_connections_their_filters_and_tiers_allow(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    premium = quote(make_token("pro-1", tier="premium"))
    async with (
        predictions_peer(server, f"/realtime/ws?token={premium}") as (pro, pro_status),
        predictions_peer(server) as (free, _),
        predictions_peer(server) as (leagues, _),
    ):
        assert (pro_status["data"]["tier"], pro_status["data"]["user_id"]) == ("premium", "pro-1")
        await subscribe(pro, "predictions", match_ids=[456], min_confidence=0.7)
        await subscribe(free, "predictions")
        await subscribe(leagues, "matches", leagues=["英超"])

        answer = await broadcast(
            http, admin, "prediction_created", PREDICTION, source="ml", correlation_id="c-1"
        )
        assert answer["topic"] == "match:456" and answer["seq"] == 1
        assert answer["matched"] == 2
        created = event("prediction_created", PREDICTION, source="ml", correlation_id="c-1")
        assert await pro.recv() == created
        assert await free.recv() == created

        # Free connections get prediction_created and match_started only.
        updated = {**PREDICTION, "confidence": 0.8}
        answer = await broadcast(http, admin, "prediction_updated", updated)
        assert (answer["topic"], answer["seq"], answer["matched"]) == ("match:456", 2, 1)
        # Another match: only the connection without match_ids.
        other = {**PREDICTION, "match_id": 999, "confidence": 0.9}
        assert (await broadcast(http, admin, "prediction_created", other))["matched"] == 1
        # Below the minimum confidence, and without any confidence: not for `pro`.
        low = {**PREDICTION, "confidence": 0.5}
        no_confidence = {k: v for k, v in PREDICTION.items() if k != "confidence"}
        await broadcast(http, admin, "prediction_created", low)
        await broadcast(http, admin, "prediction_created", no_confidence)
        answer = await broadcast(http, admin, "match_started", KICK_OFF)
        assert (answer["topic"], answer["seq"], answer["matched"]) == ("match:456", 5, 1)
        await broadcast(http, admin, "match_started", {**KICK_OFF, "league": "西甲"})

        await next_is(pro, event("prediction_updated", updated))
        await next_is(
            free,
            event("prediction_created", other),
            event("prediction_created", low),
            event("prediction_created", no_confidence),
        )
        await next_is(leagues, event("match_started", KICK_OFF))

        metrics = await scrape(http)
        stats = (await http.get("/realtime/stats")).json()["tiers"]
        for tier in ("free", "premium"):
            counts = stats[tier]
            assert metrics.value("rt_tier_connections", tier=tier) == counts["connections"]
            assert (
                metrics.value("rt_tier_events_delivered_total", tier=tier)
                == counts["events_delivered"]
            )
            for reason in ("tier", "filter"):
                assert (
                    metrics.value("rt_tier_events_held_back_total", tier=tier, reason=reason)
                    == counts[f"events_held_back_by_{reason}"]
                )
        assert stats["premium"]["connections"] == 1 and stats["free"]["connections"] == 2
        assert stats["premium"]["events_delivered"] == 2
        assert stats["free"]["events_delivered"] == 5  # 4 predictions, 1 kick-off
        assert stats["free"]["events_held_back_by_tier"] == 1  # prediction_updated
        # pro: low and no confidence (another match's never reached it); leagues: 西甲.
        assert stats["premium"]["events_held_back_by_filter"] == 2
        assert stats["free"]["events_held_back_by_filter"] == 1


async def test_each_event_reaches_a_connection_once_whatever_its_subscriptions(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    premium = quote(make_token("pro-1", tier="premium"))
    async with predictions_peer(server, f"/realtime/ws?token={premium}") as (peer, _):
        await subscribe(peer, "predictions")  # every match
        await subscribe(peer, "matches", match_ids=[456])
        await subscribe(peer, "odds", match_ids=[456, 457])
        refresh = {"match_id": 456, "reason": "recalculated"}
        answer = await broadcast(http, admin, "data_refresh", refresh)
        assert answer["matched"] == 1
        odds = {"match_id": 457, "home_odds": 2.1}
        await broadcast(http, admin, "prediction_created", PREDICTION)
        await broadcast(http, admin, "match_started", KICK_OFF)
        await broadcast(http, admin, "odds_updated", odds)
        await broadcast(http, admin, "match_started", {**KICK_OFF, "match_id": 457})
        alert = {"alert_type": "warning", "message": "数据库连接异常"}
        await broadcast(http, admin, "system_alert", alert)
        await next_is(
            peer,
            event("data_refresh", refresh),
            event("prediction_created", PREDICTION),
            event("match_started", KICK_OFF),
            event("odds_updated", odds),
        )


async def test_the_dedicated_endpoints_subscribe_from_their_query(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    leagues = quote("英超,西甲")
    async with (
        predictions_peer(server, "/realtime/ws/predictions?match_ids=1,2,3&min_confidence=0.7") as (
            predictions,
            _,
        ),
        predictions_peer(server, f"/realtime/ws/matches?match_ids=1,2,3&leagues={leagues}") as (
            matches,
            _,
        ),
    ):
        changed = await predictions.recv()
        assert changed["event_type"] == "user_subscription_changed"
        (sub,) = changed["data"]["subscriptions"]
        assert sub["subscription_type"] == "predictions"
        assert sub["filters"] == {"match_ids": [1, 2, 3], "min_confidence": 0.7}
        changed = await matches.recv()
        (sub,) = changed["data"]["subscriptions"]
        assert sub["subscription_type"] == "matches"
        assert sub["filters"] == {"match_ids": [1, 2, 3], "leagues": ["英超", "西甲"]}

        two = {**PREDICTION, "match_id": 2}
        await broadcast(http, admin, "prediction_created", two)
        await broadcast(http, admin, "prediction_created", PREDICTION)  # match 456
        kick_off = {**KICK_OFF, "match_id": 3, "league": "西甲"}
        await broadcast(http, admin, "match_started", kick_off)
        await next_is(predictions, event("prediction_created", two))
        await next_is(matches, event("match_started", kick_off))

    async with predictions_peer(server, "/realtime/ws/predictions?min_confidence=high") as (
        peer,
        _,
    ):
        error = await peer.recv()
        assert error["event_type"] == "error"
        assert error["data"]["code"] == "INVALID_FILTER"
        await next_is(peer)


async def test_a_free_connection_is_told_what_it_will_get_not_refused(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async with predictions_peer(server) as (peer, _):
        changed = await subscribe(peer, "odds", event_types=["odds_updated"])
        (sub,) = changed["data"]["subscriptions"]
        assert sub["event_types"] == []
        assert sub["held_back_event_types"] == ["odds_updated"]
        await broadcast(http, admin, "odds_updated", {"match_id": 1, "home_odds": 2.0})
        await next_is(peer)


async def test_a_token_carries_its_tier(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await http.post(
        "/api/ws/token", json={"user_id": "u-9", "tier": "premium"}, headers=admin
    )
    assert response.status_code == 200
    token = quote(response.json()["token"])
    async with predictions_peer(server, f"/realtime/ws?token={token}") as (_, status):
        assert (status["data"]["tier"], status["data"]["user_id"]) == ("premium", "u-9")
        assert status["data"]["authenticated"] is True
    response = await http.post("/api/ws/token", json={"userId": "u-9"}, headers=admin)
    token = quote(response.json()["token"])
    async with predictions_peer(server, f"/realtime/ws?token={token}") as (_, status):
        assert status["data"]["tier"] == "free"
    response = await http.post(
        "/api/ws/token", json={"userId": "u-9", "tier": "gold"}, headers=admin
    )
    assert response.status_code == 400


async def test_the_same_idempotency_key_publishes_once(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async with predictions_peer(server) as (peer, _):
        await subscribe(peer, "predictions")
        body = {"event_type": "prediction_created", "data": PREDICTION, "idempotency_key": "k1"}
        first = await http.post("/realtime/broadcast", json=body, headers=admin)
        again = await http.post("/realtime/broadcast", json=body, headers=admin)
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers
        await next_is(peer, event("prediction_created", PREDICTION))
        assert server.engine.position("match:456")[1] == 1


async def test_system_events_reach_the_other_dialects_as_before(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async with connect(server) as kmarket, predictions_peer(server) as (peer, _):
        await subscribe(peer, "system_alerts")
        await subscribe(peer, "predictions")
        alert = {"alert_type": "warning", "message": "维护", "severity": "high"}
        answer = await broadcast(http, admin, "system_alert", alert)
        assert answer["matched_by_dialect"] == {"predictions": 0, "kmarket": 1}
        # The free tier holds back system events (the seed's rule) but not from KMarket.
        assert await kmarket.recv() == {
            "type": "broadcast",
            "event_type": "system_alert",
            "data": alert,
            "timestamp": FIXED_TS,
        }
        await broadcast(http, admin, "prediction_created", PREDICTION)
        await next_is(peer, event("prediction_created", PREDICTION))
        await kmarket.ping()  # nothing came before the pong: the prediction was not for it


BAD_INPUT = [
    ('{"type":"subscribe","data":{"subscription_type":"tips"}}', "UNKNOWN_SUBSCRIPTION_TYPE"),
    (
        '{"type":"subscribe","data":{"subscription_type":"predictions",'
        '"filters":{"min_confidence":"high"}}}',
        "INVALID_FILTER",
    ),
    (
        '{"type":"subscribe","data":{"subscription_type":"predictions",'
        '"filters":{"match_ids":["1"]}}}',
        "INVALID_FILTER",
    ),
    (
        '{"type":"subscribe","data":{"subscription_type":"predictions",'
        '"filters":{"match_ids":"1,2"}}}',
        "INVALID_FILTER",
    ),
    (
        '{"type":"subscribe","data":{"subscription_type":"predictions",'
        '"filters":{"event_types":["prediction_deleted"]}}}',
        "UNKNOWN_EVENT_TYPE",
    ),
    ('{"type":"subscribe","data":{"filters":{}}}', "INVALID_MESSAGE"),
    ('{"type":"unsubscribe","data":{"subscription_type":7}}', "UNKNOWN_SUBSCRIPTION_TYPE"),
    ('{"type":"hello"}', "UNKNOWN_MESSAGE_TYPE"),
    ('{"type":"subscribe","data":[1]}', "INVALID_MESSAGE"),
    ('{"data":{}}', "INVALID_MESSAGE"),
    ("{not json", "INVALID_JSON"),
]


@pytest.mark.parametrize(("text", "code"), BAD_INPUT)
async def test_bad_input_gets_an_error_event_and_the_connection_stays(
    server: Server, text: str, code: str
) -> None:
    async with predictions_peer(server) as (peer, _):
        await peer.send_raw(text)
        error = await peer.recv()
        assert error["event_type"] == "error" and error["timestamp"] == STAMP
        assert error["data"]["code"] == code
        assert isinstance(error["data"]["message"], str) and error["data"]["message"]
        await next_is(peer)
        await subscribe(peer, "predictions")  # and the connection still works


async def test_get_stats_has_the_connections_counts_and_the_servers(server: Server) -> None:
    async with predictions_peer(server) as (peer, _):
        await subscribe(peer, "matches", match_ids=[1])
        await peer.send({"type": "get_stats"})
        stats = await peer.recv()
        assert stats["event_type"] == "stats"
        connection = stats["data"]["connection"]
        assert connection["tier"] == "free"
        assert connection["messages_received"] == 2
        assert connection["messages_sent"] == 2
        assert [s["subscription_type"] for s in connection["subscriptions"]] == ["matches"]
        server_stats = stats["data"]["server"]
        assert server_stats["active_connections"] == 1
        assert server_stats["tiers"]["free"]["connections"] == 1


BAD_BODIES = [
    ({"data": {}}, "missing field: event_type"),
    ({"event_type": "goal", "data": {}}, 'unknown event_type "goal"'),
    ({"event_type": "connection_status", "data": {}}, "connection_status is sent by the server"),
    ({"event_type": "system_alert"}, "missing field: data"),
    ({"event_type": "system_alert", "data": [1]}, "expected data to be a JSON object"),
    ({"event_type": "system_alert", "data": {}, "topic": "x"}, "unknown fields: topic"),
    ({"event_type": "system_alert", "data": {}, "timestamp": "soon"}, "expected timestamp"),
    ({"event_type": "system_alert", "data": {}, "idempotency_key": 5}, "expected idempotency"),
    ({"type": "system_alert", "event_type": "match_ended", "data": {}}, "type and event_type"),
    ([1], "expected a JSON object"),
]


async def test_broadcast_needs_the_admin_token_and_a_realtime_event(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    body = {"event_type": "system_status", "data": {}}
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = await http.post("/realtime/broadcast", json=body, headers=headers)
        assert response.status_code == 401
    for bad, message in BAD_BODIES:
        response = await http.post("/realtime/broadcast", json=bad, headers=admin)
        assert response.status_code == 400, bad
        assert response.json()["code"] == "INVALID_REQUEST"
        assert response.json()["message"].startswith(message), (bad, response.json())
    for text in (b"{", b'{"event_type":"system_alert","data":{"v":NaN}}'):
        response = await http.post("/realtime/broadcast", content=text, headers=admin)
        assert response.status_code == 400
    assert server.engine.topics() == []
    answer = await broadcast(http, admin, "system_status", {"ok": True}, type="system_status")
    assert (answer["topic"], answer["seq"], answer["matched"]) == ("all:system_alerts", 1, 0)


def seed_python_client() -> str:
    text = SEED_002.read_text()
    start = text.index("```python\nimport asyncio")
    code = text[start + len("```python\n") : text.index("```", start + 10)]
    return code


async def test_the_seeds_python_client(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """The seed's Python example (the `websockets` library), unchanged but for the port:
    it subscribes to predictions with min_confidence 0.7 and prints what it receives."""
    code = seed_python_client().replace("localhost:8000", f"127.0.0.1:{server.port}")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-u", "-c", code], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    output = bytearray()
    try:
        with trio.fail_after(15):
            while output.count(b"\n") < 2:  # connection_status, user_subscription_changed
                output.extend(await process.stdout.receive_some())
            await broadcast(http, admin, "prediction_created", {**PREDICTION, "confidence": 0.6})
            await broadcast(http, admin, "prediction_created", PREDICTION)
            while output.count(b"\n") < 3:
                output.extend(await process.stdout.receive_some())
    finally:
        process.kill()
        await process.wait()
    lines = output.decode().splitlines()
    received = [ast.literal_eval(line.removeprefix("收到事件: ")) for line in lines]
    assert received[0]["event_type"] == "connection_status"
    assert received[0]["data"]["user_id"] == "user123"
    assert received[1]["event_type"] == "user_subscription_changed"
    assert received[2] == event("prediction_created", PREDICTION)


async def test_the_typescript_flows_messages(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """What the seed's WebSocketService sends: ``subscribe(['prediction_created'], filters)``
    names event types and no subscription_type, and a heartbeat every 30 s."""
    async with predictions_peer(server, "/realtime/ws?user_id=user123") as (peer, status):
        assert status["data"]["user_id"] == "user123"
        await peer.send(
            {
                "type": "subscribe",
                "data": {
                    "event_types": ["prediction_created"],
                    "filters": {"match_ids": [1, 2, 3], "min_confidence": 0.7},
                },
            }
        )
        changed = await peer.recv()
        (sub,) = changed["data"]["subscriptions"]
        assert sub["subscription_type"] == "predictions"
        assert sub["event_types"] == ["prediction_created"]
        one = {**PREDICTION, "match_id": 1}
        await broadcast(http, admin, "prediction_created", one)
        await next_is(peer, event("prediction_created", one))
        with trio.fail_after(TIMEOUT_S):
            await peer.send({"type": "heartbeat", "data": {}})
            answer = await peer.recv()
        assert answer == event("heartbeat", {"status": "alive"})


async def test_a_bad_token_is_refused_and_no_token_is_free(server: Server) -> None:
    assert await upgrade_status(server.port, "/realtime/ws?token=nope") == b"401"
    expired = quote(make_token("u", ttl_s=1, now_s=1_000_000.0))
    assert await upgrade_status(server.port, f"/realtime/ws?token={expired}") == b"401"
    async with predictions_peer(server, "/realtime/ws/matches") as (_, status):
        assert status["data"]["tier"] == "free"


@pytest.mark.server_settings(require_token=("predictions",))
async def test_a_server_may_require_a_token(server: Server) -> None:
    for path in ("/realtime/ws", "/realtime/ws/predictions?match_ids=1"):
        assert await upgrade_status(server.port, path) == b"401"
    token = quote(make_token("u-1", tier="premium"))
    async with predictions_peer(server, f"/realtime/ws?token={token}") as (_, status):
        assert status["data"]["tier"] == "premium"
