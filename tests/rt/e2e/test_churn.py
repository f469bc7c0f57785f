"""Subscribing and unsubscribing over and over while updates stream: each subscription's
stream still obeys the delivery contract, and nothing of a market arrives between its
unsubscribe ack and the next subscribe ack."""

from __future__ import annotations

import trio

from rt.client import KMarketClient
from rt.server import Server

from ._support import Message, Peer, connect, topic


class Checker:
    """Folds one connection's messages: a fresh view per subscription, checked by the
    client's own contract check."""

    def __init__(self) -> None:
        self.client = KMarketClient("ws://unused", "unused", [])
        self.subscribed: set[int] = set()

    def feed(self, message: Message) -> None:
        kind = message["type"]
        if kind == "ack":
            for market in message.get("unsubscribed", []):
                self.subscribed.discard(market)
                self.client.markets.pop(str(market), None)
            if "unsubscribed" not in message:
                self.subscribed.update(message["subscribed"])
        elif kind in ("odds_update", "snapshot"):
            market = message["marketId"]
            assert market in self.subscribed, f"{kind} of {market} while not subscribed"
            self.client.apply(message)  # raises ContractViolation


async def test_subscribe_unsubscribe_churn_keeps_the_contract(server: Server) -> None:
    checker = Checker()
    stop = trio.Event()

    async def publisher() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await server.hub.publish(topic(1001 + n % 2), {"n": n, "k": {str(n % 3): n}})
            await trio.lowlevel.checkpoint()

    async def command(peer: Peer, message: Message) -> None:
        await peer.send(message)
        for received in await peer.recv_until(lambda m: m["type"] == "ack"):
            checker.feed(received)

    async with connect(server) as peer, trio.open_nursery() as nursery:
        nursery.start_soon(publisher)
        await command(peer, {"type": "subscribe", "markets": ["1002"]})
        for _ in range(40):
            await command(peer, {"type": "subscribe", "markets": ["1001"]})
            await command(peer, {"type": "unsubscribe", "markets": ["1001"]})
        await command(peer, {"type": "subscribe", "markets": ["1001"]})
        stop.set()
        # Both markets end equal to the server's state.
        final = {m: await server.engine.snapshot(topic(m)) for m in (1001, 1002)}
        while any(
            checker.client.markets.get(str(m)) is None
            or checker.client.markets[str(m)].seq < final[m].seq
            for m in final
        ):
            checker.feed(await peer.recv())
        for market, snapshot in final.items():
            view = checker.client.markets[str(market)]
            assert (view.seq, view.state) == (snapshot.seq, snapshot.state)
