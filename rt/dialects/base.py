"""What every dialect shares: protocol errors, the actions a session asks for, the codec shape.

A dialect is two sans-IO pieces. Its *codec* turns canonical events (updates, snapshots) into
the text its clients expect; the room calls it once per update per dialect in use. Its
*session* is a plain object holding one connection's protocol state: ``handle_text(text)``
parses a client message and returns the actions to take, in order. The connection actor
executes them; nothing here touches a socket, a clock or an actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from rt.jsontext import loads, show
from rt.model import Json, Update


class ProtocolError(Exception):
    """The client sent something it should not have. ``code`` is the dialect's error code."""

    def __init__(self, code: str, message: str, *, close_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


def parse_message(text: str, *, bad_json: str, bad_message: str) -> dict[str, Any]:
    """A client's text message as a JSON object with a string ``type``; otherwise a
    ProtocolError with the dialect's code for text that is not JSON or that rt's limits
    refuse (rt/jsontext.py: depth, number length, NaN, duplicate keys, lone surrogates), or
    with its code for the rest."""
    try:
        message = loads(text)
    except ValueError as exc:
        raise ProtocolError(bad_json, f"message is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(bad_message, f"expected a JSON object, got {show(message)}")
    if "type" not in message:
        raise ProtocolError(bad_message, "missing field: type")
    if not isinstance(message["type"], str):
        raise ProtocolError(
            bad_message, f"expected type to be a string, got {show(message['type'])}"
        )
    return message


# -- what a session asks the connection to do ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Queue this text on the connection (in order with everything else it sends).

    ``error``: the text is the dialect's error answering a message the client should not
    have sent (not JSON, not a known command, a bad field, a limit). Such answers count
    against the connection's budget of invalid messages (``max_invalid_messages`` per
    ``invalid_window_s``): past it, the connection closes with 4429.
    """

    text: str
    error: bool = False


@dataclass(frozen=True, slots=True)
class Join:
    """Subscribe to ``topic``. ``since`` None: start from a snapshot. Otherwise resume after
    seq ``since`` (of ``epoch`` when the client knows it): replay, or a snapshot saying why."""

    topic: str
    since: int | None = None
    epoch: str | None = None
    #: Say afterwards whether it was recovered (a ``resumed`` message); off for implicit joins.
    announce: bool = True


@dataclass(frozen=True, slots=True)
class Leave:
    topic: str


@dataclass(frozen=True, slots=True)
class Submit:
    """Submit a ticket for the connection's user; the answer goes back through the session."""

    ticket: Json


#: ``Join.since`` for a user's private stream: from where that user's connections last got to.
FROM_LAST_DELIVERED = -1

Action = Send | Join | Leave | Submit


class Session(Protocol):
    """One connection's protocol state, for one dialect. Never raises for bad input."""

    def opened(self) -> list[Action]:
        """What to do as soon as the connection is open."""
        ...

    def handle_text(self, text: str) -> list[Action]: ...

    def handle_binary(self) -> list[Action]: ...

    def subscriptions(self) -> int: ...

    def forget(self, topic: str) -> None:
        """The connection did not join ``topic`` after all (a limit of the shared layer
        refused it, and told the client so): drop it from the session's subscriptions."""
        ...

    def ticket_answer(self, answer: Json) -> str:
        """The text that answers a Submit (the desk's receipt, or its error)."""
        ...


class Codec(Protocol):
    """Encodes canonical events for one dialect. Implementations are stateless and shared."""

    name: str

    def encode_error(self, code: str, message: str) -> str:
        """The dialect's error message (the connection's own refusals use it too)."""
        ...

    def encode_update(self, update: Update) -> str: ...

    def encode_conflated(
        self, topic: str, *, from_seq: int, seq: int, ts: int, patch: Json
    ) -> str: ...

    def encode_snapshot(
        self,
        topic: str,
        *,
        epoch: str,
        seq: int,
        ts: int,
        state: Json,
        resync: bool = False,
        recovered: bool | None = None,
        reason: str | None = None,
    ) -> str: ...

    def encode_resumed(
        self, topic: str, *, recovered: bool, from_seq: int, to_seq: int, reason: str | None
    ) -> str: ...

    def encode_broadcast(self, event_type: str, data: Json, *, ts: int) -> str:
        """An operator's broadcast (POST /realtime/broadcast), a control message outside any
        stream. ``ts`` is wall-clock milliseconds, passed in: protocol code reads no clock."""
        ...
