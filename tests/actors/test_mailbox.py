"""Mailbox: the five overflow policies against a reference model, blocked senders, close."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from actors import Mailbox, MailboxClosed, MailboxFull, MailboxStatistics, Overflow

GUARD_S = 60  # virtual seconds: a regression that leaves a task blocked fails, never hangs


def first(message: tuple[str, int]) -> str:
    return message[0]


def make(policy: Overflow, capacity: int) -> Mailbox:
    key = first if policy is Overflow.CONFLATE else None
    return Mailbox(capacity, policy, key=key)


class Model:
    """What each policy should do, written as plainly as possible."""

    def __init__(self, policy: Overflow, capacity: int) -> None:
        self.policy = policy
        self.capacity = capacity
        self.items: list[tuple[str, int]] = []
        self.dropped = 0
        self.processed = 0
        self.closed = False

    def put(self, message: tuple[str, int]) -> bool:
        if self.closed:
            raise MailboxClosed
        if self.policy is Overflow.CONFLATE:
            for i, queued in enumerate(self.items):
                if queued[0] == message[0]:
                    self.items[i] = message
                    self.dropped += 1
                    return True
        if len(self.items) < self.capacity:
            self.items.append(message)
            return True
        if self.policy is Overflow.DROP_NEWEST:
            self.dropped += 1
            return False
        if self.policy is Overflow.DROP_OLDEST:
            del self.items[0]
            self.items.append(message)
            self.dropped += 1
            return True
        raise MailboxFull  # block, fail, conflate with a new key

    def get(self) -> tuple[str, int]:
        if not self.items:
            raise MailboxClosed if self.closed else trio.WouldBlock
        self.processed += 1
        return self.items.pop(0)


def outcome(call: Any, *args: Any) -> Any:
    try:
        return ("ok", call(*args))
    except (MailboxFull, MailboxClosed, trio.WouldBlock) as exc:
        return ("raised", type(exc))


operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from("abcd"), st.integers(0, 99)),
        st.tuples(st.just("get")),
        st.tuples(st.just("close")),
    ),
    max_size=60,
)


@pytest.mark.parametrize("policy", list(Overflow), ids=lambda p: p.value)
@given(capacity=st.integers(1, 4), ops=operations)
def test_policy_matches_the_reference_model(
    policy: Overflow, capacity: int, ops: list[tuple[Any, ...]]
) -> None:
    mailbox, model = make(policy, capacity), Model(policy, capacity)
    for op in ops:
        if op[0] == "put":
            message = (op[1], op[2])
            assert outcome(mailbox.put_nowait, message) == outcome(model.put, message)
        elif op[0] == "get":
            assert outcome(mailbox.get_nowait) == outcome(model.get)
        else:
            mailbox.close()
            model.closed = True
        assert len(mailbox) == len(model.items)
        assert mailbox.statistics() == MailboxStatistics(
            depth=len(model.items),
            capacity=capacity,
            processed=model.processed,
            dropped=model.dropped,
            overflow=policy.value,
        )
    assert mailbox.drain() == model.items


def test_conflate_replaces_in_place_and_keeps_the_order_of_first_arrival() -> None:
    mailbox = make(Overflow.CONFLATE, 3)
    for message in [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2)]:
        assert mailbox.put_nowait(message) is True
    assert [mailbox.get_nowait() for _ in range(3)] == [("a", 2), ("b", 2), ("c", 1)]
    assert mailbox.statistics().dropped == 2


@pytest.mark.parametrize(
    ("capacity", "policy", "key", "error"),
    [
        (0, Overflow.BLOCK, None, "capacity must be at least 1, got 0"),
        (1, Overflow.CONFLATE, None, "needs a key function"),
        (1, Overflow.BLOCK, first, "needs a key function"),
    ],
)
def test_bad_mailbox_settings_are_refused(
    capacity: int, policy: Overflow, key: Any, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        Mailbox(capacity, policy, key=key)


async def test_blocked_puts_are_delivered_in_fifo_order(autojump_clock: trio.abc.Clock) -> None:
    mailbox = Mailbox(2, Overflow.BLOCK)
    mailbox.put_nowait("q0")
    mailbox.put_nowait("q1")
    results: dict[str, bool] = {}

    async def send(message: str) -> None:
        results[message] = await mailbox.put(message)

    with trio.fail_after(GUARD_S):
        async with trio.open_nursery() as nursery:
            for i in range(5):  # one at a time, so that they queue in this order
                nursery.start_soon(send, f"b{i}")
                await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(MailboxFull):
                mailbox.put_nowait("late")  # may not overtake the blocked senders
            assert len(mailbox) == 2
            received = [await mailbox.get() for _ in range(7)]
    assert received == ["q0", "q1", "b0", "b1", "b2", "b3", "b4"]
    assert results == {f"b{i}": True for i in range(5)}
    assert mailbox.statistics().processed == 7


async def test_close_wakes_blocked_senders_with_mailbox_closed_and_keeps_the_queue(
    autojump_clock: trio.abc.Clock,
) -> None:
    mailbox = Mailbox(1, Overflow.BLOCK)
    mailbox.put_nowait("queued")
    errors: list[BaseException] = []

    async def send(message: str) -> None:
        try:
            await mailbox.put(message)
        except MailboxClosed as exc:
            errors.append(exc)

    with trio.fail_after(GUARD_S):
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(send, f"b{i}")
            await trio.testing.wait_all_tasks_blocked()
            mailbox.close()
    assert len(errors) == 3
    assert all("closed while waiting for room" in str(e) for e in errors)
    with pytest.raises(MailboxClosed):
        mailbox.put_nowait("after")
    assert [m async for m in mailbox] == ["queued"]  # drained, then iteration ends
    with pytest.raises(MailboxClosed):
        mailbox.get_nowait()


async def test_close_wakes_a_waiting_consumer(autojump_clock: trio.abc.Clock) -> None:
    mailbox = Mailbox(1)
    with trio.fail_after(GUARD_S):
        async with trio.open_nursery() as nursery:
            got: list[Any] = []

            async def consume() -> None:
                got.extend([m async for m in mailbox])

            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            mailbox.close()
    assert got == []


async def test_a_cancelled_blocked_put_leaves_the_queue() -> None:
    mailbox = Mailbox(1, Overflow.BLOCK)
    mailbox.put_nowait("queued")
    with trio.move_on_after(1):
        await mailbox.put("given up")
    assert mailbox.get_nowait() == "queued"
    with pytest.raises(trio.WouldBlock):
        mailbox.get_nowait()


async def test_a_put_that_raises_cancelled_did_not_deliver() -> None:
    mailbox = Mailbox(4, Overflow.BLOCK)
    with trio.CancelScope() as scope:
        scope.cancel()
        await mailbox.put("never")
    assert scope.cancelled_caught
    assert len(mailbox) == 0


async def test_fail_policy_put_raises_instead_of_waiting() -> None:
    mailbox = Mailbox(1, Overflow.FAIL)
    assert await mailbox.put("one") is True
    with pytest.raises(MailboxFull, match=r"mailbox full \(1 messages, policy fail\)"):
        await mailbox.put("two")


@pytest.mark.parametrize(
    ("policy", "accepted", "left"),
    [(Overflow.DROP_NEWEST, False, ["one"]), (Overflow.DROP_OLDEST, True, ["two"])],
)
async def test_drop_policies_never_block_put(
    policy: Overflow, accepted: bool, left: list[str]
) -> None:
    mailbox = Mailbox(1, policy)
    await mailbox.put("one")
    assert await mailbox.put("two") is accepted
    assert mailbox.drain() == left
    assert mailbox.statistics().dropped == 1


async def test_conflate_blocks_a_new_key_when_full_and_keeps_newest_per_key(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Two senders block with key b; a newer b sent while they wait must win.
    mailbox = make(Overflow.CONFLATE, 1)
    mailbox.put_nowait(("a", 0))
    with trio.fail_after(GUARD_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(mailbox.put, ("b", 1))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(mailbox.put, ("b", 2))
            await trio.testing.wait_all_tasks_blocked()
            assert mailbox.get_nowait() == ("a", 0)  # room for b: both blocked b's are admitted
            mailbox.put_nowait(("b", 3))
    assert mailbox.drain() == [("b", 3)]
    assert mailbox.statistics().dropped == 2


async def test_conflate_admits_a_blocked_message_whose_key_was_queued_meanwhile(
    autojump_clock: trio.abc.Clock,
) -> None:
    mailbox = make(Overflow.CONFLATE, 1)
    mailbox.put_nowait(("a", 0))
    with trio.fail_after(GUARD_S):
        async with trio.open_nursery() as nursery:
            for message in [("b", 1), ("c", 1), ("b", 2)]:
                nursery.start_soon(mailbox.put, message)
                await trio.testing.wait_all_tasks_blocked()
            assert mailbox.get_nowait() == ("a", 0)
            # b1 took the room; b2 replaced it without needing room; c1 still waits.
            mailbox.put_nowait(("b", 3))
            assert mailbox.get_nowait() == ("b", 3)
            assert mailbox.get_nowait() == ("c", 1)
    assert len(mailbox) == 0


async def test_discarded_messages_are_reported_to_on_discard() -> None:
    seen: list[Any] = []
    newest = Mailbox(1, Overflow.DROP_NEWEST, on_discard=seen.append)
    newest.put_nowait(1)
    newest.put_nowait(2)
    oldest = Mailbox(1, Overflow.DROP_OLDEST, on_discard=seen.append)
    oldest.put_nowait(3)
    oldest.put_nowait(4)
    conflated = Mailbox(1, Overflow.CONFLATE, key=first, on_discard=seen.append)
    conflated.put_nowait(("k", 5))
    conflated.put_nowait(("k", 6))
    assert seen == [2, 3, ("k", 5)]


def test_control_notices_pass_capacity() -> None:
    mailbox = Mailbox(1, Overflow.BLOCK)
    mailbox.put_nowait("full")
    mailbox.put_control("notice")
    assert [mailbox.get_nowait(), mailbox.get_nowait()] == ["full", "notice"]
    with pytest.raises(TypeError):
        make(Overflow.CONFLATE, 1).put_control("notice")
