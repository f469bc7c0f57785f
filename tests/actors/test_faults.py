"""Fault injection: crash, delay, drop and stall, by name, path or kind, at named points."""

from __future__ import annotations

from typing import Any

import pytest
import tenacity
import trio
import trio.testing

from actors import (
    AskFailed,
    AskTimeout,
    ChildSpec,
    FaultAction,
    InjectedFault,
    Supervisor,
    open_system,
)

from ._support import GUARD_S, Journal, Worker

NO_WAIT = tenacity.wait_fixed(0)


class Recorder(Worker):
    """Records every message it handles; ``ask("seen")`` returns them."""

    kind = "recorder"

    def __init__(self, journal: Journal) -> None:
        super().__init__(journal)
        self.seen: list[Any] = []

    async def receive(self, message: Any) -> Any:
        if message == "seen":
            return list(self.seen)
        self.seen.append(message)
        return await super().receive(message)


class Writer(Worker):
    """Writes each message out unless the "write" fault point says to skip it."""

    kind = "writer"

    def __init__(self) -> None:
        super().__init__()
        self.written: list[Any] = []

    async def receive(self, message: Any) -> Any:
        if message == "written":
            return list(self.written)
        if not await self.fault_point("write"):
            self.written.append(message)
        return message


def hooks(system: Any, *paths: str) -> list[bool]:
    return [system.lookup(p)._cell.mailbox.receive_hook is not None for p in paths]


async def test_nothing_armed_costs_nothing(autojump_clock: trio.abc.Clock) -> None:
    async with open_system([ChildSpec("w", Worker)]) as system:
        assert not system.faults.armed
        assert system.faults.list() == []
        assert hooks(system, "", "w") == [False, False]
        fault = system.faults.arm("delay", actor="w", delay_s=1)
        assert hooks(system, "", "w") == [False, True]
        system.faults.disarm(fault.id)
        assert hooks(system, "", "w") == [False, False]
        assert not system.faults.armed


async def test_crash_on_the_third_message(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    specs = [ChildSpec("market:1001", lambda: Recorder(journal))]
    async with open_system(specs, backoff=NO_WAIT) as system:
        fault = system.faults.arm("crash", actor="market:1001", after=2)
        first = system.lookup("market:1001")
        assert await first.ask(1) == 1
        assert await first.ask(2) == 2
        with pytest.raises(AskFailed) as caught:
            await first.ask(3)
        assert isinstance(caught.value.__cause__, InjectedFault)
        assert str(caught.value.__cause__) == "injected crash in market:1001 at message #3"
        assert not first.alive
        await journal.wait_for("start", "market:1001", count=2)
        # Counting is per path and the crash fires once: the next incarnation is spared.
        second = system.lookup("market:1001")
        assert [await second.ask(n) for n in (4, 5, 6)] == [4, 5, 6]
        assert await second.ask("seen") == [4, 5, 6]
        [listed] = system.faults.list()
        assert listed == {
            "id": fault.id,
            "action": "crash",
            "actor": "market:1001",
            "kind": None,
            "point": "message",
            "count": 1,
            "after": 2,
            "delay_s": 0.0,
            "fired": 1,
        }
        assert system.tree()["children"][0]["last_error"] == (
            "InjectedFault: injected crash in market:1001 at message #3"
        )


async def test_a_fault_on_a_kind_hits_every_actor_of_that_kind_only(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    inner = [ChildSpec("r2", lambda: Recorder(journal))]
    specs = [
        ChildSpec("r1", lambda: Recorder(journal)),
        ChildSpec("w", lambda: Worker(journal)),
        ChildSpec("sup", lambda: Supervisor(inner)),
    ]
    async with open_system(specs, backoff=NO_WAIT) as system:
        system.faults.arm(FaultAction.CRASH, kind="recorder", count=2)
        for path in ("r1", "sup/r2"):
            for _ in range(2):  # two crashes each, then it is spared
                with pytest.raises(AskFailed):
                    await system.lookup(path).ask("x")
                await journal.wait_for("start", path, count=journal.count("start", path) + 1)
            assert await system.lookup(path).ask("ok") == "ok"
        assert await system.lookup("w").ask("ok") == "ok"
        assert journal.count("start", "w") == 1
        assert system.faults.list()[0]["fired"] == 4


async def test_a_fault_by_path_spares_a_namesake_elsewhere(
    autojump_clock: trio.abc.Clock,
) -> None:
    inner = [ChildSpec("w", Worker)]
    specs = [ChildSpec("a", lambda: Supervisor(inner)), ChildSpec("b", lambda: Supervisor(inner))]
    async with open_system(specs) as system:
        system.faults.arm("crash", actor="a/w")
        assert hooks(system, "a/w", "b/w") == [True, False]
        with pytest.raises(AskFailed):
            await system.lookup("a/w").ask("x")
        assert await system.lookup("b/w").ask("x") == "x"


async def test_delay_holds_each_message_exactly(autojump_clock: trio.abc.Clock) -> None:
    async with open_system([ChildSpec("w", Worker)]) as system:
        system.faults.arm("delay", actor="w", delay_s=1.5)
        ref = system.lookup("w")
        assert await ref.ask("a") == "a"
        assert trio.current_time() == 1.5
        assert await ref.ask("b") == "b"  # every hit, since count defaults to None
        assert trio.current_time() == 3.0


async def test_drop_discards_one_message(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    async with open_system([ChildSpec("r", lambda: Recorder(journal))]) as system:
        system.faults.arm("drop", actor="r", after=1)
        ref = system.lookup("r")
        for n in range(4):
            ref.tell_nowait(n)
        assert await ref.ask("seen") == [0, 2, 3]
        with pytest.raises(AskTimeout):  # a dropped ask is lost, as on a lossy link
            system.faults.arm("drop", actor="r")
            await ref.ask("lost", timeout_s=1)
        # Injected drops are counted by the fault, not by the mailbox: six were taken out.
        stats = ref._cell.mailbox.statistics()
        assert (stats.processed, stats.dropped) == (6, 0)
        assert [f["fired"] for f in system.faults.list()] == [1, 1]


async def test_stall_blocks_until_disarmed(autojump_clock: trio.abc.Clock) -> None:
    async with open_system([ChildSpec("w", Worker)]) as system:
        fault = system.faults.arm("stall", actor="w")
        ref = system.lookup("w")
        replies: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def ask() -> None:
                replies.append(await ref.ask("held", timeout_s=GUARD_S))

            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            assert replies == []
            assert system.faults.disarm(fault.id) == 1
        assert replies == ["held"]
        assert system.faults.list() == []
        assert system.faults.disarm(fault.id) == 0


async def test_a_stalled_actor_is_still_stopped(autojump_clock: trio.abc.Clock) -> None:
    async with open_system([ChildSpec("w", Worker, shutdown_timeout_s=2)]) as system:
        system.faults.arm("stall", actor="w")
        system.lookup("w").tell_nowait("held")
        await system.stop("w")
        assert trio.current_time() == 2  # graceful stop ignored, cancelled after the timeout


async def test_custom_fault_points(autojump_clock: trio.abc.Clock) -> None:
    async with open_system([ChildSpec("conn", Writer)], backoff=NO_WAIT) as system:
        ref = system.lookup("conn")
        system.faults.arm("drop", actor="conn", point="write")
        assert hooks(system, "conn") == [False]  # no message fault: the mailbox is untouched
        assert await ref.ask("a") == "a"
        assert await ref.ask("b") == "b"
        assert await ref.ask("written") == ["b"]

        system.faults.arm("crash", kind="writer", point="write", after=1)
        assert await ref.ask("c") == "c"
        with pytest.raises(AskFailed) as caught:
            await ref.ask("d")
        # The number is this fault's own count of hits at that point.
        assert str(caught.value.__cause__) == "injected crash in conn at write #2"


async def test_disarm_all(autojump_clock: trio.abc.Clock) -> None:
    async with open_system([ChildSpec("w", Worker)]) as system:
        system.faults.arm("delay", actor="w", delay_s=1)
        system.faults.arm("stall", kind="worker", point="write")
        assert [f["action"] for f in system.faults.list()] == ["delay", "stall"]
        assert system.faults.disarm() == 2
        assert system.faults.list() == []
        assert hooks(system, "w") == [False]


async def test_an_actor_started_while_a_fault_is_armed_is_hooked(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_system() as system:
        system.faults.arm("crash", kind="worker")
        ref = await system.spawn(ChildSpec("late", Worker))
        assert hooks(system, "late") == [True]
        with pytest.raises(AskFailed):
            await ref.ask("x")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, "exactly one of actor= or kind="),
        ({"actor": "a", "kind": "k"}, "exactly one of actor= or kind="),
        ({"actor": "a", "count": 0}, "count must be at least 1, got 0"),
        ({"actor": "a", "after": -1}, "must not be negative"),
        ({"actor": "a", "delay_s": -1}, "must not be negative"),
    ],
)
def test_bad_faults_are_refused(kwargs: dict[str, Any], error: str) -> None:
    from actors import FaultPlan

    with pytest.raises(ValueError, match=error):
        FaultPlan().arm("crash", **kwargs)
    with pytest.raises(ValueError):
        FaultPlan().arm("explode", actor="a")
