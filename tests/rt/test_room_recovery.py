"""A room that crashes is restarted, and its subscribers lose nothing."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from actors import AskFailed, ChildSpec
from rt.client import KMarketClient
from rt.delivery.room import MarketRoom
from tests.rt.harness import child, open_core, receive, send


async def test_subscribers_survive_a_room_crash_without_gap_or_duplicate(
    autojump_clock: Any,
) -> None:
    async with open_core() as core, core.connect() as ws:
        checker = KMarketClient("ws://unused", "token", [1])
        await send(ws, {"type": "subscribe", "markets": [1]})
        checker.apply(await receive(ws))
        checker.apply(await receive(ws))
        for n in range(5):
            await core.publish(1, {"n": n})
        core.system.faults.arm("crash", actor="rooms/market:1")
        for n in range(5, 20):
            await core.publish(1, {"n": n, f"k{n}": n})
        snapshot = await core.engine.snapshot("market:1")
        while checker.markets["1"].seq < snapshot.seq:
            checker.apply(await receive(ws))  # raises ContractViolation on a gap or duplicate
        assert checker.markets["1"].state == snapshot.state
        room = child(core.system.tree(), "rooms")["children"][0]
        assert (room["state"], room["restarts"]) == ("running", 1)
        assert "InjectedFault" in room["last_error"]


async def test_a_room_without_subscribers_stops_after_its_idle_time(autojump_clock: Any) -> None:
    async with open_core(room_idle_s=30.0) as core:
        async with core.connect() as ws:
            await send(ws, {"type": "subscribe", "markets": [1]})
            await receive(ws)
            await receive(ws)
            await send(ws, {"type": "unsubscribe", "markets": [1]})
            await receive(ws)
        assert core.system.lookup("rooms/market:1") is not None
        start = trio.current_time()
        gone = trio.Event()
        core.system.monitor("rooms/market:1", lambda _down: gone.set())
        await gone.wait()
        assert 30.0 <= trio.current_time() - start <= 60.0
        # The engine kept the topic: a new subscriber gets a fresh room and the state.
        await core.publish(1, {"after": True})
        async with core.connect() as ws:
            await send(ws, {"type": "subscribe", "markets": [1]})
            await receive(ws)
            snapshot = await receive(ws)
            assert (snapshot["seq"], snapshot["payload"]) == (1, {"after": True})


async def test_subscribers_survive_a_crash_of_the_rooms_supervisor(autojump_clock: Any) -> None:
    async with open_core() as core, core.connect() as ws:
        checker = KMarketClient("ws://unused", "token", [1])
        await send(ws, {"type": "subscribe", "markets": [1]})
        checker.apply(await receive(ws))
        checker.apply(await receive(ws))
        await core.publish(1, {"n": 1})
        checker.apply(await receive(ws))
        # The rooms supervisor crashes on its next message; its children go with it.
        core.system.faults.arm("crash", actor="rooms")
        with pytest.raises(AskFailed):
            await core.system.spawn(
                ChildSpec("x", lambda: MarketRoom("x", core.hub)), under="rooms"
            )
        await trio.testing.wait_all_tasks_blocked()
        # The next update finds subscribers and no room: the keeper starts one, which
        # brings the subscriber up to date from where its outbox got to.
        for n in range(2, 6):
            await core.publish(1, {"n": n})
        snapshot = await core.engine.snapshot("market:1")
        while checker.markets["1"].seq < snapshot.seq:
            checker.apply(await receive(ws))
        assert checker.markets["1"].state == snapshot.state


async def test_a_join_lost_with_a_crashing_room_is_served_by_the_next_one(
    autojump_clock: Any,
) -> None:
    async with open_core() as core, core.connect() as first:
        await send(first, {"type": "subscribe", "markets": [1]})
        await receive(first)
        await receive(first)
        await core.publish(1, {"n": 1})
        assert (await receive(first))["seq"] == 1
        # The second subscriber's join is the message the room crashes on: it dies with it.
        core.system.faults.arm("crash", actor="rooms/market:1")
        async with core.connect() as second:
            await send(second, {"type": "subscribe", "markets": [1]})
            assert (await receive(second))["type"] == "ack"
            snapshot = await receive(second)
            assert (snapshot["type"], snapshot["seq"], snapshot["payload"]) == (
                "snapshot",
                1,
                {"n": 1},
            )
            await core.publish(1, {"n": 2})
            assert (await receive(second))["seq"] == 2
            assert (await receive(first))["seq"] == 2
        room = child(core.system.tree(), "rooms")["children"][0]
        assert room["restarts"] == 1
