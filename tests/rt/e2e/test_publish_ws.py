"""/ws/publish: an admin publisher on the WebSocket listener, received by KMarket clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, wrap_client_stream

from rt.server import Server, open_server
from tests.rt.harness import settings

from ._support import (
    FIXED_TS,
    TIMEOUT_S,
    Message,
    Peer,
    connect,
    e2e_settings,
    odds_update,
    wait_connections_closed,
)

ADMIN = settings().admin_token  # the e2e server's


def bearer(token: str = ADMIN) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


async def open_publisher(
    nursery: trio.Nursery,
    server: Server,
    *,
    resource: str = "/ws/publish",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Peer:
    """A publisher WebSocket (with the admin token in a header by default); the caller closes
    it. Its background reader runs in ``nursery``, so it may outlive the server."""
    host, port = server.settings.host, server.ws_port
    stream = await trio.open_tcp_stream(host, port)
    try:
        with trio.fail_after(TIMEOUT_S):
            ws = await wrap_client_stream(
                nursery,
                stream,
                f"{host}:{port}",
                resource,
                extra_headers=bearer() if headers is None else headers,
            )
    except BaseException:
        await stream.aclose()
        raise
    return Peer(ws, stream)


@asynccontextmanager
async def publisher(server: Server, **options: Any) -> AsyncIterator[Peer]:
    async with trio.open_nursery() as nursery:
        peer = await open_publisher(nursery, server, **options)
        try:
            yield peer
        finally:
            await peer.aclose()


async def refused(server: Server, resource: str, headers: list[tuple[bytes, bytes]]) -> Message:
    """Expect the handshake to be refused with 401; return its JSON body."""
    with pytest.RaisesGroup(ConnectionRejected) as caught:
        async with publisher(server, resource=resource, headers=headers):
            pass
    (exc,) = caught.value.exceptions
    assert isinstance(exc, ConnectionRejected)
    assert exc.status_code == 401
    assert exc.headers is not None
    assert (b"content-type", b"application/json") in exc.headers
    assert exc.body is not None
    body = json.loads(exc.body)
    assert isinstance(body, dict)
    return body


def update(market: int | str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"marketId": market, "payload": payload}


# -- the handshake -----------------------------------------------------------------------

REFUSAL = {
    "type": "error",
    "code": "UNAUTHORIZED",
    "message": "this endpoint needs Authorization: Bearer <admin token> (or ?token=<admin token>)",
}


@pytest.mark.parametrize(
    ("resource", "headers"),
    [
        pytest.param("/ws/publish", [], id="no-token"),
        pytest.param("/ws/publish", bearer("wrong"), id="wrong-bearer"),
        pytest.param("/ws/publish", [(b"authorization", f"Basic {ADMIN}".encode())], id="basic"),
        pytest.param("/ws/publish?token=wrong", [], id="wrong-query-token"),
        pytest.param("/ws/publish?token=", [], id="empty-query-token"),
        # A user's JWT is no admin token.
        pytest.param("/ws/publish?token=eyJhbGciOiJIUzI1NiJ9.e30.x", [], id="a-jwt"),
    ],
)
async def test_a_publisher_needs_the_admin_token(
    server: Server, resource: str, headers: list[tuple[bytes, bytes]]
) -> None:
    assert await refused(server, resource, headers) == REFUSAL
    async with connect(server) as peer:  # the listener serves on
        await peer.ping()


@pytest.mark.server_settings(admin_token="")
async def test_without_an_admin_token_configured_nobody_publishes(server: Server) -> None:
    assert await refused(server, "/ws/publish", bearer()) == REFUSAL
    assert await refused(server, "/ws/publish?token=", []) == REFUSAL


async def test_the_token_may_come_in_the_query(server: Server) -> None:
    async with publisher(server, resource=f"/ws/publish?token={quote(ADMIN)}", headers=[]) as pub:
        await pub.send({"type": "publish", "id": 1, "marketId": 1001, "payload": {"p": 1}})
        assert await pub.recv() == {
            "type": "published",
            "id": 1,
            "results": [{"marketId": 1001, "seq": 1, "ts": FIXED_TS}],
        }


# -- publishing ----------------------------------------------------------------------------


async def test_published_batches_reach_subscribers_with_the_seqs_answered(
    server: Server,
) -> None:
    async with connect(server) as client, publisher(server) as pub:
        await client.subscribe(1001, 1002)
        await pub.send(
            {
                "type": "publish",
                "id": "b1",
                "updates": [
                    update(1001, {"moneyline": {"home": 1.85}}),
                    update("1002", {"status": "open"}),
                    update("1001", {"moneyline": {"home": None, "away": 2.1}}),
                ],
            }
        )
        assert await pub.recv() == {
            "type": "published",
            "id": "b1",
            "results": [
                {"marketId": 1001, "seq": 1, "ts": FIXED_TS},
                {"marketId": 1002, "seq": 1, "ts": FIXED_TS},
                {"marketId": 1001, "seq": 2, "ts": FIXED_TS},
            ],
        }
        # The single-update form, without an id.
        await pub.send({"type": "publish", "marketId": 1002, "payload": {"status": "closed"}})
        assert await pub.recv() == {
            "type": "published",
            "id": None,
            "results": [{"marketId": 1002, "seq": 2, "ts": FIXED_TS}],
        }
        received = await client.recv_n(4)
    assert [m for m in received if m["marketId"] == 1001] == [
        odds_update(1001, 1, {"moneyline": {"home": 1.85}}),
        odds_update(1001, 2, {"moneyline": {"home": None, "away": 2.1}}),
    ]
    assert [m for m in received if m["marketId"] == 1002] == [
        odds_update(1002, 1, {"status": "open"}),
        odds_update(1002, 2, {"status": "closed"}),
    ]


async def test_pipelined_frames_are_answered_in_order_and_published_in_order(
    server: Server, http: httpx.AsyncClient
) -> None:
    """A publisher that sends many frames without waiting gets every answer, in order; the
    server reads the next frame only after answering the last (TCP holds the rest)."""
    markets = [4001, 4002, 4003]
    frames = 60
    async with connect(server) as client, publisher(server) as pub:
        await client.subscribe(*markets)
        for n in range(frames):
            updates = [update(markets[(n + i) % 3], {"n": n, "i": i}) for i in range(5)]
            await pub.send({"type": "publish", "id": n, "updates": updates})
        answers = await pub.recv_n(frames)
        received = await client.recv_n(frames * 5)
    assert [a["id"] for a in answers] == list(range(frames))
    results = [r for a in answers for r in a["results"]]
    for market in markets:
        seqs = [r["seq"] for r in results if r["marketId"] == market]
        assert seqs == list(range(1, frames * 5 // 3 + 1))
        stream = [m for m in received if m["marketId"] == market]
        assert [m["seq"] for m in stream] == seqs
        # In the order the frames listed them.
        assert [(m["payload"]["n"], m["payload"]["i"]) for m in stream] == sorted(
            (m["payload"]["n"], m["payload"]["i"]) for m in stream
        )
    snapshot = (await http.get("/api/markets/4001/odds/snapshot")).json()
    assert snapshot["seq"] == frames * 5 // 3


# -- bad frames ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "answer"),
    [
        pytest.param("{nope", {"id": None, "code": "BAD_JSON"}, id="not-json"),
        pytest.param("[1, 2]", {"id": None, "code": "BAD_JSON"}, id="not-an-object"),
        pytest.param(
            '{"type": "subscribe", "id": 9, "markets": ["1001"]}',
            {
                "id": 9,
                "code": "UNKNOWN_TYPE",
                "message": 'expected type "publish", got "subscribe"',
            },
            id="unknown-type",
        ),
        pytest.param(
            '{"type": "publish", "id": "e", "updates": []}',
            {
                "id": "e",
                "code": "INVALID_PUBLISH",
                "message": "updates: a batch holds 1 to 1000 updates, got 0",
            },
            id="empty",
        ),
        pytest.param(
            json.dumps({"type": "publish", "id": 5, "updates": [update(1, {})] * 1001}),
            {
                "id": 5,
                "code": "INVALID_PUBLISH",
                "message": "updates: a batch holds 1 to 1000 updates, got 1001",
            },
            id="too-big",
        ),
        pytest.param(
            json.dumps(
                {
                    "type": "publish",
                    "id": 6,
                    "updates": [update(1001, {"p": 1}), update("no such id!", {"p": 2})],
                }
            ),
            {
                "id": 6,
                "code": "INVALID_PUBLISH",
                "message": 'updates[1].marketId: expected marketId to be a number or a name of 1-64 characters [A-Za-z0-9_.:-], got "no such id!"',
            },
            id="bad-market-after-a-good-one",
        ),
        pytest.param(
            '{"type": "publish", "marketId": 1001, "payload": [1]}',
            {
                "id": None,
                "code": "INVALID_PUBLISH",
                "message": "payload: expected payload to be a JSON object (an RFC 7396 merge patch), got [1]",
            },
            id="payload-not-an-object",
        ),
        pytest.param(
            '{"type": "publish", "marketId": 1001, "payload": {"p": NaN}}',
            {
                "id": None,
                "code": "BAD_JSON",
                "message": "the frame is not valid JSON (NaN is not a JSON value)",
            },
            id="nan",
        ),
        pytest.param(
            '{"type": "publish", "marketId": 1001, "payload": {"p": "\\ud800"}}',
            {
                "id": None,
                "code": "BAD_JSON",
                "message": 'the frame is not valid JSON (string "\\ud800" holds a lone UTF-16 surrogate)',
            },
            id="lone-surrogate",
        ),
    ],
)
async def test_a_bad_frame_gets_an_error_publishes_nothing_and_the_socket_stays_open(
    server: Server, frame: str | bytes, answer: Message
) -> None:
    async with connect(server) as client, publisher(server) as pub:
        await client.subscribe(1001)
        await pub.send_raw(frame)
        error = await pub.recv()
        assert error.pop("type") == "error"
        assert {k: error[k] for k in answer} == answer
        assert isinstance(error["message"], str) and error["message"]
        assert server.engine.topics() == []
        # The same socket publishes on, and the subscriber's first update is seq 1.
        await pub.send({"type": "publish", "id": "ok", "marketId": 1001, "payload": {"p": 1}})
        assert (await pub.recv())["results"] == [{"marketId": 1001, "seq": 1, "ts": FIXED_TS}]
        assert await client.recv() == odds_update(1001, 1, {"p": 1})


async def test_a_binary_frame_closes_with_1003_and_publishes_nothing(server: Server) -> None:
    async with publisher(server) as pub:
        await pub.send_raw(b'{"type": "publish", "marketId": 1001, "payload": {}}')
        reason = await pub.closed()
        assert (reason.code, reason.reason) == (1003, "binary messages are not accepted")
    assert server.engine.topics() == []


@pytest.mark.server_settings(max_message_bytes=1024)
async def test_a_frame_over_the_size_limit_closes_with_1009(server: Server) -> None:
    async with publisher(server) as pub:
        await pub.send({"type": "publish", "marketId": 1, "payload": {"pad": "x" * 2000}})
        reason = await pub.closed()
        assert reason.code == 1009
    assert server.engine.topics() == []


@pytest.mark.server_settings(idle_timeout_s=0.3, ping_interval_s=60.0)
async def test_a_silent_publisher_is_closed_with_4000(server: Server) -> None:
    async with publisher(server) as pub:
        reason = await pub.closed()
        assert (reason.code, reason.reason) == (4000, "HEARTBEAT_TIMEOUT")


# -- lifecycle -----------------------------------------------------------------------------


async def test_a_publisher_is_an_actor_under_conns_and_goes_when_it_disconnects(
    server: Server, http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async with publisher(server) as pub:
        await pub.send({"type": "publish", "id": 1, "marketId": 1, "payload": {}})
        await pub.recv()
        await pub.send_raw("{bad")
        await pub.recv()
        tree = (await http.get("/debug/actors", headers=admin)).json()["tree"]
        (conns,) = [c for c in tree["children"] if c["name"] == "conns"]
        (node,) = conns["children"]
        assert (node["kind"], node["name"], node["state"]) == ("publisher", "p1", "running")
        assert node["info"] == {"frames": 2, "published": 1, "errors": 1}
        # Publishers are not clients: the connection count leaves them out.
        assert (await http.get("/api/ws/health")).json()["connections"] == 0
    await wait_connections_closed(server)
    assert server.system.lookup("conns/p1") is None
    # A publisher cut without a close handshake ends only itself.
    async with trio.open_nursery() as nursery:
        pub = await open_publisher(nursery, server)
        await pub.stream.aclose()
        await pub.aclose()
    await wait_connections_closed(server)
    async with publisher(server) as pub:
        await pub.send({"type": "publish", "id": 2, "marketId": 1, "payload": {}})
        assert (await pub.recv())["results"][0]["seq"] == 2


async def test_publishers_see_1001_when_the_server_stops() -> None:
    async with trio.open_nursery() as clients:  # the publisher outlives the server
        async with open_server(e2e_settings()) as server:
            pub = await open_publisher(clients, server)
            await pub.send({"type": "publish", "id": 1, "marketId": 1, "payload": {}})
            assert (await pub.recv())["id"] == 1
        try:
            reason = await pub.closed()
            assert (reason.code, reason.reason) == (1001, "server shutting down")
        finally:
            await pub.aclose()
