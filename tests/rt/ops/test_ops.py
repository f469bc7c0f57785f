"""Seed 002's operator endpoints: /realtime/health, stats, connections/{id} (the broadcast is
the predictions dialect's: tests/rt/e2e/test_predictions.py)."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest

from actors import Actor, ChildSpec
from rt.http.ops import PROBE_TOPIC
from rt.server import Server
from tests.rt.e2e._support import (
    connect,
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
    assert stats["connections_by_dialect"] == {
        "kmarket": 1,
        "uof": 0,
        "topics": 0,
        "predictions": 0,
        "trading": 0,
    }
    assert stats["tiers"] == {
        tier: {
            "connections": 0,
            "events_delivered": 0,
            "events_held_back_by_tier": 0,
            "events_held_back_by_filter": 0,
        }
        for tier in ("free", "premium")
    }
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
