"""Stopping: graceful then cancel, reverse start order, and nothing left running."""

from __future__ import annotations

import pytest
import tenacity
import trio
import trio.testing

from actors import Actor, ChildSpec, Supervisor, SupervisorGaveUp, open_system

from ._support import GUARD_S, Journal, Stubborn, Worker, count_tasks, wait


async def test_a_graceful_stop_drains_the_mailbox_then_run_returns(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()

    class Slow(Worker):
        async def receive(self, message: object) -> object:
            await trio.sleep(1)
            journal.add("handled", f"{message}")
            return message

    async with open_system([ChildSpec("w", lambda: Slow(journal))]) as system:
        ref = system.lookup("w")
        for n in range(3):
            ref.tell_nowait(n)
        downs = []
        system.monitor("w", downs.append)
        await system.stop("w")
        assert trio.current_time() == 3  # no cancel: it finished its queue
    assert journal.events("handled", "stop") == [
        ("handled", "0"),
        ("handled", "1"),
        ("handled", "2"),
        ("stop", "w"),
    ]
    assert [d.reason for d in downs] == ["shutdown"]


@pytest.mark.parametrize("timeout_s", [0.5, 4])
async def test_an_actor_that_ignores_stop_is_cancelled_after_its_timeout(
    autojump_clock: trio.abc.Clock, timeout_s: float
) -> None:
    journal = Journal()
    specs = [ChildSpec("s", lambda: Stubborn(journal), shutdown_timeout_s=timeout_s)]
    async with open_system(specs) as system:
        await trio.sleep(1)
        ref = system.lookup("s")
        downs = []
        system.monitor("s", downs.append)
        await system.stop("s")
        assert journal.times("cancelled", "s") == [1 + timeout_s]
        assert trio.current_time() == 1 + timeout_s
        assert not ref.alive
        assert [(d.reason, d.error) for d in downs] == [("shutdown", None)]


async def test_children_stop_in_reverse_start_order(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    inner = [ChildSpec(n, lambda: Worker(journal)) for n in ("x", "y")]
    specs = [
        ChildSpec("a", lambda: Worker(journal)),
        ChildSpec("sup", lambda: Supervisor(inner)),
        ChildSpec("c", lambda: Worker(journal)),
    ]
    async with open_system(specs) as system:
        await system.spawn(ChildSpec("d", lambda: Worker(journal)))
    assert journal.events() == [
        ("start", "a"),
        ("start", "sup/x"),
        ("start", "sup/y"),
        ("start", "c"),
        ("start", "d"),
        ("stop", "d"),
        ("stop", "c"),
        ("stop", "sup/y"),
        ("stop", "sup/x"),
        ("stop", "a"),
    ]


async def test_each_stubborn_child_gets_its_own_timeout_in_turn(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    specs = [
        ChildSpec("first", lambda: Stubborn(journal), shutdown_timeout_s=2),
        ChildSpec("polite", lambda: Worker(journal)),
        ChildSpec("last", lambda: Stubborn(journal), shutdown_timeout_s=3),
    ]
    async with open_system(specs):
        pass
    assert [(e, n, t) for e, n, t in journal.entries if e != "start"] == [
        ("cancelled", "last", 3.0),
        ("stop", "polite", 3.0),
        ("cancelled", "first", 5.0),
    ]


async def test_the_system_timeout_bounds_the_whole_shutdown(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    specs = [
        ChildSpec("a", lambda: Worker(journal)),
        ChildSpec("s", lambda: Stubborn(journal), shutdown_timeout_s=100),
    ]
    async with open_system(specs, shutdown_timeout_s=7):
        pass
    assert trio.current_time() == 7
    # The root gave up waiting: everything left was cancelled at once, "a" included.
    assert journal.times("cancelled", "s") == [7.0]
    assert journal.count("stop", "a") == 0


async def test_a_stopping_supervisor_restarts_nothing(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    specs = [ChildSpec("w", lambda: Worker(journal))]
    async with open_system(specs, backoff=tenacity.wait_fixed(100)) as system:
        ended = trio.Event()
        system.monitor("w", lambda down: ended.set())
        system.lookup("w").tell_nowait("crash")
        await wait(ended)
        await trio.testing.wait_all_tasks_blocked()  # the root is in its 100 s backoff
    assert trio.current_time() == 0  # the backoff was cut short by the stop
    assert journal.count("start", "w") == 1


async def test_an_error_in_the_block_stops_the_system_gracefully(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    specs = [ChildSpec(n, lambda: Worker(journal)) for n in "ab"]
    with pytest.RaisesGroup(pytest.RaisesExc(KeyError, match="oops")):
        async with open_system(specs):
            raise KeyError("oops")
    assert journal.events("stop") == [("stop", "b"), ("stop", "a")]


async def test_no_task_is_left_running_after_the_system_closes(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    inner = [ChildSpec("x", lambda: Worker(journal))]
    specs = [
        ChildSpec("a", lambda: Worker(journal)),
        ChildSpec("s", lambda: Stubborn(journal), shutdown_timeout_s=1),
        ChildSpec("sup", lambda: Supervisor(inner)),
    ]
    before = count_tasks()
    async with open_system(specs) as system:
        await system.spawn(ChildSpec("b", lambda: Worker(journal)), under="sup")
        # one task per actor: the root, a, s, sup, sup/x and sup/b
        assert count_tasks() == before + 6
    assert count_tasks() == before


async def test_no_task_is_left_running_after_the_root_gives_up(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    specs = [ChildSpec(n, lambda: Worker(journal)) for n in "abc"]
    before = count_tasks()
    with pytest.RaisesGroup(SupervisorGaveUp):
        async with open_system(specs, max_restarts=0) as system:
            system.lookup("b").tell_nowait("crash")
            await trio.sleep(GUARD_S)  # cancelled when the root gives up
    assert count_tasks() == before
    assert journal.events("stop") == [("stop", "c"), ("stop", "a")]


class Waiter(Actor):
    """Waits on an event of its own, not on its mailbox: it learns of a stop only through
    on_stop_requested, which sets that event."""

    def __init__(self, journal: Journal, *, fail: bool = False) -> None:
        self.journal = journal
        self.fail = fail
        self.woken = trio.Event()

    def on_stop_requested(self) -> None:
        self.journal.add("stop requested", f"{self.stop_requested.is_set()}")
        self.woken.set()
        if self.fail:
            raise RuntimeError("a broken hook")

    async def run(self) -> None:
        await self.woken.wait()
        self.journal.add("stop", self.path)


async def test_on_stop_requested_lets_an_actor_that_does_not_read_its_mailbox_stop_gracefully(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    spec = ChildSpec("w", lambda: Waiter(journal), shutdown_timeout_s=10)
    async with open_system([spec]) as system:
        downs = []
        system.monitor("w", downs.append)
        await system.stop("w")
        assert trio.current_time() == 0  # no shutdown timeout: it stopped at once
    # Called once, with stop_requested already set, and before the actor ended.
    assert journal.events("stop requested", "stop") == [("stop requested", "True"), ("stop", "w")]
    assert [d.reason for d in downs] == ["shutdown"]


async def test_an_error_in_on_stop_requested_is_logged_and_the_stop_goes_on(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal()
    spec = ChildSpec("w", lambda: Waiter(journal, fail=True), shutdown_timeout_s=10)
    async with open_system([spec]) as system:
        await system.stop("w")
        assert system.lookup("w") is None
    assert journal.events("stop") == [("stop", "w")]
    assert "w: on_stop_requested failed" in caplog.text
