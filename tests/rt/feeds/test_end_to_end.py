"""On the real clock and real sockets: `rt sim` as a process, and simulator -> feed -> engine."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from functools import partial
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, open_websocket_url, serve_websocket

from rt.feeds import FeedSnapshot, SnapshotRequest, decode_upstream, encode, open_upstream
from rt.feeds.simulator import Listening, serve_simulator
from tests.rt.harness import open_core

from ._support import Recorder, engine_events, info, start_feed, wait_for_state

SIM = [sys.executable, "-m", "rt.feeds.cli", "sim"]
READY = re.compile(r"rt sim ready ws://127\.0\.0\.1:(\d+)")


async def read_line(stream: trio.abc.ReceiveStream) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


async def test_rt_sim_serves_until_sigint() -> None:
    proc = await trio.lowlevel.open_process(
        [*SIM, "--port", "0", "--seed", "1", "--rate", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        with trio.fail_after(20):
            line = await read_line(proc.stdout)
        ready = READY.fullmatch(line)
        assert ready, f"no ready line, got {line!r}"
        with trio.fail_after(10):
            async with open_websocket_url(f"ws://127.0.0.1:{ready.group(1)}") as ws:
                await ws.send_message(encode(SnapshotRequest(request_id=1)))
                while not isinstance(
                    message := decode_upstream(await ws.get_message()), FeedSnapshot
                ):
                    pass
        assert message.request_id == 1
        assert [e.event_id for e in message.events] == ["sr:match:1", "sr:match:2", "sr:match:3"]
        assert {len(e.markets) for e in message.events} == {3}
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_rt_sim_says_when_it_cannot_listen() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    try:
        with trio.fail_after(20):
            result = await trio.run_process(
                [*SIM, "--port", str(port)], capture_stdout=True, capture_stderr=True, check=False
            )
    finally:
        for listener in listeners:
            await listener.aclose()
    assert result.returncode == 1
    assert result.stderr.decode().startswith(f"rt sim: cannot listen on 127.0.0.1:{port}: ")
    assert result.stdout == b""


def as_upstream_says(engine: dict[str, Any], simulator: dict[str, Any]) -> bool:
    """Every event the simulator reports is exactly as it says; the others it forgot have ended."""
    return all(engine.get(e) == s for e, s in simulator.items()) and all(
        s["status"] == "ended" for e, s in engine.items() if e not in simulator
    )


async def test_simulator_to_engine_over_loopback() -> None:
    async with open_core() as core, trio.open_nursery() as nursery:
        recorder = Recorder(core)
        listening: Listening = await nursery.start(
            partial(
                serve_simulator,
                "127.0.0.1",
                0,
                seed=3,
                events=3,
                markets=3,
                rate=500,
                match_s=0.25,
                max_steps=400,
            )
        )
        await start_feed(core, open_upstream, url=listening.url)
        simulator = listening.server.simulator
        with trio.fail_after(10):
            await wait_for_state(core, recorder, "connected")
            await listening.server.world_stopped.wait()
            while True:
                seen = len(recorder.updates)
                engine = await engine_events(core)
                if as_upstream_says(engine, simulator.state()):
                    break
                await recorder.more_than(seen)
        assert len(engine) > 3  # matches ended and new ones started
        assert {s["status"] for s in engine.values()} == {"live", "ended"}
        state = info(core.system)
        assert state["state"] == "connected" and state["attempts_total"] == 1
        assert state["published"] > 100
        nursery.cancel_scope.cancel()


async def test_open_upstream_closes_its_socket_when_the_upstream_closes() -> None:
    # trio-websocket 0.12 leaves a client's socket open after a server-side close; a feed
    # that reconnects for days must not leak one socket per reconnect.
    async def close_at_once(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.aclose(1001, "bye")

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_websocket, close_at_once, "127.0.0.1", 0, None))
        with trio.fail_after(10), pytest.raises(ConnectionClosed):
            async with open_upstream(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.get_message()
        assert ws._stream.socket.fileno() == -1  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()
