"""Probe: trio with wsproto directly, one task per connection (no trio-websocket).

    python -m bench.servers.wsproto_trio

Not a baseline of the issue: it measures what serving WebSockets without trio-websocket's
per-connection machinery (a reader task, a handler nursery, a message channel, a send lock)
would give S3 and S4, as evidence for that decision (docs/performance.md). It does what the
naive server does (no JWT, no actors), with rt's way of writing: each publish is framed once
and written straight to every idle socket; a socket that cannot take it all gets a flush task.
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

from rt.ws.frames import frame_text

from .trio_driver import run_baseline, start_publishing
from .wire import Markets, Session


class Client:
    __slots__ = ("flushing", "pending", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.pending = bytearray()
        self.flushing = False

    def write(self, data: bytes, nursery: trio.Nursery) -> None:
        if self.pending:
            self.pending += data
            return
        try:
            sent = os.write(self.stream.socket.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return
        if sent < len(data):
            self.pending += data[sent:]
            if not self.flushing:
                self.flushing = True
                nursery.start_soon(self.flush)

    async def flush(self) -> None:
        try:
            while self.pending:
                data = bytes(self.pending)
                self.pending.clear()
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.pending.clear()
        finally:
            self.flushing = False


class ProbeServer:
    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.markets = Markets()
        self.subscribers: dict[str, set[Client]] = {}

    async def publish(self, market: str, patch: dict[str, Any]) -> None:
        frame = frame_text(self.markets.publish(market, patch))
        for client in self.subscribers.get(market, ()):
            client.write(frame, self.nursery)

    async def handle(self, stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        client = Client(stream)
        session = Session(self.markets)
        parts: list[str] = []
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        client.write(ws.send(AcceptConnection()), self.nursery)
                    elif isinstance(event, TextMessage):
                        parts.append(event.data)
                        if not event.message_finished:
                            continue
                        frames, joins = session.handle("".join(parts))
                        parts.clear()
                        for market in joins:
                            self.subscribers.setdefault(market, set()).add(client)
                        client.write(b"".join(map(frame_text, frames)), self.nursery)
                    elif isinstance(event, Ping):
                        client.write(ws.send(event.response()), self.nursery)
                    elif isinstance(event, CloseConnection):
                        client.write(ws.send(event.response()), self.nursery)
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            for market in session.subscribed:
                self.subscribers.get(market, set()).discard(client)
            await stream.aclose()


async def main(args: argparse.Namespace) -> None:
    async with trio.open_nursery() as nursery:
        server = ProbeServer(nursery)
        listeners = await nursery.start(
            partial(trio.serve_tcp, server.handle, args.ws_port, host="127.0.0.1")
        )
        await start_publishing(nursery, listeners[0].socket.getsockname()[1], server.publish)


if __name__ == "__main__":
    run_baseline(main, __doc__)
