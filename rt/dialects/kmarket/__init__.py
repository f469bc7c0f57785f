"""The KMarket dialect (seed 001) on ``/ws/odds?token=JWT``: docs/protocol/kmarket.md."""

from __future__ import annotations

from rt.dialects.base import Dialect, Session, SessionContext
from rt.dialects.kmarket.codec import CODEC, encode_error
from rt.dialects.kmarket.session import KMarketSession


def new_session(ctx: SessionContext) -> Session:
    return KMarketSession(
        scope=ctx.claims.scope_markets,
        max_markets=ctx.settings.max_markets_per_connection,
        wall_ms=ctx.settings.wall_ms,
    )


DIALECT = Dialect("kmarket", "/ws/odds", CODEC, new_session, encode_error)
