"""Engines: where each topic's seq, state and history live. See `Engine` for the guarantees."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlsplit

from rt.engine._base import (
    Engine,
    EngineUnavailable,
    GapListener,
    Listener,
    StatusListener,
    check_publish_item,
)
from rt.engine.memory import MemoryEngine
from rt.engine.redis_url import parse_redis_url

__all__ = [
    "Engine",
    "EngineUnavailable",
    "GapListener",
    "Listener",
    "MemoryEngine",
    "StatusListener",
    "check_engine_url",
    "check_publish_item",
    "connect_engine",
    "is_redis_url",
    "open_engine",
]


def is_redis_url(url: str) -> bool:
    return urlsplit(url).scheme in ("redis", "rediss")


def check_engine_url(url: str) -> None:
    """ValueError saying what is wrong with ``url``, without connecting to anything."""
    if is_redis_url(url):
        parse_redis_url(url)
    else:
        open_engine(url)


def open_engine(url: str) -> Engine:
    """Create the in-process engine that ``url`` names (the Redis engine needs a connection:
    see `connect_engine`).

    Accepted: ``memory``, ``memory://`` and ``memory://?history=N`` (N updates of history per
    topic, default 1000). Anything else raises ValueError saying what is wrong.
    """
    if url == "memory":
        return MemoryEngine()
    parts = urlsplit(url)
    if is_redis_url(url):
        raise ValueError(f"engine URL {parts.scheme}://...: the Redis engine needs connect_engine")
    if parts.scheme != "memory":
        raise ValueError(
            f"unknown engine URL {url!r}: expected 'memory', 'memory://' or redis://HOST:PORT/DB"
        )
    if parts.netloc or parts.path or parts.fragment:
        raise ValueError(f"engine URL {url!r}: a memory URL has no host or path, only ?history=N")
    options = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
    unknown = sorted(set(options) - {"history"})
    if unknown:
        raise ValueError(f"engine URL {url!r}: unknown option {unknown[0]!r}; known: history")
    if "history" not in options:
        return MemoryEngine()
    history = options["history"]
    if not history.isdigit() or int(history) < 1:
        raise ValueError(f"engine URL {url!r}: history must be a positive integer, got {history!r}")
    return MemoryEngine(history_size=int(history))


@asynccontextmanager
async def connect_engine(
    url: str,
    *,
    history_size: int,
    wall_ms: Callable[[], int],
    key_prefix: str = "rt:",
    timeout_s: float = 5.0,
) -> AsyncIterator[Engine]:
    """Open the engine that ``url`` names and close it on exit.

    ``memory`` (or ``memory://``) is a `MemoryEngine` with ``history_size``; ``redis://`` and
    ``rediss://`` URLs a Redis engine, yielded once Redis has answered (it retries until
    then, logging why). ValueError at once for a URL that cannot be right.
    """
    engine: Engine
    if is_redis_url(url):
        # Imported here: only the Redis engine's module imports coredis.
        from rt.engine.redis import open_redis_engine

        async with open_redis_engine(
            url,
            key_prefix=key_prefix,
            history_size=history_size,
            wall_ms=wall_ms,
            timeout_s=timeout_s,
        ) as engine:
            yield engine
        return
    if url in ("memory", "memory://"):
        engine = MemoryEngine(history_size=history_size, wall_ms=wall_ms)
    else:
        engine = open_engine(url)
    try:
        yield engine
    finally:
        await engine.aclose()
