"""Monitors: told once when an actor ends, and why; by callable or by message."""

from __future__ import annotations

import logging

import pytest
import tenacity
import trio

from actors import ChildSpec, Down, open_system

from ._support import Journal, Watcher, Worker, crash_and_wait


async def test_a_callable_is_told_each_reason(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    specs = [ChildSpec(n, lambda: Worker(journal)) for n in ("quits", "crashes", "stopped")]
    async with open_system(specs, backoff=tenacity.wait_fixed(0)) as system:
        downs: list[Down] = []
        for name in ("quits", "crashes", "stopped", "ghost"):
            system.monitor(name, downs.append)
        assert len(downs) == 1  # nothing at "ghost": told at once, before monitor() returns

        await system.lookup("quits").ask("exit")
        await crash_and_wait(system, "crashes", journal)
        await system.stop("stopped")
    [noproc, normal, crash, shutdown] = downs
    assert noproc == Down("ghost", "noproc")
    assert (normal.path, normal.reason, normal.error) == ("quits", "normal", None)
    assert (crash.path, crash.reason) == ("crashes", "crash")
    assert isinstance(crash.error, ValueError)
    assert str(crash.error) == "crashes was told to crash"
    assert (shutdown.path, shutdown.reason, shutdown.error) == ("stopped", "shutdown", None)


async def test_an_actor_ref_is_sent_the_down(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    specs = [ChildSpec("watcher", Watcher), ChildSpec("w", lambda: Worker(journal))]
    async with open_system(specs) as system:
        watcher = system.lookup("watcher")
        system.monitor("w", watcher)
        system.monitor("nobody", watcher)
        await system.stop("w")
        assert await watcher.ask("downs") == [Down("nobody", "noproc"), Down("w", "shutdown")]


async def test_a_monitor_fires_once_and_not_for_the_next_incarnation(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    async with open_system([ChildSpec("w", lambda: Worker(journal))]) as system:
        downs: list[Down] = []
        watch = system.monitor("w", downs.append)
        await crash_and_wait(system, "w", journal)
        assert not watch.active
        await crash_and_wait(system, "w", journal)
        assert [d.reason for d in downs] == ["crash"]
        assert journal.count("start", "w") == 3


async def test_a_cancelled_monitor_is_not_told(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    async with open_system([ChildSpec("w", lambda: Worker(journal))]) as system:
        downs: list[Down] = []
        cancelled = system.monitor("w", downs.append)
        kept = system.monitor("w", downs.append)
        cancelled.cancel()
        cancelled.cancel()  # idempotent
        assert not cancelled.active and kept.active
        await system.stop("w")
        assert downs == [Down("w", "shutdown")]
        assert system.registry._monitors == {}


async def test_a_failing_callback_does_not_hurt_the_actor_or_its_supervisor(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal()
    async with open_system([ChildSpec("w", lambda: Worker(journal))]) as system:

        def broken(down: Down) -> None:
            raise RuntimeError("watcher bug")

        later: list[Down] = []
        system.monitor("w", broken)
        system.monitor("w", later.append)
        with caplog.at_level(logging.ERROR, logger="actors"):
            await system.stop("w")
        assert later == [Down("w", "shutdown")]  # the others are still told
        assert system.root.alive
        assert "a monitor of w failed on its Down" in caplog.text


async def test_a_down_for_a_watcher_that_is_gone_is_dropped(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    specs = [ChildSpec("watcher", Watcher), ChildSpec("w", lambda: Worker(journal))]
    async with open_system(specs) as system:
        system.monitor("w", system.lookup("watcher"))
        await system.stop("watcher")
        await system.stop("w")  # telling the stopped watcher must not fail the stop
        assert system.root.alive
