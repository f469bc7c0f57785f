"""The subscriber table: who receives each topic's updates, and who is about to.

The Hub writes it (joins, leaves); each topic's room reads it and serves from it (it turns a
join into a subscriber, and fans out to the subscribers). It lives outside the rooms, so a
room that crashes loses no subscriber and no join: its next incarnation finds them here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rt.delivery.outbox import Outbox
    from rt.delivery.room import JoinRoom

__all__ = ["SubscriberTable", "TopicSubscribers"]


class TopicSubscribers:
    """One topic's entry."""

    __slots__ = ("behind", "joining", "outboxes", "room", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        #: Who receives the topic's updates, by ``id(outbox)``: what the room fans out to.
        self.outboxes: dict[int, Outbox] = {}
        #: Joins told to the room and not yet served, by ``id(outbox)``.
        self.joining: dict[int, JoinRoom] = {}
        #: The room was sent a CatchUp it has not handled yet: updates skip its mailbox.
        self.behind = False
        #: A room was made for this entry (it may not be registered yet, or be waiting to
        #: be restarted): only its idling out releases the entry, never a leave.
        self.room = False

    @property
    def idle(self) -> bool:
        """Nobody subscribed and nobody joining."""
        return not self.outboxes and not self.joining

    def expect(self, join: JoinRoom) -> None:
        """``join`` is on its way to the room (a later join of the outbox supersedes it)."""
        self.joining[id(join.outbox)] = join

    def take_join(self, join: JoinRoom) -> bool:
        """The room is about to serve ``join``: False if it was served already (by a
        restarted room), or superseded by a later join or a leave."""
        if self.joining.get(id(join.outbox)) is not join:
            return False
        del self.joining[id(join.outbox)]
        return True

    def pending_joins(self) -> list[JoinRoom]:
        return list(self.joining.values())

    def add(self, outbox: Outbox) -> None:
        self.outboxes[id(outbox)] = outbox

    def remove(self, outbox: Outbox) -> bool:
        """Forget ``outbox`` (subscribed or joining). True if it was the last subscriber."""
        self.joining.pop(id(outbox), None)
        return self.outboxes.pop(id(outbox), None) is not None and not self.outboxes


class SubscriberTable:
    def __init__(self) -> None:
        self._topics: dict[str, TopicSubscribers] = {}

    def entry(self, topic: str) -> TopicSubscribers:
        """The entry of ``topic``, made if there is none."""
        entry = self._topics.get(topic)
        if entry is None:
            entry = self._topics[topic] = TopicSubscribers(topic)
        return entry

    def get(self, topic: str) -> TopicSubscribers | None:
        return self._topics.get(topic)

    def release(self, entry: TopicSubscribers) -> None:
        """Drop ``entry`` if it is idle, no room holds it, and it is still the topic's (a
        client inventing topic names must leave nothing behind)."""
        if entry.idle and not entry.room and self._topics.get(entry.topic) is entry:
            del self._topics[entry.topic]

    def topics(self) -> Iterator[str]:
        return iter(self._topics)

    def subscriber_count(self) -> int:
        return sum(len(e.outboxes) for e in self._topics.values())
