"""The UOF dialect (seed 000) on ``/ws?token=JWT&userId=``: docs/protocol/uof.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors import ChildSpec
from rt.dialects.base import Dialect, Session, SessionContext
from rt.dialects.uof.codec import CODEC, encode_error
from rt.dialects.uof.desk import DESK_PATH, SimulatedMts, TicketDesk
from rt.dialects.uof.session import UofSession

if TYPE_CHECKING:
    from rt.server import Server


def new_session(ctx: SessionContext) -> Session:
    return UofSession(
        user_id=ctx.claims.user_id,
        connection_id=ctx.connection_id,
        max_subscriptions=ctx.settings.max_markets_per_connection,
        wall_ms=ctx.settings.wall_ms,
    )


def children(server: Server) -> list[ChildSpec]:
    """The ticket desk (``dialects/uof/tickets``): validates tickets, relays them to MTS."""
    settings = server.settings
    mts = SimulatedMts(latency_s=settings.mts_latency_s, max_stake=settings.mts_max_stake)
    name = DESK_PATH.rpartition("/")[2]
    return [ChildSpec(name, lambda: TicketDesk(server.engine, server.hub.publish, mts))]


DIALECT = Dialect(
    "uof", "/ws", CODEC, new_session, encode_error, user_in_query=True, children=children
)
