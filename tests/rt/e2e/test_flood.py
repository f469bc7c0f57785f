"""One client floods a live server; another client and the server's memory do not notice.

The flooder, over real sockets on 127.0.0.1, for FLOOD_S seconds, reconnecting whenever it
is closed: invalid messages (deep nesting, NaN, lone surrogates, not JSON), pings as fast as
it can, subscribe/unsubscribe churn over fresh names, and a reader that subscribes to a busy
market and never reads. Meanwhile a bystander subscribed to that market pings once every
20 ms and checks every update against the delivery contract.

Bounds (docs/reliability.md states them): the bystander's ping round trip stays under
PING_MAX_S (median under PING_MEDIAN_S), the server's RSS grows by less than RSS_MAX_BYTES,
every flooding connection is closed with a limit's code (4429, or 4001 for the reader that
never reads), and once the rooms' idle time has passed no room and no Hub entry of a made-up
topic is left. Everything is bounded: the flood's duration, each wait, each loop.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import time
from collections import Counter
from collections.abc import Callable

import pytest
import trio
import trio.lowlevel
from trio_websocket import ConnectionClosed, HandshakeError, wrap_client_stream

from rt.client import KMarketClient
from rt.server import Server

from ._support import make_token, odds_resource, open_peer, topic

FLOOD_S = 4.0
PING_MAX_S = 0.5
PING_MEDIAN_S = 0.05
RSS_MAX_BYTES = 48 * 1024 * 1024
BUSY = 1001


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def holds_within(predicate: Callable[[], bool], seconds: float) -> bool:
    """Whether ``predicate()`` comes to hold within ``seconds`` (checked every 50 ms): for
    server state no event announces (a count, the rooms' idle timers)."""
    with trio.move_on_after(seconds):
        while True:
            if predicate():
                return True
            await trio.sleep(0.05)
    return False


def invalid(n: int) -> str:
    return ["[" * 30_000, '{"type":"ping","ts":NaN}', '{"ts":"\\ud800"}', "{nope"][n % 4]


async def flood_connection(server: Server, kind: str, n: int, closes: Counter[str]) -> None:
    """One flooding connection of ``kind``, until the server closes it."""
    async with trio.open_nursery() as nursery:
        try:
            peer = await open_peer(nursery, server, odds_resource(make_token(f"f{n % 4}")))
        except (OSError, HandshakeError):
            closes["refused"] += 1
            return
        ended = trio.Event()

        async def drain() -> None:
            # The flooder reads (and drops) what it is sent, so that it sees the close code;
            # a client that does not read at all is never_reads below.
            try:
                while True:
                    await peer.ws.get_message()
            except ConnectionClosed as exc:
                assert exc.reason is not None
                closes[f"{kind} {exc.reason.code}"] += 1
            finally:
                ended.set()

        nursery.start_soon(drain)
        try:
            i = 0
            while not ended.is_set():
                i += 1
                if kind == "invalid":
                    await peer.send_raw(invalid(i))
                elif kind == "pings":
                    await peer.send({"type": "ping", "ts": i})
                else:  # churn over fresh names
                    name = f"flood-{n}-{i}"
                    await peer.send({"type": "subscribe", "markets": [name]})
                    await peer.send({"type": "unsubscribe", "markets": [name]})
                if i % 20 == 0:
                    await trio.lowlevel.checkpoint()
        except ConnectionClosed:
            pass
        with trio.fail_after(10):
            await ended.wait()
        await peer.aclose()
        nursery.cancel_scope.cancel()


async def never_reads(server: Server, closes: Counter[str]) -> None:
    """Subscribes to the busy market with a 4 KiB receive buffer and never reads again."""
    stream = await trio.open_tcp_stream(server.settings.host, server.ws_port)
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    async with trio.open_nursery() as nursery:
        host = f"{server.settings.host}:{server.ws_port}"
        ws = await wrap_client_stream(
            nursery, stream, host, odds_resource(make_token("reader")), message_queue_size=0
        )
        await ws.send_message(json.dumps({"type": "subscribe", "markets": [BUSY]}))
        # trio-websocket's reader stops reading the socket once one message waits for us,
        # so the close frame is never read either: the server's count says it was closed.
        if await holds_within(lambda: server.stats.slow_closes > 0, FLOOD_S + 10):
            closes["never-reads 4001"] += 1
        nursery.cancel_scope.cancel()
    stream.socket.close()


@pytest.mark.server_settings(write_deadline_s=1.0, room_idle_s=1.0)
async def test_a_flood_from_one_client_leaves_another_and_the_memory_alone(
    server: Server,
) -> None:
    rss_before = rss_bytes()
    closes: Counter[str] = Counter()
    rtts: list[float] = []
    bystander = KMarketClient(server.ws_url, make_token("bystander"), [str(BUSY)])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bystander.run)
        with trio.fail_after(5):
            await bystander.connected.wait()

        async def publish() -> None:
            n = 0
            while True:
                n += 1
                await server.hub.publish(topic(BUSY), {"n": n, "pad": "x" * 200})
                await trio.sleep(0.002)

        async def flood(kind: str) -> None:
            deadline = trio.current_time() + FLOOD_S
            n = 0
            while trio.current_time() < deadline and n < 500:  # bounded either way
                n += 1
                await flood_connection(server, kind, n, closes)

        async with trio.open_nursery() as load:
            load.start_soon(publish)
            load.start_soon(never_reads, server, closes)
            async with trio.open_nursery() as flooders:
                for kind in ("invalid", "pings", "churn"):
                    flooders.start_soon(flood, kind)
                # The bystander pings over its own socket while the flood goes on.
                async with trio.open_nursery() as pinger:
                    peer = await open_peer(pinger, server, odds_resource(make_token("pinger")))
                    deadline = trio.current_time() + FLOOD_S
                    i = 0
                    while trio.current_time() < deadline:
                        i += 1
                        sent = time.perf_counter()
                        await peer.send({"type": "ping", "ts": i})
                        assert await peer.recv() == {"type": "pong", "ts": i}
                        rtts.append(time.perf_counter() - sent)
                        await trio.sleep(0.02)
                    await peer.aclose()
                    pinger.cancel_scope.cancel()
            load.cancel_scope.cancel()
        nursery.cancel_scope.cancel()

    # The bystander kept the contract (KMarketClient raises otherwise) and got updates.
    assert bystander.markets[str(BUSY)].seq > 0
    assert bystander.connects == 1
    # Its ping round trips.
    assert len(rtts) > 20
    assert statistics.median(rtts) < PING_MEDIAN_S, sorted(rtts)[-5:]
    assert max(rtts) < PING_MAX_S, sorted(rtts)[-5:]
    # Every flooding connection was closed by a limit: 4429, or 4001 for the non-reader.
    assert closes["invalid 4429"] > 0 and closes["pings 4429"] > 0 and closes["churn 4429"] > 0, (
        closes
    )
    assert closes["never-reads 4001"] == 1
    assert set(closes) <= {"invalid 4429", "pings 4429", "churn 4429", "never-reads 4001"}, closes
    # Memory: bounded now, and every made-up topic released once rooms idle out.
    assert rss_bytes() - rss_before < RSS_MAX_BYTES
    made_up = lambda: [p for p in server.system.registry.paths() if "flood-" in p]  # noqa: E731
    assert await holds_within(lambda: not made_up(), 10), made_up()
    assert server.hub.topics_indexed() <= 2  # the busy market, and the health probe's topic
    print(
        f"\nflood: closes {dict(closes)}; ping round trip median "
        f"{statistics.median(rtts) * 1000:.1f} ms, max {max(rtts) * 1000:.1f} ms over "
        f"{len(rtts)} pings; rss +{(rss_bytes() - rss_before) / 2**20:.1f} MiB"
    )
