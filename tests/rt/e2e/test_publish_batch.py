"""POST /admin/publish: a batch of updates in one request, received by KMarket clients."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio

from rt.client import KMarketClient
from rt.server import Server

from ._support import FIXED_TS, Message, Watch, connect, odds_update, topic


def batch(*updates: tuple[int | str, dict[str, Any]]) -> dict[str, Any]:
    return {"updates": [{"marketId": m, "payload": p} for m, p in updates]}


async def test_publish_needs_the_admin_token(server: Server, http: httpx.AsyncClient) -> None:
    body = batch((1001, {"p": 1}))
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic admin-token-0123456789abcdef0123456789abcdef"},
    ):
        response = await http.post("/admin/publish", json=body, headers=headers)
        assert response.status_code == 401
        assert response.json() == {
            "code": "UNAUTHORIZED",
            "message": "this route needs Authorization: Bearer <admin token>",
        }
    # The token is checked before the body is read: a bad body without one is still 401.
    response = await http.post("/admin/publish", content=b"{bad")
    assert response.status_code == 401
    assert server.engine.topics() == []


@pytest.mark.server_settings(admin_token="")
async def test_without_an_admin_token_configured_nobody_publishes(
    server: Server, http: httpx.AsyncClient
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer admin-token-0123456789abcdef0123456789abcdef"},
    ):
        response = await http.post("/admin/publish", json=batch((1, {})), headers=headers)
        assert response.status_code == 401
    assert server.engine.topics() == []


async def test_a_batch_reaches_subscribers_in_order_with_the_seqs_it_answered(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    updates: list[tuple[int | str, dict[str, Any]]] = [
        (1001, {"moneyline": {"home": 1.85, "away": 2.1}, "total": 2.5}),
        ("1002", {"status": "open"}),
        ("1001", {"moneyline": {"away": None}, "total": None}),
        (1002, {"status": "suspended", "reason": {"code": 7}}),
        (1001, {"moneyline": {"draw": 3.3}}),
    ]
    async with connect(server) as peer:
        await peer.subscribe(1001, 1002)
        response = await http.post("/admin/publish", json=batch(*updates), headers=admin)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "results": [
                {"marketId": 1001, "seq": 1, "ts": FIXED_TS},
                {"marketId": 1002, "seq": 1, "ts": FIXED_TS},
                {"marketId": 1001, "seq": 2, "ts": FIXED_TS},
                {"marketId": 1002, "seq": 2, "ts": FIXED_TS},
                {"marketId": 1001, "seq": 3, "ts": FIXED_TS},
            ]
        }
        received = await peer.recv_n(len(updates))
    # Markets are separate streams: order holds within each, not across them.
    for market in (1001, 1002):
        expected = [(int(m), p) for m, p in updates if int(m) == market]
        assert [m for m in received if m["marketId"] == market] == [
            odds_update(market, seq, payload) for seq, (_, payload) in enumerate(expected, 1)
        ]
    snapshot = (await http.get("/api/markets/1001/odds/snapshot")).json()
    assert (snapshot["seq"], snapshot["payload"]) == (
        3,
        {"moneyline": {"home": 1.85, "draw": 3.3}},
    )


async def test_the_largest_batch_arrives_whole_and_in_order(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    # 1,000 updates over 4 markets: 250 each, below any subscriber's coalescing mark.
    markets = [2001, 2002, 2003, 2004]
    updates = [(markets[i % 4], {"n": i}) for i in range(1000)]
    async with connect(server) as peer:
        await peer.subscribe(*markets)
        response = await http.post("/admin/publish", json=batch(*updates), headers=admin)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        received = await peer.recv_n(1000)
    assert [(r["marketId"], r["seq"]) for r in results] == [
        (m, i // 4 + 1) for i, (m, _) in enumerate(updates)
    ]
    for market in markets:
        stream = [(m["seq"], m["payload"]["n"]) for m in received if m["marketId"] == market]
        assert stream == [
            (r["seq"], p["n"]) for r, (m, p) in zip(results, updates, strict=True) if m == market
        ]
        assert [seq for seq, _ in stream] == list(range(1, 251))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(batch(), "updates: a batch holds 1 to 1000 updates, got 0", id="empty"),
        pytest.param(
            batch(*[(1, {})] * 1001),
            "updates: a batch holds 1 to 1000 updates, got 1001",
            id="too-big",
        ),
        pytest.param(
            batch((1001, {"p": 1}), ("no such id!", {"p": 2})),
            'updates[1].marketId: expected marketId to be a number or a name of 1-64 characters [A-Za-z0-9_.:-], got "no such id!"',
            id="bad-market-after-a-good-one",
        ),
        pytest.param(
            batch((1001, {"p": 1}), (1002, [1, 2])),  # type: ignore[arg-type]
            "updates[1].payload: expected payload to be a JSON object (an RFC 7396 merge patch), got [1, 2]",
            id="payload-not-an-object",
        ),
        pytest.param(
            {"updates": [{"marketId": 1001, "payload": {}}, {"marketId": 1002}]},
            "updates[1].payload: this field is required",
            id="payload-missing",
        ),
        pytest.param(
            {"updates": [{"marketId": 1001, "payload": {}, "kind": "event"}]},
            "updates[0].kind: unknown field",
            id="unknown-field",
        ),
        pytest.param([{"marketId": 1001, "payload": {}}], "expected a JSON object", id="a-list"),
        pytest.param("{not json", "the body is not valid JSON", id="not-json"),
        pytest.param(
            '{"updates":[{"marketId":1001,"payload":{"p":1}},{"marketId":1001,"payload":{"p":NaN}}]}',
            "updates[1].payload: expected payload to hold only finite numbers, got nan",
            id="nan",
        ),
    ],
)
async def test_a_bad_batch_is_400_and_publishes_nothing(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str], body: object, message: str
) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    response = await http.post(
        "/admin/publish",
        content=content,
        headers={**admin, "content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["code"] == "INVALID_REQUEST"
    assert answer["message"].startswith(message), answer["message"]
    assert server.engine.topics() == []


async def test_a_body_over_the_limit_is_413(
    server: Server,
    http: httpx.AsyncClient,
    admin: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("rt.http.app.MAX_PUBLISH_BODY_BYTES", 1000)
    body = batch(*[(1001, {"pad": "x" * 100})] * 10)
    response = await http.post("/admin/publish", json=body, headers=admin)
    assert response.status_code == 413
    assert response.json() == {
        "code": "PAYLOAD_TOO_LARGE",
        "message": "a publish body may be at most 1000 bytes",
    }
    assert server.engine.topics() == []


async def test_the_override_route_refuses_what_no_client_could_read(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await http.post(
        "/admin/odds/override",
        content=b'{"marketId": 1001, "payload": {"p": Infinity}}',
        headers={**admin, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "code": "INVALID_REQUEST",
        "message": "payload: expected payload to hold only finite numbers, got inf",
    }
    assert server.engine.topics() == []


async def test_batches_from_concurrent_producers_keep_the_contract(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str], token: Callable[..., str]
) -> None:
    """Several producers post mixed batches at once; a contract-checking client sees every
    market's updates in seq order, each batch's updates in the order it listed them, and ends
    with the server's state."""
    markets = [3001, 3002, 3003, 3004, 3005]
    watch = Watch()
    client = KMarketClient(server.ws_url, token(), list(markets), on_message=watch.feed)
    sent: dict[int, list[tuple[str, int]]] = {m: [] for m in markets}  # (producer, n)

    async def producer(name: str, seed: int) -> None:
        rng = random.Random(seed)
        for n in range(8):
            chosen = [(rng.choice(markets), {"by": name, "n": n * 100 + i}) for i in range(20)]
            response = await http.post("/admin/publish", json=batch(*chosen), headers=admin)
            assert response.status_code == 200, response.text
            for result, (market, payload) in zip(response.json()["results"], chosen, strict=True):
                assert result["marketId"] == market
                sent[market].append((name, payload["n"]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        await watch.until(lambda: len(client.markets) == len(markets))
        async with trio.open_nursery() as producers:
            for i, name in enumerate("abc"):
                producers.start_soon(producer, name, i)
        positions = {m: server.engine.position(topic(m))[1] for m in markets}
        assert sum(positions.values()) == 3 * 8 * 20
        await watch.until(lambda: all(client.markets[str(m)].seq == positions[m] for m in markets))
        nursery.cancel_scope.cancel()

    updates: list[Message] = [m for m in watch.messages if m["type"] == "odds_update"]
    for market in markets:
        view = client.markets[str(market)]
        assert (view.updates, view.conflated) == (positions[market], 0)
        snapshot = (await http.get(f"/api/markets/{market}/odds/snapshot")).json()
        assert view.state == snapshot["payload"]
        # Each producer's updates to this market arrived in the order it listed them.
        arrived = [
            (u["payload"]["by"], u["payload"]["n"]) for u in updates if u["marketId"] == market
        ]
        for name in "abc":
            mine = [n for by, n in arrived if by == name]
            assert mine == sorted(mine) == [n for by, n in sent[market] if by == name]
