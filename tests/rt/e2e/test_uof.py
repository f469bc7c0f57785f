"""The UOF/MTS dialect (seed 000) end to end, on real sockets: connect, odds, tickets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio

from rt.server import Server

from ._support import Peer, make_token, open_peer
from .test_handshake import body_of, rejection

EVENT = "sr:match:1"
Message = dict[str, Any]


def uof_resource(user: str, token: str) -> str:
    return f"/ws?userId={quote(user)}&token={quote(token)}"


@asynccontextmanager
async def uof(server: Server, user: str = "u1", token: str | None = None) -> AsyncIterator[Peer]:
    """A seed-000 client of ``user``, past its connection_established."""
    async with trio.open_nursery() as nursery:
        peer = await open_peer(nursery, server, uof_resource(user, token or make_token(user)))
        try:
            hello = await peer.recv()
            assert hello["type"] == "connection_established"
            assert hello["payload"]["userId"] == user
            yield peer
        finally:
            await peer.aclose()


async def live_event(server: Server, odds: float = 1.90, status: str = "active") -> int:
    update = await server.hub.publish(
        f"event:{EVENT}",
        {
            "eventId": EVENT,
            "status": "live",
            "markets": {"1": {"status": status, "outcomes": {"1": odds, "2": 3.4, "3": 4.2}}},
        },
    )
    return update.seq


def ticket(ticket_id: str, odds: float = 1.90, stake: float = 10) -> Message:
    selection = {"eventId": EVENT, "marketId": 1, "outcomeId": "1", "odds": odds}
    return {"ticketId": ticket_id, "selections": [selection], "stake": stake}


async def submit(peer: Peer, t: Message) -> Message:
    await peer.send({"type": "submit_ticket", "payload": t})
    (receipt,) = [m for m in await peer.recv_until(lambda m: m["type"] == "ticket_received")][-1:]
    return receipt["payload"]  # type: ignore[no-any-return]


async def next_result(peer: Peer) -> Message:
    seen = await peer.recv_until(lambda m: m["type"] == "bet_result")
    return seen[-1]


pytestmark = pytest.mark.server_settings(mts_latency_s=0.05)


async def test_subscribe_gets_a_snapshot_then_odds_bet_stop_and_settlement(server: Server) -> None:
    await live_event(server)
    async with uof(server) as peer:
        await peer.send({"type": "subscribe", "payload": {"eventIds": [EVENT]}})
        assert await peer.recv() == {"type": "subscribed", "payload": {"eventIds": [EVENT]}}
        snapshot = await peer.recv()
        assert (snapshot["type"], snapshot["seq"]) == ("snapshot", 1)
        await server.hub.publish(
            f"event:{EVENT}", {"markets": {"1": {"status": "active", "outcomes": {"1": 2.0}}}}
        )
        await server.hub.publish(f"event:{EVENT}", {"markets": {"1": {"status": "suspended"}}})
        await server.hub.publish(
            f"event:{EVENT}",
            {"status": "ended", "markets": {"1": {"status": "settled", "result": {"1": "win"}}}},
        )
        messages = await peer.recv_n(3)
        assert [(m["type"], m["seq"]) for m in messages] == [
            ("odds_change", 2),
            ("bet_stop", 3),
            ("bet_settlement", 4),
        ]
        assert messages[0]["payload"]["outcomes"] == [{"outcomeId": "1", "odds": 2.0}]
        await peer.send({"type": "ping"})
        assert (await peer.recv())["type"] == "pong"


async def test_the_tokens_user_must_be_the_query_user(server: Server) -> None:
    refused = await rejection(server, uof_resource("u2", make_token("u1")))
    assert refused.status_code == 401
    assert body_of(refused) == {
        "type": "error",
        "code": "UNAUTHORIZED",
        "message": "the token is for user u1, not for userId='u2'",
    }


async def test_a_ticket_is_accepted_and_both_of_the_users_connections_get_it(
    server: Server,
) -> None:
    await live_event(server)
    async with uof(server) as first, uof(server) as second, uof(server, "u2") as other:
        receipt = await submit(first, ticket("t-accept"))
        assert receipt == {"ticketId": "t-accept", "status": "pending", "duplicate": False}
        results = [await next_result(first), await next_result(second)]
        assert results[0] == results[1]
        assert results[0]["payload"]["status"] == "accepted"
        assert results[0]["payload"]["details"]["selections"][0]["position"]["seq"] == 1
        await other.send({"type": "ping"})
        assert (await other.recv())["type"] == "pong"  # nothing of u1's reached u2


async def test_changed_odds_and_a_suspended_market_are_rejected(server: Server) -> None:
    await live_event(server, odds=1.90)
    changed_at = await live_event(server, odds=1.95)
    async with uof(server) as peer:
        await submit(peer, ticket("t-old-odds", odds=1.90))
        result = (await next_result(peer))["payload"]
        assert (result["status"], result["reason"]) == ("rejected", "odds_changed")
        assert result["details"]["seq"] == changed_at
        await live_event(server, odds=1.95, status="suspended")
        await submit(peer, ticket("t-suspended", odds=1.95))
        result = (await next_result(peer))["payload"]
        assert (result["status"], result["reason"]) == ("rejected", "market_suspended")


async def test_a_resubmitted_ticket_gets_the_first_result_and_no_second_one(
    server: Server,
) -> None:
    await live_event(server)
    async with uof(server) as peer:
        await submit(peer, ticket("t-twice"))
        first = await next_result(peer)
        again = await submit(peer, ticket("t-twice", stake=999))
        assert again == {**first["payload"], "duplicate": True}
        await peer.send({"type": "ping"})
        after = await peer.recv_until(lambda m: m["type"] == "pong")
        assert [m["type"] for m in after] == ["pong"]  # no second bet_result


async def test_a_result_decided_while_offline_arrives_after_reconnecting(
    server: Server, http: httpx.AsyncClient
) -> None:
    await live_event(server)
    async with uof(server) as peer:
        await submit(peer, ticket("t-online"))
        online = await next_result(peer)
    # Offline: submit over HTTP; the result is decided while no connection is open.
    user_token = make_token("u1")
    response = await http.post(
        "/api/tickets", json=ticket("t-offline"), headers={"Authorization": f"Bearer {user_token}"}
    )
    assert (response.status_code, response.json()["status"]) == (202, "pending")
    decided = trio.Event()
    server.engine.add_listener(lambda u: decided.set() if u.topic == "user:u1" else None)
    with trio.fail_after(5):
        await decided.wait()
    async with uof(server) as peer:
        result = await next_result(peer)
        assert result["seq"] == online["seq"] + 1  # only what it missed, nothing twice
        assert result["payload"]["ticketId"] == "t-offline"


async def test_ticket_route_needs_the_users_token_and_a_valid_ticket(
    http: httpx.AsyncClient,
) -> None:
    missing = await http.post("/api/tickets", json=ticket("t"))
    assert (missing.status_code, missing.json()["code"]) == (401, "UNAUTHORIZED")
    headers = {"Authorization": f"Bearer {make_token('u1')}"}
    invalid = await http.post("/api/tickets", json={"ticketId": "t"}, headers=headers)
    assert (invalid.status_code, invalid.json()["code"]) == (400, "INVALID_TICKET")


@pytest.mark.server_settings(max_connections_per_user=2)
async def test_a_connection_beyond_the_users_limit_gets_an_error_and_is_closed(
    server: Server,
) -> None:
    async with uof(server) as _a, uof(server) as _b, trio.open_nursery() as nursery:
        extra = await open_peer(nursery, server, uof_resource("u1", make_token("u1")))
        try:
            error = await extra.recv()
            assert error["type"] == "error"
            assert error["payload"]["code"] == "TOO_MANY_CONNECTIONS"
            reason = await extra.closed()
            assert (reason.code, reason.reason) == (1008, "TOO_MANY_CONNECTIONS")
        finally:
            await extra.aclose()
