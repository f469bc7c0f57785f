"""Heartbeat, idle timeout, write deadline and slow consumers, on Trio's virtual clock.

A raw wsproto client gives exact control: it answers pings only when told to, and it reads
from the socket only when told to (on a lockstep stream, a client that does not read blocks
the server's very next write).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    Ping,
    Request,
    TextMessage,
)

from rt.client import KMarketClient
from rt.ws.inbound import GuardLimits
from rt.ws.inbound_stream import GuardedStream
from tests.rt.harness import Core, open_core, receive, receive_until, send, socket_stream_pair


class RawClient:
    """A WebSocket client that does nothing on its own: no automatic pongs, no reading."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Event] = []
        self.text = ""

    async def handshake(self) -> None:
        await self.stream.send_all(self.ws.send(Request(host="rt.test", target="/ws/odds")))
        assert isinstance(await self.next_event(), AcceptConnection)

    async def next_event(self) -> Event:
        while not self.pending:
            data = await self.stream.receive_some()
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    async def next_message(self) -> dict[str, Any]:
        """The next text message, skipping (and not answering) pings."""
        while True:
            event = await self.next_event()
            if isinstance(event, Message):
                self.text += event.data
                if event.message_finished:
                    text, self.text = self.text, ""
                    return json.loads(text)  # type: ignore[no-any-return]
            elif isinstance(event, CloseConnection):
                raise AssertionError(f"closed: {event.code} {event.reason}")

    async def send(self, message: dict[str, Any]) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(json.dumps(message))))


async def raw_client(
    core: Core,
    nursery: trio.Nursery,
    *,
    lockstep: bool = False,
    guarded: bool = False,
    **serve: Any,
) -> tuple[RawClient, str]:
    """A RawClient whose server side is a Connection (``serve``: Core.serve_stream's
    options, such as the dialect), its handshake done; and the actor's path. ``guarded``:
    over a socket pair whose server side is the listener's GuardedStream (which notes when
    the peer was heard from, for the Wire)."""
    server_stream: Any
    if lockstep:
        client_stream, server_stream = trio.testing.lockstep_stream_pair()
    elif guarded:
        client_stream, socket_side = socket_stream_pair()
        server_stream = GuardedStream(socket_side, lambda _path: GuardLimits(64 * 1024, 64))
        nursery.start_soon(close_when_cancelled, client_stream, socket_side)
    else:
        client_stream, server_stream = trio.testing.memory_stream_pair()
    path = await core.serve_stream(nursery, server_stream, **serve)
    client = RawClient(client_stream)
    await client.handshake()
    return client, path


async def close_when_cancelled(*streams: trio.SocketStream) -> None:
    """Close the sockets of ``streams`` when the test's nursery is cancelled."""
    try:
        await trio.sleep_forever()
    finally:
        for stream in streams:
            stream.socket.close()  # synchronous: this runs in a cancelled scope


async def ended(core: Core, path: str) -> float:
    """Wait for the actor at ``path`` to end; return the virtual time it ended at."""
    done = trio.Event()
    await trio.testing.wait_all_tasks_blocked()  # the spawn finishes in the handshake task
    assert core.system.lookup(path) is not None
    core.system.monitor(path, lambda _down: done.set())
    await done.wait()
    return trio.current_time()


async def test_server_pings_every_15_seconds_whether_answered_or_not(autojump_clock: Any) -> None:
    async with open_core() as core, trio.open_nursery() as nursery:
        client, _ = await raw_client(core, nursery)
        start = trio.current_time()
        pings = []
        while len(pings) < 3:
            if isinstance(await client.next_event(), Ping):
                pings.append(trio.current_time() - start)
        assert pings == pytest.approx([15.0, 30.0, 45.0])
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("guarded", [False, True])
async def test_a_silent_client_is_closed_after_60_seconds(
    autojump_clock: Any, guarded: bool
) -> None:
    async with open_core() as core, trio.open_nursery() as nursery:
        client, path = await raw_client(core, nursery, guarded=guarded)
        start = trio.current_time()
        while True:
            event = await client.next_event()
            if isinstance(event, CloseConnection):
                break
        assert (event.code, event.reason) == (4000, "HEARTBEAT_TIMEOUT")
        assert trio.current_time() - start == pytest.approx(60.0)
        assert core.stats.heartbeat_timeouts == 1
        await ended(core, path)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("guarded", [False, True])
async def test_pongs_keep_a_quiet_client_alive(autojump_clock: Any, guarded: bool) -> None:
    async with open_core() as core, trio.open_nursery() as nursery:
        client, path = await raw_client(core, nursery, guarded=guarded)
        start = trio.current_time()
        while trio.current_time() - start < 300:
            event = await client.next_event()
            assert isinstance(event, Ping), event
            await client.stream.send_all(client.ws.send(event.response()))
        assert core.system.lookup(path) is not None
        assert core.stats.heartbeat_timeouts == 0
        nursery.cancel_scope.cancel()


async def test_messages_keep_a_client_alive_and_the_timeout_counts_from_the_last(
    autojump_clock: Any,
) -> None:
    async with open_core(ping_interval_s=1000.0) as core, trio.open_nursery() as nursery:
        client, _ = await raw_client(core, nursery)
        for _ in range(3):
            await trio.sleep(50)
            await client.send({"type": "ping", "ts": 1})
            assert (await client.next_message())["type"] == "pong"
        last = trio.current_time()
        event = await client.next_event()
        assert isinstance(event, CloseConnection) and event.code == 4000
        assert trio.current_time() - last == pytest.approx(60.0)
        nursery.cancel_scope.cancel()


async def test_heartbeat_settings_are_configurable(autojump_clock: Any) -> None:
    async with (
        open_core(ping_interval_s=5.0, idle_timeout_s=10.0) as core,
        trio.open_nursery() as nursery,
    ):
        client, _ = await raw_client(core, nursery)
        start = trio.current_time()
        assert isinstance(await client.next_event(), Ping)
        assert trio.current_time() - start == pytest.approx(5.0)
        while not isinstance(event := await client.next_event(), CloseConnection):
            pass
        assert event.code == 4000
        assert trio.current_time() - start == pytest.approx(10.0)
        nursery.cancel_scope.cancel()


async def test_a_socket_unwritable_past_the_write_deadline_is_closed_as_slow(
    autojump_clock: Any,
) -> None:
    async with (
        open_core(write_deadline_s=10.0, ping_interval_s=1000.0) as core,
        trio.open_nursery() as nursery,
    ):
        await core.publish(1, {"a": 0})
        client, path = await raw_client(core, nursery, lockstep=True)
        await client.send({"type": "subscribe", "markets": [1]})
        assert (await client.next_message())["type"] == "ack"
        assert (await client.next_message())["type"] == "snapshot"
        # From here on the client reads nothing: the server's next write blocks.
        start = trio.current_time()
        await core.publish(1, {"a": 1})
        assert await ended(core, path) - start == pytest.approx(10.0)
        assert core.stats.slow_closes == 1
        nursery.cancel_scope.cancel()


async def test_a_slow_reader_never_delays_a_fast_one_and_catches_up_coalesced(
    autojump_clock: Any,
) -> None:
    settings = {
        "outbox_capacity": 16,
        "outbox_high_water": 8,
        "write_deadline_s": 30.0,
        "ping_interval_s": 1000.0,
    }
    async with open_core(**settings) as core, trio.open_nursery() as nursery:
        slow, _ = await raw_client(core, nursery, lockstep=True)
        await slow.send({"type": "subscribe", "markets": [1]})
        checker = KMarketClient("ws://unused", "token", [1])
        checker.apply(await slow.next_message())  # ack
        checker.apply(await slow.next_message())  # snapshot
        async with core.connect() as fast:
            await send(fast, {"type": "subscribe", "markets": [1]})
            await receive_until(fast, lambda m: m["type"] == "snapshot")
            published_at = trio.current_time()
            for n in range(1, 201):
                await core.publish(1, {"n": n, f"k{n % 5}": n})
                await trio.testing.wait_all_tasks_blocked()  # a fast client drains at once
            received = [await receive(fast) for _ in range(200)]
            # Every update, as published, unconflated, and no virtual time went by.
            assert [m["seq"] for m in received] == list(range(1, 201))
            assert not any(m.get("conflated") for m in received)
            assert trio.current_time() == published_at
        # The slow reader now reads: it gets fewer messages, one of them conflated.
        snapshot = await core.engine.snapshot("market:1")
        messages = 0
        while checker.markets["1"].seq < snapshot.seq:
            checker.apply(await slow.next_message())
            messages += 1
        view = checker.markets["1"]
        assert view.state == snapshot.state
        assert view.conflated >= 1
        assert messages < 50
        nursery.cancel_scope.cancel()


async def test_unmergeable_backlog_is_replaced_by_one_resync_snapshot(autojump_clock: Any) -> None:
    settings = {
        "outbox_capacity": 8,
        "outbox_high_water": 4,
        "write_deadline_s": 30.0,
        "ping_interval_s": 1000.0,
    }
    async with open_core(**settings) as core, trio.open_nursery() as nursery:
        slow, _ = await raw_client(core, nursery, lockstep=True)
        await slow.send({"type": "subscribe", "markets": [1]})
        assert (await slow.next_message())["type"] == "ack"
        assert (await slow.next_message())["type"] == "snapshot"
        for n in range(1, 31):  # events do not merge: the outbox fills and resyncs
            await core.hub.publish("market:1", {"goal": n}, kind="event")
        await core.publish(1, {"score": 30})
        seen = []
        while not seen or seen[-1]["seq"] < 31:
            seen.append(await slow.next_message())
        resyncs = [m for m in seen if m["type"] == "snapshot"]
        assert len(resyncs) >= 1 and all(m.get("resync") for m in resyncs)
        assert seen[-1]["seq"] == 31
        (conns,) = [c for c in core.system.tree()["children"] if c["name"] == "conns"]
        conn = conns["children"][0]
        assert conn["info"]["resyncs"] >= 1
        nursery.cancel_scope.cancel()
