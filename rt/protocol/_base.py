"""What every dialect shares: protocol errors, the actions a session asks for, the codec shape.

A dialect is two sans-IO pieces. Its *codec* turns canonical events (updates, snapshots) into
the text its clients expect; the room calls it once per update per dialect in use. Its
*session* is a plain object holding one connection's protocol state: ``handle_text(text)``
parses a client message and returns the actions to take, in order. The connection actor
executes them; nothing here touches a socket, a clock or an actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..model import Json, Update


class ProtocolError(Exception):
    """The client sent something it should not have. ``code`` is the dialect's error code."""

    def __init__(self, code: str, message: str, *, close_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


# -- what a session asks the connection to do ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Queue this text on the connection (in order with everything else it sends)."""

    text: str


@dataclass(frozen=True, slots=True)
class Join:
    """Subscribe to ``topic``. ``since`` None: start from a snapshot. Otherwise resume after
    seq ``since`` (of ``epoch`` when the client knows it): replay, or a snapshot saying why."""

    topic: str
    since: int | None = None
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    topic: str


Action = Send | Join | Leave


class Codec(Protocol):
    """Encodes canonical events for one dialect. Implementations are stateless and shared."""

    name: str

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
