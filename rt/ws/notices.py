"""Telling every open connection, in its own dialect, that the engine came and went.

With the Redis engine the shared store can be lost while rt runs. Nothing is published then
(publishes are refused), so no update can carry the news: every connection is told outside
its streams, in its clients' terms (``Codec.encode_engine_status``), once when the engine is
lost and once when it is back. KMarket: a ``system_status`` broadcast naming its markets
suspended; UOF: a whole-event ``bet_stop`` for each event it follows, then that broadcast;
the predictions, topics and trading dialects: an ``error`` (ENGINE_UNAVAILABLE, 1010 in
trading's numbers). When it is back, a ``system_status`` broadcast says so, and each room
catches up (or sends a snapshot saying the epoch changed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from actors import ActorState, ActorSystem
from rt.dialects.base import Codec
from rt.model import Json
from rt.ws.connection import Connection


def live_connections(system: ActorSystem) -> Iterator[Connection]:
    """Every Connection actor that is running and whose outbox is still open."""
    for cell in system.registry.cells():
        actor = cell.actor
        if (
            isinstance(actor, Connection)
            and cell.state is ActorState.RUNNING
            and not actor.outbox.closed
        ):
            yield actor


def tell_every_connection(
    system: ActorSystem, event_type: str, data: Json, *, ts: int, skip: Codec | None = None
) -> dict[str, int]:
    """``event_type`` with ``data`` as a control message to every open connection (but
    those speaking ``skip``), encoded once per dialect. Returns how many, by dialect."""
    texts: dict[Codec, str] = {}
    told: dict[str, int] = {}
    for conn in live_connections(system):
        codec = conn.outbox.codec
        if codec is skip:
            continue
        text = texts.get(codec)
        if text is None:
            text = texts[codec] = codec.encode_broadcast(event_type, data, ts=ts)
        conn.outbox.send_text(text)
        told[codec.name] = told.get(codec.name, 0) + 1
    return told


def engine_status_notifier(
    system: ActorSystem, wall_ms: Callable[[], int]
) -> Callable[[bool], None]:
    """A status listener for the engine (``Engine.add_status_listener``)."""

    def notify(available: bool) -> None:
        ts = wall_ms()
        for conn in live_connections(system):
            outbox = conn.outbox
            for text in outbox.codec.encode_engine_status(available, outbox.topics(), ts=ts):
                outbox.send_text(text)

    return notify
