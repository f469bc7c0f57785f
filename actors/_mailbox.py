"""A bounded mailbox with an explicit overflow policy.

One consumer (the actor), any number of producers. Messages leave in the order they were
accepted. A producer blocked by the ``block`` policy waits in a FIFO queue, and the consumer
hands its message over when it takes one out, so a later ``put`` can never overtake an earlier
blocked one: per-sender order and cross-sender order of arrival are both kept.

Under ``conflate`` a blocked producer whose key has meanwhile been queued (by a producer ahead
of it) is admitted at once, replacing the queued message: it takes no room, and admitting it
keeps the invariant that no blocked message has a key that is queued, so a newer message for a
key can never be overwritten by an older one still waiting.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import trio

from ._errors import MailboxClosed, MailboxFull

__all__ = ["DROP", "Mailbox", "MailboxStatistics", "Overflow"]


class Overflow(enum.Enum):
    """What happens to a message that arrives at a full mailbox."""

    BLOCK = "block"  # the sender waits (tell_nowait raises MailboxFull)
    DROP_NEWEST = "drop_newest"  # the arriving message is dropped
    DROP_OLDEST = "drop_oldest"  # the oldest queued message is dropped to make room
    CONFLATE = "conflate"  # one message per key: a newer one replaces the queued one in place
    FAIL = "fail"  # the sender gets MailboxFull


#: Stands for a mailbox's queue until its first message; nothing is ever put in it.
_NO_ITEMS: Any = ()

#: Stands for the keyed queue of a mailbox without the conflate policy (read-only, empty).
_NO_KEYS: Any = MappingProxyType({})

#: Returned by a receive hook to make the mailbox discard a message (fault injection).
DROP: Any = object()


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    """A snapshot of a mailbox's counters (``Mailbox.statistics()``)."""

    depth: int
    capacity: int
    processed: int
    dropped: int
    overflow: str


class _BlockedPut:
    __slots__ = ("delivered", "event", "key", "message")

    def __init__(self, message: Any, key: Hashable = None) -> None:
        self.message = message
        self.key = key
        self.event = trio.Event()
        self.delivered = False


class Mailbox:
    """A bounded FIFO of messages for one actor.

    ``key`` is required by the conflate policy: it maps a message to the key under which only
    the newest message is kept. A conflated mailbox is full when it holds ``capacity`` distinct
    keys; a message with a new key then behaves as under ``block``.

    ``on_discard``, if given, is called with every message the policy throws away (the
    arriving one under drop_newest, the oldest under drop_oldest, the replaced one under
    conflate); the runtime uses it to fail a discarded ``ask`` at once.
    """

    def __init__(
        self,
        capacity: int,
        overflow: Overflow = Overflow.BLOCK,
        *,
        key: Callable[[Any], Hashable] | None = None,
        on_discard: Callable[[Any], None] | None = None,
    ) -> None:
        self.check(capacity, overflow, key)
        self.capacity = capacity
        self.overflow = overflow
        self._key = key
        self._on_discard = on_discard
        # Made on the first message: an empty deque costs ~760 bytes, and most actors of a
        # connection hardly ever get one (``_queue`` appends; the rest only read it).
        self._items: deque[Any] = _NO_ITEMS
        # Only the conflate policy keys its messages (most mailboxes never hold one).
        self._keyed: OrderedDict[Hashable, Any] = OrderedDict() if key is not None else _NO_KEYS
        # Made on the first blocked put: most mailboxes never block, and an empty deque
        # costs ~700 bytes (one per actor, so several per client connection).
        self._blocked: deque[_BlockedPut] | None = None
        # Made on the first wait for a message: an actor serving a socket never reads its
        # mailbox, and a parking lot costs ~300 bytes.
        self._readable: trio.lowlevel.ParkingLot | None = None
        self._closed = False
        self.processed = 0
        self.dropped = 0
        #: Called on every message taken out; set only while a fault is armed, so an
        #: unarmed actor pays one attribute check per message.
        self.receive_hook: Callable[[Any], Awaitable[Any]] | None = None

    @staticmethod
    def check(capacity: int, overflow: Overflow, key: Callable[[Any], Hashable] | None) -> None:
        """Raise ValueError unless a mailbox can be made so (before one is needed)."""
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, got {capacity}")
        if (overflow is Overflow.CONFLATE) != (key is not None):
            raise ValueError("the conflate policy needs a key function, and only it takes one")

    def __len__(self) -> int:
        return len(self._keyed) if self._key is not None else len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            depth=len(self),
            capacity=self.capacity,
            processed=self.processed,
            dropped=self.dropped,
            overflow=self.overflow.value,
        )

    # -- producers ---------------------------------------------------------------------

    def put_nowait(self, message: Any) -> bool:
        """Offer a message without waiting; returns False when the policy dropped it.

        Raises MailboxFull where the sender would have to wait (block) or the policy is fail,
        and MailboxClosed once the actor is stopping.
        """
        if self._closed:
            raise MailboxClosed("mailbox is closed")
        if self._key is not None:
            return self._put_keyed(message)
        if len(self._items) < self.capacity and not self._blocked:
            self._append(message)
            return True
        policy = self.overflow
        if policy is Overflow.DROP_NEWEST:
            self._discard(message)
            return False
        if policy is Overflow.DROP_OLDEST:
            self._discard(self._items.popleft())
            self._append(message)
            return True
        raise MailboxFull(f"mailbox full ({self.capacity} messages, policy {policy.value})")

    async def put(self, message: Any) -> bool:
        """Deliver a message, waiting for room under the block (and conflate) policy.

        Returns False when the policy dropped it. As with trio's channels, a put that raises
        Cancelled did not deliver its message.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            accepted = self.put_nowait(message)
        except MailboxFull:
            if self.overflow is Overflow.FAIL:
                raise
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return accepted
        key = self._key(message) if self._key is not None else None
        waiter = _BlockedPut(message, key)
        if self._blocked is None:
            self._blocked = deque()
        blocked = self._blocked
        blocked.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if not waiter.delivered:
                blocked.remove(waiter)
            raise
        if not waiter.delivered:  # woken by close()
            raise MailboxClosed("mailbox closed while waiting for room")
        return True

    def put_control(self, message: Any) -> None:
        """Enqueue a runtime notice past capacity (only for notices bounded by other means)."""
        if self._key is not None:
            raise TypeError("control notices need a mailbox without conflation")
        if not self._closed:
            self._queue(message)
            self._wake()

    def _put_keyed(self, message: Any) -> bool:
        assert self._key is not None
        key = self._key(message)
        if key in self._keyed:
            self._replace(key, message)  # keeps its place in line
            return True
        if len(self._keyed) >= self.capacity or self._blocked:
            raise MailboxFull(f"mailbox full ({self.capacity} keys, policy conflate)")
        self._keyed[key] = message
        self._wake()
        return True

    def _replace(self, key: Hashable, message: Any) -> None:
        self._discard(self._keyed[key])
        self._keyed[key] = message

    def _append(self, message: Any) -> None:
        self._queue(message)
        self._wake()

    def _wake(self) -> None:
        """A message is there: wake the consumer if it waits."""
        if self._readable is not None:
            self._readable.unpark()

    def _queue(self, message: Any) -> None:
        items = self._items
        if items is _NO_ITEMS:
            items = self._items = deque()
        items.append(message)

    def _discard(self, message: Any) -> None:
        self.dropped += 1
        if self._on_discard is not None:
            self._on_discard(message)

    # -- the consumer ------------------------------------------------------------------

    def get_nowait(self) -> Any:
        """Take the next message; raises trio.WouldBlock when empty, MailboxClosed at the end."""
        if self._key is not None:
            if not self._keyed:
                raise MailboxClosed("mailbox is closed") if self._closed else trio.WouldBlock
            _, message = self._keyed.popitem(last=False)
        else:
            if not self._items:
                raise MailboxClosed("mailbox is closed") if self._closed else trio.WouldBlock
            message = self._items.popleft()
        self.processed += 1
        if self._blocked:
            self._admit_blocked()
        return message

    def _admit_blocked(self) -> None:
        """Hand room that just opened to blocked producers, first come first served."""
        if self._key is None:
            while self._blocked and len(self._items) < self.capacity:
                self._admit(self._blocked.popleft())
            return
        while self._blocked and len(self._keyed) < self.capacity:
            self._admit(self._blocked.popleft())
            # Waiters whose key is now queued need no room: they replace in place.
            for waiter in [w for w in self._blocked if w.key in self._keyed]:
                self._blocked.remove(waiter)
                self._admit(waiter)

    def _admit(self, waiter: _BlockedPut) -> None:
        waiter.delivered = True
        if self._key is not None:
            if waiter.key in self._keyed:
                self._replace(waiter.key, waiter.message)
            else:
                self._keyed[waiter.key] = waiter.message
        else:
            self._queue(waiter.message)
        waiter.event.set()

    async def get(self) -> Any:
        """Wait for the next message (after any armed receive hook has seen it)."""
        while True:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                message = self.get_nowait()
            except trio.WouldBlock:
                if self._readable is None:
                    self._readable = trio.lowlevel.ParkingLot()
                await self._readable.park()
                continue
            # Yield once more, even right after a wakeup: senders woken in the same tick get
            # to add their messages first, so a consumer that takes what is queued in one go
            # (a room's run of updates) finds more of it.
            await trio.lowlevel.cancel_shielded_checkpoint()
            hook = self.receive_hook
            if hook is not None:
                message = await hook(message)
                if message is DROP:
                    continue
            return message

    def __aiter__(self) -> Mailbox:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.get()
        except MailboxClosed:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Refuse new messages; the consumer still drains what is queued, then iteration ends.

        Senders blocked waiting for room get MailboxClosed.
        """
        self._closed = True
        while self._blocked:
            self._blocked.popleft().event.set()
        if self._readable is not None:
            self._readable.unpark_all()

    def drain(self) -> list[Any]:
        """Remove and return everything still queued (used when an actor has ended)."""
        items = list(self._keyed.values()) if self._key is not None else list(self._items)
        self._items = _NO_ITEMS
        if self._key is not None:
            self._keyed.clear()
        return items
