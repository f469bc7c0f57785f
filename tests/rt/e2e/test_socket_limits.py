"""The shared socket layer's limits, on the wire over 127.0.0.1: the upgrade's checks
(rt/ws/handshake.py) and the frame guard's closes (rt/ws/inbound.py), for every WebSocket path."""

from __future__ import annotations

import io
import json
import logging
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from rt.logs import configure_logging
from rt.server import Server, open_server
from rt.settings import Settings

from ._support import TIMEOUT_S, connect, e2e_settings, make_token, odds_resource, topic

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x01\x02\x03\x04"


def upgrade_request(resource: str, *headers: tuple[str, str], key: bytes = KEY) -> bytes:
    lines = [
        f"GET {resource} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Raw:
    """A client on a bare TCP socket: it sends exactly the bytes it is told to."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def response_head(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names) and whatever body bytes came with them."""
        with trio.fail_after(TIMEOUT_S):
            while b"\r\n\r\n" not in self.buffer:
                data = await self.stream.receive_some()
                assert data, f"closed before a response: {self.buffer!r}"
                self.buffer += data
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        size = int(headers.get("content-length", "0"))
        with trio.fail_after(TIMEOUT_S):
            while len(self.buffer) < size:
                data = await self.stream.receive_some()
                assert data, "closed in the middle of the body"
                self.buffer += data
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return int(status_line.split(" ")[1]), headers, body

    async def send_frame(self, first: int, payload: bytes, *, size: int | None = None) -> None:
        n = len(payload) if size is None else size
        if n < 126:
            header = bytes((first, 0x80 | n))
        elif n < 1 << 16:
            header = struct.pack("!BBH", first, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, n)
        body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
        await self.stream.send_all(header + MASK + body)

    async def close_frame(self) -> tuple[int, str]:
        """Read until the server's close frame; its code and reason (and the TCP close)."""
        with trio.fail_after(TIMEOUT_S):
            while True:
                while len(self.buffer) >= 2:
                    first, size = self.buffer[0], self.buffer[1] & 0x7F
                    start = 2
                    if size == 126:
                        (size,) = struct.unpack_from("!H", self.buffer, 2)
                        start = 4
                    elif size == 127:
                        (size,) = struct.unpack_from("!Q", self.buffer, 2)
                        start = 10
                    if len(self.buffer) < start + size:
                        break
                    payload = self.buffer[start : start + size]
                    self.buffer = self.buffer[start + size :]
                    if first & 0x0F == 0x8:
                        (code,) = struct.unpack_from("!H", payload)
                        while await self.stream.receive_some():  # then the server hangs up
                            pass
                        return code, payload[2:].decode()
                data = await self.stream.receive_some()
                assert data, "the server closed the TCP connection without a close frame"
                self.buffer += data


@asynccontextmanager
async def raw(server: Server) -> AsyncIterator[Raw]:
    stream = await trio.open_tcp_stream("127.0.0.1", server.ws_port)
    try:
        yield Raw(stream)
    finally:
        await stream.aclose()


async def upgraded(server: Server, client: Raw, resource: str | None = None) -> None:
    await client.stream.send_all(upgrade_request(resource or odds_resource(make_token())))
    status, _, _ = await client.response_head()
    assert status == 101


# -- the upgrade ---------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1"])
@pytest.mark.parametrize("path", ["odds", "uof", "publish"])
async def test_a_foreign_origin_is_refused_with_403_on_every_path(
    server: Server, origin: str, path: str
) -> None:
    resource = {
        "odds": odds_resource(make_token()),
        "uof": f"/ws?userId=1&token={make_token()}",
        "publish": f"/ws/publish?token={server.settings.admin_token}",
    }[path]
    async with raw(server) as client:
        await client.stream.send_all(upgrade_request(resource, ("Origin", origin)))
        status, headers, body = await client.response_head()
    assert status == 403
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "type": "error",
        "code": "FORBIDDEN_ORIGIN",
        "message": f"origin {origin!r} may not open a WebSocket here",
    }
    assert server.stats.accepted == 0


@pytest.mark.server_settings(allowed_origins=("https://odds.example",))
async def test_allowed_origins_and_no_origin_get_in_and_still_need_a_token(server: Server) -> None:
    for headers in ([("Origin", "https://odds.example")], [("Origin", server.http_url)], []):
        async with raw(server) as client:
            await client.stream.send_all(upgrade_request(odds_resource(make_token()), *headers))
            assert (await client.response_head())[0] == 101
        async with raw(server) as client:
            await client.stream.send_all(upgrade_request(odds_resource("forged"), *headers))
            assert (await client.response_head())[0] == 401


@pytest.mark.server_settings(dev=True)
async def test_dev_mode_allows_any_origin(server: Server) -> None:
    for origin in ("http://evil.example", "null"):
        async with raw(server) as client:
            await client.stream.send_all(
                upgrade_request(odds_resource(make_token()), ("Origin", origin))
            )
            assert (await client.response_head())[0] == 101


@pytest.mark.parametrize(
    "key", [b"short", b"not base64 at all!!!!!==", b"AAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
)
async def test_a_malformed_key_is_400(server: Server, key: bytes) -> None:
    async with raw(server) as client:
        await client.stream.send_all(upgrade_request(odds_resource(make_token()), key=key))
        status, _, body = await client.response_head()
    assert status == 400
    assert json.loads(body)["code"] == "BAD_HANDSHAKE"


async def test_permessage_deflate_is_never_agreed(server: Server) -> None:
    async with raw(server) as client:
        await client.stream.send_all(
            upgrade_request(
                odds_resource(make_token()),
                ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
            )
        )
        status, headers, _ = await client.response_head()
    assert status == 101
    assert "sec-websocket-extensions" not in headers


@pytest.mark.server_settings(max_connections_per_ip=3)
async def test_the_fourth_socket_from_one_address_is_429(server: Server) -> None:
    async with connect(server, make_token(1)), connect(server, make_token(2)):
        async with connect(server, make_token(3)) as third:
            async with raw(server) as client:
                await client.stream.send_all(upgrade_request(odds_resource(make_token(4))))
                status, _, body = await client.response_head()
            assert status == 429
            assert json.loads(body) == {
                "type": "error",
                "code": "TOO_MANY_CONNECTIONS",
                "message": "127.0.0.1 already has 3 WebSockets open (the limit per address)",
            }
            await third.ping()
        # One went: there is room for one again.
        async with connect(server, make_token(4)) as fourth:
            await fourth.ping()
    assert server.open_sockets.by_ip("127.0.0.1") == 0


@pytest.mark.server_settings(max_connections=2)
async def test_past_the_global_cap_the_answer_is_503_with_retry_after(server: Server) -> None:
    async with connect(server, make_token(1)), connect(server, make_token(2)):
        async with raw(server) as client:
            await client.stream.send_all(upgrade_request(odds_resource(make_token(3))))
            status, headers, body = await client.response_head()
        assert status == 503
        assert headers["retry-after"] == "5"
        assert json.loads(body)["code"] == "SERVER_FULL"
    async with connect(server, make_token(3)) as later:
        await later.ping()


async def test_refused_upgrades_are_not_counted_as_open(server: Server) -> None:
    for _ in range(5):
        async with raw(server) as client:
            await client.stream.send_all(upgrade_request(odds_resource("bad")))
            assert (await client.response_head())[0] == 401
    assert server.open_sockets.open == 0


async def test_a_handshake_that_never_ends_is_dropped_after_10_s(autojump_clock: Any) -> None:
    async with open_server(e2e_settings()) as server, raw(server) as client:
        start = trio.current_time()
        await client.stream.send_all(b"GET /ws/odds HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with trio.fail_after(60):
            assert await client.stream.receive_some() == b""
        assert trio.current_time() - start == pytest.approx(10.0, abs=0.1)


# -- frames --------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", ["odds", "publish"])
async def test_a_header_declaring_2_to_the_62_bytes_is_closed_at_once_with_1009(
    server: Server, resource: str
) -> None:
    path = odds_resource(make_token()) if resource == "odds" else None
    if resource == "publish":
        path = f"/ws/publish?token={server.settings.admin_token}"
    async with raw(server) as client:
        await upgraded(server, client, path)
        # The header and one byte of the payload: no more is needed to refuse it.
        await client.send_frame(0x81, b"x", size=1 << 62)
        assert await client.close_frame() == (1009, "a message may have at most 65536 bytes")


async def test_65000_emoji_are_260_kb_not_65000_characters(server: Server) -> None:
    async with raw(server) as client:
        await upgraded(server, client)
        await client.send_frame(0x81, json.dumps({"type": "ping", "pad": "😀" * 65_000}).encode())
        assert await client.close_frame() == (1009, "a message may have at most 65536 bytes")


async def test_endless_one_byte_fragments_are_closed_with_1009(server: Server) -> None:
    async with raw(server) as client:
        await upgraded(server, client)
        await client.send_frame(0x01, b"{")
        for _ in range(127):
            await client.send_frame(0x00, b" ")
        await client.send_frame(0x00, b" ")  # the 129th frame of the message
        assert await client.close_frame() == (1009, "a message may have at most 128 frames")


async def test_invalid_utf8_is_closed_with_1007(server: Server) -> None:
    async with raw(server) as client:
        await upgraded(server, client)
        await client.send_frame(0x81, b'{"type": "ping", "x": "\xed\xa0\x80"}')
        assert await client.close_frame() == (1007, "text is not valid UTF-8")


@pytest.mark.parametrize(
    ("first", "payload", "reason"),
    [
        (0xC1, b"{}", "reserved bits set (no extension agreed)"),
        (0x83, b"", "unknown opcode 3"),
        (0x80, b"", "a continuation with no message open"),
        (0x09, b"", "a control frame may not be fragmented"),
    ],
)
async def test_framing_violations_are_closed_with_1002(
    server: Server, first: int, payload: bytes, reason: str
) -> None:
    async with connect(server) as bystander:
        await bystander.subscribe(1001)
        async with raw(server) as client:
            await upgraded(server, client)
            await client.send_frame(first, payload)
            assert await client.close_frame() == (1002, reason)
        await server.hub.publish(topic(1001), {"n": 1})
        assert (await bystander.recv())["seq"] == 1


# -- logs ----------------------------------------------------------------------------------


async def test_no_token_or_query_string_reaches_the_log(server: Server) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    output = io.StringIO()
    configure_logging(json_lines=False, level="DEBUG", stream=output)
    try:
        good, expired = make_token(7), make_token(8, now_s=0)
        async with connect(server, good) as peer:
            await peer.ping()
        for resource in (
            odds_resource(expired),
            odds_resource("not-a-jwt-secret-ish"),
            f"/ws?userId=9&token={good}",
            "/ws/publish?token=" + "w" * 40,
            f"/ws/nowhere?token={good}",
        ):
            async with raw(server) as client:
                await client.stream.send_all(upgrade_request(resource))
                assert (await client.response_head())[0] in (401, 404)
        async with raw(server) as client:
            await upgraded(server, client, odds_resource(good))
            await client.send_frame(0x83, b"")
            assert (await client.close_frame())[0] == 1002
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    text = output.getvalue()
    assert "refused a frame (unknown opcode 3)" in text  # the log did capture the server
    for secret in (good, expired, "not-a-jwt-secret-ish", "w" * 40, "userId=9"):
        assert secret not in text
    assert "?token" not in text


async def test_frames_sent_with_the_request_are_checked_too(server: Server) -> None:
    # The guard wraps the socket from its first byte: a frame pipelined behind the upgrade
    # request, in the same TCP segment, meets the same checks.
    async with raw(server) as client:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, 1 << 62) + MASK
        await client.stream.send_all(upgrade_request(odds_resource(make_token())) + header)
        assert (await client.response_head())[0] == 101
        assert await client.close_frame() == (1009, "a message may have at most 65536 bytes")


async def test_a_token_expiring_on_an_open_socket_closes_it_with_4401(autojump_clock: Any) -> None:
    # Real wall-clock time (tokens are checked against it at the handshake), virtual Trio
    # time: the 60 s token and its 5 s of leeway pass in no time. The client's library
    # answers every ping, so only the token can end the connection.
    settings = e2e_settings(wall_ms=Settings().wall_ms)
    async with open_server(settings) as server, connect(server, make_token(ttl_s=60)) as peer:
        start = trio.current_time()
        await peer.subscribe(1001)
        with trio.fail_after(120), pytest.raises(ConnectionClosed) as closed:
            while True:
                await peer.ws.get_message()
        assert closed.value.reason is not None
        assert (closed.value.reason.code, closed.value.reason.reason) == (4401, "TOKEN_EXPIRED")
        # Issued within the current second, so it expires 59-60 s from now; plus 5 s leeway.
        assert 63.9 <= trio.current_time() - start <= 65.1
