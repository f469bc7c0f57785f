"""GET /metrics: Prometheus text, one registry per server, values that follow the traffic."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx
import pytest
import trio
import trio.testing

from actors import Actor, ChildSpec
from rt.http.metrics import build_registry
from rt.server import Server, open_server
from tests.rt.e2e._support import TIMEOUT_S, connect, e2e_settings, wait_connections_closed
from tests.rt.harness import open_core, receive, receive_until, send

from ._support import scrape, scrape_registry

DOCUMENTED = {
    "rt_connections_open": "gauge",
    "rt_connections_accepted": "counter",
    "rt_subscriptions": "gauge",
    "rt_messages_received": "counter",
    "rt_messages_sent": "counter",
    "rt_sent_bytes": "counter",
    "rt_publish_to_send_latency_seconds": "histogram",
    "rt_outbox_coalesced": "counter",
    "rt_outbox_resyncs": "counter",
    "rt_outbox_duplicates_dropped": "counter",
    "rt_heartbeat_timeouts": "counter",
    "rt_slow_consumer_closes": "counter",
    "rt_invalid_messages": "counter",
    "rt_limit_closes": "counter",
    "rt_refused_joins": "counter",
    "rt_published_updates": "counter",
    "rt_topics": "gauge",
    "rt_actors": "gauge",
    "rt_actor_restarts": "gauge",
    "rt_mailbox_depth_messages": "gauge",
    "rt_feed_state": "gauge",
    "rt_feed_connect_attempts": "gauge",
    "rt_uptime_seconds": "gauge",
    "rt_tier_connections": "gauge",
    "rt_tier_events_delivered": "counter",
    "rt_tier_events_held_back": "counter",
}


async def test_every_metric_is_exposed_with_its_type_and_starts_at_zero(
    http: httpx.AsyncClient,
) -> None:
    metrics = await scrape(http)
    assert {name: f.type for name, f in metrics.families.items()} == DOCUMENTED
    assert metrics.value("rt_connections_open", dialect="kmarket") == 0
    assert metrics.value("rt_connections_open", dialect="uof") == 0
    for name in ("rt_messages_sent_total", "rt_sent_bytes_total", "rt_published_updates_total"):
        assert metrics.value(name) == 0
    assert metrics.value("rt_publish_to_send_latency_seconds_count") == 0
    assert metrics.value("rt_actors", kind="listener") == 1  # one port, HTTP and WebSocket
    assert metrics.value("rt_actors", kind="engine") == 1
    assert metrics.value("rt_uptime_seconds") > 0


async def test_metrics_follow_a_client_and_its_updates(
    server: Server, http: httpx.AsyncClient
) -> None:
    async with connect(server) as peer:
        await peer.send({"type": "subscribe", "markets": ["1001"]})
        texts = [await peer.ws.get_message() for _ in range(2)]  # ack, snapshot
        for n in range(3):
            await server.hub.publish("market:1001", {"n": n})
        with trio.fail_after(TIMEOUT_S):
            texts += [await peer.ws.get_message() for _ in range(3)]
        assert [json.loads(t)["type"] for t in texts] == ["ack", "snapshot"] + ["odds_update"] * 3
        # The pong comes in a later batch than every message before it, so once it is here
        # the writer has counted them all.
        await peer.ping()

        metrics = await scrape(http)
        assert metrics.value("rt_connections_open", dialect="kmarket") == 1
        assert metrics.value("rt_connections_open", dialect="uof") == 0
        assert metrics.value("rt_connections_accepted_total") == 1
        assert metrics.value("rt_subscriptions") == 1
        assert metrics.value("rt_messages_received_total") == 2  # subscribe, ping
        assert metrics.value("rt_messages_sent_total") >= len(texts)
        assert metrics.value("rt_sent_bytes_total") >= sum(len(t.encode()) for t in texts)
        assert metrics.value("rt_published_updates_total") == 3
        assert metrics.value("rt_topics") == 1
        assert metrics.value("rt_actors", kind="room") == 1
        assert metrics.value("rt_actors", kind="connection") == 1
        # The snapshot's batch has no update; each batch with one is one observation.
        observed = metrics.value("rt_publish_to_send_latency_seconds_count")
        assert 1 <= observed <= 3
        assert metrics.value("rt_publish_to_send_latency_seconds_bucket", le="+Inf") == observed
        assert metrics.value("rt_publish_to_send_latency_seconds_sum") >= 0

    await wait_connections_closed(server)
    metrics = await scrape(http)
    assert metrics.value("rt_connections_open", dialect="kmarket") == 0
    assert metrics.value("rt_subscriptions") == 0
    assert metrics.value("rt_messages_sent_total") >= len(texts) + 1  # the pong too


async def test_the_latency_histogram_measures_from_the_update_ts() -> None:
    """The engine stamps the update at 1000 ms; the writer hands it out at 1250 ms."""
    now = [1_000]
    async with open_core(wall_ms=lambda: now[0]) as core, core.connect() as ws:
        await send(ws, {"type": "subscribe", "markets": [1]})
        await receive_until(ws, lambda m: m["type"] == "snapshot")
        registry = build_registry(core)
        await core.publish(1, {"a": 1})
        now[0] = 1_250
        assert (await receive(ws))["seq"] == 1
        await send(ws, {"type": "ping", "ts": 1})
        assert (await receive(ws))["type"] == "pong"
        metrics = scrape_registry(registry)
        assert metrics.value("rt_publish_to_send_latency_seconds_count") == 1
        assert metrics.value("rt_publish_to_send_latency_seconds_sum") == pytest.approx(0.25)
        assert metrics.value("rt_publish_to_send_latency_seconds_bucket", le="0.1") == 0
        assert metrics.value("rt_publish_to_send_latency_seconds_bucket", le="0.25") == 1


async def test_each_server_has_its_own_registry() -> None:
    async with (
        open_server(e2e_settings()) as first,
        open_server(e2e_settings()) as second,
        httpx.AsyncClient(base_url=first.http_url) as http_first,
        httpx.AsyncClient(base_url=second.http_url) as http_second,
        connect(first) as peer,
    ):
        await peer.ping()
        assert (await scrape(http_first)).value("rt_connections_open", dialect="kmarket") == 1
        assert (await scrape(http_second)).value("rt_connections_open", dialect="kmarket") == 0


async def test_slow_clients_show_as_coalesced_and_resynced(autojump_clock: Any) -> None:
    settings = {
        "outbox_capacity": 8,
        "outbox_high_water": 4,
        "write_deadline_s": 30.0,
        "ping_interval_s": 1000.0,
    }
    async with open_core(**settings) as core:
        registry = build_registry(core)
        async with core.connect(lockstep=True) as slow:
            await send(slow, {"type": "subscribe", "markets": [1, 2]})
            await receive_until(slow, lambda m: m["type"] == "snapshot" and m["marketId"] == 2)
            # The client reads nothing now: market 1's patches merge, market 2's events
            # (which do not merge) overflow into a resync.
            for n in range(1, 41):
                await core.publish(1, {"n": n})
                await core.hub.publish("market:2", {"goal": n}, kind="event")
                await trio.testing.wait_all_tasks_blocked()
            behind = scrape_registry(registry)
            assert behind.value("rt_outbox_coalesced_total") > 0
            assert behind.value("rt_outbox_resyncs_total") > 0
            assert behind.value("rt_outbox_duplicates_dropped_total") == 0
            seen: list[dict[str, Any]] = []
            while not seen or seen[-1].get("marketId") != 2 or seen[-1]["seq"] < 40:
                seen.append(await receive(slow))
            assert any(m.get("conflated") for m in seen)
            assert any(m.get("resync") for m in seen)
            await core.system.stop(core.last_path)
        # The connection has ended: what its outbox counted stays in the totals.
        after = scrape_registry(registry)
        assert after.value("rt_connections_open", dialect="kmarket") == 0
        for name in ("rt_outbox_coalesced_total", "rt_outbox_resyncs_total"):
            assert after.value(name) == behind.value(name)


class Stalled(Actor):
    kind: ClassVar[str] = "feed"

    def describe(self) -> dict[str, Any]:
        return {"state": "backoff", "attempt": 2, "attempts_total": 3}

    async def run(self) -> None:
        await self.stop_requested.wait()


async def test_tree_metrics_restarts_mailbox_depth_and_feed_states(
    server: Server, http: httpx.AsyncClient
) -> None:
    await server.system.spawn(ChildSpec("upstream", Stalled), under="feeds")
    async with connect(server) as peer:
        await peer.subscribe(1001)
        # A crash of the room on its next message: the restarted room brings us up to date.
        server.system.faults.arm("crash", actor="rooms/market:1001")
        await server.hub.publish("market:1001", {"n": 1})
        assert (await peer.recv())["seq"] == 1
        metrics = await scrape(http)
        assert metrics.value("rt_actor_restarts", kind="room") == 1
        assert metrics.value("rt_actor_restarts", kind="connection") == 0

        # A stalled room holds its next message; the ones after it wait in its mailbox.
        stall = server.system.faults.arm("stall", actor="rooms/market:1001")
        for n in range(2, 5):
            await server.hub.publish("market:1001", {"n": n})
        await trio.testing.wait_all_tasks_blocked()
        metrics = await scrape(http)
        assert metrics.value("rt_mailbox_depth_messages", kind="room") == 2
        server.system.faults.disarm(stall.id)
        assert [(await peer.recv())["seq"] for _ in range(3)] == [2, 3, 4]

    metrics = await scrape(http)
    assert metrics.value("rt_feed_state", feed="upstream", state="backoff") == 1
    assert metrics.value("rt_feed_connect_attempts", feed="upstream") == 3
    assert metrics.value("rt_actors", kind="feed") == 1


@pytest.mark.ops_settings(demo_feed=True, demo_interval_s=1000.0, demo_markets=("1001",))
async def test_the_demo_feed_reports_running(http: httpx.AsyncClient) -> None:
    metrics = await scrape(http)
    assert metrics.value("rt_feed_state", feed="demo", state="running") == 1
    assert not metrics.has("rt_feed_connect_attempts", feed="demo")
    # Its first odds for 1001, and (with --demo-feed) the UOF simulator's events.
    assert metrics.value("rt_published_updates_total") >= 1
