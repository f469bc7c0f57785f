"""The REST API on its own listener: tokens, snapshots, history, health, admin publish."""

from __future__ import annotations

import time

import httpx
import pytest

from rt.auth import verify_token
from rt.server import Server
from tests.rt.harness import SECRET

from ._support import FIXED_TS, connect, odds_update, topic, wait_connections_closed


def epoch_of(server: Server, market: int) -> str:
    return server.engine.position(topic(market))[0]


# -- POST /api/ws/token ------------------------------------------------------------------


async def test_token_needs_the_admin_token(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "admin-token-0123456789abcdef0123456789abcdef"},
    ):
        response = await http.post("/api/ws/token", json={"userId": 1}, headers=headers)
        assert response.status_code == 401
        assert response.json() == {
            "code": "UNAUTHORIZED",
            "message": "this route needs Authorization: Bearer <admin token>",
        }
    response = await http.post("/api/ws/token", json={"userId": 1}, headers=admin)
    assert response.status_code == 200


async def test_token_is_issued_and_works_on_the_websocket(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    before_ms = int(time.time()) * 1000
    response = await http.post(
        "/api/ws/token",
        json={"userId": 42, "scopeMarkets": [1001, "1002"], "ttlSeconds": 120},
        headers=admin,
    )
    after_ms = int(time.time()) * 1000
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"token", "expiresAt"}
    assert before_ms + 120_000 <= body["expiresAt"] <= after_ms + 120_000

    claims = verify_token(body["token"], secret=SECRET)
    assert claims.user_id == 42
    assert claims.scope_markets == frozenset({"1001", "1002"})
    assert claims.expires_at_ms == body["expiresAt"]

    async with connect(server, body["token"]) as peer:
        await peer.send({"type": "subscribe", "markets": ["1001", "1002", "1003"]})
        assert await peer.recv() == {"type": "ack", "ok": True, "subscribed": [1001, 1002]}
        error = await peer.recv()
        assert (error["code"], error["markets"]) == ("FORBIDDEN_MARKET", [1003])
        snapshots = await peer.recv_n(2)
        assert sorted((s["type"], s["marketId"]) for s in snapshots) == [
            ("snapshot", 1001),
            ("snapshot", 1002),
        ]
        await peer.ping()


async def test_token_defaults_to_every_market_and_600_s(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await http.post("/api/ws/token", json={"userId": "alice"}, headers=admin)
    assert response.status_code == 200
    body = response.json()
    claims = verify_token(body["token"], secret=SECRET)
    assert claims.user_id == "alice"
    assert claims.scope_markets is None
    assert abs(body["expiresAt"] - (time.time() + 600) * 1000) < 5_000
    async with connect(server, body["token"]) as peer:
        await peer.subscribe(1001, 77)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"userId": 1, "ttlSeconds": 86_401}, "ttlSeconds may be at most 86400, got 86401"),
        (
            {"userId": 1, "ttlSeconds": 0},
            "ttlSeconds: input should be greater than or equal to 1, got 0",
        ),
        (
            {"userId": 1, "ttlSeconds": "60"},
            'ttlSeconds: input should be a valid integer, got "60"',
        ),
        ({}, "userId is required"),
        ({"userId": 1.5}, "userId"),
        ({"userId": 1, "scopeMarkets": ["bad id"]}, "expected marketId to be"),
        ({"userId": 1, "extra": True}, "extra is not a field of this request"),
    ],
)
async def test_bad_token_request_is_400(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str], body: object, message: str
) -> None:
    response = await http.post("/api/ws/token", json=body, headers=admin)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == "INVALID_REQUEST"
    assert error["message"].startswith(message), error


async def test_ttl_of_exactly_a_day_is_allowed(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await http.post(
        "/api/ws/token", json={"userId": 1, "ttlSeconds": 86_400}, headers=admin
    )
    assert response.status_code == 200


@pytest.mark.server_settings(dev=True)
async def test_in_dev_mode_a_token_needs_no_admin_token(
    server: Server, http: httpx.AsyncClient
) -> None:
    response = await http.post("/api/ws/token", json={"userId": 5})
    assert response.status_code == 200, response.text
    async with connect(server, response.json()["token"]) as peer:
        await peer.ping()
    # The ttl limit still holds.
    response = await http.post("/api/ws/token", json={"userId": 5, "ttlSeconds": 100_000})
    assert response.status_code == 400
    # Admin routes still need the admin token.
    response = await http.post("/admin/odds/override", json={"marketId": 1, "payload": {}})
    assert response.status_code == 401


# -- GET /api/markets/{id}/odds/snapshot -------------------------------------------------


async def test_snapshot(server: Server, http: httpx.AsyncClient) -> None:
    await server.hub.publish(topic(1001), {"moneyline": {"home": 1.85, "away": 2.1}})
    await server.hub.publish(topic(1001), {"moneyline": {"away": 2.0}, "total": 2.5})
    response = await http.get("/api/markets/1001/odds/snapshot")
    assert response.status_code == 200
    assert response.json() == {
        "marketId": 1001,
        "seq": 2,
        "ts": FIXED_TS,
        "epoch": epoch_of(server, 1001),
        "payload": {"moneyline": {"home": 1.85, "away": 2.0}, "total": 2.5},
    }


async def test_snapshot_of_a_market_never_published(
    server: Server, http: httpx.AsyncClient
) -> None:
    response = await http.get("/api/markets/1009/odds/snapshot")
    assert response.status_code == 200
    assert response.json() == {
        "marketId": 1009,
        "seq": 0,
        "ts": 0,
        "epoch": epoch_of(server, 1009),
        "payload": {},
    }


async def test_snapshot_of_a_named_market(server: Server, http: httpx.AsyncClient) -> None:
    await server.hub.publish(topic("epl.ars-che"), {"p": 1})
    response = await http.get("/api/markets/epl.ars-che/odds/snapshot")
    assert response.status_code == 200
    assert response.json()["marketId"] == "epl.ars-che"
    assert response.json()["payload"] == {"p": 1}


async def test_snapshot_of_a_bad_market_id_is_400(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/markets/bad%20id/odds/snapshot")
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_REQUEST"
    assert response.json()["message"].startswith("expected marketId to be")


# -- GET /api/markets/{id}/odds/updates --------------------------------------------------


async def publish_prices(server: Server, market: int, n: int) -> None:
    for i in range(1, n + 1):
        await server.hub.publish(topic(market), {"price": i})


async def test_updates_since_seq_with_limit(server: Server, http: httpx.AsyncClient) -> None:
    await publish_prices(server, 1001, 10)
    response = await http.get("/api/markets/1001/odds/updates", params={"since_seq": 3, "limit": 4})
    assert response.status_code == 200
    assert response.json() == {
        "marketId": 1001,
        "fromSeq": 3,
        "toSeq": 7,
        "epoch": epoch_of(server, 1001),
        "updates": [odds_update(1001, seq, {"price": seq}) for seq in range(4, 8)],
    }


async def test_updates_default_to_everything_since_zero(
    server: Server, http: httpx.AsyncClient
) -> None:
    await publish_prices(server, 1001, 5)
    body = (await http.get("/api/markets/1001/odds/updates")).json()
    assert (body["fromSeq"], body["toSeq"]) == (0, 5)
    assert [u["seq"] for u in body["updates"]] == [1, 2, 3, 4, 5]


async def test_updates_at_or_past_the_latest_seq_are_empty(
    server: Server, http: httpx.AsyncClient
) -> None:
    await publish_prices(server, 1001, 3)
    for since in (3, 10):
        response = await http.get("/api/markets/1001/odds/updates", params={"since_seq": since})
        assert response.status_code == 200
        body = response.json()
        # toSeq never passes the server's seq, even for a client that is ahead of it.
        assert (body["fromSeq"], body["toSeq"], body["updates"]) == (since, 3, [])
    body = (await http.get("/api/markets/4242/odds/updates")).json()
    assert (body["marketId"], body["toSeq"], body["updates"]) == (4242, 0, [])


@pytest.mark.server_settings(history_size=5)
async def test_updates_older_than_history_are_410(server: Server, http: httpx.AsyncClient) -> None:
    await publish_prices(server, 1001, 20)  # the history holds 16..20
    response = await http.get("/api/markets/1001/odds/updates", params={"since_seq": 2})
    assert response.status_code == 410
    assert response.json() == {
        "code": "HISTORY_GONE",
        "message": (
            "updates after seq 2 are no longer held (history starts at seq 16); fetch the snapshot"
        ),
        "firstSeq": 16,
    }
    response = await http.get("/api/markets/1001/odds/updates", params={"since_seq": 15})
    assert response.status_code == 200
    assert [u["seq"] for u in response.json()["updates"]] == [16, 17, 18, 19, 20]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "limit must be 1..1000, got 0"),
        ({"limit": 1001}, "limit must be 1..1000, got 1001"),
        ({"since_seq": -1}, "since_seq must be >= 0, got -1"),
        ({"since_seq": "x"}, "query.since_seq: "),
    ],
)
async def test_bad_updates_query_is_400(
    http: httpx.AsyncClient, params: dict[str, object], message: str
) -> None:
    response = await http.get("/api/markets/1001/odds/updates", params=params)
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_REQUEST"
    assert response.json()["message"].startswith(message)


# -- GET /api/ws/health ------------------------------------------------------------------


async def test_health_counts_connections_topics_and_messages(
    server: Server, http: httpx.AsyncClient
) -> None:
    async def health() -> dict[str, int]:
        response = await http.get("/api/ws/health")
        assert response.status_code == 200
        body: dict[str, int] = response.json()
        return body

    assert await health() == {"connections": 0, "topics": 0, "messages_sent": 0}
    async with connect(server) as a, connect(server) as b:
        await a.subscribe(1001)  # 2 messages
        await b.subscribe(1001, 1002)  # 3 messages
        await server.hub.publish(topic(1001), {"p": 1})
        await server.hub.publish(topic(1001), {"p": 2})
        await server.hub.publish(topic(1002), {"q": 1})
        await server.hub.publish(topic(1003), {"r": 1})  # nobody listens: a topic all the same
        await a.recv_n(2)
        await b.recv_n(3)
        for peer in (a, b):  # a round trip each: what came before is counted
            await peer.ping(1)
            await peer.ping(2)
        now = await health()
        assert (now["connections"], now["topics"]) == (2, 3)
        # 10 before the pings, and the first pong of each at least; at most everything.
        assert 12 <= now["messages_sent"] <= 14
    await wait_connections_closed(server)
    assert await health() == {"connections": 0, "topics": 3, "messages_sent": 14}


# -- POST /admin/odds/override -----------------------------------------------------------


async def test_override_needs_the_admin_token(server: Server, http: httpx.AsyncClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic admin-token-0123456789abcdef0123456789abcdef"},
    ):
        response = await http.post(
            "/admin/odds/override", json={"marketId": 1001, "payload": {"p": 1}}, headers=headers
        )
        assert response.status_code == 401
        assert response.json()["code"] == "UNAUTHORIZED"
    assert server.engine.position(topic(1001))[1] == 0  # nothing was published


async def test_override_is_a_merge_patch_that_subscribers_receive(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async with connect(server) as peer:
        await peer.subscribe(1001)
        patches = [
            {"moneyline": {"home": 1.85, "away": 2.1, "draw": 3.2}, "total": 2.5},
            {"moneyline": {"draw": None, "away": 2.05}, "total": None, "status": "open"},
        ]
        for seq, patch in enumerate(patches, start=1):
            response = await http.post(
                "/admin/odds/override", json={"marketId": "1001", "payload": patch}, headers=admin
            )
            assert response.status_code == 200, response.text
            assert response.json() == {"marketId": 1001, "seq": seq, "ts": FIXED_TS}
            # The patch goes out as published, nulls included.
            assert await peer.recv() == odds_update(1001, seq, patch)

    snapshot = (await http.get("/api/markets/1001/odds/snapshot")).json()
    assert snapshot["seq"] == 2
    assert snapshot["payload"] == {"moneyline": {"home": 1.85, "away": 2.05}, "status": "open"}


@pytest.mark.parametrize(
    "body",
    [
        {"marketId": 1001, "payload": [1, 2]},
        {"marketId": 1001, "payload": 5},
        {"marketId": 1001},
        {"payload": {}},
        {"marketId": "no such id!", "payload": {}},
        {"marketId": 1001, "payload": {}, "extra": 1},
    ],
)
async def test_bad_override_is_400(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str], body: object
) -> None:
    response = await http.post("/admin/odds/override", json=body, headers=admin)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_REQUEST"
    assert server.engine.topics() == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b'{"marketId":1001,"payload":{"name":"\\ud800"}}', id="lone-surrogate"),
        pytest.param(b'{"marketId":1001,"payload":{"\\udfff":1}}', id="lone-surrogate-key"),
        pytest.param(b'{"marketId":1001,"payload":{"p":NaN}}', id="nan"),
    ],
)
async def test_an_override_no_dialect_could_send_is_refused_and_not_published(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str], text: bytes
) -> None:
    # Accepted, it would be acknowledged and then fail in every room's encoder: lost.
    headers = {**admin, "content-type": "application/json"}
    response = await http.post("/admin/odds/override", content=text, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_REQUEST"
    assert "payload" in response.json()["message"]
    assert server.engine.topics() == []


# -- GET /openapi.json -------------------------------------------------------------------


# The operator routes (tests/rt/ops checks them in detail).
OPS_ROUTES = {
    "/metrics": ["get"],
    "/realtime/health": ["get"],
    "/realtime/stats": ["get"],
    "/realtime/connections/{connection_id}": ["get"],
    "/realtime/broadcast": ["post"],
}


async def test_openapi_lists_every_route(http: httpx.AsyncClient) -> None:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {path: sorted(paths[path]) for path in paths} == {
        "/api/ws/token": ["post"],
        "/api/markets/{market}/odds/snapshot": ["get"],
        "/api/markets/{market}/odds/updates": ["get"],
        "/api/ws/health": ["get"],
        "/api/markets": ["get"],
        "/api/events": ["get"],
        "/api/v1/topics": ["get"],
        "/api/tickets": ["post"],
        "/admin/odds/override": ["post"],
        "/admin/publish": ["post"],
        "/debug/actors": ["get"],
        "/debug/faults": ["delete", "get", "post"],
        "/debug/faults/{fault_id}": ["delete"],
        **OPS_ROUTES,
    }


async def test_every_http_error_is_code_and_message(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await http.get("/api/nowhere")
    assert (response.status_code, response.json()) == (
        404,
        {"code": "NOT_FOUND", "message": "no route /api/nowhere"},
    )
    response = await http.delete("/api/ws/health")
    assert (response.status_code, response.json()) == (
        405,
        {"code": "METHOD_NOT_ALLOWED", "message": "/api/ws/health does not take DELETE"},
    )
    as_json = {**admin, "Content-Type": "application/json"}
    response = await http.post("/api/ws/token", content=b'{"userId": 1', headers=as_json)
    assert response.status_code == 400
    assert response.json()["message"].startswith("the body is not valid JSON (")
    response = await http.post("/api/ws/token", content=b'{"userId": 1}', headers=admin)
    assert response.json()["message"] == (
        "the body must be a JSON object, sent with Content-Type: application/json"
    )
    response = await http.post("/api/ws/token", headers=admin)
    assert response.json() == {
        "code": "INVALID_REQUEST",
        "message": "the body is required (a JSON object)",
    }


async def test_markets_and_events_list_the_live_topics(
    server: Server, http: httpx.AsyncClient
) -> None:
    assert (await http.get("/api/markets")).json() == []
    await server.hub.publish(topic(1002), {"a": 1})
    await server.hub.publish(topic(1002), {"a": 2})
    await server.hub.publish(topic("derby"), {"a": 1})
    await server.hub.publish("event:sr:match:7", {"status": "live"})
    await server.engine.snapshot(topic(9999))  # asked for, never published: not listed
    markets = (await http.get("/api/markets")).json()
    assert markets == [
        {"marketId": 1002, "seq": 2, "epoch": epoch_of(server, 1002), "updatedAt": FIXED_TS},
        {"marketId": "derby", "seq": 1, "epoch": epoch_of(server, "derby"), "updatedAt": FIXED_TS},
    ]
    (event,) = (await http.get("/api/events")).json()
    assert (event["eventId"], event["seq"], event["updatedAt"]) == ("sr:match:7", 1, FIXED_TS)


async def test_pages_need_no_internet(server: Server, http: httpx.AsyncClient) -> None:
    """/docs loads Swagger UI from rt itself; no page rt serves references another host."""
    import re

    admin = {"Authorization": f"Bearer {server.settings.admin_token}"}
    for page in ("/docs", "/debug"):
        response = await http.get(page, headers=admin)
        assert response.status_code == 200, page
        urls = re.findall(r"""(?:src|href|url)\s*[=(:]\s*["']?([^"')\s>]+)""", response.text)
        assert urls, page
        external = [u for u in urls if re.match(r"(?:https?:)?//", u)]
        assert external == [], (page, external)
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        assert (await http.get(f"/docs/assets/{asset}")).status_code == 200, asset
    assert (await http.get("/redoc")).status_code == 404
