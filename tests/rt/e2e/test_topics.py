"""The topics dialect (seed 004) over real sockets: the seed's own Python and JavaScript
clients, ticks published over HTTP, one connection per client_id, and the handshake's checks.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from rt.server import Server
from rt.topics import candle_topic
from tests.rt.harness import SteadyClock

from ._support import TIMEOUT_S, Peer, make_token, open_peer, upgrade_status

ROOT = Path(__file__).parents[3]
SEED_004 = ROOT.parent / "shared" / "seeds" / "004_fe49918adfbcbd89.txt"
JS = ROOT / "tests" / "js"


def real_ms() -> int:
    return time.time_ns() // 1_000_000


#: Candles need a clock that runs (the e2e default is a fixed one), and no interval may end
#: under these tests: 12:02:00 is three minutes from the next 5-minute boundary.
pytestmark = pytest.mark.server_settings(wall_ms=SteadyClock(12 * 60 + 2))


def seed_code(language: str) -> str:
    text = SEED_004.read_text()
    start = text.index(f"```{language}\n") + len(language) + 4
    return text[start : text.index("```", start)]


async def publish_ticks(server: Server, *ticks: dict[str, Any]) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {server.settings.admin_token}"}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT_S) as http:
        response = await http.post("/admin/publish", json={"updates": list(ticks)}, headers=headers)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def aapl(price: float, volume: float = 10) -> dict[str, Any]:
    return {"symbol": "AAPL", "type": "stock", "price": price, "volume": volume, "ts": real_ms()}


async def wait_for(predicate: Callable[[], bool], what: str) -> None:
    with trio.fail_after(TIMEOUT_S):
        for _ in range(10_000):
            if predicate():
                return
            await trio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def has_candles(server: Server) -> None:
    topic = candle_topic("stock.AAPL.1m")
    await wait_for(lambda: server.engine.position(topic)[1] > 0, "the first candle")


async def topics_peer(
    nursery: trio.Nursery, server: Server, client_id: str, query: str = ""
) -> Peer:
    peer = await open_peer(nursery, server, f"/api/v1/ws/{client_id}{query}")
    ack = await peer.recv()
    assert ack["type"] == "connection_ack" and ack["client_id"] == client_id
    return peer


async def test_ticks_published_over_http_become_candles(server: Server) -> None:
    results = await publish_ticks(server, aapl(190.5, 100), aapl(191.0, 50))
    assert [(r["symbol"], r["type"], r["seq"]) for r in results] == [
        ("AAPL", "stock", 1),
        ("AAPL", "stock", 2),
    ]
    await has_candles(server)
    async with trio.open_nursery() as nursery:
        peer = await topics_peer(nursery, server, "c1")
        await peer.send({"type": "subscribe", "topic": "stock.AAPL.5m"})
        ack = await peer.recv()
        assert ack["type"] == "subscribe_ack" and ack["topic"] == "stock.AAPL.5m"
        candle = await peer.recv()
        assert candle["type"] == "candle" and candle["topic"] == "stock.AAPL.5m"
        # The two ticks may have gone out as one candle or, throttled, as two: the latest
        # holds both, within the second.
        while candle["trades"] < 2:
            candle = await peer.recv()
        assert (candle["open"], candle["high"], candle["low"], candle["close"]) == (
            190.5,
            191.0,
            190.5,
            191.0,
        )
        assert (candle["volume"], candle["closed"]) == (150.0, False)
        await peer.aclose()


async def test_the_topics_with_data_are_listed(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT_S) as http:
        empty = (await http.get("/api/v1/topics")).json()
        assert empty["topics"] == [] and empty["intervals"][0] == "1m"
        await publish_ticks(server, aapl(190.5))
        await has_candles(server)
        await wait_for(lambda: server.engine.position("summary:US")[1] > 0, "the summary")
        listed = (await http.get("/api/v1/topics")).json()["topics"]
    assert listed == sorted(["market.US.summary"] + [f"stock.AAPL.{i}" for i in empty["intervals"]])


async def test_a_bad_tick_is_refused_whole(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.settings.admin_token}"}
    bad = {**aapl(1.0), "price": -1}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT_S) as http:
        response = await http.post(
            "/admin/publish", json={"updates": [aapl(1.0), bad]}, headers=headers
        )
    assert response.status_code == 400
    assert "updates[1].price" in response.json()["message"]
    assert server.engine.position("tick:stock.AAPL")[1] == 0  # all or nothing


async def run_seed_client(
    server: Server, argv: list[str], replace_when: Callable[[bytearray], Awaitable[None]]
) -> str:
    """Run a seed's client (its client_id is ``my_client``) until ``replace_when`` returns,
    then connect again with that client_id: rt closes the older connection (4409), the
    seed's client sees its socket close and ends. Returns what it printed."""
    process = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE)
    assert process.stdout is not None
    output = bytearray()

    async def read() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.receive_some():
            output.extend(chunk)

    try:
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await replace_when(output)
                peer = await topics_peer(nursery, server, "my_client")
                assert await process.wait() == 0
                await peer.aclose()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return output.decode()


async def test_the_seeds_python_client(server: Server) -> None:
    """The seed's Python example (the `websockets` library), unchanged but for the port: it
    gets connection_ack, subscribes, receives candles, and its loop ends when its socket
    closes."""
    await publish_ticks(server, aapl(190.5))
    await has_candles(server)
    code = seed_code("python").replace("localhost:8000", f"127.0.0.1:{server.port}")

    async def got_a_candle(output: bytearray) -> None:
        await wait_for(lambda: b"'candle'" in output, "a candle printed")

    output = await run_seed_client(server, [sys.executable, "-u", "-c", code], got_a_candle)
    lines = output.splitlines()
    assert lines[0].startswith("连接确认: ")
    assert json.loads(lines[0].removeprefix("连接确认: "))["type"] == "connection_ack"
    received = [ast.literal_eval(line.removeprefix("收到消息: ")) for line in lines[1:]]
    assert received[0] == {
        "type": "subscribe_ack",
        "topic": "stock.AAPL.1m",
        "timestamp": received[0]["timestamp"],
    }
    assert received[1]["type"] == "candle" and received[1]["topic"] == "stock.AAPL.1m"
    assert received[1]["close"] == 190.5


async def test_the_seeds_javascript_client(server: Server) -> None:
    """The seed's JavaScript example, run in Node: it subscribes on connection_ack and logs
    every message, a live candle update included, until its socket closes."""
    node = shutil.which("node")
    assert node is not None, "Node.js is needed (scripts/test installs tests/js with npm ci)"
    assert (JS / "node_modules" / "ws").is_dir(), "run `npm ci --prefix tests/js` first"
    await publish_ticks(server, aapl(190.5))
    await has_candles(server)
    topic = candle_topic("stock.AAPL.1m")

    async def got_a_live_update(output: bytearray) -> None:
        await wait_for(lambda: server.hub.subscriber_count() > 0, "the client's subscribe")
        before = server.engine.position(topic)[1]
        await publish_ticks(server, aapl(191.5))
        # Sent within the second (the throttle), to the subscriber as it is published.
        await wait_for(lambda: server.engine.position(topic)[1] > before, "the live candle")

    argv = [node, str(JS / "seed004_client.mjs"), str(SEED_004), f"127.0.0.1:{server.port}"]
    summary = json.loads(await run_seed_client(server, argv, got_a_live_update))
    assert summary["closed"] is True
    types = [m["type"] for m in summary["received"]]
    assert types[:3] == ["connection_ack", "subscribe_ack", "candle"], types
    candles = [m for m in summary["received"] if m["type"] == "candle"]
    assert candles[-1]["close"] == 191.5 and candles[-1]["trades"] == 2
    assert [c["seq"] for c in candles] == list(range(candles[0]["seq"], candles[-1]["seq"] + 1))


async def test_a_second_connection_with_a_client_id_replaces_the_first(server: Server) -> None:
    await publish_ticks(server, aapl(190.5))
    await has_candles(server)
    async with trio.open_nursery() as nursery:
        first = await topics_peer(nursery, server, "dup")
        second = await topics_peer(nursery, server, "dup")
        reason = await first.closed()
        assert (reason.code, reason.reason) == (
            4409,
            "replaced by a newer connection with its key",
        )
        await second.send({"type": "ping"})
        assert (await second.recv())["type"] == "pong"
        other = await topics_peer(nursery, server, "other")  # another client_id is separate
        await other.send({"type": "ping"})
        assert (await other.recv())["type"] == "pong"
        for peer in (first, second, other):
            await peer.aclose()


@pytest.mark.parametrize("client_id", ["a%20b", "x" * 65, "caf%C3%A9"])
async def test_a_bad_client_id_is_refused_with_400(server: Server, client_id: str) -> None:
    assert await upgrade_status(server.port, f"/api/v1/ws/{client_id}") == b"400"


async def test_no_token_is_needed_by_default_but_a_bad_one_is_refused(server: Server) -> None:
    assert await upgrade_status(server.port, "/api/v1/ws/c1?token=forged") == b"401"
    async with trio.open_nursery() as nursery:
        peer = await topics_peer(nursery, server, "c1", f"?token={make_token('u1')}")
        await peer.aclose()


@pytest.mark.server_settings(wall_ms=SteadyClock(12 * 60 + 2), require_token=("topics",))
async def test_require_token_makes_the_token_required(server: Server) -> None:
    assert await upgrade_status(server.port, "/api/v1/ws/c1") == b"401"
    async with trio.open_nursery() as nursery:
        peer = await topics_peer(nursery, server, "c1", f"?token={make_token('u1')}")
        await peer.send({"type": "ping"})
        assert (await peer.recv())["type"] == "pong"
        await peer.aclose()
