"""A serving process: the core (rt/core.py) plus its listeners, start-up checks, the
garbage collector's tuning, and running until a signal.

    root
    ├── ...         the core's actors (rt/core.py)
    ├── public      the public port: HTTP (Hypercorn) and WebSocket (trio-websocket)
    ├── admin       the operators' port (only with --admin-port)
    └── trading     a public port whose /ws speaks the trading dialect (--trading-port)

The listeners start last and stop first, so nothing new arrives while the rest winds down.
"""

from __future__ import annotations

import gc
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from actors import ChildSpec
from rt.auth import MIN_SECRET_BYTES
from rt.core import Server, open_core, open_engine_for
from rt.settings import Settings
from rt.ws.listener import Listener

__all__ = ["Server", "dev_settings", "open_engine_for", "open_server", "serve_until_signalled"]


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
    """Start every actor of a server; yield once its listeners are serving."""
    check_admin_token(settings)
    async with open_core(settings) as server:
        system = server.system
        await system.spawn(ChildSpec("public", lambda: Listener(server, "public")))
        if settings.admin_port is not None:
            await system.spawn(ChildSpec("admin", lambda: Listener(server, "admin")))
        if settings.trading_port is not None:
            await system.spawn(ChildSpec("trading", lambda: Listener(server, "trading")))
        yield server


#: The cyclic garbage collector's thresholds for a serving process (CPython's are 700, 10,
#: 10). Each full collection walks every object of every connection: with thousands of
#: clients that is a pause of tens or hundreds of milliseconds, and the defaults run one
#: every time the heap grows by a quarter (as clients connect). These keep young
#: collections (where nearly all cyclic garbage dies) frequent and full ones rare. The
#: middle one is low on purpose: a middle-generation collection walks everything that
#: survived the young collections since the last one, and after a burst of connects that
#: is every new connection's objects; at 20 (as it was) one such walk paused S2 for 56 ms,
#: at 2 they are walked in slices of a few milliseconds, for the same total work.
GC_THRESHOLDS = (10_000, 2, 1_000)


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
