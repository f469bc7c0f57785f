"""Supervisors: strategies, restart types, intensity, escalation, dynamic children, registry."""

from __future__ import annotations

import pytest
import tenacity
import trio

from actors import (
    ActorSystem,
    AskFailed,
    ChildSpec,
    NameTaken,
    NoSuchChild,
    Restart,
    Strategy,
    Supervisor,
    SupervisorGaveUp,
    WhichChildren,
    open_system,
)

from ._support import GUARD_S, Flaky, Journal, Worker, crash_and_wait, wait

NO_WAIT = tenacity.wait_fixed(0)


def workers(journal: Journal, *names: str, restart: Restart = Restart.PERMANENT) -> list[ChildSpec]:
    return [ChildSpec(n, lambda: Worker(journal), restart=restart) for n in names]


async def children(system: ActorSystem, under: str = "") -> list[str]:
    parent = system.lookup(under) if under else system.root
    assert parent is not None
    return [name for name, _ in await parent.ask(WhichChildren())]


# -- strategies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "stopped", "restarted"),
    [
        (Strategy.ONE_FOR_ONE, [], ["b"]),
        (Strategy.ONE_FOR_ALL, ["d", "c", "a"], ["a", "b", "c", "d"]),
        (Strategy.REST_FOR_ONE, ["d", "c"], ["b", "c", "d"]),
    ],
    ids=lambda v: v.value if isinstance(v, Strategy) else None,
)
async def test_strategy_decides_who_is_stopped_and_restarted(
    autojump_clock: trio.abc.Clock,
    strategy: Strategy,
    stopped: list[str],
    restarted: list[str],
) -> None:
    journal = Journal()
    specs = workers(journal, "a", "b", "c", "d")
    async with open_system(specs, strategy=strategy, backoff=NO_WAIT) as system:
        before = {n: system.lookup(n) for n in "abcd"}
        journal.entries.clear()
        await crash_and_wait(system, "b", journal)
        # Siblings stop gracefully in reverse start order, then the group starts in order.
        assert journal.events("stop") == [("stop", n) for n in stopped]
        assert journal.events("start") == [("start", n) for n in restarted]
        for name in "abcd":
            same = system.lookup(name) == before[name]
            assert same is (name not in restarted), name
        assert await children(system) == ["a", "b", "c", "d"]


async def test_one_for_all_does_not_restart_a_temporary_sibling(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    specs = [
        *workers(journal, "a"),
        *workers(journal, "t", restart=Restart.TEMPORARY),
        *workers(journal, "c"),
    ]
    async with open_system(specs, strategy=Strategy.ONE_FOR_ALL, backoff=NO_WAIT) as system:
        await crash_and_wait(system, "c", journal)
        assert await children(system) == ["a", "c"]
        assert system.lookup("t") is None
        assert journal.count("stop", "t") == 1


# -- restart types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "how", "restarted"),
    [
        (Restart.PERMANENT, "crash", True),
        (Restart.PERMANENT, "exit", True),
        (Restart.TRANSIENT, "crash", True),
        (Restart.TRANSIENT, "exit", False),
        (Restart.TEMPORARY, "crash", False),
        (Restart.TEMPORARY, "exit", False),
    ],
    ids=lambda v: v.value if isinstance(v, Restart) else str(v),
)
async def test_restart_type_decides_whether_an_ended_child_comes_back(
    autojump_clock: trio.abc.Clock, restart: Restart, how: str, restarted: bool
) -> None:
    journal = Journal()
    async with open_system(workers(journal, "w", restart=restart), backoff=NO_WAIT) as system:
        first = system.lookup("w")
        assert first is not None
        ended = trio.Event()
        downs = []
        system.monitor("w", lambda down: (downs.append(down.reason), ended.set()))
        first.tell_nowait(how)
        await wait(ended)
        assert downs == ["crash" if how == "crash" else "normal"]
        names = await children(system)  # answered after the supervisor decided
        assert journal.count("start", "w") == (2 if restarted else 1)
        assert names == (["w"] if restarted else [])
        again = system.lookup("w")
        if restarted:
            assert again is not None and again != first and again.alive
        else:
            assert again is None
        assert not first.alive


async def test_stopped_children_are_not_restarted_whatever_their_type(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    specs = [ChildSpec(r.value, lambda: Worker(journal), restart=r) for r in Restart]
    async with open_system(specs) as system:
        for spec in specs:
            await system.stop(spec.name)
        assert await children(system) == []
        assert journal.events("start", "stop") == [
            ("start", "permanent"),
            ("start", "transient"),
            ("start", "temporary"),
            ("stop", "permanent"),
            ("stop", "transient"),
            ("stop", "temporary"),
        ]


# -- intensity and escalation -----------------------------------------------------------


async def test_restarts_within_the_intensity_are_allowed(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    async with open_system(
        workers(journal, "w"), max_restarts=3, period_s=5, backoff=NO_WAIT
    ) as system:
        for _ in range(3):
            await crash_and_wait(system, "w", journal)
        assert journal.count("start", "w") == 4
        assert system.root.alive


async def test_one_restart_too_many_makes_the_root_give_up(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    specs = [*workers(journal, "a"), ChildSpec("w", lambda: Flaky(journal, {"crashes": 99}))]
    with pytest.RaisesGroup(
        pytest.RaisesExc(SupervisorGaveUp, match=r"^/: more than 3 restarts within 5 s; last: w")
    ) as caught:
        async with open_system(specs, max_restarts=3, period_s=5, backoff=NO_WAIT):
            await trio.sleep(GUARD_S)  # cancelled when the root gives up
    gave_up = caught.value.exceptions[0]
    assert isinstance(gave_up.__cause__, ValueError)
    assert str(gave_up.__cause__) == "w is flaky"
    assert journal.count("crash", "w") == 4  # three restarts allowed, the fourth refused
    assert journal.count("stop", "a") == 1  # the others were stopped before giving up


@pytest.mark.parametrize(("life_s", "survives"), [(5.0, True), (4.5, False)])
async def test_restarts_older_than_the_period_no_longer_count(
    autojump_clock: trio.abc.Clock, life_s: float, survives: bool
) -> None:
    # One restart allowed per 5 s. Crashes at life_s, 2*life_s: the first restart (at life_s)
    # has left the window by the second crash exactly when life_s >= 5.
    journal = Journal()
    budget = {"crashes": 2}
    specs = [ChildSpec("w", lambda: Flaky(journal, budget, life_s=life_s))]

    async def scenario() -> None:
        async with open_system(specs, max_restarts=1, period_s=5, backoff=NO_WAIT):
            await journal.wait_for("start", "w", count=3)

    if survives:
        await scenario()
        assert journal.times("start", "w") == [0.0, life_s, 2 * life_s]
    else:
        with pytest.RaisesGroup(SupervisorGaveUp):
            await scenario()
        assert journal.times("crash", "w") == [life_s, 2 * life_s]


async def test_max_restarts_zero_gives_up_on_the_first_crash(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    with pytest.RaisesGroup(SupervisorGaveUp):
        async with open_system(workers(journal, "w"), max_restarts=0) as system:
            system.lookup("w").tell_nowait("crash")
            await trio.sleep(GUARD_S)  # cancelled when the root gives up
    assert journal.count("start", "w") == 1


async def test_a_nested_supervisor_that_gives_up_is_a_crash_its_parent_restarts(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    inner = [ChildSpec("w", lambda: Worker(journal))]
    specs = [
        ChildSpec("sup", lambda: Supervisor(inner, max_restarts=1, backoff=NO_WAIT)),
    ]
    async with open_system(specs, max_restarts=5, backoff=NO_WAIT) as system:
        first_sup = system.lookup("sup")
        downs = []
        ended = trio.Event()
        system.monitor("sup", lambda down: (downs.append(down), ended.set()))
        await crash_and_wait(system, "sup/w", journal)  # restart 1 of 1: fine
        assert system.lookup("sup") == first_sup
        system.lookup("sup/w").tell_nowait("crash")  # one too many
        await wait(ended)
        assert [d.reason for d in downs] == ["crash"]
        assert isinstance(downs[0].error, SupervisorGaveUp)
        assert isinstance(downs[0].error.__cause__, ValueError)
        await children(system)  # the root has decided
        second_sup = system.lookup("sup")
        assert second_sup is not None and second_sup != first_sup
        assert journal.count("start", "sup/w") == 3  # its child came back with it
        node = system.tree()["children"][0]
        assert node["restarts"] == 1
        assert node["last_error"].startswith("SupervisorGaveUp: sup: more than 1 restarts")


async def test_escalation_reaches_the_root_when_every_level_gives_up(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    budget = {"crashes": 99}
    inner = [ChildSpec("w", lambda: Flaky(journal, budget))]
    specs = [ChildSpec("sup", lambda: Supervisor(inner, max_restarts=1, backoff=NO_WAIT))]
    with pytest.RaisesGroup(SupervisorGaveUp) as caught:
        async with open_system(specs, max_restarts=1, backoff=NO_WAIT):
            await trio.sleep(GUARD_S)  # cancelled when the root gives up
    root_gave_up = caught.value.exceptions[0]
    assert str(root_gave_up).startswith("/: more than 1 restarts")
    assert isinstance(root_gave_up.__cause__, SupervisorGaveUp)  # the inner one
    assert isinstance(root_gave_up.__cause__.__cause__, ValueError)
    # Each of the two incarnations of sup saw two crashes of w (start, restart).
    assert journal.count("crash", "sup/w") == 4


async def test_a_failed_restart_counts_as_another_crash(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    made = {"n": 0}

    def factory() -> Worker:
        made["n"] += 1
        if made["n"] in (2, 3):  # the first two restarts fail in the factory
            raise OSError(f"cannot make incarnation {made['n']}")
        return Worker(journal)

    async with open_system([ChildSpec("w", factory)], max_restarts=3, backoff=NO_WAIT) as system:
        await crash_and_wait(system, "w", journal)
        await journal.wait_for("start", "w", count=2)
        node = system.tree()["children"][0]
        assert node["restarts"] == 3
        assert node["last_error"] == "OSError: cannot make incarnation 3"
        assert node["state"] == "running"


async def test_a_failed_restart_beyond_the_intensity_gives_up(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    made = {"n": 0}

    def factory() -> Worker:
        made["n"] += 1
        if made["n"] > 1:
            raise OSError("cannot start")
        return Worker(journal)

    with pytest.RaisesGroup(SupervisorGaveUp) as caught:
        async with open_system([ChildSpec("w", factory)], max_restarts=2, backoff=NO_WAIT) as s:
            await crash_and_wait(s, "w", journal)
            await trio.sleep(GUARD_S)  # cancelled when the root gives up
    assert isinstance(caught.value.exceptions[0].__cause__, OSError)
    assert made["n"] == 3  # one crash, two failed restarts, then no third


async def test_an_initial_child_that_fails_to_start_fails_open_system(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()

    class BadStart(Worker):
        async def on_start(self) -> None:
            raise OSError("port in use")

    specs = [*workers(journal, "a", "b"), ChildSpec("bad", BadStart), *workers(journal, "c")]
    with pytest.RaisesGroup(pytest.RaisesExc(OSError, match="port in use")):
        async with open_system(specs):
            pytest.fail("the system must not start")  # pragma: no cover
    assert journal.events() == [("start", "a"), ("start", "b"), ("stop", "b"), ("stop", "a")]


# -- dynamic children and the registry ------------------------------------------------------


async def test_spawn_and_stop_dynamic_children(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    specs = [ChildSpec("sup", lambda: Supervisor(workers(journal, "a")))]
    async with open_system(specs) as system:
        top = await system.spawn(ChildSpec("top", lambda: Worker(journal)))
        deep = await system.spawn(ChildSpec("b", lambda: Worker(journal)), under="sup")
        assert (top.path, deep.path) == ("top", "sup/b")
        assert system.lookup("sup/b") == deep
        assert await deep.ask("hello") == "hello"
        assert await children(system) == ["sup", "top"]
        assert await children(system, under="sup") == ["a", "b"]

        await system.stop("sup/b")
        assert not deep.alive
        assert system.lookup("sup/b") is None
        assert await children(system, under="sup") == ["a"]
        assert journal.events("stop") == [("stop", "sup/b")]  # graceful, and not restarted


async def test_spawn_with_a_taken_name_raises_name_taken_and_harms_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    async with open_system(workers(journal, "a")) as system:
        original = system.lookup("a")
        with pytest.raises(NameTaken, match=r"^/ already has a child named 'a'$"):
            await system.spawn(ChildSpec("a", lambda: Worker(journal)))
        assert system.lookup("a") == original
        assert await original.ask("still here") == "still here"
        assert system.root.alive
        assert journal.count("start", "a") == 1


async def test_stop_of_an_unknown_child_raises_no_such_child(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_system() as system:
        with pytest.raises(NoSuchChild, match=r"^/ has no child named 'ghost'$"):
            await system.stop("ghost")
        with pytest.raises(LookupError, match="no supervisor at 'nowhere'"):
            await system.stop("nowhere/ghost")
        assert system.root.alive


async def test_spawn_under_a_plain_actor_is_refused_without_disturbing_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    async with open_system(workers(journal, "a")) as system:
        with pytest.raises(LookupError, match="no supervisor at 'a'"):
            await system.spawn(ChildSpec("x", Worker), under="a")
        assert system.lookup("a").alive


async def test_a_spawned_child_that_fails_to_start_fails_the_spawn_only(
    autojump_clock: trio.abc.Clock,
) -> None:
    class BadStart(Worker):
        async def on_start(self) -> None:
            raise OSError("no upstream")

    async with open_system() as system:
        with pytest.raises(AskFailed) as caught:
            await system.spawn(ChildSpec("bad", BadStart))
        assert isinstance(caught.value.__cause__, OSError)
        assert system.lookup("bad") is None
        assert await children(system) == []
        assert system.root.alive


async def test_a_restarted_actor_gets_a_new_ref_at_the_same_path(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    async with open_system(workers(journal, "w"), backoff=NO_WAIT) as system:
        old = system.lookup("w")
        assert system.registry.paths() == ["", "w"]
        assert "w" in system.registry
        await crash_and_wait(system, "w", journal)
        new = system.lookup("w")
        assert new is not None and new != old
        assert (new.path, new.name, new.kind) == ("w", "w", "worker")
        assert new.alive and not old.alive
        assert repr(new) == "<ActorRef w running>"
        assert repr(old) == "<ActorRef w stopped>"
        assert len(system.registry) == 2


def test_child_names_must_be_plain() -> None:
    for bad in ["", "a/b"]:
        with pytest.raises(ValueError, match="a child name must be non-empty and without '/'"):
            ChildSpec(bad, Worker)
