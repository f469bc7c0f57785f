"""Two rt servers on one Redis (a real redis-server, started by tests/redis_server.py): what
one node publishes reaches the other's clients, in order; and while Redis is down publishes
are refused (nothing acknowledged is lost) and health says so, and a Redis that comes back
empty changes the epoch instead of resetting seq silently."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from rt.server import Server, open_server
from tests.redis_server import RedisServer

from ._support import TIMEOUT_S, connect, e2e_settings, open_peer


@asynccontextmanager
async def node(redis: RedisServer, prefix: str) -> AsyncIterator[Server]:
    settings = e2e_settings(engine_url=redis.url, redis_key_prefix=prefix, redis_timeout_s=1.0)
    async with open_server(settings) as server:
        yield server


async def post(server: Server, path: str, body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.settings.admin_token}"}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT_S) as http:
        return await http.post(path, json=body, headers=headers)


async def override(server: Server, market: int, payload: dict[str, Any]) -> httpx.Response:
    return await post(server, "/admin/odds/override", {"marketId": market, "payload": payload})


async def test_what_one_node_publishes_reaches_the_other_nodes_clients(
    redis_server: RedisServer,
) -> None:
    prefix = redis_server.new_prefix()
    async with node(redis_server, prefix) as a, node(redis_server, prefix) as b:
        async with connect(b) as kmarket:
            await kmarket.subscribe(1001)
            for n in range(1, 6):
                assert (await override(a, 1001, {"n": n})).status_code == 200
            updates = await kmarket.recv_n(5)
            assert [u["seq"] for u in updates] == [1, 2, 3, 4, 5]
            assert [u["payload"]["n"] for u in updates] == [1, 2, 3, 4, 5]
        # The predictions dialect too: a broadcast on one node, a client on the other.
        async with trio.open_nursery() as nursery:
            peer = await open_peer(nursery, b, "/realtime/ws")
            assert (await peer.recv())["event_type"] == "connection_status"
            await peer.send({"type": "subscribe", "data": {"subscription_type": "predictions"}})
            assert (await peer.recv())["event_type"] == "user_subscription_changed"
            event = {"event_type": "prediction_created", "data": {"match_id": 7}}
            answer = await post(a, "/realtime/broadcast", event)
            assert answer.status_code == 200 and answer.json()["topic"] == "match:7"
            received = await peer.recv()
            assert (received["event_type"], received["data"]) == (
                "prediction_created",
                {"match_id": 7},
            )
            await peer.aclose()


@pytest.fixture
def own_redis() -> Any:
    """A redis-server of this test's own, to kill and start again."""
    redis = RedisServer()
    redis.start()
    yield redis
    redis.stop()


async def test_redis_down_refuses_publishes_and_an_empty_redis_changes_the_epoch(
    own_redis: RedisServer,
) -> None:
    async with node(own_redis, "down:") as server, connect(server) as kmarket:
        assert (await override(server, 1001, {"n": 1})).status_code == 200
        snapshots = await kmarket.subscribe(1001)
        first_epoch = snapshots[1001]["epoch"]
        own_redis.kill()
        # The client is told in its dialect that every market is suspended.
        notice = await kmarket.recv()
        assert (notice["type"], notice["event_type"]) == ("broadcast", "system_status")
        assert notice["data"]["engine"] == "unavailable"
        assert notice["data"]["markets"] == "suspended"
        with trio.fail_after(TIMEOUT_S):
            while True:  # refused once the engine has seen its connection go
                response = await override(server, 1001, {"n": 2})
                if response.status_code == 503:
                    break
                assert response.status_code == 200, response.text  # published before the loss
                await trio.sleep(0.05)
        assert response.json()["code"] == "ENGINE_UNAVAILABLE"
        async with httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT_S) as http:
            health = await http.get("/realtime/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"

        own_redis.start()  # on the same port, empty: a new epoch
        with trio.fail_after(3 * TIMEOUT_S):
            for _ in range(1000):  # until the engine is back (its backoff is at most 5 s)
                if (await override(server, 1001, {"n": 3})).status_code == 200:
                    break
                await trio.sleep(0.1)
        # The client is told the store is back, and gets a snapshot of the new epoch: never
        # a silent reset of seq.
        back = await kmarket.recv()
        assert (back["event_type"], back["data"]["engine"]) == ("system_status", "available")
        message = await kmarket.recv()
        assert message["epoch"] != first_epoch
        assert message.get("reason") == "epoch_changed"
