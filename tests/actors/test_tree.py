"""The tree snapshot: a JSON-serialisable picture of every actor, from the root down."""

from __future__ import annotations

import json
from typing import Any

import tenacity
import trio
import trio.testing

from actors import ChildSpec, Overflow, Supervisor, open_system

from ._support import Journal, Worker, crash_and_wait, wait


class Gated(Worker):
    """Reads its mailbox only once its gate opens; shows a field of its own in ``info``."""

    kind = "gated"
    mailbox_capacity = 4
    overflow = Overflow.DROP_NEWEST

    def __init__(self, journal: Journal, gate: trio.Event) -> None:
        super().__init__(journal)
        self.gate = gate

    async def run(self) -> None:
        await self.gate.wait()
        await super().run()

    def describe(self) -> dict[str, Any]:
        return {"gate_open": self.gate.is_set()}


async def test_the_tree_shows_every_actor(autojump_clock: trio.abc.Clock) -> None:
    journal, gate = Journal(), trio.Event()
    inner = [ChildSpec("g", lambda: Gated(journal, gate))]
    specs = [
        ChildSpec("w", lambda: Worker(journal)),
        ChildSpec("sup", lambda: Supervisor(inner, max_restarts=7, period_s=60)),
    ]
    async with open_system(specs) as system:
        await trio.sleep(7)
        gated = system.lookup("sup/g")
        assert [gated.tell_nowait(n) for n in range(6)] == [True] * 4 + [False] * 2
        await system.lookup("w").ask("x")
        tree = json.loads(json.dumps(system.tree()))
    assert tree == {
        "kind": "supervisor",
        "name": "root",
        "path": "/",
        "state": "running",
        "mailbox": {"depth": 0, "capacity": 1024, "dropped": 0, "processed": 0},
        "restarts": 0,
        "uptime_s": 7.0,
        "last_error": None,
        "info": {"strategy": "one_for_one", "max_restarts": 3, "period_s": 5.0},
        "children": [
            {
                "kind": "worker",
                "name": "w",
                "path": "w",
                "state": "running",
                "mailbox": {"depth": 0, "capacity": 128, "dropped": 0, "processed": 1},
                "restarts": 0,
                "uptime_s": 7.0,
                "last_error": None,
                "info": {},
            },
            {
                "kind": "supervisor",
                "name": "sup",
                "path": "sup",
                "state": "running",
                "mailbox": {"depth": 0, "capacity": 1024, "dropped": 0, "processed": 0},
                "restarts": 0,
                "uptime_s": 7.0,
                "last_error": None,
                "info": {"strategy": "one_for_one", "max_restarts": 7, "period_s": 60},
                "children": [
                    {
                        "kind": "gated",
                        "name": "g",
                        "path": "sup/g",
                        "state": "running",
                        "mailbox": {"depth": 4, "capacity": 4, "dropped": 2, "processed": 0},
                        "restarts": 0,
                        "uptime_s": 7.0,
                        "last_error": None,
                        "info": {"gate_open": False},
                    }
                ],
            },
        ],
    }


async def test_restarts_last_error_and_uptime_follow_incarnations(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    specs = [ChildSpec("w", lambda: Worker(journal))]
    async with open_system(specs, backoff=tenacity.wait_fixed(0.5)) as system:
        await trio.sleep(10)
        await crash_and_wait(system, "w", journal)
        await trio.sleep(2)
        [node] = system.tree()["children"]
    assert node["restarts"] == 1
    assert node["last_error"] == "ValueError: w was told to crash"
    assert node["uptime_s"] == 2.0  # the new incarnation started at 10.5


async def test_a_restarting_child_shows_state_restarting(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    specs = [ChildSpec("w", lambda: Worker(journal))]
    async with open_system(specs, backoff=tenacity.wait_fixed(30)) as system:
        ended = trio.Event()
        system.monitor("w", lambda down: ended.set())
        system.lookup("w").tell_nowait("crash")
        await wait(ended)
        await trio.testing.wait_all_tasks_blocked()  # the supervisor is in its backoff
        assert system.lookup("w") is None
        [node] = json.loads(json.dumps(system.tree()))["children"]
        assert node == {
            "kind": None,
            "name": "w",
            "path": "w",
            "state": "restarting",
            "mailbox": None,
            "restarts": 0,
            "uptime_s": 0.0,
            "last_error": "ValueError: w was told to crash",
            "info": {},
        }
        await journal.wait_for("start", "w", count=2)
        assert trio.current_time() == 30
        [node] = system.tree()["children"]
        assert (node["state"], node["restarts"]) == ("running", 1)


async def test_a_stopping_child_shows_state_stopping(autojump_clock: trio.abc.Clock) -> None:
    gate = trio.Event()
    journal = Journal()
    specs = [ChildSpec("g", lambda: Gated(journal, gate))]
    async with open_system(specs) as system:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(system.stop, "g")
            await trio.testing.wait_all_tasks_blocked()
            [node] = system.tree()["children"]
            assert node["state"] == "stopping"
            gate.set()
        assert system.tree()["children"] == []
