"""ask and tell: replies, timeouts that name the actor, failures when the actor ends first."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from actors import (
    Actor,
    AskFailed,
    AskTimeout,
    ChildSpec,
    MailboxClosed,
    MailboxFull,
    Overflow,
    Request,
    Supervisor,
    open_system,
)

from ._support import Worker


class Silent(Actor):
    """Takes every message and never replies."""

    kind = "silent"

    async def run(self) -> None:
        async for _ in self.mailbox:
            pass


class Lazy(Actor):
    """Never reads its mailbox; returns as soon as it is asked to stop."""

    kind = "lazy"

    async def run(self) -> None:
        await self.stop_requested.wait()


class Tiny(Worker):
    """A worker whose mailbox holds one message, and who waits for a gate before reading."""

    mailbox_capacity = 1

    def __init__(self, gate: trio.Event) -> None:
        super().__init__()
        self.gate = gate

    async def run(self) -> None:
        await self.gate.wait()
        await super().run()


async def test_ask_returns_the_reply(autojump_clock: trio.abc.Clock) -> None:
    async with open_system([ChildSpec("w", Worker)]) as system:
        ref = system.lookup("w")
        assert await ref.ask({"n": 1}) == {"n": 1}
        assert await ref.tell("told") is True
        assert ref.tell_nowait("told") is True
        assert await ref.ask("last") == "last"  # asked after the tells: answered after them
        assert system.tree()["children"][0]["mailbox"]["processed"] == 4


async def test_ask_timeout_names_the_actor_and_takes_exactly_the_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    specs = [ChildSpec("sup", lambda: Supervisor([ChildSpec("silent", Silent)]))]
    async with open_system(specs) as system:
        ref = system.lookup("sup/silent")
        start = trio.current_time()
        with pytest.raises(AskTimeout) as caught:
            await ref.ask("anyone?", timeout_s=2.5)
        assert trio.current_time() - start == 2.5
        assert str(caught.value) == "ask str to sup/silent got no reply within 2.5 s"
        assert isinstance(caught.value, TimeoutError)
        assert ref.alive  # a slow actor is not a dead one


async def test_ask_fails_when_the_actor_crashes_handling_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_system([ChildSpec("w", Worker)]) as system:
        with pytest.raises(AskFailed, match=r"^ask str to w failed$") as caught:
            await system.lookup("w").ask("crash")
        assert isinstance(caught.value.__cause__, ValueError)
        assert str(caught.value.__cause__) == "w was told to crash"


async def test_queued_asks_fail_when_the_actor_crashes_before_them(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_system([ChildSpec("w", Worker)]) as system:
        ref = system.lookup("w")
        ref.tell_nowait("crash")  # handled before the ask below
        with pytest.raises(AskFailed) as caught:
            await ref.ask("too late")
        assert str(caught.value.__cause__) == "w was told to crash"
        assert trio.current_time() == 0  # at once, not at the timeout


async def test_queued_asks_fail_when_the_actor_stops_without_answering(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_system([ChildSpec("lazy", Lazy)]) as system:
        ref = system.lookup("lazy")
        errors: list[BaseException] = []

        async def ask() -> None:
            try:
                await ref.ask("hello?")
            except AskFailed as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            assert len(ref._cell.mailbox) == 1
            await system.stop("lazy")
        [error] = errors
        assert isinstance(error.__cause__, MailboxClosed)
        assert str(error.__cause__) == "lazy stopped (shutdown)"


async def test_ask_to_a_stopped_actor_fails_at_once(autojump_clock: trio.abc.Clock) -> None:
    async with open_system([ChildSpec("w", Worker)]) as system:
        ref = system.lookup("w")
        await system.stop("w")
        with pytest.raises(AskFailed, match=r"^ask str to w: the actor is stopping$") as caught:
            await ref.ask("anyone?")
        assert isinstance(caught.value.__cause__, MailboxClosed)
        with pytest.raises(MailboxClosed):
            ref.tell_nowait("anyone?")
        with pytest.raises(MailboxClosed):
            await ref.tell("anyone?")


async def test_a_graceful_stop_still_answers_queued_asks(autojump_clock: trio.abc.Clock) -> None:
    gate = trio.Event()
    async with open_system([ChildSpec("w", lambda: Tiny(gate))]) as system:
        ref = system.lookup("w")
        replies: list[Any] = []

        async def ask() -> None:
            replies.append(await ref.ask("queued"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(system.stop, "w")
            await trio.testing.wait_all_tasks_blocked()
            assert ref._cell.mailbox.closed
            gate.set()  # the stopping actor drains its mailbox and answers
        assert replies == ["queued"]


async def test_a_blocked_ask_waits_for_room_within_its_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    gate = trio.Event()
    async with open_system([ChildSpec("w", lambda: Tiny(gate))]) as system:
        ref = system.lookup("w")
        ref.tell_nowait("fills the mailbox")
        with pytest.raises(MailboxFull):
            ref.tell_nowait("no room")
        with pytest.raises(AskTimeout):
            await ref.ask("waits for room", timeout_s=1)
        assert trio.current_time() == 1
        assert len(ref._cell.mailbox) == 1  # the timed-out ask left the queue of senders
        gate.set()
        assert await ref.ask("now") == "now"


@pytest.mark.parametrize("policy", [Overflow.DROP_NEWEST, Overflow.DROP_OLDEST])
async def test_an_ask_discarded_by_the_overflow_policy_fails_at_once(
    autojump_clock: trio.abc.Clock, policy: Overflow
) -> None:
    class Dropping(Tiny):
        overflow = policy

    gate = trio.Event()
    async with open_system([ChildSpec("w", lambda: Dropping(gate))]) as system:
        ref = system.lookup("w")
        failed: list[tuple[str, BaseException]] = []

        async def ask(message: str) -> None:
            try:
                await ref.ask(message)
            except AskFailed as exc:
                failed.append((message, exc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "first")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ask, "second")
            await trio.testing.wait_all_tasks_blocked()
            [(message, failure)] = failed
            assert message == ("second" if policy is Overflow.DROP_NEWEST else "first")
            cause = failure.__cause__
            assert isinstance(cause, MailboxFull)
            assert str(cause) == f"w discarded it (policy {policy.value})"
            assert trio.current_time() == 0
            gate.set()  # the one that was kept is answered
        assert len(failed) == 1


async def test_ask_under_the_fail_policy_raises_mailbox_full(
    autojump_clock: trio.abc.Clock,
) -> None:
    class Failing(Tiny):
        overflow = Overflow.FAIL

    async with open_system([ChildSpec("w", lambda: Failing(trio.Event()))]) as system:
        ref = system.lookup("w")
        ref.tell_nowait("fills the mailbox")
        with pytest.raises(MailboxFull):
            await ref.ask("no room")


async def test_a_cancelled_handler_fails_the_ask_without_leaking_cancelled(
    autojump_clock: trio.abc.Clock,
) -> None:
    class Hang(Worker):
        async def receive(self, message: Any) -> Any:
            await trio.sleep_forever()

    async with open_system([ChildSpec("h", Hang, shutdown_timeout_s=1)]) as system:
        ref = system.lookup("h")
        async with trio.open_nursery() as nursery:
            errors: list[BaseException] = []

            async def ask() -> None:
                try:
                    await ref.ask("hang")
                except AskFailed as exc:
                    errors.append(exc)

            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            await system.stop("h")  # graceful stop ignored: cancelled after 1 s
        [error] = errors
        assert isinstance(error.__cause__, MailboxClosed)
        assert str(error.__cause__) == "h stopped while handling it"


def test_request_replies_once() -> None:
    request = Request("body")
    request.reply(1)
    request.reply(2)
    request.fail(ValueError())
    assert request.answered and request._value == 1 and request._error is None


async def test_unknown_messages_crash_the_default_receive(
    autojump_clock: trio.abc.Clock,
) -> None:
    class Plain(Actor):
        kind = "plain"

    async with open_system([ChildSpec("p", Plain)]) as system:
        first = system.lookup("p")
        with pytest.raises(AskFailed) as caught:
            await first.ask(42)
        assert isinstance(caught.value.__cause__, TypeError)
        assert str(caught.value.__cause__) == "p (plain) cannot handle 42"
        assert not first.alive


async def test_tell_control_passes_capacity_and_is_dropped_once_stopping() -> None:
    from actors import Actor, ChildSpec, Overflow

    class Held(Actor):
        kind = "held"
        mailbox_capacity = 1
        overflow = Overflow.FAIL

        async def run(self) -> None:
            await self.stop_requested.wait()

    async with open_system() as system:
        ref = await system.spawn(ChildSpec("held", Held))
        ref.tell_nowait("fills it")
        ref.tell_control("past capacity")
        assert ref._cell.mailbox.statistics().depth == 2
        await system.stop("held")
        ref.tell_control("ignored")  # stopped: nothing raised, nothing queued
        assert not ref.alive
