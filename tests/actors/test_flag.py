"""Flag: the one-way event of every actor, whose trio.Event is made at the first wait."""

from __future__ import annotations

import trio
import trio.testing

from actors._flag import Flag


async def test_a_wait_ends_when_the_flag_is_set_and_at_once_once_it_is() -> None:
    flag = Flag()
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await flag.wait()
        woken.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "a")
        nursery.start_soon(waiter, "b")
        await trio.testing.wait_all_tasks_blocked()
        assert woken == [] and not flag.is_set()
        flag.set()
        flag.set()  # once is enough; twice is harmless
    assert sorted(woken) == ["a", "b"] and flag.is_set()
    with trio.fail_after(1):
        await flag.wait()  # already set: returns at once


async def test_a_wait_on_a_set_flag_is_still_a_checkpoint() -> None:
    flag = Flag()
    flag.set()
    with trio.CancelScope() as scope:
        scope.cancel()
        await flag.wait()
    assert scope.cancelled_caught
