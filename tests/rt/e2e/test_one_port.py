"""One port serves HTTP and WebSocket (rt/ws/front_door.py), as every seed's clients expect, and
an optional admin port takes the operator routes."""

from __future__ import annotations

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from rt.server import Server
from rt.ws.front_door import MAX_HEAD_BYTES, is_websocket_upgrade

from ._support import connect, make_token, upgrade_status


def test_the_head_decides_websocket_or_http() -> None:
    upgrade = (
        b"GET /ws/odds?token=x HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    assert is_websocket_upgrade(upgrade)
    assert is_websocket_upgrade(upgrade + b"\x81\x05hello")  # a frame in the same packet
    assert not is_websocket_upgrade(b"GET /api/ws/health HTTP/1.1\r\nHost: a\r\n\r\n")
    assert not is_websocket_upgrade(upgrade.replace(b"GET", b"POST", 1))
    assert not is_websocket_upgrade(b"not http at all\r\n\r\n")
    assert not is_websocket_upgrade(b"GET / HTTP/1.1\r\nHost: a\r\n")  # head not ended


async def test_rest_and_websocket_on_the_same_port(server: Server) -> None:
    assert server.ws_port == server.http_port == server.port
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        # keep-alive: several requests on one connection
        for _ in range(3):
            health = await http.get("/api/ws/health")
            assert health.status_code == 200
        snapshot = await http.get("/api/markets/1001/odds/snapshot")
        assert snapshot.json()["seq"] == 0
    async with connect(server) as peer:
        await peer.subscribe(1001)
        await peer.ping()


async def test_a_head_past_the_limit_gets_an_http_error_not_a_hang(server: Server) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
        )
        with trio.fail_after(5):
            answer = await stream.receive_some(4096)
    assert answer.startswith(b"HTTP/1.1 4")


async def test_a_silent_client_is_dropped_after_the_handshake_timeout(
    server: Server, autojump_clock: trio.abc.Clock
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        start = trio.current_time()
        with trio.fail_after(60):
            assert await stream.receive_some(10) == b""
        assert trio.current_time() - start == pytest.approx(
            server.settings.handshake_timeout_s, abs=0.5
        )
    slow = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with slow:  # a slowloris: a byte of its head now and then, never the end of it
        start = trio.current_time()
        with trio.fail_after(60):
            try:
                for byte in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa":
                    await slow.send_all(bytes([byte]))
                    await trio.sleep(1)
                assert await slow.receive_some(10) == b""
            except trio.BrokenResourceError:
                pass  # reset: it had sent bytes the server never read
        assert trio.current_time() - start < server.settings.handshake_timeout_s + 2
    (listener,) = [c for c in server.system.tree()["children"] if c["name"] == "public"]
    assert listener["restarts"] == 0  # each connection's trouble is its own


@pytest.mark.server_settings(admin_port=0, admin_routes_on_public_port=False)
async def test_the_admin_port_takes_the_operator_routes(server: Server) -> None:
    assert server.admin_port not in (None, 0, server.port)
    assert server.ready_line().endswith(f" admin=http://127.0.0.1:{server.admin_port}")
    headers = {"Authorization": f"Bearer {server.settings.admin_token}"}
    async with httpx.AsyncClient(base_url=server.http_url) as public:
        for path in ("/metrics", "/debug/actors", "/debug"):
            response = await public.get(path, headers=headers)
            assert response.status_code == 404, path
            assert response.json()["code"] == "NOT_FOUND"
        response = await public.post(
            "/admin/odds/override", json={"marketId": 1001, "payload": {"a": 1}}, headers=headers
        )
        assert response.status_code == 404
        assert (await public.get("/api/ws/health")).status_code == 200  # the rest stays
    async with httpx.AsyncClient(base_url=server.admin_url or "") as admin:
        assert (await admin.get("/metrics")).status_code == 200
        assert (await admin.get("/debug/actors", headers=headers)).status_code == 200
    assert (await upgrade_status(server.port, "/ws/publish")) == b"404"
    admin_ws = f"ws://127.0.0.1:{server.admin_port}"
    async with open_websocket_url(f"{admin_ws}/ws/publish?token={server.settings.admin_token}"):
        pass
    async with open_websocket_url(f"{server.ws_url}/ws/odds?token={make_token()}"):
        pass


@pytest.mark.server_settings(admin_port=0)
async def test_by_default_the_public_port_keeps_the_operator_routes(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as public:
        assert (await public.get("/metrics")).status_code == 200
