"""Seed 002's operator endpoints: /realtime/health, stats, connections/{id}, broadcast."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import pytest
import trio

from actors import Actor, ChildSpec
from rt.http.ops import PROBE_TOPIC
from rt.server import Server
from tests.rt.e2e._support import (
    FIXED_TS,
    Peer,
    connect,
    make_token,
    open_peer,
    wait_connections_closed,
)


async def test_health_is_a_delivery_check_with_its_latency(
    server: Server, http: httpx.AsyncClient
) -> None:
    response = await http.get("/realtime/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "healthy"
    delivery = health["delivery"]
    assert delivery["ok"] is True
    assert delivery["topic"] == PROBE_TOPIC
    assert 0 <= delivery["latency_ms"] < 1000
    assert health["engine"] == {"state": "running", "url": "memory", "topics": 1}
    assert health["listeners"] == {
        "public": {"state": "running", "port": server.port},
    }
    assert health["feeds"] == {}
    assert health["connections"] == 0
    assert health["uptime_seconds"] > 0
    # Every check publishes a fresh probe through the engine.
    again = (await http.get("/realtime/health")).json()
    assert again["delivery"]["seq"] == delivery["seq"] + 1
    snapshot = await server.engine.snapshot(PROBE_TOPIC)
    assert snapshot.seq == again["delivery"]["seq"]


async def test_health_is_503_when_updates_stop_reaching_subscribers(
    server: Server, http: httpx.AsyncClient
) -> None:
    # The probe's room drops every message: publishes still succeed, nothing is delivered.
    fault = server.system.faults.arm("drop", actor=f"rooms/{PROBE_TOPIC}", count=100)
    response = await http.get("/realtime/health")
    assert response.status_code == 503
    health = response.json()
    assert health["status"] == "unhealthy"
    assert health["delivery"] == {
        "ok": False,
        "topic": PROBE_TOPIC,
        "error": "the probe update was not delivered within 1 s",
    }
    assert health["engine"]["state"] == "running"  # alive, and yet not delivering
    assert server.system.faults.list()[0]["fired"] >= 1
    server.system.faults.disarm(fault.id)
    recovered = await http.get("/realtime/health")
    assert recovered.status_code == 200
    assert recovered.json()["status"] == "healthy"


class DownFeed(Actor):
    kind: ClassVar[str] = "feed"

    def describe(self) -> dict[str, Any]:
        return {"state": "down", "attempt": 7, "attempts_total": 7}

    async def run(self) -> None:
        await self.stop_requested.wait()


async def test_a_feed_that_is_down_makes_health_degraded_not_unavailable(
    server: Server, http: httpx.AsyncClient
) -> None:
    await server.system.spawn(ChildSpec("upstream", DownFeed), under="feeds")
    response = await http.get("/realtime/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "degraded"
    assert health["feeds"] == {"upstream": "down"}
    assert health["delivery"]["ok"] is True


SEED_STATS = {
    "active_connections": int,
    "total_messages": int,
    "error_rate": float,
    "uptime_seconds": float,
    "messages_per_second": float,
}


async def test_stats_have_the_seeds_shape_and_rts_counters(
    server: Server, http: httpx.AsyncClient
) -> None:
    async with connect(server) as peer:
        await peer.subscribe(1001)
        await peer.ping()
        stats = (await http.get("/realtime/stats")).json()
    for key, kind in SEED_STATS.items():
        assert isinstance(stats[key], kind), (key, stats[key])
    assert stats["active_connections"] == 1
    assert stats["messages_received"] == 2
    assert stats["messages_sent"] >= 2  # ack, snapshot (the pong may not be counted yet)
    assert stats["total_messages"] == stats["messages_received"] + stats["messages_sent"]
    assert stats["error_rate"] == 0.0
    assert stats["uptime_seconds"] > 0
    assert stats["connections_by_dialect"] == {"kmarket": 1, "uof": 0, "topics": 0}
    assert stats["subscriptions"] == 1
    for key in (
        "connections_accepted",
        "bytes_sent",
        "coalesced",
        "resyncs",
        "duplicates_dropped",
        "heartbeat_timeouts",
        "slow_consumer_closes",
        "invalid_messages",
        "limit_closes",
        "refused_joins",
        "published",
        "topics",
    ):
        assert isinstance(stats[key], int), key


@pytest.mark.ops_settings(idle_timeout_s=0.3, ping_interval_s=1000.0)
async def test_errors_are_connections_closed_on_the_clients_fault(
    server: Server, http: httpx.AsyncClient
) -> None:
    async with connect(server) as peer:
        reason = await peer.closed()  # the client says nothing: closed after 0.3 s
        assert reason.code == 4000
    await wait_connections_closed(server)
    stats = (await http.get("/realtime/stats")).json()
    assert stats["heartbeat_timeouts"] == 1
    assert stats["active_connections"] == 0
    assert stats["error_rate"] == pytest.approx(1 / max(stats["total_messages"], 1))


async def test_a_connection_by_id_and_404_for_anything_else(
    server: Server, http: httpx.AsyncClient
) -> None:
    async with connect(server) as peer:
        await peer.subscribe(1001, 1002)
        (path,) = [p for p in server.system.registry.paths() if p.startswith("conns/")]
        conn_id = path.split("/")[1]
        response = await http.get(f"/realtime/connections/{conn_id}")
        assert response.status_code == 200
        node = response.json()
        assert (node["id"], node["kind"], node["path"]) == (conn_id, "connection", path)
        assert node["state"] == "running"
        assert node["info"]["dialect"] == "kmarket"
        assert node["info"]["user"] == 1
        assert node["info"]["subscriptions"] == 2
        assert "token" not in response.text
    for unknown in ("c999", "public", "engine"):
        response = await http.get(f"/realtime/connections/{unknown}")
        assert response.status_code == 404
        assert response.json() == {
            "code": "NOT_FOUND",
            "message": f"no open connection {unknown!r}",
        }


@asynccontextmanager
async def uof_peer(server: Server, user_id: int = 1) -> AsyncIterator[Peer]:
    """A UOF client on /ws?userId=&token=, past its connection_established."""
    async with trio.open_nursery() as nursery:
        token = quote(make_token(user_id))
        peer = await open_peer(nursery, server, f"/ws?userId={user_id}&token={token}")
        try:
            assert (await peer.recv())["type"] == "connection_established"
            yield peer
        finally:
            await peer.aclose()


async def test_broadcast_reaches_every_dialect_in_its_own_form(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async with connect(server) as kmarket, uof_peer(server) as uof:
        body = {"type": "maintenance", "data": {"in_s": 300}}
        response = await http.post("/realtime/broadcast", json=body, headers=admin)
        assert response.status_code == 200
        assert response.json() == {"delivered": 2}
        assert await kmarket.recv() == {
            "type": "broadcast",
            "event_type": "maintenance",
            "data": {"in_s": 300},
            "timestamp": FIXED_TS,
        }
        assert await uof.recv() == {
            "type": "broadcast",
            "payload": {"eventType": "maintenance", "data": {"in_s": 300}, "serverTime": FIXED_TS},
        }

        # With a topic, only its subscribers get it.
        await kmarket.subscribe(1001)
        body = {"event_type": "review", "data": {"market": 1001}, "topic": "market:1001"}
        response = await http.post("/realtime/broadcast", json=body, headers=admin)
        assert response.json() == {"delivered": 1}
        assert (await kmarket.recv())["event_type"] == "review"
        await uof.send({"type": "ping"})
        assert await uof.recv() == {"type": "pong", "payload": {"serverTime": FIXED_TS}}


async def test_broadcast_needs_the_admin_token_and_a_valid_body(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    body = {"type": "maintenance", "data": {}}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        response = await http.post("/realtime/broadcast", json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "UNAUTHORIZED"
    bad = [
        ({"data": {}}, "missing field: type (or event_type)"),
        ({"type": "x"}, "missing field: data"),
        ({"type": "x", "data": 5}, "expected data to be a JSON object"),
        ({"type": "", "data": {}}, "expected type to be a non-empty string, got ''"),
        ({"type": "a", "event_type": "b", "data": {}}, "type and event_type differ: 'a' and 'b'"),
        ({"type": "x", "data": {}, "to": 1}, "unknown fields: to"),
        ({"type": "x", "data": {}, "topic": 5}, "expected topic to be a non-empty string, got 5"),
        ([1], "expected a JSON object {type or event_type, data, topic?}"),
    ]
    for payload, message in bad:
        response = await http.post("/realtime/broadcast", json=payload, headers=admin)
        assert response.status_code == 400, payload
        assert response.json() == {"code": "INVALID_REQUEST", "message": message}
    response = await http.post("/realtime/broadcast", content=b"{", headers=admin)
    assert response.status_code == 400
    assert response.json()["message"].startswith("the body is not valid JSON: ")
    # Nothing that no dialect could encode is sent on: NaN, a lone surrogate.
    for text in (b'{"type":"x","data":{"v":NaN}}', b'{"type":"x","data":{"v":"\\ud800"}}'):
        response = await http.post("/realtime/broadcast", content=text, headers=admin)
        assert response.status_code == 400, text
        assert response.json()["code"] == "INVALID_REQUEST"
    response = await http.post("/realtime/broadcast", json=body, headers=admin)
    assert response.json() == {"delivered": 0}
