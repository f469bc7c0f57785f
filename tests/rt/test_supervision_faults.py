"""A connection never fails because a room's supervisor is slow or a room is restarting.

Chaos found both: a join asked the ``rooms`` supervisor to start the room (StartChild) and
waited at most 5 s; the supervisor, meanwhile, slept through restart backoffs of other rooms
(up to 2 s each, one after another), so the ask timed out and the connection crashed (close
1000), and the room keeper with it. Now a backoff never blocks a supervisor (tests/actors),
and a join that cannot get its room at once leaves it to the keeper: the join waits in the
Hub's table and the room serves it when it starts.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from rt.client import KMarketClient
from tests.rt.harness import open_core, receive, send


async def ping(ws: Any, ts: int) -> None:
    await send(ws, {"type": "ping", "ts": ts})
    assert await receive(ws) == {"type": "pong", "ts": ts}


async def test_a_join_outlives_a_stalled_rooms_supervisor(autojump_clock: Any) -> None:
    async with open_core() as core, core.connect() as ws:
        await core.publish(1, {"p": 1})
        stall = core.system.faults.arm("stall", actor="rooms")  # takes no message at all
        await send(ws, {"type": "subscribe", "markets": [1]})
        assert (await receive(ws))["subscribed"] == [1]
        for n in range(5):  # for a minute: far past any ask's timeout
            await ping(ws, n)
            await trio.sleep(12)
        assert core.system.lookup("rooms/market:1") is None
        assert core.system.lookup("keeper") is not None
        core.system.faults.disarm(stall.id)
        snapshot = await receive(ws)
        assert (snapshot["type"], snapshot["seq"], snapshot["payload"]) == ("snapshot", 1, {"p": 1})
        await core.publish(1, {"p": 2})
        assert (await receive(ws))["seq"] == 2


async def test_joins_while_a_room_keeps_crashing_are_served_once_it_stays_up(
    autojump_clock: Any,
) -> None:
    async with open_core() as core:
        async with core.connect() as first:
            checker = KMarketClient("ws://unused", "token", [1])
            await send(first, {"type": "subscribe", "markets": [1]})
            checker.apply(await receive(first))
            checker.apply(await receive(first))
            # Every incarnation crashes on its first message: restarts with a growing
            # backoff (up to 2 s), during which the room's name is taken and it has no ref.
            crash = core.system.faults.arm("crash", actor="rooms/market:1", count=1000)
            for n in range(30):
                await core.publish(1, {"n": n})
                await trio.sleep(0.2)
            async with core.connect() as second:
                await send(second, {"type": "subscribe", "markets": [1]})
                assert (await receive(second))["subscribed"] == [1]
                await ping(second, 1)  # not crashed, not blocked
                core.system.faults.disarm(crash.id)
                await core.publish(1, {"n": "last"})
                snapshot = await core.engine.snapshot("market:1")
                late = KMarketClient("ws://unused", "token", [1])
                while late.markets.get("1") is None or late.markets["1"].seq < snapshot.seq:
                    late.apply(await receive(second))
                assert late.markets["1"].state == snapshot.state
            while checker.markets["1"].seq < snapshot.seq:
                checker.apply(await receive(first))  # the contract held throughout
            assert checker.markets["1"].state == snapshot.state


async def test_a_writer_that_fails_is_its_connections_crash_and_nobody_elses(
    monkeypatch: Any, caplog: Any
) -> None:
    """The writer runs outside the connection's task (rt/ws/socket_actor.py): its error is
    still the connection's crash, logged by ``conns``, and the other clients go on."""
    from rt.ws.connection import Connection

    drain = Connection._drain

    async def failing_drain(self: Connection) -> None:
        if self.user_id == 2:
            raise ValueError("the writer broke")
        await drain(self)

    monkeypatch.setattr(Connection, "_drain", failing_drain)
    async with open_core() as core, core.connect(user_id=1, memory=True) as other:
        await core.publish(1, {"p": 1})
        async with core.connect(user_id=2, memory=True) as ws:  # every write needs the writer
            ended = trio.Event()
            core.system.monitor(core.last_path, lambda down: ended.set())
            await send(ws, {"type": "ping", "ts": 1})
            with trio.fail_after(10):
                await ended.wait()
            await trio.testing.wait_all_tasks_blocked()  # conns has taken the notice
        crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
        assert len(crashes) == 1 and "the writer broke" in crashes[0].getMessage()
        await ping(other, 7)
