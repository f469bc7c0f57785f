"""Restart backoff: exact delays from tenacity wait strategies, on the virtual clock."""

from __future__ import annotations

import itertools

import pytest
import tenacity
import trio

from actors import ChildSpec, NameTaken, Strategy, Supervisor, WhichChildren, open_system

from ._support import Flaky, Journal, Worker, crash_and_wait


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_restart_delay_follows_the_wait_strategy_by_attempt() -> None:
    supervisor = Supervisor(backoff=tenacity.wait_exponential(multiplier=1, max=8))
    assert [supervisor.restart_delay_s(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    fixed = Supervisor(backoff=tenacity.wait_fixed(3))
    assert [fixed.restart_delay_s(n) for n in range(1, 4)] == [3, 3, 3]


def test_default_backoff_is_short_and_jittered() -> None:
    supervisor = Supervisor()
    for _ in range(20):
        assert 0.05 <= supervisor.restart_delay_s(1) <= 0.1
        assert 0.1 <= supervisor.restart_delay_s(2) <= 0.15
        assert 2.0 <= supervisor.restart_delay_s(10) <= 2.05


async def test_exponential_backoff_delays_are_exact(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    budget = {"crashes": 6}  # crashes as soon as it starts, six times
    specs = [ChildSpec("w", lambda: Flaky(journal, budget))]
    backoff = tenacity.wait_exponential(multiplier=1, max=8)
    async with open_system(specs, max_restarts=10, period_s=1000, backoff=backoff):
        await journal.wait_for("start", "w", count=7)
    assert journal.times("start", "w") == [0, 1, 3, 7, 15, 23, 31]
    assert gaps(journal.times("start", "w")) == [1, 2, 4, 8, 8, 8]
    assert journal.times("crash", "w") == [0, 1, 3, 7, 15, 23]


async def test_attempts_count_only_restarts_within_the_period(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Each incarnation lives 20 s, longer than the 10 s period: every restart is the first
    # of its window, so every delay is the first one (1 s), not 1, 2, 4.
    journal = Journal()
    budget = {"crashes": 3}
    specs = [ChildSpec("w", lambda: Flaky(journal, budget, life_s=20))]
    backoff = tenacity.wait_exponential(multiplier=1, max=8)
    async with open_system(specs, max_restarts=1, period_s=10, backoff=backoff):
        await journal.wait_for("start", "w", count=4)
    assert journal.times("start", "w") == [0, 21, 42, 63]


async def test_fixed_backoff_delays_a_whole_group(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    specs = [ChildSpec(n, lambda: Worker(journal)) for n in "abc"]
    async with open_system(
        specs, strategy=Strategy.ONE_FOR_ALL, backoff=tenacity.wait_fixed(3)
    ) as system:
        await trio.sleep(10)
        await crash_and_wait(system, "b", journal)
        assert trio.current_time() == 13
    assert [t for e, _, t in journal.entries if e == "start"] == [0, 0, 0, 13, 13, 13]
    # The siblings were stopped at once; only the restart waited.
    assert journal.times("stop", "a") == [10, 13]
    assert journal.times("stop", "c") == [10, 13]


@pytest.mark.parametrize("delay_s", [0, 2.5])
async def test_a_nested_supervisor_uses_its_own_backoff(
    autojump_clock: trio.abc.Clock, delay_s: float
) -> None:
    journal = Journal()
    inner = [ChildSpec("w", lambda: Worker(journal))]
    specs = [
        ChildSpec("sup", lambda: Supervisor(inner, backoff=tenacity.wait_fixed(delay_s))),
    ]
    async with open_system(specs, backoff=tenacity.wait_fixed(100)) as system:
        await crash_and_wait(system, "sup/w", journal)
        assert journal.times("start", "sup/w") == [0, delay_s]


async def test_the_backoff_never_blocks_the_supervisor(autojump_clock: trio.abc.Clock) -> None:
    # One child crashing again and again (2 s backoff each time) must not make a StartChild
    # for another child wait: the asker would time out (5 s) and crash in its turn.
    journal = Journal()
    budget = {"crashes": 100}
    specs = [ChildSpec("w", lambda: Flaky(journal, budget))]
    async with open_system(specs, max_restarts=100, backoff=tenacity.wait_fixed(2)) as system:
        await journal.wait_for("crash", "w", count=1)
        for n in range(5):
            started = trio.current_time()
            await system.spawn(ChildSpec(f"new{n}", lambda: Worker(journal)), timeout_s=0.1)
            assert trio.current_time() == started  # answered at once, mid-backoff
            children = dict(await system.root.ask(WhichChildren(), timeout_s=0.1))
            assert children["w"] is None  # waiting out its backoff
            with pytest.raises(NameTaken):  # it is coming back: its name is not free
                await system.spawn(ChildSpec("w", lambda: Worker(journal)), timeout_s=0.1)
            await trio.sleep(2)
        assert journal.count("start", "w") >= 5


async def test_a_stop_request_cuts_a_pending_backoff_short(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    budget = {"crashes": 1}
    specs = [ChildSpec("w", lambda: Flaky(journal, budget))]
    async with open_system(specs, backoff=tenacity.wait_fixed(1000)):
        await journal.wait_for("crash", "w", count=1)
    assert trio.current_time() < 1000
    assert journal.count("start", "w") == 1
