"""Engines: where each topic's seq, state and history live. See `Engine` for the guarantees."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from rt.engine._base import Engine, Listener
from rt.engine.memory import MemoryEngine

__all__ = ["Engine", "Listener", "MemoryEngine", "open_engine"]


def open_engine(url: str) -> Engine:
    """Create the engine that ``url`` names.

    Accepted: ``memory``, ``memory://`` and ``memory://?history=N`` (N updates of history per
    topic, default 1000). Anything else raises ValueError saying what is wrong.
    """
    if url == "memory":
        return MemoryEngine()
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        raise ValueError(f"the Redis engine is not available yet (engine URL {url!r})")
    if parts.scheme != "memory":
        raise ValueError(f"unknown engine URL {url!r}: expected 'memory' or 'memory://'")
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
