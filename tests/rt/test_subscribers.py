"""The subscriber table: joins are served once, a later join supersedes an earlier one, and
an entry is released only when nobody is subscribed or joining."""

from __future__ import annotations

from typing import Any

from rt.delivery.room import JoinRoom
from rt.delivery.subscribers import SubscriberTable


class FakeOutbox:
    """Only its identity matters to the table."""


def join(outbox: Any) -> JoinRoom:
    return JoinRoom(outbox)


def test_a_join_is_served_once_and_a_later_one_supersedes_it() -> None:
    entry = SubscriberTable().entry("market:1")
    outbox = FakeOutbox()
    first, second = join(outbox), join(outbox)
    entry.expect(first)
    entry.expect(second)
    assert entry.pending_joins() == [second]
    assert not entry.take_join(first)  # superseded
    assert entry.take_join(second)
    assert not entry.take_join(second)  # served already (a restarted room finds nothing)


def test_remove_says_when_the_last_subscriber_left() -> None:
    entry = SubscriberTable().entry("market:1")
    a, b = FakeOutbox(), FakeOutbox()
    entry.add(a)  # type: ignore[arg-type]
    entry.add(b)  # type: ignore[arg-type]
    assert not entry.remove(a)  # type: ignore[arg-type]
    assert not entry.remove(a)  # type: ignore[arg-type]  # not there any more: not "the last"
    assert entry.remove(b)  # type: ignore[arg-type]
    assert entry.idle


def test_an_entry_is_released_only_when_idle_and_current() -> None:
    table = SubscriberTable()
    entry = table.entry("market:1")
    outbox = FakeOutbox()
    entry.expect(join(outbox))
    table.release(entry)
    assert table.get("market:1") is entry  # a join waits in it
    entry.remove(outbox)  # type: ignore[arg-type]
    table.release(entry)
    assert table.get("market:1") is None
    fresh = table.entry("market:1")
    table.release(entry)  # an old entry cannot release the new one
    assert table.get("market:1") is fresh
    fresh.add(outbox)  # type: ignore[arg-type]
    assert table.subscriber_count() == 1 and list(table.topics()) == ["market:1"]
