"""Subscribing on /ws/odds: ack, snapshots, live updates, scope, unsubscribe, ping."""

from __future__ import annotations

import httpx
import pytest

from rt.server import Server

from ._support import FIXED_TS, connect, make_token, odds_update, topic


def epoch_of(server: Server, market: int) -> str:
    return server.engine.position(topic(market))[0]


async def test_subscribe_acks_then_one_snapshot_per_market(server: Server) -> None:
    await server.hub.publish(topic(1001), {"moneyline": {"home": 1.85, "away": 2.1}})
    await server.hub.publish(topic(1001), {"moneyline": {"away": 2.05}})
    async with connect(server) as peer:
        await peer.send({"type": "subscribe", "markets": ["1001", "1002"]})
        assert await peer.recv() == {"type": "ack", "ok": True, "subscribed": [1001, 1002]}
        snapshots = {s["marketId"]: s for s in await peer.recv_n(2)}
        assert snapshots == {
            1001: {
                "type": "snapshot",
                "marketId": 1001,
                "seq": 2,
                "ts": FIXED_TS,
                "payload": {"moneyline": {"home": 1.85, "away": 2.05}},
                "epoch": epoch_of(server, 1001),
            },
            # Never published: seq 0, ts 0, an empty state.
            1002: {
                "type": "snapshot",
                "marketId": 1002,
                "seq": 0,
                "ts": 0,
                "payload": {},
                "epoch": epoch_of(server, 1002),
            },
        }


async def test_live_updates_from_admin_route_and_hub(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async with connect(server) as peer:
        await peer.subscribe(1001, 1002)
        response = await http.post(
            "/admin/odds/override",
            json={"marketId": "1001", "payload": {"moneyline": {"home": 1.85, "away": 2.1}}},
            headers=admin,
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"marketId": 1001, "seq": 1, "ts": FIXED_TS}
        assert await peer.recv() == odds_update(1001, 1, {"moneyline": {"home": 1.85, "away": 2.1}})

        update = await server.hub.publish(topic(1002), {"total": {"over": 1.9}})
        assert update.seq == 1
        assert await peer.recv() == odds_update(1002, 1, {"total": {"over": 1.9}})
        await server.hub.publish(topic(1001), {"moneyline": {"home": 1.8}})
        assert await peer.recv() == odds_update(1001, 2, {"moneyline": {"home": 1.8}})


async def test_updates_arrive_in_seq_order(server: Server) -> None:
    async with connect(server) as peer:
        await peer.subscribe(1001)
        for i in range(1, 51):
            await server.hub.publish(topic(1001), {"price": i})
        received = await peer.recv_n(50)
        assert received == [odds_update(1001, i, {"price": i}) for i in range(1, 51)]


async def test_every_subscriber_gets_every_update(server: Server) -> None:
    async with connect(server) as a, connect(server) as b:
        await a.subscribe(1001)
        await b.subscribe(1001, 1002)
        await server.hub.publish(topic(1001), {"p": 1})
        await server.hub.publish(topic(1002), {"q": 1})
        assert await a.recv() == odds_update(1001, 1, {"p": 1})
        # Two rooms: the order between markets is not defined, only the order within one.
        received = sorted(await b.recv_n(2), key=lambda m: m["marketId"])
        assert received == [odds_update(1001, 1, {"p": 1}), odds_update(1002, 1, {"q": 1})]
        await a.ping()


async def test_numeric_and_string_ids_are_the_same_market(server: Server) -> None:
    async with connect(server) as peer:
        await peer.send({"type": "subscribe", "markets": [1001, "1001", "01001"]})
        assert await peer.recv() == {"type": "ack", "ok": True, "subscribed": [1001]}
        snapshot = await peer.recv()
        assert snapshot["type"] == "snapshot"
        assert snapshot["marketId"] == 1001
        await server.hub.publish(topic(1001), {"p": 1})
        assert await peer.recv() == odds_update(1001, 1, {"p": 1})


async def test_subscribing_again_sends_no_second_snapshot(server: Server) -> None:
    async with connect(server) as peer:
        await peer.subscribe(1001)
        await server.hub.publish(topic(1001), {"p": 1})
        assert await peer.recv() == odds_update(1001, 1, {"p": 1})
        await peer.send({"type": "subscribe", "markets": ["1001"]})
        assert await peer.recv() == {"type": "ack", "ok": True, "subscribed": [1001]}
        await server.hub.publish(topic(1001), {"p": 2})
        assert await peer.recv() == odds_update(1001, 2, {"p": 2})


async def test_markets_outside_the_token_scope_are_refused(server: Server) -> None:
    async with connect(server, make_token(scope=["1001", "1003"])) as peer:
        await peer.send({"type": "subscribe", "markets": ["1001", "1002", "1003", "1004"]})
        assert await peer.recv() == {"type": "ack", "ok": True, "subscribed": [1001, 1003]}
        assert await peer.recv() == {
            "type": "error",
            "code": "FORBIDDEN_MARKET",
            "message": "the token does not allow markets [1002, 1004]",
            "markets": [1002, 1004],
        }
        snapshots = await peer.recv_n(2)
        assert sorted(s["marketId"] for s in snapshots) == [1001, 1003]
        assert all(s["type"] == "snapshot" for s in snapshots)

        # Only the allowed markets stream.
        await server.hub.publish(topic(1002), {"x": 1})
        await server.hub.publish(topic(1004), {"x": 1})
        await server.hub.publish(topic(1003), {"y": 1})
        assert await peer.recv() == odds_update(1003, 1, {"y": 1})
        await peer.ping()


async def test_a_scope_with_no_allowed_market_acks_nothing(server: Server) -> None:
    async with connect(server, make_token(scope=["1001"])) as peer:
        await peer.send({"type": "subscribe", "markets": ["2002"]})
        assert await peer.recv() == {"type": "ack", "ok": True, "subscribed": []}
        error = await peer.recv()
        assert error["code"] == "FORBIDDEN_MARKET"
        assert error["markets"] == [2002]
        await peer.ping()


async def test_unsubscribe_stops_that_market_only(server: Server) -> None:
    async with connect(server) as peer:
        await peer.subscribe(1001, 1002)
        await server.hub.publish(topic(1002), {"p": 1})
        assert await peer.recv() == odds_update(1002, 1, {"p": 1})

        await peer.send({"type": "unsubscribe", "markets": ["1002"]})
        assert await peer.recv() == {
            "type": "ack",
            "ok": True,
            "unsubscribed": [1002],
            "subscribed": [1001],
        }
        await server.hub.publish(topic(1002), {"p": 2})
        await server.hub.publish(topic(1001), {"q": 1})
        # The update of 1002 was published first; had it been sent, it would come first.
        assert await peer.recv() == odds_update(1001, 1, {"q": 1})
        await peer.ping()  # and nothing of 1002 came after it either


async def test_unsubscribe_of_markets_not_subscribed(server: Server) -> None:
    async with connect(server) as peer:
        await peer.subscribe(1001)
        await peer.send({"type": "unsubscribe", "markets": ["1002", 1001]})
        assert await peer.recv() == {
            "type": "ack",
            "ok": True,
            "unsubscribed": [1001],
            "subscribed": [],
        }
        await peer.send({"type": "unsubscribe", "markets": ["1001"]})
        assert await peer.recv() == {
            "type": "ack",
            "ok": True,
            "unsubscribed": [],
            "subscribed": [],
        }


async def test_subscribe_again_after_unsubscribe_starts_from_a_snapshot(server: Server) -> None:
    async with connect(server) as peer:
        await peer.subscribe(1001)
        await peer.send({"type": "unsubscribe", "markets": ["1001"]})
        assert (await peer.recv())["type"] == "ack"
        await server.hub.publish(topic(1001), {"p": 1})
        await server.hub.publish(topic(1001), {"p": 2})
        snapshots = await peer.subscribe(1001)
        assert snapshots[1001]["seq"] == 2
        assert snapshots[1001]["payload"] == {"p": 2}
        await server.hub.publish(topic(1001), {"p": 3})
        assert await peer.recv() == odds_update(1001, 3, {"p": 3})


@pytest.mark.parametrize("ts", [1_710_001_112_223, 0, "client-clock"])
async def test_ping_gets_pong_with_its_ts(server: Server, ts: int | str) -> None:
    async with connect(server) as peer:
        await peer.send({"type": "ping", "ts": ts})
        assert await peer.recv() == {"type": "pong", "ts": ts}


async def test_ping_without_ts_gets_the_server_time(server: Server) -> None:
    async with connect(server) as peer:
        await peer.send({"type": "ping"})
        assert await peer.recv() == {"type": "pong", "ts": FIXED_TS}
