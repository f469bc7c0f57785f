"""A user's private stream starts its room only with its first message (rt/delivery/hub.py:
``_waits_without_a_room``): a connected user who is sent nothing costs no actor, and the
first message still arrives, in order, once."""

from __future__ import annotations

import json
from collections.abc import Callable

import trio

from rt.dialects.uof import DIALECT as UOF
from tests.rt.harness import open_core


async def until(condition: Callable[[], bool]) -> None:
    """Poll: the connections' actors end on their own time once their clients go."""
    with trio.fail_after(5):
        while True:
            if condition():
                return
            await trio.sleep(0.01)


async def test_a_private_stream_starts_its_room_with_its_first_message() -> None:
    async with open_core() as core, core.connect(user_id="u1", dialect=UOF) as ws:
        hello = json.loads(await ws.get_message())
        assert hello["type"] == "connection_established"
        await ws.send_message('{"type":"ping"}')
        assert json.loads(await ws.get_message())["type"] == "pong"  # the join is done
        assert core.system.lookup("users/user:u1") is None
        assert core.hub.table.get("user:u1") is not None  # waiting in the table
        for n in (1, 2):
            await core.hub.publish(
                "user:u1", {"ticketId": f"t{n}", "status": "accepted"}, kind="event"
            )
        results = [json.loads(await ws.get_message()) for _ in range(2)]
        assert [(r["type"], r["seq"], r["payload"]["ticketId"]) for r in results] == [
            ("bet_result", 1, "t1"),
            ("bet_result", 2, "t2"),
        ]
        assert core.system.lookup("users/user:u1") is not None


async def test_a_user_with_messages_to_replay_gets_a_room_at_once() -> None:
    async with open_core() as core:
        await core.hub.publish("user:u2", {"ticketId": "t1", "status": "accepted"}, kind="event")
        async with core.connect(user_id="u2", dialect=UOF) as ws:
            await ws.get_message()  # connection_established
            result = json.loads(await ws.get_message())
            assert (result["type"], result["seq"]) == ("bet_result", 1)
            assert core.system.lookup("users/user:u2") is not None


async def test_many_idle_users_cost_no_room() -> None:
    async with open_core() as core:
        async with trio.open_nursery() as nursery:
            ready = trio.Semaphore(0)

            async def client(user: str) -> None:
                async with core.connect(user_id=user, dialect=UOF) as ws:
                    await ws.get_message()
                    ready.release()
                    await trio.sleep_forever()

            for n in range(20):
                nursery.start_soon(client, f"idle{n}")
            for _ in range(20):
                await ready.acquire()
            await until(lambda: all(core.hub.table.get(f"user:idle{n}") for n in range(20)))
            assert not [p for p in core.system.registry.paths() if p.startswith("users/")]
            nursery.cancel_scope.cancel()
        await until(lambda: core.hub.topics_indexed() == 0)  # and leave nothing behind
