"""Publishing seed-002 events: to their topics in the engine, once per idempotency key.

An event of a match is published on the match's topic (``match:456``: one seq line, history
and resume for all of that match's events) and on the topic of every event of its
subscription type (``all:predictions``), in one engine call; an event without a match on the
latter alone. The answer names the first of those topics and the event's seq there, and how
many connections the event matched when it was published.

The same ``idempotency_key`` within IDEMPOTENCY_WINDOW_S publishes once: a repeat gets the
first answer (a repeat that arrives while the first is still being published waits for it).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import trio

from rt.dialects.predictions.events import check_event, topics_of
from rt.dialects.predictions.interest import SENT, Interests
from rt.model import Json

if TYPE_CHECKING:
    from rt.server import Server

#: How long an idempotency key is remembered.
IDEMPOTENCY_WINDOW_S = 300.0
#: The most keys remembered at once (the oldest are forgotten first).
MAX_KEYS = 100_000


class EventPublisher:
    """One per server (``for_server``): the interned filters, and the idempotency keys."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.interests = Interests(server.stats.tier_counts)
        self._keys: OrderedDict[str, tuple[float, dict[str, Any] | trio.Event]] = OrderedDict()
        self.published = 0
        self.repeats = 0

    @staticmethod
    def for_server(server: Server) -> EventPublisher:
        found = server.dialect_state.get("predictions")
        if found is None:
            found = server.dialect_state["predictions"] = EventPublisher(server)
        assert isinstance(found, EventPublisher)
        return found

    async def publish_body(self, body: Any) -> tuple[dict[str, Any], bool]:
        """Publish a producer's RealtimeEvent (BadEvent if it is not one). Returns the answer,
        and whether it is the answer to an earlier publish with the same idempotency key."""
        event, key = check_event(body, ms=self.server.settings.wall_ms())
        if key is None:
            return await self.publish(event), False
        now = trio.current_time()
        self._forget_expired(now)
        while True:
            known = self._keys.get(key)
            if known is None:
                break
            if isinstance(known[1], dict):
                self.repeats += 1
                return known[1], True
            await known[1].wait()  # the first is being published; its answer follows
        done = trio.Event()
        self._keys[key] = (now + IDEMPOTENCY_WINDOW_S, done)
        try:
            answer = await self.publish(event)
        except BaseException:
            del self._keys[key]  # not published: a retry with the key may publish it
            raise
        finally:
            done.set()
        self._keys[key] = (now + IDEMPOTENCY_WINDOW_S, answer)
        while len(self._keys) > MAX_KEYS:
            self._keys.popitem(last=False)
        return answer, False

    async def publish(self, event: dict[str, Json]) -> dict[str, Any]:
        """Publish an event already checked (the demo's, or a producer's)."""
        topics = topics_of(event["event_type"], event["data"])
        updates = await self.server.engine.publish_many([(t, event, "event") for t in topics])
        self.published += 1
        # Who it matched: the connections the rooms will offer it to and that want it (each
        # distinct interest asked once: connections with equal filters share one).
        matched = 0
        table = self.server.hub.table
        for update in updates:
            entry = table.get(update.topic)
            if entry is None:
                continue
            verdicts: dict[object, bool] = {}
            for outbox in entry.outboxes.values():
                interest = outbox.interest
                if interest is None:
                    continue
                sent = verdicts.get(interest)
                if sent is None:
                    sent = verdicts[interest] = interest.verdict(update) == SENT
                matched += sent
        first = updates[0]
        return {
            "event_type": event["event_type"],
            "topic": first.topic,
            "seq": first.seq,
            "timestamp": event["timestamp"],
            "matched": matched,
        }

    def _forget_expired(self, now: float) -> None:
        keys = self._keys
        while keys:
            key, (expires, answer) = next(iter(keys.items()))
            if expires > now or not isinstance(answer, dict):
                return
            del keys[key]
