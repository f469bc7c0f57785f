"""rt.client.KMarketClient against a real server: drops, resumes, and the delivery contract.

The client checks every message against the contract and raises ContractViolation (out of
``client.run``, so out of the nursery, failing the test) on a gap, a duplicate or a step back.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import tenacity
import trio

from rt.client import KMarketClient
from rt.server import Server

from ._support import Watch, topic

MARKETS = [1001, 1002, 1003]


def markets_with(watch: Watch, kind: str, *, since: int) -> set[int]:
    return {m["marketId"] for m in watch.messages[since:] if m["type"] == kind}


@pytest.mark.parametrize(
    "replayed",
    [
        pytest.param(True, id="replayed-from-history"),
        pytest.param(False, id="beyond-history", marks=pytest.mark.server_settings(history_size=5)),
    ],
)
async def test_client_resumes_after_a_drop_and_ends_equal_to_the_server(
    server: Server, token: Callable[..., str], replayed: bool
) -> None:
    watch = Watch()
    client = KMarketClient(
        server.ws_url,
        token(),
        list(MARKETS),
        on_message=watch.feed,
        backoff=tenacity.wait_fixed(0.05),
    )
    stop = trio.Event()
    stopped = trio.Event()
    counter = 0

    async def publish(market: int) -> None:
        nonlocal counter
        counter += 1
        # Merge patches that add, change and delete keys, nested too.
        book = {str(counter % 5): counter if counter % 7 else None}
        await server.hub.publish(topic(market), {"price": counter, "book": book})

    async def publisher() -> None:
        while not stop.is_set():
            await publish(MARKETS[counter % len(MARKETS)])
            await trio.sleep(0.001)  # pacing: a steady stream, not a wait for anything
        stopped.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        await watch.until(lambda: len(client.markets) == len(MARKETS))  # the snapshots
        nursery.start_soon(publisher)
        await watch.until(
            lambda: all(client.markets[str(m)].updates >= 5 for m in MARKETS)  # live
        )

        before = len(watch.messages)
        client.drop()
        # While the client is away (its backoff is 50 ms), each market moves on by more than
        # a short history holds.
        for _ in range(10):
            for market in MARKETS:
                await publish(market)

        await watch.until(lambda: markets_with(watch, "resumed", since=before) == set(MARKETS))
        assert client.connects == 2
        notices = [m for m in watch.messages[before:] if m["type"] == "resumed"]
        assert all(n["recovered"] is replayed for n in notices), notices
        if not replayed:
            assert all(n["reason"] == "beyond_history" for n in notices), notices
            assert markets_with(watch, "snapshot", since=before) == set(MARKETS)
        else:
            assert markets_with(watch, "snapshot", since=before) == set()

        # Live again on the new connection, while the publisher goes on.
        mark = len(watch.messages)
        await watch.until(lambda: markets_with(watch, "odds_update", since=mark) == set(MARKETS))

        stop.set()
        await stopped.wait()
        final = {m: await server.engine.snapshot(topic(m)) for m in MARKETS}
        await watch.until(lambda: all(client.markets[str(m)].seq == final[m].seq for m in MARKETS))
        for market in MARKETS:
            view = client.markets[str(market)]
            assert view.state == final[market].state
            assert view.epoch == final[market].epoch
        assert client.errors == []
        nursery.cancel_scope.cancel()


async def test_client_survives_several_drops(server: Server, token: Callable[..., str]) -> None:
    watch = Watch()
    client = KMarketClient(
        server.ws_url,
        token(),
        [1001],
        on_message=watch.feed,
        backoff=tenacity.wait_fixed(0.05),
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        await watch.until(lambda: "1001" in client.markets)
        for round_ in range(1, 4):
            before = len(watch.messages)
            client.drop()
            for _ in range(3):
                await server.hub.publish(topic(1001), {"round": round_})
            await watch.until(lambda before=before: markets_with(watch, "resumed", since=before))
            assert client.connects == round_ + 1
        await server.hub.publish(topic(1001), {"done": True})
        seq = server.engine.position(topic(1001))[1]
        await watch.until(lambda: client.markets["1001"].seq == seq)
        assert client.markets["1001"].state == (await server.engine.snapshot(topic(1001))).state
        assert client.markets["1001"].snapshots == 1  # every resume was a replay
        nursery.cancel_scope.cancel()
