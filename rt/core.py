"""The core of a server: its shared objects and every actor but the listeners.

    root (one_for_one)
    ├── engine      the engine's actor: owns it, shows it in the tree, closes it last
    ├── rooms       supervisor: one MarketRoom per topic with subscribers (transient)
    ├── users       supervisor: one UserRoom per user stream with subscribers (transient)
    ├── keeper      serves joins and retires idle rooms
    ├── dialects    supervisor: each dialect's own actors, under dialects/<name> (the UOF
    │               ticket desk, the topics dialect's candle makers)
    ├── conns       supervisor: one Connection per WebSocket (temporary)
    └── feeds       supervisor: upstream feeds (--feed), and with --demo-feed the KMarket
                    demo feed and the UOF simulator with its feed (permanent)

rt/server.py adds the listeners (``public``, and ``admin`` with --admin-port). Children start
in this order and stop in reverse; the engine closes last.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, ClassVar

from actors import Actor, ActorSystem, ChildSpec, Strategy, Supervisor, open_system
from rt.auth import TokenVerifier
from rt.delivery.hub import Hub, RoomKeeper
from rt.dialects import DIALECTS
from rt.dialects.uof.desk import DeskClient
from rt.engine import Engine, connect_engine
from rt.feeds import demo_feed_specs, feed_specs
from rt.feeds.demo import DemoFeed
from rt.http.admin import AdminGate
from rt.settings import Settings
from rt.ws.exclusive import ExclusiveKeys
from rt.ws.handshake import OpenSockets
from rt.ws.notices import engine_status_notifier
from rt.ws.stats import ConnectionStats


class EngineActor(Actor):
    kind: ClassVar[str] = "engine"

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url

    def describe(self) -> dict[str, Any]:
        statistics = getattr(self.engine, "statistics", None)
        extra = statistics() if statistics is not None else {}
        return {"url": self.url, "topics": len(self.engine.topics()), **extra}

    async def run(self) -> None:
        await self.stop_requested.wait()
        await self.engine.aclose()


class Server:
    """What the parts of one running server share."""

    def __init__(self, settings: Settings, system: ActorSystem, engine: Engine) -> None:
        self.settings = settings
        self.system = system
        self.engine = engine
        self.stats = ConnectionStats()
        self.hub = Hub(system, engine, settings, self.stats)
        self.desk = DeskClient(system)
        #: Keys one connection at a time may hold (rt/ws/exclusive.py).
        self.exclusive_keys = ExclusiveKeys()
        #: What a dialect keeps for the whole server, by dialect name (made when first used).
        self.dialect_state: dict[str, object] = {}
        #: The ports listened on, once known: "public", and "admin" when configured.
        self.ports: dict[str, int] = {"public": settings.port}
        if settings.admin_port is not None:
            self.ports["admin"] = settings.admin_port
        if settings.trading_port is not None:
            self.ports["trading"] = settings.trading_port
        #: Open WebSockets per address and in all, against their caps (rt/ws/handshake.py).
        self.open_sockets = OpenSockets(
            per_ip=settings.max_connections_per_ip, total=settings.max_connections
        )
        self._tokens: TokenVerifier | None = None
        #: Numbers the sockets' actors under ``conns`` (``c7``): one count for every
        #: listener, so two ports never name two connections alike.
        self.socket_numbers = itertools.count(1)
        self.admin_gate = AdminGate(
            settings.admin_token,
            max_failures=settings.admin_auth_max_failures,
            window_s=settings.admin_auth_window_s,
        )

    @property
    def tokens(self) -> TokenVerifier:
        """Verifies client tokens (the handshake's, and in-band ``auth``), remembering the
        ones it accepted."""
        if self._tokens is None:
            settings = self.settings
            self._tokens = TokenVerifier(settings.jwt_secret, leeway_s=settings.jwt_leeway_s)
        return self._tokens

    def listening(self, role: str, port: int) -> None:
        self.ports[role] = port

    def operator_routes_elsewhere(self) -> bool:
        """Whether the public port leaves /debug, /metrics and the admin routes to the
        admin port."""
        settings = self.settings
        return settings.admin_port is not None and not settings.admin_routes_on_public_port

    @property
    def port(self) -> int:
        return self.ports["public"]

    # One port serves both; the two names stay for what reads them.
    ws_port = http_port = port

    @property
    def admin_port(self) -> int | None:
        return self.ports.get("admin")

    def own_origins(self) -> tuple[str, ...]:
        """The origins of this server's own pages, allowed to open WebSockets."""
        host = self.settings.host
        return tuple(f"http://{host}:{port}" for port in self.ports.values())

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def admin_url(self) -> str | None:
        port = self.admin_port
        return None if port is None else f"http://{self.settings.host}:{port}"

    def ready_line(self) -> str:
        line = f"rt ready ws={self.ws_url} http={self.http_url}"
        if self.admin_url is not None:
            line += f" admin={self.admin_url}"
        if "trading" in self.ports:
            line += f" trading=ws://{self.settings.host}:{self.ports['trading']}/ws"
        return line


def open_engine_for(settings: Settings) -> AbstractAsyncContextManager[Engine]:
    """The engine that the settings name, opened (a Redis engine once Redis answers)."""
    return connect_engine(
        settings.engine_url,
        history_size=settings.history_size,
        wall_ms=settings.wall_ms,
        key_prefix=settings.redis_key_prefix,
        timeout_s=settings.redis_timeout_s,
    )


@asynccontextmanager
async def open_core(settings: Settings) -> AsyncIterator[Server]:
    """Start every actor of a server but its listeners: no port is bound, so tests run it
    on the virtual clock and hand it connections themselves."""
    async with open_engine_for(settings) as engine, open_system(shutdown_timeout_s=15.0) as system:
        server = Server(settings, system, engine)
        engine.add_status_listener(engine_status_notifier(system, settings.wall_ms))
        hub = server.hub
        await system.spawn(ChildSpec("engine", lambda: EngineActor(engine, settings.engine_url)))
        await system.spawn(
            ChildSpec(
                "rooms",
                lambda: Supervisor(max_restarts=100, period_s=10.0),
                shutdown_timeout_s=10.0,
            )
        )
        await system.spawn(
            ChildSpec(
                "users",
                lambda: Supervisor(max_restarts=100, period_s=10.0),
                shutdown_timeout_s=10.0,
            )
        )
        await system.spawn(ChildSpec("keeper", lambda: RoomKeeper(hub)))
        await spawn_dialect_actors(server)
        await system.spawn(
            ChildSpec(
                "conns",
                lambda: Supervisor(max_restarts=1_000_000, period_s=1.0),
                shutdown_timeout_s=10.0,
            )
        )
        feeds: list[ChildSpec] = []
        if settings.demo_feed:
            # Both dialects see live data: KMarket markets, and UOF events from the simulator.
            feeds.append(ChildSpec("demo", lambda: DemoFeed(hub, settings)))
            feeds += demo_feed_specs(
                hub,
                seed=settings.demo_seed,
                grace_s=settings.feed_grace_s,
                wall_ms=settings.wall_ms,
            )
        feeds += feed_specs(list(settings.feed_urls), hub, grace_s=settings.feed_grace_s)
        await system.spawn(
            ChildSpec(
                "feeds",
                lambda: Supervisor(
                    feeds, strategy=Strategy.ONE_FOR_ONE, max_restarts=10, period_s=30.0
                ),
            )
        )
        yield server


async def spawn_dialect_actors(server: Server) -> None:
    """The actors of the dialects that have some, under ``dialects/<name>``."""
    per_dialect = [
        ChildSpec(d.name, partial(Supervisor, d.children(server)))
        for d in DIALECTS
        if d.children is not None
    ]
    if per_dialect:
        await server.system.spawn(
            ChildSpec("dialects", lambda: Supervisor(per_dialect), shutdown_timeout_s=10.0)
        )
