"""A token that expires on an open connection ends it: close 4401 TOKEN_EXPIRED at the
token's expiry plus the leeway (RT_JWT_LEEWAY_S), on Trio's virtual clock."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from wsproto.events import CloseConnection, Ping

from tests.rt.harness import open_core
from tests.rt.test_connection_timing import RawClient

WALL_MS = 1_710_001_113_000


async def test_a_connection_ends_when_its_token_expires(autojump_clock: Any) -> None:
    # The token expires 100 s from now, the leeway is 5 s: the close comes at 105 s, though
    # the client answers every ping (so the heartbeat never ends it).
    async with open_core(wall_ms=lambda: WALL_MS) as core, trio.open_nursery() as nursery:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        await core.serve_stream(nursery, server_stream, token_expires_at_ms=WALL_MS + 100_000)
        client = RawClient(client_stream)
        await client.handshake()
        start = trio.current_time()
        await client.send({"type": "subscribe", "markets": ["1001"]})
        while True:
            event = await client.next_event()
            if isinstance(event, Ping):
                await client.stream.send_all(client.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                break
        assert (event.code, event.reason) == (4401, "TOKEN_EXPIRED")
        assert trio.current_time() - start == pytest.approx(105.0)
        assert core.hub.user_connections(1) == 0
        nursery.cancel_scope.cancel()


async def test_a_connection_without_a_token_deadline_stays(autojump_clock: Any) -> None:
    async with open_core(wall_ms=lambda: WALL_MS) as core, trio.open_nursery() as nursery:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        path = await core.serve_stream(nursery, server_stream)
        client = RawClient(client_stream)
        await client.handshake()
        start = trio.current_time()
        while trio.current_time() - start < 1000:
            event = await client.next_event()
            assert isinstance(event, Ping), event
            await client.stream.send_all(client.ws.send(event.response()))
        assert core.system.lookup(path) is not None
        nursery.cancel_scope.cancel()
