"""Helpers for the end-to-end tests: a real server on 127.0.0.1 and clients over real sockets.

Every wait here is bounded by ``TIMEOUT_S``: a server that stops answering fails the test
instead of hanging it. Nothing sleeps to "give it time"; tests wait for the message (or the
actor's end) they expect.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import trio
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection, wrap_client_stream

from rt.auth import issue_token
from rt.server import Server
from rt.settings import Settings
from tests.rt.harness import SECRET, settings

#: How long any single wait may take before the test fails.
TIMEOUT_S = 5.0

#: Every update and snapshot of an e2e server is stamped with this wall-clock time (ms), so
#: tests can compare whole messages.
FIXED_TS = 1_710_001_113_000

Message = dict[str, Any]


def e2e_settings(**overrides: Any) -> Settings:
    """The harness settings on free ports, without the demo feed, in production mode."""
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "demo_feed": False,
        "dev": False,
        "wall_ms": lambda: FIXED_TS,
    }
    base.update(overrides)
    return settings(**base)


def make_token(
    user_id: int | str = 1,
    *,
    scope: list[str] | None = None,
    ttl_s: int = 600,
    now_s: float | None = None,
    secret: str = SECRET,
    tier: str = "free",
) -> str:
    """A token signed like the server's own (or with ``secret``), issued at ``now_s``."""
    token, _ = issue_token(
        secret=secret,
        user_id=user_id,
        scope_markets=scope,
        ttl_s=ttl_s,
        now_s=time.time() if now_s is None else now_s,
        tier=tier,
    )
    return token


def topic(market: int | str) -> str:
    return f"market:{market}"


def odds_resource(token: str | None) -> str:
    """The request target of /ws/odds with ``token`` (None: without any)."""
    return "/ws/odds" if token is None else f"/ws/odds?token={quote(token)}"


class Peer:
    """A KMarket client on one WebSocket, speaking JSON dicts, every wait bounded."""

    def __init__(self, ws: WebSocketConnection, stream: trio.abc.Stream) -> None:
        self.ws = ws
        self.stream = stream

    async def aclose(self) -> None:
        """Close the WebSocket (if still open), then the TCP stream under it.

        trio-websocket's client leaves its socket open when the server closed first (or
        refused the handshake); closing our own stream keeps the suite free of ResourceWarnings.
        """
        with trio.move_on_after(TIMEOUT_S) as cleanup:
            cleanup.shield = True
            await self.ws.aclose()
        await self.stream.aclose()

    async def send(self, message: Message) -> None:
        await self.ws.send_message(json.dumps(message))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send_message(data)

    async def recv(self) -> Message:
        with trio.fail_after(TIMEOUT_S):
            text = await self.ws.get_message()
        assert isinstance(text, str), f"expected a text frame, got {text!r}"
        message = json.loads(text)
        assert isinstance(message, dict), message
        return message

    async def recv_until(self, match: Callable[[Message], bool]) -> list[Message]:
        """Every message up to and including the first that ``match``es."""
        seen: list[Message] = []
        with trio.fail_after(TIMEOUT_S):
            while True:
                seen.append(await self.recv())
                if match(seen[-1]):
                    return seen

    async def recv_n(self, n: int) -> list[Message]:
        return [await self.recv() for _ in range(n)]

    async def subscribe(self, *markets: int | str) -> dict[int | str, Message]:
        """Subscribe to ``markets`` (all allowed): check the ack, return the snapshots by id."""
        await self.send({"type": "subscribe", "markets": [str(m) for m in markets]})
        ack = await self.recv()
        expected = [int(m) if str(m).isdigit() else m for m in markets]
        assert ack == {"type": "ack", "ok": True, "subscribed": expected}
        snapshots = await self.recv_n(len(markets))
        assert all(s["type"] == "snapshot" for s in snapshots), snapshots
        by_id = {s["marketId"]: s for s in snapshots}
        assert sorted(by_id, key=str) == sorted(expected, key=str)
        return by_id

    async def ping(self, ts: int = 1_710_001_112_223) -> None:
        """A ping gets its pong, with the same ts, as the very next message."""
        await self.send({"type": "ping", "ts": ts})
        assert await self.recv() == {"type": "pong", "ts": ts}

    async def closed(self) -> CloseReason:
        """Wait for the server to close this connection (discarding messages); say how."""
        with trio.fail_after(TIMEOUT_S):
            while True:
                try:
                    await self.ws.get_message()
                except ConnectionClosed as exc:
                    assert exc.reason is not None
                    return exc.reason


async def open_peer(
    nursery: trio.Nursery, server: Server, resource: str, *, port: int | None = None
) -> Peer:
    """A client WebSocket on ``resource`` (of the public port, or ``port``) whose background
    reader runs in ``nursery``.

    The caller closes it (``Peer.aclose``); it may outlive the server.
    """
    host, port = server.settings.host, port or server.ws_port
    stream = await trio.open_tcp_stream(host, port)
    try:
        with trio.fail_after(TIMEOUT_S):
            ws = await wrap_client_stream(nursery, stream, f"{host}:{port}", resource)
    except BaseException:
        await stream.aclose()
        raise
    return Peer(ws, stream)


@asynccontextmanager
async def connect(server: Server, token: str | None = None) -> AsyncIterator[Peer]:
    """A WebSocket on /ws/odds with ``token`` (a fresh valid one by default)."""
    async with trio.open_nursery() as nursery:
        peer = await open_peer(
            nursery, server, odds_resource(make_token() if token is None else token)
        )
        try:
            yield peer
        finally:
            await peer.aclose()


def odds_update(market: int, seq: int, payload: Message) -> Message:
    """The exact odds_update an e2e server sends for an update."""
    return {
        "type": "odds_update",
        "marketId": market,
        "seq": seq,
        "ts": FIXED_TS,
        "payload": payload,
    }


async def wait_connections_closed(server: Server) -> None:
    """Wait until every Connection actor of ``server`` has ended (its counters are final)."""
    paths = [p for p in server.system.registry.paths() if p.startswith("conns/")]
    with trio.fail_after(TIMEOUT_S):
        for path in paths:
            ended = trio.Event()
            server.system.monitor(path, lambda _down, ended=ended: ended.set())
            await ended.wait()


class Watch:
    """Messages seen by a KMarketClient (its ``on_message``), waitable by predicate."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = trio.Event()

    def feed(self, message: Message) -> None:
        self.messages.append(message)
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, predicate: Callable[[], bool]) -> None:
        with trio.fail_after(TIMEOUT_S):
            while not predicate():
                await self._changed.wait()


async def upgrade_status(port: int, path: str) -> bytes:
    """The HTTP status a WebSocket upgrade on ``path`` gets (read off the raw answer)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        with trio.fail_after(5):
            answer = await stream.receive_some(4096)
    return bytes(answer.split(b" ", 2)[1])
