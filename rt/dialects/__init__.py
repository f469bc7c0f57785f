"""The dialects a server speaks: one entry each in ``DIALECTS``.

A dialect is a codec, a session factory, an error form, the WebSocket paths it answers and,
optionally, REST routes and actors of its own. Connections, rooms, outboxes and the publish
path are the same for all. A new dialect lives in its own package ``rt/dialects/<name>/``
(its sans-IO codec and session, its paths, its routes, its actors) and is registered by one
entry in ``DIALECTS`` below; it touches no core module. (KMarket and UOF still live in
``rt/protocol/``.)

The limits on what a client sends are the same for every dialect (rt/ws/connection.py). What
that shared layer needs from a dialect: its session parses with ``parse_message``
(rt/jsontext.py's limits), never raises for bad input, and marks each error reply
``Send(text, error=True)`` (the invalid-message budget counts those);
``Session.forget(topic)`` drops a subscription the connection refused; ``Codec.encode_error``
writes the connection's own refusals in the dialect's form. And one line in
tests/rt/dialects/test_fuzz.py (VOCABULARY) fuzzes it.

Paths are exact (``/ws/odds``) or patterns with ``{name}`` segments
(``/api/v1/ws/{client_id}``); ``match`` picks the dialect and the segments' values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from rt.auth import Claims
from rt.dialects.base import Codec, Session
from rt.dialects.kmarket import codec as kmarket
from rt.dialects.uof import codec as uof
from rt.settings import Settings

if TYPE_CHECKING:
    from fastapi import APIRouter

    from actors import ChildSpec
    from rt.server import Server

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
    #: The values of the path's ``{name}`` segments.
    path_params: Mapping[str, str] = field(default_factory=dict)
    #: The query string's parameters (the first value of each; ``token`` included).
    query: Mapping[str, str] = field(default_factory=dict)


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

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path, *self.extra_paths)


def anonymous_claims(connection_id: str) -> Claims:
    """Claims for a connection without a token: a user of its own, no market scope."""
    return Claims(user_id=f"anon:{connection_id}", scope_markets=None, expires_at_ms=0)


def _kmarket(ctx: SessionContext) -> Session:
    return kmarket.KMarketSession(
        scope=ctx.claims.scope_markets,
        max_markets=ctx.settings.max_markets_per_connection,
        wall_ms=ctx.settings.wall_ms,
    )


def _uof(ctx: SessionContext) -> Session:
    return uof.UofSession(
        user_id=ctx.claims.user_id,
        connection_id=ctx.connection_id,
        max_subscriptions=ctx.settings.max_markets_per_connection,
        wall_ms=ctx.settings.wall_ms,
    )


KMARKET = Dialect("kmarket", "/ws/odds", kmarket.CODEC, _kmarket, kmarket.encode_error)
UOF = Dialect("uof", "/ws", uof.CODEC, _uof, uof.encode_error, user_in_query=True)

#: Every dialect the server speaks. Registering a dialect is one entry here.
DIALECTS: tuple[Dialect, ...] = (KMARKET, UOF)


def _compile(path: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", path)
    pattern = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    return re.compile(pattern)


_EXACT: dict[str, Dialect] = {}
_PATTERNS: list[tuple[re.Pattern[str], Dialect]] = []
for _dialect in DIALECTS:
    for _path in _dialect.paths:
        if "{" in _path:
            _PATTERNS.append((_compile(_path), _dialect))
        elif _EXACT.setdefault(_path, _dialect) is not _dialect:
            raise ValueError(f"two dialects claim the WebSocket path {_path}")

#: The dialects by exact path.
BY_PATH: Mapping[str, Dialect] = _EXACT


def match(path: str) -> tuple[Dialect, dict[str, str]] | None:
    """The dialect that answers ``path`` (without its query), and its ``{name}`` values."""
    dialect = _EXACT.get(path)
    if dialect is not None:
        return dialect, {}
    for pattern, dialect in _PATTERNS:
        found = pattern.fullmatch(path)
        if found is not None:
            return dialect, found.groupdict()
    return None
