"""An in-process rt core for tests: actors, engine, hub and connections over memory streams.

No listeners and no ports, so it runs on Trio's virtual clock (``autojump_clock``): a
60-second heartbeat or a 10-second write deadline takes no real time. Each client is a
trio-websocket client on one end of a Unix socket pair (so the server writes to a real
socket, as in production: see rt/ws/wire.py) or of an in-memory stream, whose other end is a
Connection actor.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import trio
import trio.testing
from trio_websocket import WebSocketConnection, wrap_client_stream, wrap_server_stream

import rt.core
from rt.auth import Claims
from rt.core import Server
from rt.dialects import Dialect, SessionContext
from rt.dialects.kmarket import DIALECT as KMARKET
from rt.settings import Settings
from rt.ws.listener import connection_spec

SECRET = "test-secret-" + "x" * 32


def settings(**overrides: Any) -> Settings:
    base = Settings(
        port=0,
        demo_feed=False,
        jwt_secret=SECRET,
        admin_token="admin-token-0123456789abcdef0123456789abcdef",
    )
    return replace(base, **overrides)


class Core:
    """A running core (rt/core.py, no listeners) and a way to connect clients to it."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.system = server.system
        self.engine = server.engine
        self.settings = server.settings
        self.hub = server.hub
        self.desk = server.desk
        self.stats = server.stats
        self._ids = 0
        self.last_path = ""

    async def settle(self) -> bool:
        """Wait until the engine has no command on the wire (a Redis engine's replies are
        real I/O, which Trio's idea of "every task blocked" cannot see). True if it had."""
        wait_idle = getattr(self.engine, "wait_idle", None)
        if wait_idle is None or not self.engine.busy:
            return False
        await wait_idle()
        return True

    async def publish(self, market: int | str, patch: dict[str, Any]) -> int:
        update = await self.hub.publish(f"market:{market}", patch)
        return update.seq

    async def serve_stream(
        self,
        nursery: trio.Nursery,
        server_stream: trio.abc.HalfCloseableStream,
        *,
        user_id: int | str = 1,
        scope: frozenset[str] | None = None,
        settings: Settings | None = None,
        dialect: Dialect = KMARKET,
        token_expires_at_ms: int | None = None,
        client_id: str | None = None,
        tier: str = "free",
    ) -> str:
        """Accept a WebSocket on ``server_stream`` and run a Connection actor on it.

        Returns the actor's path. Runs the handshake in ``nursery`` so the caller can drive
        the client side at the same time.
        """
        self._ids += 1
        name = f"t{self._ids}"
        conn_settings = settings or self.settings
        if dialect.settings is not None:
            conn_settings = dialect.settings(conn_settings)

        claims = Claims(user_id=user_id, scope_markets=scope, expires_at_ms=0, tier=tier)
        context = SessionContext(
            claims,
            name,
            conn_settings,
            path_params={"client_id": client_id or name},
            server=self.server,
        )

        async def accept() -> None:
            request = await wrap_server_stream(nursery, server_stream)
            ws = await request.accept()
            spec = connection_spec(ws, self.server, dialect, context, token_expires_at_ms)
            await self.system.spawn(spec, under="conns")

        nursery.start_soon(accept)
        return f"conns/{name}"

    @asynccontextmanager
    async def connect(
        self,
        *,
        user_id: int | str = 1,
        scope: frozenset[str] | None = None,
        lockstep: bool = False,
        memory: bool = False,
        settings: Settings | None = None,
        dialect: Dialect = KMARKET,
        token_expires_at_ms: int | None = None,
        client_id: str | None = None,
        tier: str = "free",
    ) -> AsyncIterator[WebSocketConnection]:
        """A client WebSocket whose server side is a Connection actor under ``conns``.

        By default over a socket pair. ``lockstep=True`` uses a stream with no buffering at
        all, so the server's writes block until the client reads: a client that stops reading
        is a slow consumer at once. ``memory=True`` uses an in-memory stream with unbounded
        buffering (the server's writes always go through its writer task).
        """
        client_stream: trio.abc.HalfCloseableStream
        server_stream: trio.abc.HalfCloseableStream
        if lockstep:
            client_stream, server_stream = trio.testing.lockstep_stream_pair()
        elif memory:
            client_stream, server_stream = trio.testing.memory_stream_pair()
        else:
            client_stream, server_stream = socket_stream_pair()
        try:
            async with trio.open_nursery() as nursery:
                self.last_path = await self.serve_stream(
                    nursery,
                    server_stream,
                    user_id=user_id,
                    scope=scope,
                    settings=settings,
                    dialect=dialect,
                    token_expires_at_ms=token_expires_at_ms,
                    client_id=client_id,
                    tier=tier,
                )
                client = await wrap_client_stream(nursery, client_stream, "rt.test", dialect.path)
                try:
                    yield client
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            for stream in (client_stream, server_stream):
                if isinstance(stream, trio.SocketStream):
                    stream.socket.close()  # synchronous: this may run in a cancelled scope


def socket_stream_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """Two connected Unix sockets as trio streams: real descriptors, no port."""
    left, right = trio.socket.socketpair()
    return trio.SocketStream(left), trio.SocketStream(right)


@asynccontextmanager
async def open_core(**overrides: Any) -> AsyncIterator[Core]:
    async with rt.core.open_core(settings(**overrides)) as server:
        yield Core(server)


async def send(ws: WebSocketConnection, message: dict[str, Any]) -> None:
    await ws.send_message(json.dumps(message))


def unframe(frame: bytes) -> str:
    """The text of one unmasked WebSocket text frame, as rt/ws/frames.py builds them."""
    assert frame[0] == 0x81, f"not a final text frame: {frame[:2]!r}"
    size, start = frame[1], 2
    if size == 126:
        size, start = int.from_bytes(frame[2:4], "big"), 4
    elif size == 127:
        size, start = int.from_bytes(frame[2:10], "big"), 10
    assert len(frame) == start + size, "one whole frame expected"
    return frame[start:].decode()


RECEIVE_TIMEOUT_S = 60.0


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    # Bounded, so a message that never comes fails the test instead of hanging it (on the
    # virtual clock, rooms' idle timers would otherwise let it run forever).
    with trio.fail_after(RECEIVE_TIMEOUT_S):
        return json.loads(await ws.get_message())  # type: ignore[no-any-return]


async def receive_until(
    ws: WebSocketConnection, match: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Every message up to and including the first that ``match``es."""
    seen = []
    while True:
        message = await receive(ws)
        seen.append(message)
        if match(message):
            return seen


def child(tree: dict[str, Any], name: str) -> dict[str, Any]:
    """The child called ``name`` in a tree as ``ActorSystem.tree()`` shows it."""
    return next(c for c in tree["children"] if c["name"] == name)


class SteadyClock:
    """Wall time (ms) that reads ``minute`` minutes past midnight UTC (of a fixed day) on its
    first reading and then runs at the real pace: for tests of candles on real sockets, which
    need time to pass but no interval to end under them."""

    DAY_MS = 1_710_000_000_000 - 1_710_000_000_000 % 86_400_000

    def __init__(self, minute: int) -> None:
        self.start_ms = self.DAY_MS + minute * 60_000
        self.origin: int | None = None

    def __call__(self) -> int:
        now = time.monotonic_ns() // 1_000_000
        if self.origin is None:
            self.origin = now
        return self.start_ms + now - self.origin
