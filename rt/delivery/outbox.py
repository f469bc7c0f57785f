"""A connection's outbox: the bounded queue between rooms and the socket writer.

Theory of operation. Rooms never await a connection: they call ``offer_*`` synchronously,
with WebSocket frames they built once for every subscriber (rt/ws/frames.py). When nothing is
queued and the socket is idle, the frame is written to it at once (the fast path, through
the connection's Wire, rt/ws/wire.py); otherwise it is queued here for the writer task, which
sends the backlog in batches. The outbox is also where each client's
stream is held to the delivery contract, whatever happens upstream: per topic it knows the
last seq it queued, and it accepts only that seq + 1 (a duplicate is dropped, a gap turns
into a resync), or a snapshot.

A client that keeps up sees every update as published. One whose queue passes
``high_water`` entries is *behind*, and degrades in steps, each counted:

1. coalesce: a patch for a topic whose last queued update has not been taken by the writer
   yet is merged into it (RFC 7396 patches compose), and the message says it is conflated,
   with both ends (fromSeq .. seq);
2. resync: at ``capacity`` entries (or when a patch cannot be merged into the pending one),
   the topic's whole backlog is dropped and the room is asked for one fresh snapshot, marked
   as a resync; updates for that topic are dropped until the snapshot arrives;
3. disconnect: the connection's writer closes a socket that stays unwritable longer than
   the write deadline (that part lives in the connection).

Control messages (acks, pongs, errors, resume results) are never dropped or merged; more
than ``control_capacity`` of them waiting means the client sends without reading, and the
outbox reports an overflow so the connection closes as slow.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from rt.dialects.base import Codec
from rt.mergepatch import compose
from rt.model import Json, Update
from rt.ws.frames import frame_text

__all__ = ["SEND", "Interest", "Outbox", "OutboxStatistics", "Sink"]


class Sink(Protocol):
    """Where an outbox writes at once when it can: the connection's Wire."""

    #: True when nothing is waiting to be written and ``write`` goes straight to the socket.
    idle: bool

    def write(self, data: bytes) -> None: ...


#: Stands for an outbox's queue until something has to wait in it; nothing is put in it.
_NOTHING_QUEUED: Any = ()

#: ``Interest.verdict`` of an update the connection is to receive; any other verdict is why
#: it does not (an index into ``Interest.counts``).
SEND = 0


class Interest(Protocol):
    """Which updates of the topics it joined a connection receives: a filter the room asks
    before offering an update (rt/dialects/predictions/interest.py). Connections with equal
    filters share one Interest, so a room asks it once per update, not once per connection.
    An update passed over still moves the connection's position (rt never sees a gap)."""

    #: Counts of the verdicts given to connections (SEND, and each reason not to).
    counts: list[int]

    def verdict(self, update: Update) -> int: ...


class _Sub:
    """One subscription to a topic, as the outbox sees it. Replaced (not reset) on resync, so
    entries queued for an older one are recognised and skipped by the writer."""

    __slots__ = (
        "active",
        "awaiting_snapshot",
        "lossless",
        "pending",
        "queued",
        "sent",
        "seq",
        "topic",
    )

    def __init__(
        self, topic: str, seq: int, *, awaiting_snapshot: bool, lossless: bool = False
    ) -> None:
        self.topic = topic
        self.seq = seq
        self.sent: int | None = None  # lossless topics: the last seq written to the socket
        self.lossless = lossless
        self.awaiting_snapshot = awaiting_snapshot
        self.active = True
        self.queued = 0  # its entries still in the queue
        self.pending: _Entry | None = None  # its newest queued update, while not yet taken


class _Entry:
    """A queued message about one topic: an update (the room's shared frame, or a conflated
    patch still to encode), a snapshot, or a notice. Skipped if its subscription has ended."""

    __slots__ = ("frame", "from_seq", "kind", "patch", "seq", "sub", "ts")

    def __init__(
        self,
        sub: _Sub,
        frame: bytes | None,
        *,
        kind: str,
        patch: Json = None,
        seq: int = 0,
        ts: int = 0,
    ) -> None:
        self.sub = sub
        self.frame = frame
        self.kind = kind  # "patch" | "event" | "snapshot" | "notice"
        self.patch = patch
        self.from_seq = seq
        self.seq = seq
        self.ts = ts


@dataclass(frozen=True, slots=True)
class OutboxStatistics:
    depth: int
    capacity: int
    high_water: int
    sent: int
    bytes_sent: int
    coalesced: int
    resyncs: int
    duplicates_dropped: int


class Outbox:
    """The queue of one connection; see the module docstring for the policy."""

    def __init__(
        self,
        codec: Codec,
        *,
        capacity: int,
        high_water: int,
        control_capacity: int = 256,
        request_resync: Callable[[str], None],
        on_overflow: Callable[[], None],
        sink: Sink | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        if not 0 < high_water <= capacity:
            raise ValueError(f"need 0 < high_water <= capacity, got {high_water}, {capacity}")
        self.codec = codec
        self.capacity = capacity
        self.high_water = high_water
        self.control_capacity = control_capacity
        self._request_resync = request_resync
        self._on_overflow = on_overflow
        self._sink = sink
        self._on_queued = on_queued  # something waits for the writer (which may not run yet)
        # Made on the first message that has to wait: an idle client (most of them, most of
        # the time) never needs one, and an empty deque costs ~760 bytes.
        self._queue: deque[_Entry | bytes] = _NOTHING_QUEUED
        self._controls = 0
        self._dead = 0  # entries of ended subscriptions, still queued until the writer skips them
        self._unwritten: list[tuple[_Sub, int]] = []  # lossless entries taken, not yet written
        self._subs: dict[str, _Sub] = {}
        # Made on the first wait in take_batch (the probes' reader): a connection's writer
        # never waits here.
        self._readable: trio.lowlevel.ParkingLot | None = None
        self.closed = False
        self.sent = 0  # messages written to the socket or handed to the writer
        self.bytes_sent = 0  # their bytes, WebSocket framing included
        self.coalesced = 0
        self.resyncs = 0
        self.duplicates_dropped = 0
        #: The ts (engine wall-clock ms) of the first update in the last batch taken, 0 if it
        #: had none: the writer measures publish-to-send latency from it, once per batch.
        self.batch_ts = 0
        #: None: every update of a joined topic is for this connection; else its filter.
        self.interest: Interest | None = None

    def __len__(self) -> int:
        """The messages waiting to be sent (entries of ended subscriptions do not count)."""
        return len(self._queue) - self._dead

    def statistics(self) -> OutboxStatistics:
        return OutboxStatistics(
            depth=len(self),
            capacity=self.capacity,
            high_water=self.high_water,
            sent=self.sent,
            bytes_sent=self.bytes_sent,
            coalesced=self.coalesced,
            resyncs=self.resyncs,
            duplicates_dropped=self.duplicates_dropped,
        )

    # -- the connection's side ------------------------------------------------------------

    def expect(self, topic: str, since: int | None, *, lossless: bool = False) -> object:
        """About to join ``topic``: from a snapshot (None) or resuming after seq ``since``.

        A ``lossless`` topic (a user's private stream) is never coalesced or resynced: when
        it would have to be, the connection is closed as slow instead, and the client resumes.
        Returns this subscription's identity: the room serves a join only while it is current.
        """
        self._drop_sub(topic)
        if since is None:
            sub = _Sub(topic, 0, awaiting_snapshot=True, lossless=lossless)
        else:
            sub = _Sub(topic, since, awaiting_snapshot=False, lossless=lossless)
        self._subs[topic] = sub
        return sub

    def forget(self, topic: str) -> None:
        """Unsubscribed: nothing more of ``topic`` is sent, including what is queued."""
        self._drop_sub(topic)

    def position(self, topic: str) -> int | None:
        """The last seq queued for ``topic`` (None while waiting for a snapshot)."""
        sub = self._subs.get(topic)
        if sub is None or sub.awaiting_snapshot:
            return None
        return sub.seq

    def sent_position(self, topic: str) -> int | None:
        """The last seq of a lossless ``topic`` written to the socket (None: nothing yet)."""
        sub = self._subs.get(topic)
        return None if sub is None else sub.sent

    def wants(self, topic: str, subscription: object = None) -> bool:
        """Still subscribed to ``topic`` (by exactly that ``subscription``, when given)."""
        sub = self._subs.get(topic)
        return sub is not None and not self.closed and subscription in (None, sub)

    def topics(self) -> list[str]:
        return list(self._subs)

    def send_text(self, text: str) -> None:
        """Send a control message (ack, pong, error). Never dropped; bounded."""
        if self.closed:
            return
        frame = frame_text(text)
        if self._write_now(frame):
            return
        self._queued(frame)
        self._controls += 1
        self._notify()
        if self._controls > self.control_capacity:
            self._on_overflow()

    def close(self) -> None:
        self.closed = True
        if self._readable is not None:
            self._readable.unpark_all()

    # -- the rooms' side (synchronous: a room never waits for a connection) ---------------

    def offer_update(self, update: Update, frame: bytes) -> None:
        """A live or replayed update, with the frame the room built for this dialect."""
        sub = self._subs.get(update.topic)
        if sub is None or sub.awaiting_snapshot or self.closed:
            return
        if update.seq <= sub.seq:
            self.duplicates_dropped += 1
            return
        if update.seq != sub.seq + 1:
            self._resync(sub)  # a gap: never pass it on, replace it with a snapshot
            return
        sub.seq = update.seq
        # A lossless stream takes the queue, where the writer knows when a seq was written.
        if not sub.lossless and self._write_now(frame):
            return
        depth = len(self)
        if sub.lossless:
            if depth >= self.capacity:
                self._on_overflow()
                return
        elif depth >= self.high_water:
            pending = sub.pending
            if pending is not None and pending.kind == "patch" and update.kind == "patch":
                merged = compose(pending.patch, update.data)
                if merged is not None:
                    pending.patch = merged
                    pending.seq = update.seq
                    pending.ts = update.ts
                    pending.frame = None
                    self.coalesced += 1
                    return
                self._resync(sub)
                return
            if depth >= self.capacity:
                self._resync(sub)
                return
        entry = _Entry(
            sub, frame, kind=update.kind, patch=update.data, seq=update.seq, ts=update.ts
        )
        sub.pending = entry
        self._enqueue(entry)

    def pass_over(self, update: Update) -> None:
        """An update of a joined topic that the connection's interest does not want: its
        position moves past it as if it had been sent (a gap is still a gap)."""
        sub = self._subs.get(update.topic)
        if sub is None or sub.awaiting_snapshot or self.closed:
            return
        if update.seq <= sub.seq:
            self.duplicates_dropped += 1
        elif update.seq == sub.seq + 1:
            sub.seq = update.seq
        else:
            self._resync(sub)

    def start_at(self, topic: str, seq: int) -> None:
        """A quiet join: the subscription starts after ``seq``, with no snapshot."""
        sub = self._subs.get(topic)
        if sub is not None and sub.awaiting_snapshot and not self.closed:
            sub.seq = seq
            sub.awaiting_snapshot = False

    def offer_run(self, updates: list[Update], frames: list[bytes], joined: bytes) -> None:
        """Consecutive updates of one topic, their frames, and those frames joined. A client
        that has everything before the first, with nothing queued and an idle socket, gets
        them all in one write; any other is offered them one by one."""
        first = updates[0]
        sub = self._subs.get(first.topic)
        if (
            sub is not None
            and sub.seq == first.seq - 1
            and not sub.awaiting_snapshot
            and not sub.lossless
            and not self.closed
            and self._write_now(joined, messages=len(updates))
        ):
            sub.seq = updates[-1].seq
            return
        for update, frame in zip(updates, frames, strict=True):
            self.offer_update(update, frame)

    def offer_snapshot(self, topic: str, seq: int, frame: bytes, *, reset: bool = False) -> None:
        """A snapshot of ``topic`` at ``seq``: supersedes whatever of it is still queued.

        ``reset``: the position the client holds means nothing here (another epoch, e.g. a
        resume ahead of the server), so the snapshot replaces it even at a lower seq.
        """
        sub = self._subs.get(topic)
        if sub is None or self.closed:
            return
        if not reset and not sub.awaiting_snapshot and seq < sub.seq:
            return  # older than what the client already has queued
        fresh = _Sub(topic, seq, awaiting_snapshot=False, lossless=sub.lossless)
        self._end_sub(sub)
        self._subs[topic] = fresh
        if not fresh.lossless and self._write_now(frame):
            return
        self._enqueue(_Entry(fresh, frame, kind="snapshot", seq=seq))

    def send_notice(self, topic: str, text: str) -> None:
        """A message about ``topic`` (a resume result), sent only while still subscribed."""
        sub = self._subs.get(topic)
        if sub is not None and not self.closed:
            frame = frame_text(text)
            if not self._write_now(frame):
                self._enqueue(_Entry(sub, frame, kind="notice"))

    # -- the writer's side ----------------------------------------------------------------

    async def take_batch(self, max_items: int = 64) -> list[bytes]:
        """Wait for messages and take up to ``max_items`` frames, in order, ready to send.

        Returns [] only once the outbox is closed.
        """
        while True:
            batch = self.take_ready(max_items)
            if batch or self.closed:
                return batch
            if self._readable is None:
                self._readable = trio.lowlevel.ParkingLot()
            await self._readable.park()

    def take_ready(self, max_items: int = 64) -> list[bytes]:
        """Take up to ``max_items`` frames queued now, in order, ready to send ([]: none)."""
        batch: list[bytes] = []
        queue = self._queue
        oldest_ts = 0
        while queue and len(batch) < max_items:
            entry = queue.popleft()
            if type(entry) is bytes:
                batch.append(entry)
                self._controls -= 1
                continue
            assert isinstance(entry, _Entry)
            sub = entry.sub
            sub.queued -= 1
            if not sub.active:
                self._dead -= 1
                continue
            if sub.pending is entry:
                sub.pending = None
            if sub.lossless and entry.kind != "notice":
                self._unwritten.append((sub, entry.seq))
            if not oldest_ts:
                oldest_ts = entry.ts  # 0 for snapshots and notices: not a publish
            if entry.frame is None:
                entry.frame = frame_text(
                    self.codec.encode_conflated(
                        sub.topic,
                        from_seq=entry.from_seq,
                        seq=entry.seq,
                        ts=entry.ts,
                        patch=entry.patch,
                    )
                )
            batch.append(entry.frame)
        if not queue:
            self._queue = _NOTHING_QUEUED  # caught up: the memory goes back until the next wait
        self.sent += len(batch)
        self.bytes_sent += sum(map(len, batch))
        self.batch_ts = oldest_ts
        return batch

    def batch_written(self) -> None:
        """The writer wrote the last batch to the socket: only now does a lossless stream's
        position move (a connection that dies mid-batch leaves it where it was, so the
        user's next connection replays instead of skipping)."""
        for sub, seq in self._unwritten:
            sub.sent = seq
        self._unwritten.clear()

    # -- internals ---------------------------------------------------------------------------

    def _write_now(self, frame: bytes, *, messages: int = 1) -> bool:
        """The fast path: write ``frame`` (holding ``messages``) to the socket at once, if
        nothing is waiting ahead of it. Called per message per client at fan-out."""
        sink = self._sink
        if sink is None or not sink.idle or self._queue:
            return False
        sink.write(frame)
        self.sent += messages
        self.bytes_sent += len(frame)
        return True

    def _enqueue(self, entry: _Entry) -> None:
        entry.sub.queued += 1
        self._queued(entry)
        self._notify()

    def _queued(self, item: _Entry | bytes) -> None:
        queue = self._queue
        if queue is _NOTHING_QUEUED:
            queue = self._queue = deque()
        queue.append(item)

    def _notify(self) -> None:
        if self._readable is not None:
            self._readable.unpark()
        if self._on_queued is not None:
            self._on_queued()

    def _end_sub(self, sub: _Sub) -> None:
        """Its queued entries are skipped from now on, and no longer count as depth."""
        if sub.active:
            sub.active = False
            self._dead += sub.queued

    def _drop_sub(self, topic: str) -> None:
        old = self._subs.pop(topic, None)
        if old is not None:
            self._end_sub(old)

    def _resync(self, sub: _Sub) -> None:
        if sub.awaiting_snapshot:
            return
        if sub.lossless:  # a snapshot would skip private messages: close, the client resumes
            self._on_overflow()
            return
        self._end_sub(sub)
        self._subs[sub.topic] = _Sub(
            sub.topic, sub.seq, awaiting_snapshot=True, lossless=sub.lossless
        )
        self.resyncs += 1
        self._request_resync(sub.topic)
