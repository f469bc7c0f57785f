"""Assembling a server: the actor tree, the shared objects, start and stop.

    root (one_for_one)
    ├── engine      the engine's actor: owns it, shows it in the tree, closes it last
    ├── rooms       supervisor: one MarketRoom per topic with subscribers (transient)
    ├── users       supervisor: one UserRoom per user stream with subscribers (transient)
    ├── desks       supervisor: the ticket desk
    ├── dialects    supervisor: each dialect's own actors, under dialects/<name>
    ├── conns       supervisor: one Connection per WebSocket (temporary)
    ├── feeds       supervisor: upstream feeds (--feed), and with --demo-feed the KMarket
    │               demo feed and the UOF simulator with its feed (permanent)
    ├── public      the public port: HTTP (Hypercorn) and WebSocket (trio-websocket)
    └── admin       the operators' port (only with --admin-port)

Children start in this order and stop in reverse: the listeners stop first, so nothing new
arrives while the rest winds down; the engine closes last.
"""

from __future__ import annotations

import gc
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, ClassVar

import trio

from actors import Actor, ActorSystem, ChildSpec, Strategy, Supervisor, open_system
from rt.auth import MIN_SECRET_BYTES
from rt.delivery.hub import Hub, RoomKeeper
from rt.dialects import DIALECTS
from rt.dialects.uof.desk import DESK_PATH, DeskClient, SimulatedMts, TicketDesk
from rt.engine import Engine, MemoryEngine, open_engine
from rt.feeds import demo_feed_specs, feed_specs
from rt.feeds.demo import DemoFeed
from rt.http.admin import AdminGate
from rt.settings import Settings
from rt.ws.handshake import OpenSockets
from rt.ws.listener import Listener
from rt.ws.stats import ConnectionStats


class EngineActor(Actor):
    kind: ClassVar[str] = "engine"

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "topics": len(self.engine.topics())}

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
        #: The ports listened on, once known: "public", and "admin" when configured.
        self.ports: dict[str, int] = {"public": settings.port}
        if settings.admin_port is not None:
            self.ports["admin"] = settings.admin_port
        #: Open WebSockets per address and in all, against their caps (rt/ws/handshake.py).
        self.open_sockets = OpenSockets(
            per_ip=settings.max_connections_per_ip, total=settings.max_connections
        )
        self.admin_gate = AdminGate(
            settings.admin_token,
            max_failures=settings.admin_auth_max_failures,
            window_s=settings.admin_auth_window_s,
        )

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
        return line


def make_engine(settings: Settings) -> Engine:
    if settings.engine_url in ("memory", "memory://"):
        return MemoryEngine(history_size=settings.history_size, wall_ms=settings.wall_ms)
    return open_engine(settings.engine_url)


def dev_settings(settings: Settings) -> tuple[Settings, list[str]]:
    """Fill in missing secrets in dev mode; returns the settings and what was generated."""
    from dataclasses import replace

    generated = []
    if settings.dev and not settings.jwt_secret:
        settings = replace(settings, jwt_secret=secrets.token_urlsafe(32))
        generated.append(f"RT_JWT_SECRET={settings.jwt_secret}")
    if settings.dev and not settings.admin_token:
        settings = replace(settings, admin_token=secrets.token_urlsafe(32))
        generated.append(f"RT_ADMIN_TOKEN={settings.admin_token}")
    if not settings.jwt_secret:
        raise ValueError(
            "RT_JWT_SECRET is not set: set it (or pass --dev to generate one for this run)"
        )
    if len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"RT_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long")
    check_admin_token(settings)
    return settings, generated


#: The shortest admin token a server starts with: as hard to guess as a 256-bit key.
MIN_ADMIN_TOKEN_BYTES = 32


def check_admin_token(settings: Settings) -> None:
    """ValueError (one line, for ``rt serve`` to print) for an admin token too short to be
    safe. No token at all is allowed: then every admin route refuses."""
    size = len(settings.admin_token.encode())
    if 0 < size < MIN_ADMIN_TOKEN_BYTES:
        raise ValueError(
            f"RT_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_BYTES} bytes long, got {size} "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


@asynccontextmanager
async def open_server(settings: Settings) -> AsyncIterator[Server]:
    """Start every actor of a server; yield once both listeners are serving."""
    check_admin_token(settings)
    engine = make_engine(settings)
    async with open_system(shutdown_timeout_s=15.0) as system:
        server = Server(settings, system, engine)
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
        mts = SimulatedMts(latency_s=settings.mts_latency_s, max_stake=settings.mts_max_stake)
        desks, _, desk_name = DESK_PATH.partition("/")
        desk = ChildSpec(desk_name, lambda: TicketDesk(engine, hub.publish, mts))
        await system.spawn(ChildSpec(desks, lambda: Supervisor([desk])))
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
        await system.spawn(ChildSpec("public", lambda: Listener(server, "public")))
        if settings.admin_port is not None:
            await system.spawn(ChildSpec("admin", lambda: Listener(server, "admin")))
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


#: The cyclic garbage collector's thresholds for a serving process (CPython's are 700, 10,
#: 10). Each full collection walks every object of every connection: with thousands of
#: clients that is a pause of tens or hundreds of milliseconds, and the defaults run one
#: every time the heap grows by a quarter (as clients connect). These keep young
#: collections (where nearly all cyclic garbage dies) frequent and full ones rare.
GC_THRESHOLDS = (10_000, 20, 1_000)


def tune_gc() -> None:
    """Tune the garbage collector for serving; called once the server is up.

    What exists then (modules, the app, the actor tree) lives as long as the process:
    ``gc.freeze`` takes it out of every future collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve_until_signalled(settings: Settings, on_ready: Any = print) -> None:
    """Run a server until SIGINT or SIGTERM, then stop it gracefully."""
    import signal

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_server(settings) as server:
            tune_gc()
            on_ready(server.ready_line())
            async for _ in signals:
                break
