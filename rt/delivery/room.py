"""MarketRoom: one actor per topic that has subscribers, fanning its updates out.

Theory of operation. The engine is the source of truth; a room is a cache of it at the
room's own position (seq), with the topic's state and a bounded history, each history entry
holding the frames already encoded for each dialect. Everything that must be atomic with
respect to live publishes goes through the room's mailbox and is handled in order with the
updates: a join replays from history (or sends a snapshot) at exactly the room's position,
then the subscriber gets every later update live; a resync request gets a snapshot at the
room's position, and the outbox drops that topic's updates until it arrives.

The subscriber table (rt/delivery/subscribers.py) lives in the Hub, not here, so it survives
a crash of the room: a
restarted room reloads from the engine and brings every subscriber up to date from the
position its outbox holds (replay, or a snapshot).

Publishes reach the room without ever blocking the publisher: the Hub offers each update
without waiting, and when the mailbox is full it sends one catch-up notice instead; the
room then reads what it missed from the engine's log. A room that sees a gap in seq does
the same.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from actors import Actor, MailboxClosed
from rt.delivery.outbox import SEND, Interest, Outbox
from rt.dialects.base import Codec
from rt.mergepatch import apply_in_place
from rt.model import HistoryGone, Update
from rt.ws.frames import frame_text

if TYPE_CHECKING:
    from rt.delivery.hub import Hub

log = logging.getLogger(__name__)

#: How many times a room reloading from the engine starts again when publishes outran it.
RELOAD_ATTEMPTS = 3
#: Updates already waiting in a room's mailbox are applied together and fanned out as one
#: run, up to this many: each subscriber that keeps up gets them in one socket write.
MAX_RUN = 64


@dataclass(frozen=True, slots=True)
class JoinRoom:
    outbox: Outbox
    since: int | None = None
    epoch: str | None = None
    announce: bool = True
    #: The outbox's subscription this join was made for: a later (un)subscribe or resume of
    #: the same topic supersedes it, and a superseded join is ignored.
    subscription: object = None
    #: With no ``since``: start at the room's position, without a snapshot.
    quiet: bool = False


@dataclass(frozen=True, slots=True)
class ResyncRequest:
    outbox: Outbox


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Updates were not delivered to this room's mailbox; read them from the engine."""


@dataclass(frozen=True, slots=True)
class Deserted:
    """The last subscriber left: the room's idle time starts now."""


class _Entry:
    __slots__ = ("frames", "update", "verdicts")

    def __init__(self, update: Update) -> None:
        self.update = update
        self.frames: dict[Codec, bytes] = {}
        #: Each interest's verdict on this update, asked once (rt/delivery/outbox.py).
        self.verdicts: dict[Interest, int] = {}

    def frame(self, codec: Codec) -> bytes:
        frame = self.frames.get(codec)
        if frame is None:
            frame = self.frames[codec] = frame_text(codec.encode_update(self.update))
        return frame

    def offer_filtered(self, outbox: Outbox, interest: Interest) -> None:
        """Offer this update to an outbox with an interest: sent, or passed over."""
        verdict = self.verdicts.get(interest)
        if verdict is None:
            verdict = self.verdicts[interest] = interest.verdict(self.update)
        interest.counts[verdict] += 1
        if verdict == SEND:
            outbox.offer_update(self.update, self.frame(outbox.codec))
        else:
            outbox.pass_over(self.update)


class MarketRoom(Actor):
    kind: ClassVar[str] = "room"
    mailbox_capacity: ClassVar[int] = 4096

    def __init__(self, topic: str, hub: Hub) -> None:
        self.topic = topic
        self.hub = hub
        #: This topic's entry in the hub's subscriber table (rt/delivery/subscribers.py).
        self.subscribers = hub.table.entry(topic)
        self.subscribers.room = True
        self.epoch = ""
        self.seq = 0
        self.ts = 0
        self.state: dict[str, Any] = {}
        self.history: deque[_Entry] = deque(maxlen=hub.settings.history_size)
        self.published = 0
        self._snapshot_cache: dict[tuple[Codec, bool], tuple[int, bytes]] = {}

    def describe(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "epoch": self.epoch,
            "seq": self.seq,
            "subscribers": len(self.subscribers.outboxes),
            "history": len(self.history),
        }

    async def on_start(self) -> None:
        # Watched before the first read, so that no update published after the read can
        # pass us by (an engine shared between nodes delivers only watched topics).
        await self.hub.engine.watch(self.topic)
        try:
            await self._reload()
        except BaseException:
            self.hub.engine.unwatch(self.topic)
            raise
        # Subscribers already in the table came from an earlier incarnation of this room,
        # and so may joins it took into its mailbox and never served.
        for outbox in list(self.subscribers.outboxes.values()):
            self._bring_up_to_date(outbox, outbox.position(self.topic), None, notice=False)
        for join in self.subscribers.pending_joins():
            self._join(join)

    async def run(self) -> None:
        try:
            await self._serve()
        finally:
            self.hub.engine.unwatch(self.topic)

    async def _serve(self) -> None:
        idle_s = self.hub.settings.room_idle_s
        get = self.mailbox.get
        while True:
            try:
                if self.subscribers.outboxes:
                    # No idle timer while serving (a cancel scope per message costs): the
                    # last subscriber to leave sends Deserted, which brings us back here.
                    message = await get()
                else:
                    with trio.move_on_after(idle_s) as idle:
                        message = await get()
                    if idle.cancelled_caught:
                        if not self.subscribers.outboxes and len(self.mailbox) == 0:
                            # Nobody left to serve; the engine keeps the topic. No await
                            # from here to the end of this incarnation.
                            self.hub.room_idled_out(self.subscribers)
                            return
                        continue
            except MailboxClosed:
                return  # stopping
            if type(message) is Update:
                await self._receive_updates(message)
            else:
                await self.dispatch(message)

    async def _receive_updates(self, first: Update) -> None:
        """``first`` and the updates queued right behind it: one run, one fan-out."""
        updates = [first]
        after = None
        mailbox = self.mailbox
        if mailbox.receive_hook is None:  # armed faults see every message: one at a time
            while len(updates) < MAX_RUN and len(mailbox):
                message = mailbox.get_nowait()
                if type(message) is not Update:
                    after = message
                    break
                updates.append(message)
        entries = []
        for update in updates:
            if update.seq != self.seq + 1 or update.epoch != self.epoch:
                break
            entries.append(self._advance(update))
        if entries:
            self._fan_out(entries)
        for update in updates[len(entries) :]:
            await self.receive(update)  # a gap, a duplicate or another epoch
        if after is not None:
            await self.dispatch(after)

    async def receive(self, message: Any) -> Any:
        if type(message) is Update:
            if message.seq == self.seq + 1 and message.epoch == self.epoch:
                self._fan_out([self._advance(message)])
            elif message.seq > self.seq or message.epoch != self.epoch:
                await self._catch_up()
        elif type(message) is JoinRoom:
            self._join(message)
        elif type(message) is ResyncRequest:
            if id(message.outbox) in self.subscribers.outboxes:
                frame = self._snapshot_frame(message.outbox.codec, resync=True)
                message.outbox.offer_snapshot(self.topic, self.seq, frame)
        elif type(message) is CatchUp:
            self.subscribers.behind = False
            await self._catch_up()
        elif type(message) is Deserted:
            pass  # the run loop starts the idle timer
        else:
            return await super().receive(message)
        return None

    # -- keeping up with the engine -----------------------------------------------------

    def _advance(self, update: Update) -> _Entry:
        """Apply the next update to the state and the history (not yet sent to anyone)."""
        if update.kind == "patch":
            apply_in_place(self.state, update.data)
        self.seq = update.seq
        self.ts = update.ts
        entry = _Entry(update)
        self.history.append(entry)
        self.published += 1
        return entry

    def _fan_out(self, entries: list[_Entry]) -> None:
        """Offer consecutive updates to every subscriber. The hot loop: each update is framed
        once per dialect, and the same bytes are offered to every subscriber of it."""
        outboxes = self.subscribers.outboxes
        if not outboxes:
            return
        if len(entries) == 1:
            entry = entries[0]
            update = entry.update
            frames = entry.frames
            for outbox in outboxes.values():
                if outbox.interest is not None:
                    entry.offer_filtered(outbox, outbox.interest)
                    continue
                codec = outbox.codec
                frame = frames.get(codec)
                if frame is None:
                    frame = frames[codec] = frame_text(codec.encode_update(update))
                outbox.offer_update(update, frame)
        else:
            updates = [entry.update for entry in entries]
            runs: dict[Codec, tuple[list[bytes], bytes]] = {}
            for outbox in outboxes.values():
                if outbox.interest is not None:
                    for entry in entries:
                        entry.offer_filtered(outbox, outbox.interest)
                    continue
                codec = outbox.codec
                run = runs.get(codec)
                if run is None:
                    each = [entry.frame(codec) for entry in entries]
                    run = runs[codec] = (each, b"".join(each))
                outbox.offer_run(updates, *run)
        # Publish-to-send latency, once per update (not per client): written at once to
        # every subscriber that keeps up.
        latency_s = (self.hub.settings.wall_ms() - entries[0].update.ts) / 1000
        self.hub.stats.observe_latency(max(0.0, latency_s))

    async def _catch_up(self) -> None:
        """Read from the engine everything after our seq; reload if it is gone."""
        engine = self.hub.engine
        epoch, _ = engine.position(self.topic)
        if epoch == self.epoch:
            try:
                while True:
                    batch = await engine.updates(self.topic, since_seq=self.seq, limit=1000)
                    if not batch:
                        return
                    entries = [self._advance(u) for u in _consecutive(batch, self.seq)]
                    for start in range(0, len(entries), MAX_RUN):
                        self._fan_out(entries[start : start + MAX_RUN])
            except HistoryGone:
                pass
        log.warning("%s: lost track of the engine (epoch or history); reloading", self.path)
        epoch = self.epoch
        await self._reload()
        for outbox in list(self.subscribers.outboxes.values()):
            # The positions our subscribers hold are of the epoch we had: if the engine's
            # changed, none of them can be replayed, whatever its seq now.
            self._bring_up_to_date(outbox, outbox.position(self.topic), epoch, notice=False)

    async def _reload(self) -> None:
        """Load the topic's state from the engine, and the history up to it.

        Publishes go on while we await. If the engine's history moved past the updates
        before our snapshot meanwhile, start again from a newer snapshot: a room left behind
        the engine with part of its history would refuse resumes it could have served. After
        a few tries (a flood of publishes), keep what the engine still has."""
        engine = self.hub.engine
        keep = self.history.maxlen or 0
        for attempt in range(1, RELOAD_ATTEMPTS + 1):
            snapshot = await engine.snapshot(self.topic)
            wanted = since = max(0, snapshot.seq - keep)
            older: list[Update] = []
            while since < snapshot.seq:
                try:
                    older = await engine.updates(self.topic, since_seq=since, limit=max(1, keep))
                    break
                except HistoryGone as gone:
                    since = gone.first_seq - 1
            if since == wanted or attempt == RELOAD_ATTEMPTS:
                break
        self.epoch, self.seq, self.ts = snapshot.epoch, snapshot.seq, snapshot.ts
        self.state = snapshot.state
        self.history.clear()
        self._snapshot_cache.clear()
        self.history.extend(_Entry(u) for u in older if u.seq <= self.seq)

    # -- serving subscribers ----------------------------------------------------------

    def _join(self, join: JoinRoom) -> None:
        outbox = join.outbox
        if not self.subscribers.take_join(join):
            return  # served already (by on_start after a crash), superseded or left
        if outbox.wants(self.topic, join.subscription):  # not superseded since
            self._bring_up_to_date(
                outbox, join.since, join.epoch, notice=join.announce, quiet=join.quiet
            )
            self.subscribers.add(outbox)

    def _snapshot_frame(self, codec: Codec, *, resync: bool = False, **extra: Any) -> bytes:
        """The snapshot at our seq, encoded once per dialect (and flag) while seq stays."""
        key = (codec, resync)
        if not extra:
            cached = self._snapshot_cache.get(key)
            if cached is not None and cached[0] == self.seq:
                return cached[1]
        frame = frame_text(
            codec.encode_snapshot(
                self.topic,
                epoch=self.epoch,
                seq=self.seq,
                ts=self.ts,
                state=self.state,
                resync=resync,
                **extra,
            )
        )
        if not extra:
            self._snapshot_cache[key] = (self.seq, frame)
        return frame

    def _bring_up_to_date(
        self,
        outbox: Outbox,
        since: int | None,
        epoch: str | None,
        *,
        notice: bool,
        quiet: bool = False,
    ) -> None:
        """Replay what ``outbox`` misses after ``since``, or send a snapshot saying why.
        ``quiet`` (with no ``since``): start from our position without a snapshot."""
        codec = outbox.codec
        if since is None:
            if quiet:
                outbox.start_at(self.topic, self.seq)
            else:
                outbox.offer_snapshot(self.topic, self.seq, self._snapshot_frame(codec))
            return
        reason = self._why_not_replayable(since, epoch)
        if reason is None:
            first = since + 1
            missed = self._history_after(since)
            interest = outbox.interest
            if interest is not None:
                for entry in missed:
                    entry.offer_filtered(outbox, interest)
                missed = []
            for start in range(0, len(missed), MAX_RUN):  # replayed in runs, as live
                run = missed[start : start + MAX_RUN]
                frames = [entry.frame(codec) for entry in run]
                outbox.offer_run([entry.update for entry in run], frames, b"".join(frames))
            if notice:
                outbox.send_notice(
                    self.topic,
                    codec.encode_resumed(
                        self.topic, recovered=True, from_seq=first, to_seq=self.seq, reason=None
                    ),
                )
            return
        frame = self._snapshot_frame(codec, recovered=False, reason=reason)
        # The client's position is not ours to compare with (it may be ahead of us after an
        # epoch change): the snapshot must replace it, or the client would drop every update
        # until the seq it had.
        outbox.offer_snapshot(self.topic, self.seq, frame, reset=True)
        if notice:
            outbox.send_notice(
                self.topic,
                codec.encode_resumed(
                    self.topic, recovered=False, from_seq=since + 1, to_seq=self.seq, reason=reason
                ),
            )

    def _why_not_replayable(self, since: int, epoch: str | None) -> str | None:
        if epoch is not None and epoch != self.epoch:
            return "epoch_changed"
        if since > self.seq:
            return "epoch_changed"  # the client is ahead of us: our history was lost
        if since == self.seq:
            return None
        first = self.history[0].update.seq if self.history else self.seq + 1
        if since + 1 < first:
            return "beyond_history"
        return None

    def _history_after(self, since: int) -> list[_Entry]:
        history = self.history
        if not history:
            return []
        start = since + 1 - history[0].update.seq
        return [history[i] for i in range(max(0, start), len(history))]


class UserRoom(MarketRoom):
    """A user's private stream (``user:<id>``): the same contract, under ``users``."""

    kind: ClassVar[str] = "user"


def _consecutive(updates: list[Update], seq: int) -> list[Update]:
    """The updates that follow ``seq`` one by one, from the start of ``updates``."""
    run = []
    for update in updates:
        if update.seq == seq + 1:
            run.append(update)
            seq = update.seq
        elif update.seq > seq:
            break
    return run
