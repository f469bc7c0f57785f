"""rt/ws/wire.py and rt/ws/frames.py: shared frames written straight to trio-websocket's socket.

The Wire leans on one private attribute of trio-websocket (``WebSocketConnection._stream``).
The first tests here fail loudly when an upgrade moves it, or when the pinned version and the
installed one differ: read rt/ws/wire.py before changing either.
"""

from __future__ import annotations

import importlib.metadata
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    wrap_client_stream,
    wrap_server_stream,
)
from wsproto.frame_protocol import FrameProtocol, Opcode

from rt.ws.frames import frame_text
from rt.ws.wire import Wire, WireUnsupported
from tests.rt.harness import socket_stream_pair, unframe

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_installed_trio_websocket_is_the_pinned_one() -> None:
    pinned = re.search(r'"trio-websocket==([^"]+)"', PYPROJECT.read_text())
    assert pinned is not None, "pyproject.toml must pin trio-websocket exactly (rt/ws/wire.py)"
    assert importlib.metadata.version("trio-websocket") == pinned.group(1), (
        "trio-websocket changed: check that rt/ws/wire.py still holds (WebSocketConnection._stream "
        "and how it sends), then update the pin"
    )


def test_a_connection_without_the_expected_internals_is_refused_clearly() -> None:
    class Elsewhere:
        pass

    with pytest.raises(WireUnsupported, match="_stream"):
        Wire(Elsewhere())  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 70_000])
def test_frames_parse_as_one_final_unmasked_text_message(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte UTF-8 too
    parser = FrameProtocol(client=True, extensions=[])  # a client reads server frames
    parser.receive_bytes(frame_text(text))
    frames = list(parser.received_frames())
    assert len(frames) == 1
    assert (frames[0].opcode, frames[0].payload, frames[0].message_finished) == (
        Opcode.TEXT,
        text,
        True,
    )
    assert unframe(frame_text(text)) == text


async def ws_pair(
    nursery: trio.Nursery, server_stream: Any, client_stream: Any
) -> tuple[WebSocketConnection, WebSocketConnection]:
    """A server and a client WebSocket over the given streams, handshake done."""
    accepted: list[WebSocketConnection] = []

    async def accept() -> None:
        request = await wrap_server_stream(nursery, server_stream)
        accepted.append(await request.accept())

    nursery.start_soon(accept)
    client = await wrap_client_stream(nursery, client_stream, "rt.test", "/")
    await trio.testing.wait_all_tasks_blocked()
    return accepted[0], client


async def test_direct_writes_and_trio_websockets_own_frames_keep_their_order() -> None:
    server_stream, client_stream = socket_stream_pair()
    async with trio.open_nursery() as nursery:
        server, client = await ws_pair(nursery, server_stream, client_stream)
        wire = Wire(server)
        assert wire.idle
        wire.write(frame_text("one"))
        await server.send_message("two")  # through trio-websocket: queued on the Wire
        wire.write(frame_text("three"))
        assert [await client.get_message() for _ in range(3)] == ["one", "two", "three"]
        with trio.fail_after(5):
            await client.ping(b"p")  # answered: the server's pong went through the Wire
        wire.write(frame_text("four"))
        assert await client.get_message() == "four"
        await server.aclose(4001, "SLOW_CONSUMER")
        with pytest.raises(ConnectionClosed) as closed:
            await client.get_message()
        assert closed.value.reason.code == 4001
        assert wire.closed  # trio-websocket closed the socket through the Wire
        nursery.cancel_scope.cancel()
    for stream in (server_stream, client_stream):
        stream.socket.close()


async def test_what_the_socket_does_not_take_waits_for_flush_in_order(
    autojump_clock: Any,
) -> None:
    left, right = socket.socketpair()
    for sock, option in ((left, socket.SO_SNDBUF), (right, socket.SO_RCVBUF)):
        sock.setsockopt(socket.SOL_SOCKET, option, 4096)
    server_stream = trio.SocketStream(trio.socket.from_stdlib_socket(left))
    client_stream = trio.SocketStream(trio.socket.from_stdlib_socket(right))
    backlog: list[int] = []
    async with trio.open_nursery() as nursery:
        server, client = await ws_pair(nursery, server_stream, client_stream)
        wire = Wire(server)
        wire.on_backlog = lambda: backlog.append(wire.pending)
        texts = [f"{n:04d}" + "x" * 1000 for n in range(100)]
        for text in texts:
            wire.write(frame_text(text))
        assert not wire.idle and wire.pending > 0
        assert len(backlog) == 1  # told once, when the socket first refused bytes
        # Nobody reads: the socket stays full, and flush gives up after the stall timeout.
        start = trio.current_time()
        assert await wire.flush(stall_timeout_s=10.0) is False
        assert trio.current_time() - start == pytest.approx(10.0)

        async def read_all() -> list[str]:
            return [str(await client.get_message()) for _ in texts]

        received: list[list[str]] = []

        async def reader() -> None:
            received.append(await read_all())

        nursery.start_soon(reader)
        assert await wire.flush(stall_timeout_s=10.0) is True
        assert wire.idle and wire.pending == 0
        await trio.testing.wait_all_tasks_blocked()
        assert received == [texts]
        nursery.cancel_scope.cancel()
    for stream in (server_stream, client_stream):
        stream.socket.close()


async def test_a_write_to_a_closed_socket_closes_the_wire_and_never_raises() -> None:
    server_stream, client_stream = socket_stream_pair()
    async with trio.open_nursery() as nursery:
        server, _client = await ws_pair(nursery, server_stream, client_stream)
        wire = Wire(server)
        server_stream.socket.close()  # closed behind the Wire's back: the number may be reused
        wire.write(frame_text("lost"))
        assert wire.closed and not wire.idle
        with pytest.raises(ConnectionClosed):
            await server.send_message("after")  # trio-websocket hears it from the Wire
        nursery.cancel_scope.cancel()
    for stream in (server_stream, client_stream):
        stream.socket.close()


async def test_a_stream_without_a_socket_is_written_by_flush_only() -> None:
    server_stream, client_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        server, client = await ws_pair(nursery, server_stream, client_stream)
        wire = Wire(server)
        assert not wire.idle
        wire.write(frame_text("queued"))
        assert wire.pending > 0
        assert await wire.flush() is True
        assert await client.get_message() == "queued"
        nursery.cancel_scope.cancel()


async def test_request_peer_reads_the_address_through_the_guarded_stream() -> None:
    """rt/ws/wire.py's other internal: ``WebSocketRequest._connection._stream``."""
    from rt.ws.inbound import GuardLimits
    from rt.ws.inbound_stream import GuardedListener
    from rt.ws.wire import request_peer

    limits = GuardLimits(max_message_bytes=1024, max_fragments=4)
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    guarded = GuardedListener(listener, lambda _path: limits)
    port = listener.socket.getsockname()[1]
    peers: list[str] = []
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            stream = await guarded.accept()
            request = await wrap_server_stream(nursery, stream)
            peers.append(request_peer(request))
            await request.reject(404)
            await stream.aclose()

        nursery.start_soon(serve)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        with trio.fail_after(5):
            assert (await client.receive_some()).startswith(b"HTTP/1.1 404")
        await client.aclose()
    await guarded.aclose()
    assert peers == ["127.0.0.1"]
