"""Baseline: trio-websocket, the naive way: the publisher awaits one send per client.

    python -m bench.servers.naive_trio

Each publish is encoded once, then sent to each subscriber in turn with ``await
ws.send_message``, so one slow socket holds up the market (no outbox, no batching). A per
client lock keeps a join's replay and live updates in order.
"""

from __future__ import annotations

import argparse
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from .trio_driver import run_baseline, start_publishing
from .wire import Markets, Session


class Client:
    __slots__ = ("lock", "ws")

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.lock = trio.Lock()

    async def send_all(self, frames: list[str]) -> None:
        async with self.lock:
            for frame in frames:
                await self.ws.send_message(frame)


class NaiveServer:
    def __init__(self) -> None:
        self.markets = Markets()
        self.subscribers: dict[str, set[Client]] = {}

    async def publish(self, market: str, patch: dict[str, Any]) -> None:
        frame = self.markets.publish(market, patch)
        for client in list(self.subscribers.get(market, ())):
            try:
                await client.send_all([frame])
            except ConnectionClosed:
                pass

    async def handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        client = Client(ws)
        session = Session(self.markets)
        try:
            while True:
                frames, joins = session.handle(await ws.get_message())
                for market in joins:  # registered before any await: no publish in between
                    self.subscribers.setdefault(market, set()).add(client)
                await client.send_all(frames)
        except ConnectionClosed:
            pass
        finally:
            for market in session.subscribed:
                self.subscribers.get(market, set()).discard(client)


async def main(args: argparse.Namespace) -> None:
    server = NaiveServer()
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(
            serve_websocket, server.handle, "127.0.0.1", args.ws_port, None
        )
        await start_publishing(nursery, listening.port, server.publish)


if __name__ == "__main__":
    run_baseline(main, __doc__)
