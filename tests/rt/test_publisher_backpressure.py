"""/ws/publish under back-pressure: a publisher that stops reading its replies.

On the virtual clock, over a Unix socket pair with small buffers: the publisher pipelines
batch frames and reads nothing, so a reply soon cannot be written. rt then stops reading that
publisher's frames (so it publishes nothing more for it), and after ``write_deadline_s``
without progress closes it with 4001 SLOW_CONSUMER, the stalled reply still whole ahead of
the close frame.
"""

from __future__ import annotations

import json
from socket import SO_RCVBUF, SO_SNDBUF, SOL_SOCKET
from typing import Any

import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    wrap_client_stream,
    wrap_server_stream,
)

from actors import ChildSpec, Restart
from rt.ws.publisher import PublisherSession
from tests.rt.harness import Core, open_core

SMALL_SOCKET_BUFFER = 4096
UPDATES_PER_FRAME = 100  # a reply of ~4 KB: a few fill the socket pair
WRITE_DEADLINE_S = 10.0
MAX_FRAMES = 500


async def open_publisher(
    core: Core, nursery: trio.Nursery, sockets: list[trio.socket.SocketType]
) -> WebSocketConnection:
    """A /ws/publish client whose server side is a PublisherSession ``conns/p1``; the
    socket pair is added to ``sockets`` for the caller to close."""
    client_socket, server_socket = trio.socket.socketpair()
    sockets += (client_socket, server_socket)
    for sock, option in ((server_socket, SO_SNDBUF), (client_socket, SO_RCVBUF)):
        sock.setsockopt(SOL_SOCKET, option, SMALL_SOCKET_BUFFER)

    async def accept() -> None:
        request = await wrap_server_stream(nursery, trio.SocketStream(server_socket))
        ws = await request.accept()
        spec = ChildSpec(
            "p1",
            lambda: PublisherSession(ws, hub=core.hub, settings=core.settings),
            restart=Restart.TEMPORARY,
        )
        await core.system.spawn(spec, under="conns")

    nursery.start_soon(accept)
    stream = trio.SocketStream(client_socket)
    return await wrap_client_stream(nursery, stream, "rt.test", "/ws/publish")


def batch_frame(frame_id: int) -> str:
    """Frame ``frame_id`` publishes UPDATES_PER_FRAME updates to market ``frame_id``."""
    updates: list[dict[str, Any]] = [
        {"marketId": frame_id, "payload": {"n": n}} for n in range(UPDATES_PER_FRAME)
    ]
    return json.dumps({"type": "publish", "id": frame_id, "updates": updates})


async def test_a_publisher_that_stops_reading_is_closed_with_4001_its_replies_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sockets: list[trio.socket.SocketType] = []
    async with open_core(write_deadline_s=WRITE_DEADLINE_S) as core:
        try:
            await stop_reading_then_read(core, sockets)
        finally:
            for sock in sockets:
                sock.close()
        ended = trio.Event()
        core.system.monitor("conns/p1", lambda _down: ended.set())
        with trio.fail_after(5):
            await ended.wait()  # the publisher's actor is gone, its socket closed


async def stop_reading_then_read(core: Core, sockets: list[trio.socket.SocketType]) -> None:
    async with trio.open_nursery() as nursery:
        client = await open_publisher(core, nursery, sockets)
        sent = 0
        # Pipelined without reading: once rt cannot write a reply it reads no further
        # frames, and the sends stall too once the sockets' buffers are full (some forty
        # frames fit in them: bounded by 500 frames or 1 virtual second).
        with trio.move_on_after(1):
            while sent < MAX_FRAMES:
                await client.send_message(batch_frame(sent))
                sent += 1
        assert 0 < sent < MAX_FRAMES, "rt kept reading frames it could not answer"
        stalled_at = trio.current_time()
        published_while_stalled = set(core.engine.topics())

        # Past the write deadline: rt has given up, and the close frame waits behind the
        # stalled reply. A client reading now gets every reply, whole, then the close.
        await trio.sleep(WRITE_DEADLINE_S)
        assert set(core.engine.topics()) == published_while_stalled
        replies = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                replies.append(json.loads(await client.get_message()))
        assert closed.value.reason.code == 4001
        assert closed.value.reason.reason == "SLOW_CONSUMER"
        assert trio.current_time() - stalled_at < WRITE_DEADLINE_S + 3

        # Every frame rt read was published and answered, in order; none after it.
        answered = [reply["id"] for reply in replies]
        assert answered == list(range(len(replies)))
        assert 0 < len(replies) < sent
        for reply in replies:
            assert reply["type"] == "published"
            assert [r["seq"] for r in reply["results"]] == list(range(1, UPDATES_PER_FRAME + 1))
        assert set(core.engine.topics()) == {f"market:{i}" for i in answered}
        nursery.cancel_scope.cancel()
