"""The UOF dialect (seed 000) on ``/ws?token=JWT&userId=``: docs/protocol/uof.md."""

from __future__ import annotations

from rt.dialects.base import Dialect, Session, SessionContext
from rt.dialects.uof.codec import CODEC, encode_error
from rt.dialects.uof.session import UofSession


def new_session(ctx: SessionContext) -> Session:
    return UofSession(
        user_id=ctx.claims.user_id,
        connection_id=ctx.connection_id,
        max_subscriptions=ctx.settings.max_markets_per_connection,
        wall_ms=ctx.settings.wall_ms,
    )


DIALECT = Dialect("uof", "/ws", CODEC, new_session, encode_error, user_in_query=True)
