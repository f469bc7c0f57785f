"""HTTP bodies over 64 KiB get 413 before they end; failed admin authentication is limited
per address (429), on the HTTP API and on /ws/publish."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected

from rt.server import Server

from ._support import TIMEOUT_S
from .test_handshake import rejection


async def raw_http(
    server: Server, head: bytes, *body_parts: bytes
) -> tuple[int, dict[str, object]]:
    """Send a request head and the given body parts (not necessarily a whole body), then
    read the response: its status and JSON body."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.http_port)
    try:
        await stream.send_all(head)
        for part in body_parts:
            await stream.send_all(part)
        data = b""
        with trio.fail_after(TIMEOUT_S):
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = await stream.receive_some()
                assert chunk, data
                data += chunk
    finally:
        await stream.aclose()
    head_text, _, body = data.partition(b"\r\n\r\n")
    return int(head_text.split(b" ")[1]), json.loads(body)


def post(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


TOO_BIG = {"code": "PAYLOAD_TOO_LARGE", "message": "the request body may be at most 65536 bytes"}


async def test_an_announced_length_over_64_kib_is_refused_before_the_body(server: Server) -> None:
    # Not a byte of the body is sent.
    status, body = await raw_http(server, post("/api/tickets", "Content-Length: 1000000"))
    assert (status, body) == (413, TOO_BIG)


async def test_a_complete_body_over_64_kib_is_413(http: httpx.AsyncClient) -> None:
    response = await http.post("/admin/odds/override", content=b"x" * (64 * 1024 + 1))
    assert (response.status_code, response.json()) == (413, TOO_BIG)


async def test_a_chunked_body_is_refused_at_its_65537th_byte(server: Server) -> None:
    chunk = b"%x\r\n%s\r\n" % (16 * 1024, b" " * 16 * 1024)
    # Five chunks of 16 KiB (80 KiB) and no last chunk: the body has not ended.
    status, body = await raw_http(
        server, post("/api/ws/token", "Transfer-Encoding: chunked"), *[chunk] * 5
    )
    assert (status, body) == (413, TOO_BIG)


async def test_a_body_within_the_limit_is_read(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/ws/token",
        content=b" " * 60_000 + b'{"userId": 1}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 401  # read whole, then refused for the missing token


async def test_the_batch_publish_route_keeps_its_own_larger_limit(
    http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    payload = {"p": "x" * 100_000}
    response = await http.post(
        "/admin/publish", json={"updates": [{"marketId": 1001, "payload": payload}]}, headers=admin
    )
    assert response.status_code == 200, response.text


async def test_ten_failed_admin_logins_then_429_even_for_the_right_token(
    http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    wrong = {"Authorization": "Bearer " + "w" * 40}
    for _ in range(10):
        assert (await http.get("/debug/actors", headers=wrong)).status_code == 401
    for route, headers in [("/debug/actors", admin), ("/debug/actors", wrong)]:
        limited = await http.get(route, headers=headers)
        assert limited.status_code == 429
        assert limited.json()["code"] == "TOO_MANY_ATTEMPTS"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
    # Every admin route shares the count.
    override = await http.post(
        "/admin/odds/override", json={"marketId": 1, "payload": {}}, headers=admin
    )
    assert override.status_code == 429
    assert (await http.post("/realtime/broadcast", json={}, headers=admin)).status_code == 429


@pytest.mark.server_settings(admin_auth_max_failures=3)
async def test_the_publisher_socket_shares_the_limit(server: Server) -> None:
    for _ in range(3):
        refused = await rejection(server, "/ws/publish?token=" + "w" * 40)
        assert refused.status_code == 401
    right = await rejection(server, f"/ws/publish?token={server.settings.admin_token}")
    assert isinstance(right, ConnectionRejected)
    assert right.status_code == 429
    assert right.body is not None and json.loads(right.body)["code"] == "TOO_MANY_ATTEMPTS"
