"""The predictions dialect (seed 002) on ``/realtime/ws``: docs/protocol/predictions.md.

Dashboards, apps and bots of a football-prediction service subscribe to predictions, match
events, odds, system alerts and analytics, each with filters (match ids, leagues, a minimum
confidence, event types), and receive the seed's RealtimeEvents. ``/realtime/ws/predictions``
and ``/realtime/ws/matches`` subscribe on connect from their query. The token is optional;
its ``tier`` (free without one) decides which event types the connection may receive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors import ChildSpec
from rt.dialects.base import Dialect, Session, SessionContext
from rt.dialects.predictions.codec import CODEC, encode_error
from rt.dialects.predictions.demo import DemoEvents
from rt.dialects.predictions.interest import (
    Filters,
    Interests,
    InvalidFilter,
    Subscription,
    parse_query_filters,
)
from rt.dialects.predictions.publisher import EventPublisher
from rt.dialects.predictions.session import PredictionsSession

if TYPE_CHECKING:
    from fastapi import APIRouter

    from rt.server import Server

PATH = "/realtime/ws"
#: The dedicated endpoints, and the subscription each makes on connect.
SUBSCRIBING_PATHS = {"/realtime/ws/predictions": "predictions", "/realtime/ws/matches": "matches"}


def _on_connect(ctx: SessionContext) -> Subscription | InvalidFilter | None:
    kind = SUBSCRIBING_PATHS.get(ctx.path)
    if kind is None:
        return None
    try:
        return Subscription(kind, parse_query_filters(ctx.query))
    except InvalidFilter as exc:
        return exc


def new_session(ctx: SessionContext) -> Session:
    server = ctx.server
    settings = ctx.settings
    if server is None:  # a session tested alone
        interests = Interests(lambda tier: [0, 0, 0, 0])

        def server_stats() -> dict[str, object]:
            return {}
    else:
        from rt.http.ops import realtime_stats

        interests = EventPublisher.for_server(server).interests

        def server_stats() -> dict[str, object]:
            return realtime_stats(server)

    claims = ctx.claims
    return PredictionsSession(
        connection_id=ctx.connection_id,
        user_id=str(claims.user_id) if ctx.authenticated else ctx.query.get("user_id"),
        session_id=ctx.query.get("session_id"),
        tier=claims.tier if ctx.authenticated else "free",
        authenticated=ctx.authenticated,
        interests=interests,
        max_topics=settings.max_markets_per_connection,
        wall_ms=settings.wall_ms,
        server_stats=server_stats,
        heartbeat_interval_s=settings.ping_interval_s,
        on_connect=_on_connect(ctx),
    )


def routes(server: Server) -> APIRouter:
    from rt.dialects.predictions.routes import routes  # it imports the HTTP layer

    return routes(server)


def children(server: Server) -> list[ChildSpec]:
    settings = server.settings
    if not settings.demo_feed:
        return []
    return [
        ChildSpec(
            "demo-events",
            lambda: DemoEvents(
                EventPublisher.for_server(server),
                seed=settings.demo_seed,
                interval_s=settings.demo_interval_s,
                wall_ms=settings.wall_ms,
            ),
        )
    ]


DIALECT = Dialect(
    "predictions",
    PATH,
    CODEC,
    new_session,
    encode_error,
    extra_paths=tuple(SUBSCRIBING_PATHS),
    auth="optional",
    routes=routes,
    children=children,
)

__all__ = ["DIALECT", "Filters"]
