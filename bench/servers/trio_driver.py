"""The publisher plan on Trio: its control port and the loop that publishes (rt, naive,
wsproto), and the start-up the Trio baselines share."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from . import gctime
from .plan import PublishPlan, patch

Publish = Callable[[str, dict[str, Any]], Awaitable[object]]

MAX_LINE_BYTES = 64 * 1024


class Wakeup:
    """Lets a control command wake the publisher before its sleep ends."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float) -> None:
        with trio.move_on_after(timeout_s):
            await self._event.wait()
        self._event = trio.Event()


def respond(plan: PublishPlan, line: bytes) -> dict[str, Any]:
    cmd = json.loads(line)
    if cmd.get("cmd") == "gc":
        return gctime.collect()
    return {**plan.handle(cmd, time.monotonic()), **gctime.stats()}


async def serve_control(
    plan: PublishPlan, wake: Wakeup, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the control protocol on 127.0.0.1 (any free port, passed to task_status)."""

    async def handle(stream: trio.SocketStream) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            if len(buffer) > MAX_LINE_BYTES:
                return
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                reply = respond(plan, line)
                wake.set()
                await stream.send_all(json.dumps(reply).encode() + b"\n")

    gctime.install()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def drive(plan: PublishPlan, wake: Wakeup, publish: Publish) -> None:
    """Publish what the plan says is due, yielding to the server between batches."""
    while True:
        batch = plan.take(time.monotonic())
        for market, seq, scheduled_us in batch:
            await publish(market, patch(market, seq, scheduled_us))
        if batch:
            await trio.lowlevel.checkpoint()
        else:
            await wake.wait(plan.wait_s(time.monotonic()))


async def start_publishing(nursery: trio.Nursery, ws_port: int, publish: Publish) -> None:
    """Serve the control port and run the publisher in ``nursery``, then print the ready
    line the bench waits for (a baseline server with its WebSocket port open)."""
    plan, wake = PublishPlan(), Wakeup()
    control_port = await nursery.start(serve_control, plan, wake)
    nursery.start_soon(drive, plan, wake, publish)
    ready = {"ready": True, "pid": os.getpid(), "ws_port": ws_port, "control_port": control_port}
    print(json.dumps(ready), flush=True)


def run_baseline(main: Callable[[argparse.Namespace], Awaitable[None]], doc: str) -> None:
    """``python -m bench.servers.<baseline> [--ws-port N]``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--ws-port", type=int, default=0)
    try:
        trio.run(main, parser.parse_args())
    except KeyboardInterrupt:
        sys.exit(130)
