"""The dialects a server speaks, by WebSocket path: a codec, a session factory, an error form.

Adding a dialect (seeds 002-004) means a codec and a session in rt/protocol/ and one entry
here; connections, rooms and outboxes are the same for all, and so are the limits on what a
client sends (rt/connection.py). What the shared layer needs from a dialect: its session
parses with ``parse_message`` (rt/jsontext.py's limits), never raises for bad input, and
marks each error reply ``Send(text, error=True)`` (the invalid-message budget counts those);
``Session.forget(topic)`` drops a subscription the connection refused; ``Codec.encode_error``
writes the connection's own refusals in the dialect's form. And one line in
tests/rt/protocol/test_fuzz.py (VOCABULARY) fuzzes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .auth import Claims
from .protocol import kmarket, uof
from .protocol._base import Codec, Session
from .settings import Settings


@dataclass(frozen=True, slots=True)
class SessionContext:
    claims: Claims
    connection_id: str
    settings: Settings


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

BY_PATH: dict[str, Dialect] = {d.path: d for d in (KMARKET, UOF)}
