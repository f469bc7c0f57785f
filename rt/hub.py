"""The Hub: where publishes, rooms and subscribers meet.

It publishes through the engine, routes each update to the room of its topic (if any), starts
rooms on demand under the ``rooms`` supervisor, and owns the subscriber table, which outlives
a crashing room (see rt/room.py). It is a plain object, not an actor: every call is either
synchronous or a short await, and it holds no state that needs a mailbox to stay consistent.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from actors import (
    ActorRef,
    ActorSystem,
    ChildSpec,
    MailboxClosed,
    MailboxFull,
    NameTaken,
    Restart,
)

from .engine import Engine
from .model import Json, Update, UpdateKind
from .outbox import Outbox
from .room import CatchUp, JoinRoom, MarketRoom, ResyncRequest
from .settings import Settings

log = logging.getLogger(__name__)

ROOMS = "rooms"


class Hub:
    def __init__(self, system: ActorSystem, engine: Engine, settings: Settings) -> None:
        self.system = system
        self.engine = engine
        self.settings = settings
        self._subscribers: dict[str, dict[int, Outbox]] = {}
        self._behind: set[str] = set()  # rooms sent a CatchUp they have not handled yet
        self.messages_published = 0
        engine.add_listener(self._on_update)

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, topic: str, data: Json, *, kind: UpdateKind = "patch") -> Update:
        return await self.engine.publish(topic, data, kind=kind)

    def _on_update(self, update: Update) -> None:
        """Called by the engine for every update, in seq order per topic. Never blocks."""
        self.messages_published += 1
        room = self.system.lookup(f"{ROOMS}/{update.topic}")
        if room is None or update.topic in self._behind:
            return
        try:
            room.tell_nowait(update)
        except MailboxFull:
            self._behind.add(update.topic)
            room._cell.mailbox.put_control(CatchUp())
        except MailboxClosed:
            pass  # the room is stopping; a new one loads from the engine

    def caught_up(self, topic: str) -> None:
        self._behind.discard(topic)

    # -- subscribers ----------------------------------------------------------------------

    def subscribers_of(self, topic: str) -> dict[int, Outbox]:
        return self._subscribers.setdefault(topic, {})

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    async def join(
        self, topic: str, outbox: Outbox, *, since: int | None, epoch: str | None
    ) -> None:
        """Subscribe ``outbox`` to ``topic``: from a snapshot, or resuming after ``since``."""
        outbox.expect(topic, since)
        message = JoinRoom(outbox, since, epoch)
        while True:
            room = await self._room(topic)
            try:
                await room.tell(message)
                return
            except MailboxClosed:
                continue  # it was stopping as we arrived; the next one will take us

    def leave(self, topic: str, outbox: Outbox) -> None:
        """Unsubscribe at once: the room fans out from the table, so it stops here."""
        outbox.forget(topic)
        subscribers = self._subscribers.get(topic)
        if subscribers is not None:
            subscribers.pop(id(outbox), None)
            if not subscribers:
                del self._subscribers[topic]

    def request_resync(self, topic: str, outbox: Outbox) -> None:
        room = self.system.lookup(f"{ROOMS}/{topic}")
        if room is not None:
            # Bounded: an outbox asks at most once per topic until its snapshot arrives.
            room._cell.mailbox.put_control(ResyncRequest(outbox))

    async def _room(self, topic: str) -> ActorRef:
        path = f"{ROOMS}/{topic}"
        while True:
            room = self.system.lookup(path)
            if room is not None:
                return room
            spec = ChildSpec(topic, lambda: MarketRoom(topic, self), restart=Restart.TRANSIENT)
            try:
                return await self.system.spawn(spec, under=ROOMS)
            except NameTaken:
                # Another join started it, or it is restarting after a crash: look again soon.
                await trio.sleep(0.005)

    def statistics(self) -> dict[str, Any]:
        return {
            "topics": len(self.engine.topics()),
            "rooms": sum(1 for p in self.system.registry.paths() if p.startswith(ROOMS + "/")),
            "subscriptions": self.subscriber_count(),
            "published": self.messages_published,
        }

