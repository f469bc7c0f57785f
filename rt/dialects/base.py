"""What every dialect shares: protocol errors, the actions a session asks for, the codec shape.

A dialect is two sans-IO pieces. Its *codec* turns canonical events (updates, snapshots) into
the text its clients expect; the room calls it once per update per dialect in use. Its
*session* is a plain object holding one connection's protocol state: ``handle_text(text)``
parses a client message and returns the actions to take, in order. The connection actor
executes them; nothing here touches a socket, a clock or an actor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from rt.auth import Claims
from rt.jsontext import loads, show
from rt.model import Json, Update
from rt.settings import Settings

if TYPE_CHECKING:
    from fastapi import APIRouter

    from actors import ChildSpec
    from rt.delivery.outbox import Interest
    from rt.server import Server


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
    #: With no ``since``: start from now, with no snapshot (for clients of events, who have
    #: no use for a topic's state).
    quiet: bool = False


@dataclass(frozen=True, slots=True)
class Leave:
    topic: str


@dataclass(frozen=True, slots=True)
class Submit:
    """Submit a ticket for the connection's user; the answer goes back through the session."""

    ticket: Json


@dataclass(frozen=True, slots=True)
class SetInterest:
    """From now on the connection receives only the updates ``interest`` lets through
    (rt/delivery/outbox.py: Interest); None: every update of the topics it joined."""

    interest: Interest | None


@dataclass(frozen=True, slots=True)
class ReportStats:
    """Send ``answer(counts)``: the connection's own counts (messages received and sent,
    bytes, seconds connected, outbox depth, coalesced, resyncs) in the dialect's words."""

    answer: Callable[[dict[str, Any]], str]


@dataclass(frozen=True, slots=True)
class Tell:
    """Tell the actor at ``path`` the message ``make(reply)`` makes, where ``reply(text)``
    queues ``text`` on this connection (in order with everything else it sends, whenever the
    actor answers). If the actor is not there, or takes nothing for a few seconds, send
    ``unavailable`` instead (None: nothing). The connection reads on meanwhile: answers come
    when ready."""

    path: str
    make: Callable[[Callable[[str], None]], Any]
    unavailable: str | None


@dataclass(frozen=True, slots=True)
class SetDeadline:
    """Close with ``code`` and ``reason`` ``after_s`` seconds from now, unless a SignIn comes
    first: the time a dialect that authenticates in-band gives a client to do so."""

    after_s: float
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class SignIn:
    """The client proved in-band to be ``user_id`` with a token valid until
    ``expires_at_ms``. The connection becomes that user's (counted against
    ``max_connections_per_user``; the token's expiry now closes it, as a handshake token's
    does), then carries out ``then(None)``; or ``then(reason)`` if it may not."""

    user_id: str
    expires_at_ms: int
    then: Callable[[str | None], list[Action]]


#: ``Join.since`` for a user's private stream: from where that user's connections last got to.
FROM_LAST_DELIVERED = -1

Action = Send | Join | Leave | Submit | SetInterest | ReportStats | Tell | SetDeadline | SignIn


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

    def encode_engine_status(self, available: bool, topics: list[str], *, ts: int) -> list[str]:
        """What a connection joined to ``topics`` is told, in its clients' terms, when the
        shared store (Redis) is lost (``available`` False: every market is suspended, nothing
        is published) and when it is back (rt/ws/notices.py). Outside every stream: no seq."""
        ...


#: The ``system_status`` data of the engine's loss and return, in every dialect.
ENGINE_LOST: dict[str, Json] = {
    "engine": "unavailable",
    "markets": "suspended",
    "message": "the shared store is out of reach: every market is suspended until it is back",
}
ENGINE_BACK: dict[str, Json] = {
    "engine": "available",
    "markets": "resumed",
    "message": "the shared store is back",
}
ENGINE_UNAVAILABLE = "ENGINE_UNAVAILABLE"


# -- a dialect: what the listener and the server need to know of it ----------------------


#: How the listener authenticates an upgrade on a dialect's paths:
#: "token": ``?token=<JWT>`` is required (HTTP 401 otherwise);
#: "optional": a token is verified when given, the connection is anonymous without one;
#: "none": the listener checks nothing, the session authenticates in-band.
HandshakeAuth = Literal["token", "optional", "none"]


@dataclass(frozen=True, slots=True)
class SessionContext:
    claims: Claims
    connection_id: str
    settings: Settings
    #: False when the connection has no verified token (``claims`` is then anonymous).
    authenticated: bool = True
    #: The path the client connected to (one of the dialect's paths, filled in).
    path: str = ""
    #: The values of the path's ``{name}`` segments.
    path_params: Mapping[str, str] = field(default_factory=dict)
    #: The query string's parameters (the first value of each; ``token`` included).
    query: Mapping[str, str] = field(default_factory=dict)
    #: The server the connection is on (None in tests of a session alone): what a dialect
    #: may ask of it before a subscription (``server.engine.position``: has a topic data?).
    server: Server | None = None


@dataclass(frozen=True)
class Dialect:
    name: str
    path: str
    codec: Codec
    new_session: Callable[[SessionContext], Session]
    #: How an error reads in this dialect (for refusals after the handshake).
    encode_error: Callable[[str, str], str]
    #: The query names the user (``?userId=``), and it must be the token's user.
    user_in_query: bool = False
    #: More paths that speak this dialect, besides ``path``.
    extra_paths: tuple[str, ...] = ()
    auth: HandshakeAuth = "token"
    #: The dialect's REST routes, mounted on the public HTTP app.
    routes: Callable[[Server], APIRouter] | None = None
    #: The dialect's own actors, started under ``dialects/<name>`` before any listener.
    children: Callable[[Server], list[ChildSpec]] | None = None
    #: What is wrong with the path's ``{name}`` values, if anything: the upgrade is then
    #: refused with HTTP 400 and this message.
    check_path: Callable[[Mapping[str, str]], str | None] | None = None
    #: A key only one connection may hold at a time (``client_id``): a newer connection with
    #: the key closes the older one with 4409 (rt/ws/exclusive.py).
    exclusive_key: Callable[[SessionContext], str] | None = None
    #: The settings its connections run with, from the server's (its own heartbeat).
    settings: Callable[[Settings], Settings] | None = None

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path, *self.extra_paths)


def anonymous_claims(connection_id: str) -> Claims:
    """Claims for a connection without a token: a user of its own, no market scope."""
    return Claims(user_id=f"anon:{connection_id}", scope_markets=None, expires_at_ms=0)
