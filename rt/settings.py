"""Every setting of the server in one place, each with its unit in its name.

The command line fills this from flags and RT_* environment variables (see rt/cli.py);
tests build it directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


def wall_ms() -> int:
    """Wall-clock milliseconds: the only source of timestamps written into messages."""
    return int(time.time() * 1000)


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    #: The public port: HTTP and WebSocket (0: any free port).
    port: int = 8080
    #: A second port for operators (/debug, /metrics, admin routes); None: off, 0: any free.
    admin_port: int | None = None
    #: With an admin port, whether the public port still serves the operator routes.
    admin_routes_on_public_port: bool = True
    #: A port whose ``/ws`` speaks the trading dialect (seed 003's clients connect to
    #: ws://host:8081/ws); None: off, 0: any free. ``rt serve`` opens 8081 unless told.
    trading_port: int | None = None
    #: Listen with SO_REUSEPORT, so that several processes share the ports (``--workers``).
    reuse_port: bool = False
    engine_url: str = "memory"
    demo_feed: bool = True
    dev: bool = False
    jwt_secret: str = ""
    admin_token: str = ""

    # tokens
    jwt_leeway_s: float = 5.0
    token_default_ttl_s: int = 600
    token_max_ttl_s: int = 86_400

    # the WebSocket upgrade (rt/ws/handshake.py)
    handshake_timeout_s: float = 10.0
    #: Origins (scheme://host[:port]) whose pages may open a WebSocket, besides the server's
    #: own; "*" allows any. A handshake without Origin (not a browser) is always allowed.
    allowed_origins: tuple[str, ...] = ()
    #: Dialects whose WebSockets need ``?token=`` although they take anonymous clients by
    #: default (``topics``): RT_REQUIRE_TOKEN=topics, ``rt serve --require-token topics``.
    require_token: tuple[str, ...] = ()
    max_connections_per_ip: int = 100
    max_connections: int = 10_000

    # admin authentication and REST bodies
    admin_auth_max_failures: int = 10
    admin_auth_window_s: float = 60.0
    max_http_body_bytes: int = 64 * 1024

    #: Serve /ws/echo (rt/ws/echo.py), the echo the conformance tests drive. Tests only.
    echo_endpoint: bool = False

    # connections
    ping_interval_s: float = 15.0
    idle_timeout_s: float = 60.0
    write_deadline_s: float = 10.0
    max_message_bytes: int = 64 * 1024
    max_fragments_per_message: int = 128
    #: Subscriptions per connection, in every dialect (the user's own stream not counted).
    max_markets_per_connection: int = 128
    max_connections_per_user: int = 5
    connection_start_timeout_s: float = 10.0
    outbox_capacity: int = 1024
    outbox_high_water: int = 768
    control_capacity: int = 256

    # what one connection may send (rt/ws/limits.py, docs/reliability.md); 4429 beyond
    inbound_rate_per_s: float = 50.0
    inbound_burst_messages: int = 100
    max_invalid_messages: int = 10
    invalid_window_s: float = 60.0
    #: Topics a connection may open per minute that have no room and no data yet (each would
    #: start a room: a client inventing names must not grow the server without bound). As
    #: many as its subscriptions, so a client can always subscribe its whole allowance at once.
    max_new_topics_per_minute: int = 128

    # the trading dialect (seed 003): its own heartbeat, and the time to send ``auth``
    trading_ping_interval_s: float = 5.0
    trading_idle_timeout_s: float = 10.0
    trading_auth_timeout_s: float = 10.0
    #: The instruments listed: ID:tick:multiplier:margin_rate:reference_price entries (see
    #: rt/dialects/trading/instruments.py); empty: IX2301 and IF2301.
    trading_instruments: tuple[str, ...] = ()
    #: Whether this process runs the paper exchange: "on", "off", or "auto" (on with the
    #: memory engine; off with a shared one, where one process in the deployment must run it
    #: alone: its books and accounts are in its memory).
    trading_exchange: str = "auto"
    #: A book publishes its market data at most this often: at once after a quiet spell,
    #: and under load one change (and one ticker) for all the orders of an interval.
    trading_publish_interval_s: float = 0.05

    # tickets
    mts_latency_s: float = 0.2
    mts_max_stake: float = 10_000.0

    # topics
    history_size: int = 1000
    room_idle_s: float = 30.0

    # the Redis engine (engine_url redis://...)
    redis_key_prefix: str = "rt:"
    redis_timeout_s: float = 5.0

    # upstream feeds
    feed_urls: tuple[str, ...] = ()
    feed_grace_s: float = 5.0

    # the demo feeds
    demo_markets: tuple[str, ...] = ("1001", "1002", "1003", "1004", "1005")
    demo_interval_s: float = 0.5
    demo_seed: int | None = None

    wall_ms: Callable[[], int] = field(default=wall_ms, repr=False)
