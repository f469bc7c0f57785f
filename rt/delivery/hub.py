"""The Hub: where publishes, rooms and subscribers meet.

It publishes through the engine, routes each update to the room of its topic (if any), starts
rooms on demand under the ``rooms`` supervisor, and owns the subscriber table, which outlives
a crashing room (see rt/delivery/room.py). It is a plain object, not an actor: every call is either
synchronous or a short await, and it holds no state that needs a mailbox to stay consistent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import trio

from actors import (
    Actor,
    ActorRef,
    ActorSystem,
    AskFailed,
    AskTimeout,
    ChildSpec,
    MailboxClosed,
    MailboxFull,
    NameTaken,
    Restart,
)
from rt.delivery.outbox import Outbox
from rt.delivery.room import CatchUp, Deserted, JoinRoom, MarketRoom, ResyncRequest, UserRoom
from rt.delivery.subscribers import SubscriberTable, TopicSubscribers
from rt.engine import Engine
from rt.model import Json, Update, UpdateKind
from rt.settings import Settings
from rt.topics import is_user_topic, user_topic
from rt.ws.stats import ConnectionStats

log = logging.getLogger(__name__)

ROOMS = "rooms"
USERS = "users"
#: How soon the keeper tries again to start a room it could not start.
ORPHAN_RETRY_S = 0.05
#: How long a join waits for its room's supervisor to start the room before leaving it to
#: the keeper (the StartChild stays queued: the room serves the join when it starts).
START_ROOM_TIMEOUT_S = 1.0


def room_path(topic: str) -> str:
    """Users' private streams live under ``users``, every other topic under ``rooms``."""
    return f"{USERS if is_user_topic(topic) else ROOMS}/{topic}"


class RoomKeeper(Actor):
    """Restarts rooms that a crashed ``rooms``/``users`` supervisor took down with it."""

    kind: ClassVar[str] = "keeper"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.hub.serve_orphans)
            await self.stop_requested.wait()
            nursery.cancel_scope.cancel()


class Hub:
    def __init__(
        self,
        system: ActorSystem,
        engine: Engine,
        settings: Settings,
        stats: ConnectionStats | None = None,
    ) -> None:
        self.system = system
        self.engine = engine
        self.settings = settings
        self.stats = stats or ConnectionStats()
        #: Who subscribes to what, and who is joining: a room that crashes loses its
        #: mailbox, so its next incarnation serves the joins found here first.
        self.table = SubscriberTable()
        # Topics with subscribers or joins and no room, in the order found (a dict as an
        # ordered set): the keeper starts their rooms.
        self._orphans: dict[str, None] = {}
        self._orphaned = trio.Event()
        self._unstartable: set[str] = set()  # rooms the keeper failed to start, logged once
        self._user_connections: dict[str, int] = {}
        self._user_positions: dict[str, int] = {}
        self.messages_published = 0
        engine.add_listener(self._on_update)
        engine.add_gap_listener(self._on_gap)

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, topic: str, data: Json, *, kind: UpdateKind = "patch") -> Update:
        return await self.engine.publish(topic, data, kind=kind)

    async def publish_many(self, items: Sequence[tuple[str, Json, UpdateKind]]) -> list[Update]:
        return await self.engine.publish_many(items)

    def _on_update(self, update: Update) -> None:
        """Called by the engine for every update, in seq order per topic. Never blocks."""
        self.messages_published += 1
        room = self.system.lookup(room_path(update.topic))
        entry = self.table.get(update.topic)
        if room is None:
            if entry is not None and not entry.idle:
                # Subscribers but no room: its supervisor was restarted and lost it.
                self._orphan(update.topic)
            return
        if entry is not None and entry.behind:
            return
        try:
            room.tell_nowait(update)
        except MailboxFull:
            if entry is not None:
                entry.behind = True
            room.tell_control(CatchUp())
        except MailboxClosed:
            pass  # the room is stopping; a new one loads from the engine

    def _on_gap(self, topic: str) -> None:
        """The engine may have missed updates of ``topic`` (it lost its connection to Redis,
        or Redis lost its data): the room reads what it missed, or reloads."""
        room = self.system.lookup(room_path(topic))
        if room is not None:
            room.tell_control(CatchUp())

    async def serve_orphans(self) -> None:
        """Start the room of every topic found with subscribers or joins and no room (the
        RoomKeeper actor runs this): topics whose room a crashed supervisor took with it,
        and topics joined while they had no room. The new room serves the pending joins
        and brings each subscriber up to date. A room that cannot be started now (it is
        waiting out its restart backoff, or its supervisor is busy restarting) is tried
        again shortly: nothing is lost, the joins wait in the table."""
        while True:
            await self._orphaned.wait()
            self._orphaned = trio.Event()
            retry: list[str] = []
            while self._orphans:
                topic = next(iter(self._orphans))
                del self._orphans[topic]
                entry = self.table.get(topic)
                if entry is None or entry.idle:
                    self._unstartable.discard(topic)
                    continue
                if self.system.lookup(room_path(topic)) is not None:
                    continue
                if await self._start_room(topic) is None:
                    retry.append(topic)
            if retry:
                for topic in retry:
                    self._orphans[topic] = None
                await trio.sleep(ORPHAN_RETRY_S)
                self._orphaned.set()

    # -- subscribers ----------------------------------------------------------------------

    def opens_new_topic(self, topic: str) -> bool:
        """True when joining ``topic`` would start a room for a topic nobody has open and
        nothing was ever published to: what a client inventing names does."""
        return (
            self.table.get(topic) is None
            and self.system.lookup(room_path(topic)) is None
            and self.engine.position(topic)[1] == 0
        )

    def room_idled_out(self, entry: TopicSubscribers) -> None:
        """The room of ``entry``'s topic stops for want of subscribers: forget the topic, so
        that a client inventing names leaves nothing behind once its rooms have idled out.
        Called by the room in the same step as it stops (no await between), so no join can
        slip in; a later join makes a fresh entry and a fresh room."""
        entry.behind = False
        entry.room = False
        self.table.release(entry)
        self._orphans.pop(entry.topic, None)

    def topics_indexed(self) -> int:
        """How many topics the Hub holds an entry for (a test checks they are released)."""
        return len(set(self.table.topics()) | self._orphans.keys() | self._unstartable)

    def subscriber_count(self) -> int:
        return self.table.subscriber_count()

    async def join(
        self,
        topic: str,
        outbox: Outbox,
        *,
        since: int | None,
        epoch: str | None,
        announce: bool = True,
        quiet: bool = False,
    ) -> None:
        """Subscribe ``outbox`` to ``topic``: from a snapshot (or, ``quiet``, from the
        room's position without one), or resuming after ``since``."""
        # A user's private stream is lossless: never coalesced or resynced, see Outbox.
        lossless = is_user_topic(topic)
        subscription = outbox.expect(topic, since, lossless=lossless)
        if lossless and self._waits_without_a_room(topic, since, outbox):
            return
        message = JoinRoom(outbox, since, epoch, announce, subscription, quiet)
        self.table.entry(topic).expect(message)
        room = self.system.lookup(room_path(topic)) or await self._start_room(topic)
        if room is not None:
            try:
                await room.tell(message)
                return
            except MailboxClosed:
                pass  # it was stopping as we arrived
        # No room to be had now: it is waiting out its restart backoff, or its supervisor
        # is busy or restarting. The join waits in the table; the room, when it starts (by
        # its supervisor, or by the keeper, told here), serves it. A connection never
        # fails, nor waits long, because of a room's supervisor.
        self._orphan(topic)

    def _waits_without_a_room(self, topic: str, since: int | None, outbox: Outbox) -> bool:
        """A private stream with nothing to replay needs no room (no actor, no task) until
        its first message: the outbox waits in the table at its position, and the first
        publish starts the room, which brings it up to date as after a room's crash. So a
        connected user who is sent nothing costs no actor. Only on an engine no other process
        shares (a shared one delivers only the topics a room watches), and only when the
        client is exactly at the topic's position (behind: a replay; ahead: another epoch's
        seq, which the room resolves)."""
        if (
            self.engine.shared
            or since is None
            or self.engine.position(topic)[1] != since
            or self.system.lookup(room_path(topic)) is not None
            or topic in self._orphans
        ):
            return False
        entry = self.table.entry(topic)
        if entry.joining:  # a room is being started for them: it serves this join too
            return False
        entry.add(outbox)
        return True

    def leave(self, topic: str, outbox: Outbox) -> None:
        """Unsubscribe at once: the room fans out from the table, so it stops here."""
        outbox.forget(topic)
        entry = self.table.get(topic)
        if entry is None:
            return
        last = entry.remove(outbox)
        # The entry stays, even empty, while the room lives: it fans out from it (and so does
        # its next incarnation after a crash); the room releases it when it idles out.
        room = self.system.lookup(room_path(topic))
        if room is None:
            self.table.release(entry)  # unless a room, not yet serving, holds it
        elif last:
            room.tell_control(Deserted())  # its idle time starts

    def request_resync(self, topic: str, outbox: Outbox) -> None:
        room = self.system.lookup(room_path(topic))
        if room is not None:
            # Bounded: an outbox asks at most once per topic until its snapshot arrives.
            room.tell_control(ResyncRequest(outbox))

    async def _start_room(self, topic: str) -> ActorRef | None:
        """Start the room of ``topic`` (or find it started by someone else meanwhile); None
        if that cannot be done now."""
        path = room_path(topic)
        under, _, name = path.partition("/")
        kind = UserRoom if under == USERS else MarketRoom
        spec = ChildSpec(name, lambda: kind(topic, self), restart=Restart.TRANSIENT)
        try:
            room = await self.system.spawn(spec, under=under, timeout_s=START_ROOM_TIMEOUT_S)
        except NameTaken:
            # Started by another join just before us, or restarting after a crash (then it
            # serves the pending joins itself).
            return self.system.lookup(path)
        except (AskFailed, AskTimeout, LookupError, MailboxClosed, MailboxFull) as exc:
            # Its supervisor is busy, stopping or being restarted, or the room failed to
            # start (its engine): the table keeps the joins. Said once per topic.
            if topic not in self._unstartable:
                self._unstartable.add(topic)
                log.warning("%s: cannot start the room now (%r); trying again", path, exc)
            return None
        self._unstartable.discard(topic)
        return room

    def _orphan(self, topic: str) -> None:
        """Have the keeper start the room of ``topic`` (first come, first served)."""
        self._orphans[topic] = None
        self._orphaned.set()

    # -- users --------------------------------------------------------------------------

    def user_connections(self, user_id: int | str) -> int:
        return self._user_connections.get(str(user_id), 0)

    def user_connected(self, user_id: int | str) -> None:
        key = str(user_id)
        self._user_connections[key] = self._user_connections.get(key, 0) + 1

    def user_disconnected(self, user_id: int | str, outbox: Outbox) -> None:
        """Remember how far this user's stream got, so a later connection resumes there."""
        key = str(user_id)
        left = self._user_connections.get(key, 1) - 1
        if left > 0:
            self._user_connections[key] = left
        else:
            self._user_connections.pop(key, None)
        sent = outbox.sent_position(user_topic(user_id))
        if sent is not None and sent > self._user_positions.get(key, 0):
            self._user_positions[key] = sent

    def user_position(self, user_id: int | str) -> int:
        """The last seq of the user's stream written to any of its connections (0: none)."""
        return self._user_positions.get(str(user_id), 0)
