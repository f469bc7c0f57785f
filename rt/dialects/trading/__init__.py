"""The trading dialect (seed 003) on ``/ws/trade`` (and ``/ws`` on ``--trading-port``), with
the paper exchange behind it: docs/protocol/trading.md.

A futures trading client authenticates in-band (``auth`` with a token from
``POST /api/ws/token``), subscribes to market data by channel (``trade``, ``orderbook``,
``ticker``) and instrument, places, cancels and queries orders, and receives its own
``order_status``, ``trade`` and ``account_update`` pushes on every connection it has open.
Behind it the exchange really trades: a book per instrument, accounts with margin, and (with
the demo feed) a market maker quoting around a random walk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import cache
from typing import TYPE_CHECKING

from actors import ChildSpec
from rt.auth import AuthError, Claims, TokenVerifier
from rt.dialects.base import Dialect, Session, SessionContext
from rt.dialects.trading.codec import CODEC, encode_error
from rt.dialects.trading.exchange import MarketMaker, exchange_spec
from rt.dialects.trading.instruments import (
    DEFAULT_INSTRUMENTS,
    Instrument,
    by_id,
    parse_instruments,
)
from rt.dialects.trading.session import TradingSession
from rt.settings import Settings

if TYPE_CHECKING:
    from rt.server import Server

PATH = "/ws/trade"


def instruments_of(settings: Settings) -> tuple[Instrument, ...]:
    """The instruments listed (RT_TRADING_INSTRUMENTS, else IX2301 and IF2301)."""
    return _listed(settings.trading_instruments)[0]


@cache
def _listed(spec: tuple[str, ...]) -> tuple[tuple[Instrument, ...], Mapping[str, Instrument]]:
    """The instruments of ``spec`` and the same by id, parsed once (not per connection)."""
    instruments = parse_instruments(",".join(spec)) if spec else DEFAULT_INSTRUMENTS
    return instruments, by_id(instruments)


def connection_settings(settings: Settings) -> Settings:
    """The seed's heartbeat: a ping every 5 s, closed after 10 s without a message."""
    return replace(
        settings,
        ping_interval_s=settings.trading_ping_interval_s,
        idle_timeout_s=settings.trading_idle_timeout_s,
    )


def _no_token_is_valid(token: str) -> Claims:
    raise AuthError("this server has no secret to verify tokens with")


def new_session(ctx: SessionContext) -> Session:
    settings = ctx.settings
    verify: Callable[[str], Claims]
    if ctx.server is not None:
        verify = ctx.server.tokens.verify
    elif settings.jwt_secret:  # a session tested alone
        verify = TokenVerifier(settings.jwt_secret, leeway_s=settings.jwt_leeway_s).verify
    else:
        verify = _no_token_is_valid
    return TradingSession(
        query_user_id=ctx.query.get("user_id"),
        verify=verify,
        instruments=_listed(settings.trading_instruments)[1],
        max_subscriptions=settings.max_markets_per_connection,
        auth_timeout_s=settings.trading_auth_timeout_s,
    )


def runs_exchange(settings: Settings) -> bool:
    """RT_TRADING_EXCHANGE: on, off, or auto (on unless the engine is shared)."""
    choice = settings.trading_exchange.strip().lower()
    if choice not in ("auto", "on", "off"):
        raise ValueError(f"RT_TRADING_EXCHANGE must be auto, on or off, got {choice!r}")
    if choice == "auto":
        return settings.engine_url == "memory"
    return choice == "on"


def children(server: Server) -> list[ChildSpec]:
    """The exchange (``dialects/trading/exchange``): a ledger, a book per instrument and,
    with the demo feed, a market maker. Not on a process told not to run it: its clients'
    orders are then answered 1010 (unavailable), and the market data is the exchange
    process's, through the shared engine."""
    settings = server.settings
    if not runs_exchange(settings):
        return []
    instruments = instruments_of(settings)
    maker = None
    if settings.demo_feed:

        def maker() -> MarketMaker:
            return MarketMaker(
                instruments, seed=settings.demo_seed, interval_s=settings.demo_interval_s
            )

    return [
        exchange_spec(
            instruments,
            server.engine,
            settings.wall_ms,
            publish_interval_s=settings.trading_publish_interval_s,
            make_market_maker=maker,
        )
    ]


DIALECT = Dialect(
    "trading",
    PATH,
    CODEC,
    new_session,
    encode_error,
    auth="none",
    children=children,
    settings=connection_settings,
)
