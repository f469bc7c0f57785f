"""Baseline: the Python `websockets` library on asyncio, fan-out with `websockets.broadcast()`.

    python -m bench.servers.websockets_broadcast

Each publish is encoded once and written to every subscriber's transport synchronously by
``broadcast()`` (no backpressure: a slow client's write buffer grows). Joins are written
with ``broadcast([ws], ...)`` too, in the same synchronous step that registers the
subscriber, so replay and live updates cannot interleave. Compression is off, as in rt, and
the listen backlog is the kernel's (trio's default) rather than asyncio's 100.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from . import gctime
from .plan import PublishPlan, patch
from .wire import Markets, Session

BACKLOG = 4096


class BroadcastServer:
    def __init__(self) -> None:
        self.markets = Markets()
        self.subscribers: dict[str, set[ServerConnection]] = {}
        self.plan = PublishPlan()
        self.wake = asyncio.Event()

    def publish(self, market: str, data: dict[str, Any]) -> None:
        frame = self.markets.publish(market, data).encode()
        broadcast(self.subscribers.get(market, ()), frame, text=True)

    async def handle(self, ws: ServerConnection) -> None:
        session = Session(self.markets)
        try:
            async for text in ws:
                frames, joins = session.handle(str(text))
                for market in joins:
                    self.subscribers.setdefault(market, set()).add(ws)
                for frame in frames:
                    broadcast([ws], frame.encode(), text=True)
        except ConnectionClosed:
            pass
        finally:
            for market in session.subscribed:
                self.subscribers.get(market, set()).discard(ws)

    async def drive(self) -> None:
        plan = self.plan
        while True:
            batch = plan.take(time.monotonic())
            for market, seq, scheduled_us in batch:
                self.publish(market, patch(market, seq, scheduled_us))
            if batch:
                await asyncio.sleep(0)
                continue
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), plan.wait_s(time.monotonic()))
            except TimeoutError:
                pass

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            cmd = json.loads(line)
            if cmd.get("cmd") == "gc":
                reply = gctime.collect()
            else:
                reply = {**self.plan.handle(cmd, time.monotonic()), **gctime.stats()}
            self.wake.set()
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        writer.close()


async def main(args: argparse.Namespace) -> None:
    server = BroadcastServer()
    gctime.install()
    async with serve(
        server.handle, "127.0.0.1", args.ws_port, compression=None, backlog=BACKLOG
    ) as ws_server:
        control = await asyncio.start_server(server.control, "127.0.0.1", 0)
        ready = {
            "ready": True,
            "pid": os.getpid(),
            "ws_port": ws_server.sockets[0].getsockname()[1],
            "control_port": control.sockets[0].getsockname()[1],
        }
        print(json.dumps(ready), flush=True)
        await server.drive()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ws-port", type=int, default=0)
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        sys.exit(130)
