"""The topics dialect (seed 004) on ``/api/v1/ws/{client_id}``: docs/protocol/topics.md.

Market-data clients subscribe to candles (``stock.AAPL.1m``) and region summaries
(``market.US.summary``), built by rt from the ticks producers publish. No token is needed
unless ``require_token`` names ``topics``; a ``client_id`` connected twice keeps the newer
connection.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from actors import ChildSpec, Supervisor
from rt.dialects.base import Dialect, Session, SessionContext
from rt.dialects.topics.aggregator import TickRouter
from rt.dialects.topics.codec import CODEC, encode_error
from rt.dialects.topics.demo import DemoTicks
from rt.dialects.topics.names import Topic
from rt.dialects.topics.routes import routes
from rt.dialects.topics.session import TopicsSession

if TYPE_CHECKING:
    from rt.server import Server

PATH = "/api/v1/ws/{client_id}"
#: What a client_id may be: 1-64 of these characters.
CLIENT_ID = re.compile(r"[A-Za-z0-9_.:@\-]{1,64}")


def check_path(params: Mapping[str, str]) -> str | None:
    if CLIENT_ID.fullmatch(params.get("client_id", "")):
        return None
    return "client_id must be 1-64 characters of A-Z a-z 0-9 _ . : @ -"


def new_session(ctx: SessionContext) -> Session:
    server = ctx.server

    def has_source(topic: Topic) -> bool:
        # A topic has a source once rt published something on it: the first tick of an
        # instrument makes its candles, of a region its summary.
        return server is not None and server.engine.position(topic.internal)[1] > 0

    settings = ctx.settings
    return TopicsSession(
        client_id=ctx.path_params["client_id"],
        has_source=has_source,
        max_topics=settings.max_markets_per_connection,
        messages_per_s=settings.inbound_rate_per_s,
        burst=settings.inbound_burst_messages,
        wall_ms=settings.wall_ms,
    )


def children(server: Server) -> list[ChildSpec]:
    settings = server.settings
    specs = [
        ChildSpec("makers", lambda: Supervisor(max_restarts=100, period_s=10.0)),
        ChildSpec("router", lambda: TickRouter(server.hub, settings.wall_ms)),
    ]
    if settings.demo_feed:
        specs.append(
            ChildSpec(
                "demo-ticks",
                lambda: DemoTicks(
                    server.hub,
                    seed=settings.demo_seed,
                    interval_s=settings.demo_interval_s,
                    wall_ms=settings.wall_ms,
                ),
            )
        )
    return specs


DIALECT = Dialect(
    "topics",
    PATH,
    CODEC,
    new_session,
    encode_error,
    auth="optional",
    routes=routes,
    children=children,
    check_path=check_path,
    exclusive_key=lambda ctx: ctx.path_params["client_id"],
)
