"""ActorSystem.run_here: a temporary child that runs in the task of whoever asked for it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from actors import (
    Actor,
    ActorSystem,
    ChildSpec,
    MailboxClosed,
    NameTaken,
    Restart,
    Supervisor,
    WhichChildren,
    current_actor_path,
    open_system,
)

from ._support import GUARD_S, Journal, Stubborn, Worker


def temporary(name: str, make: Callable[[], Actor]) -> ChildSpec:
    return ChildSpec(name, make, restart=Restart.TEMPORARY)


async def children(system: ActorSystem, under: str) -> list[str]:
    parent = system.lookup(under)
    assert parent is not None
    return [name for name, _ in await parent.ask(WhichChildren())]


async def serve_then_note(system: ActorSystem, spec: ChildSpec, journal: Journal) -> None:
    """What a socket's handler does: run the child here, then go on (journals "returned")."""
    await system.run_here(spec, under="conns")
    journal.add("returned", "caller")


async def stop_conns_with_c1_running(
    system: ActorSystem, spec: ChildSpec, journal: Journal
) -> float:
    """Run ``spec`` as conns/c1 in a task of its own, stop conns, wait for that task to go
    on; return the virtual seconds the stop took."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_then_note, system, spec, journal)
        await journal.wait_for("start", "conns/c1")
        started = trio.current_time()
        with trio.fail_after(GUARD_S):
            await system.stop("conns")
        await journal.wait_for("returned", "caller")
        return trio.current_time() - started


class Recorder(Worker):
    """Journals the path that its task's logs would carry, and the task it runs in."""

    async def run(self) -> None:
        self.journal.add("path", f"{current_actor_path()}")
        self.journal.add("task", f"{id(trio.lowlevel.current_task())}")
        await super().run()


async def test_the_child_runs_in_the_callers_task_and_is_a_child_while_it_lives(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    async with open_system([ChildSpec("conns", lambda: Supervisor())]) as system:
        caller_task: list[str] = []

        async def serve() -> None:
            caller_task.append(f"{id(trio.lowlevel.current_task())}")
            await system.run_here(temporary("c1", lambda: Recorder(journal)), under="conns")
            journal.add("returned", f"{current_actor_path()}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            await journal.wait_for("path", "conns/c1")
            assert await children(system, "conns") == ["c1"]
            assert system.tree()["children"][0]["children"][0]["path"] == "conns/c1"
            ref = system.lookup("conns/c1")
            assert ref is not None
            assert await ref.ask("hello") == "hello"
            ref.tell_nowait("exit")
        assert journal.events("task") == [("task", caller_task[0])]
        # The task's own context again once the actor is gone; the supervisor forgot it.
        assert journal.events("returned") == [("returned", "None")]
        assert await children(system, "conns") == []
        assert system.lookup("conns/c1") is None


async def test_a_crash_is_logged_by_the_supervisor_not_raised_and_not_restarted(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal()
    async with open_system([ChildSpec("conns", lambda: Supervisor())]) as system:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: system.run_here(temporary("c1", lambda: Worker(journal)), under="conns")
            )
            await journal.wait_for("start", "conns/c1")
            ref = system.lookup("conns/c1")
            assert ref is not None
            ref.tell_nowait("crash")
        await trio.testing.wait_all_tasks_blocked()
        assert await children(system, "conns") == []
    assert journal.count("start", "conns/c1") == 1
    assert "conns/c1 crashed: ValueError" in caplog.text


async def test_only_a_temporary_child_with_a_free_name_can_run_here(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    async with open_system([ChildSpec("conns", lambda: Supervisor())]) as system:
        permanent = ChildSpec("p", lambda: Worker(journal))
        with pytest.raises(ValueError, match="only a temporary child"):
            await system.run_here(permanent, under="conns")
        await system.spawn(ChildSpec("taken", lambda: Worker(journal)), under="conns")
        with pytest.raises(NameTaken):
            await system.run_here(temporary("taken", lambda: Worker(journal)), under="conns")
        with pytest.raises(LookupError):
            await system.run_here(temporary("x", lambda: Worker(journal)), under="nowhere")
        assert await children(system, "conns") == ["taken"]


async def test_a_failure_to_start_is_raised_to_the_caller_and_the_child_forgotten(
    autojump_clock: trio.abc.Clock,
) -> None:
    class BadStart(Worker):
        async def on_start(self) -> None:
            raise OSError("no socket today")

    journal = Journal()
    async with open_system([ChildSpec("conns", lambda: Supervisor())]) as system:
        with pytest.raises(OSError, match="no socket today"):
            await system.run_here(temporary("c1", lambda: BadStart(journal)), under="conns")
        await trio.testing.wait_all_tasks_blocked()
        assert await children(system, "conns") == []
        # The name is free again.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: system.run_here(temporary("c1", lambda: Worker(journal)), under="conns")
            )
            await journal.wait_for("start", "conns/c1")
            nursery.cancel_scope.cancel()


async def test_stopping_the_supervisor_stops_the_child_gracefully_and_the_call_returns(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    async with open_system([ChildSpec("conns", lambda: Supervisor())]) as system:
        spec = temporary("c1", lambda: Worker(journal))
        assert await stop_conns_with_c1_running(system, spec, journal) == 0
    assert journal.events("stop", "returned") == [("stop", "conns/c1"), ("returned", "caller")]


async def test_a_child_that_ignores_the_stop_is_cancelled_in_the_callers_task(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    spec = ChildSpec(
        "c1", lambda: Stubborn(journal), restart=Restart.TEMPORARY, shutdown_timeout_s=3
    )
    async with open_system([ChildSpec("conns", lambda: Supervisor())]) as system:
        # Its shutdown timeout, then cancelled by its own scope, inside the call: to the
        # caller the call simply returned.
        assert await stop_conns_with_c1_running(system, spec, journal) == 3
    assert journal.events("cancelled", "returned") == [
        ("cancelled", "conns/c1"),
        ("returned", "caller"),
    ]


async def test_a_supervisor_cancelled_mid_stop_still_ends_the_child_in_the_callers_task(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    # The child would wait 100 s for a graceful end, but its supervisor gets only 1 s: when
    # the supervisor is cancelled, the child (whose task is not in its nursery) must go too.
    child = ChildSpec(
        "c1", lambda: Stubborn(journal), restart=Restart.TEMPORARY, shutdown_timeout_s=100
    )
    conns = ChildSpec("conns", lambda: Supervisor(), shutdown_timeout_s=1)
    async with open_system([conns]) as system:
        assert await stop_conns_with_c1_running(system, child, journal) == 1
    assert journal.events("cancelled") == [("cancelled", "conns/c1")]


async def test_a_helper_runs_in_the_systems_nursery_and_inherits_the_callers_actor_path() -> None:
    seen: list[str | None] = []
    done = trio.Event()

    class Starter(Actor):
        async def run(self) -> None:
            async def helper(tag: str) -> None:
                seen.append(f"{tag} {current_actor_path()}")
                done.set()

            self.system.start_helper(helper, "helped")
            await trio.sleep_forever()

    async with open_system() as system:
        await system.spawn(ChildSpec("starter", Starter))
        with trio.fail_after(GUARD_S):
            await done.wait()
    assert seen == ["helped starter"]
    with pytest.raises(RuntimeError):
        system.start_helper(trio.sleep, 0)


async def test_an_actor_with_a_bad_mailbox_fails_to_start_though_its_mailbox_is_made_later() -> (
    None
):
    """A cell makes its mailbox at the first message (a socket's actor never gets one), yet
    a mailbox the actor's settings cannot make still fails the start, not a later tell."""

    class Unboxable(Worker):
        mailbox_capacity = 0

    async with open_system([ChildSpec("conns", lambda: Supervisor())]) as system:
        with pytest.raises(ValueError, match="capacity must be at least 1"):
            await system.run_here(temporary("c1", Unboxable), under="conns")
        ref = await system.spawn(temporary("c2", Worker), under="conns")
        assert await ref.ask("hello") == "hello"
        await system.stop("conns/c2")
        with pytest.raises(MailboxClosed):
            ref.tell_nowait("too late")


async def test_an_actor_never_sent_anything_refuses_a_tell_once_stopping_or_ended() -> None:
    """Its mailbox was never made (nothing asked for it); made late, it is made closed."""

    class Quiet(Actor):
        async def run(self) -> None:
            await self.stop_requested.wait()
            await trio.sleep(0.5)  # still stopping: tells are refused already

    async with open_system([ChildSpec("conns", lambda: Supervisor())]) as system:
        ref = await system.spawn(temporary("q", Quiet), under="conns")
        assert ref._cell._mailbox is None
        ref._cell.request_stop()
        with pytest.raises(MailboxClosed):
            ref.tell_nowait("while stopping")
        with trio.fail_after(GUARD_S):
            await ref._cell.done.wait()
        with pytest.raises(MailboxClosed):
            ref.tell_nowait("after the end")
