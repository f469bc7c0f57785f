"""How much of a server's time goes to CPython's cyclic garbage collector.

`install()` hooks gc.callbacks; `stats()` is merged into the control port's stats reply, so
a scenario can report the GC's share of the server's CPU in its window.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from typing import Any

_started = 0.0
_total_s = 0.0
_collections = [0, 0, 0]
_seconds = [0.0, 0.0, 0.0]


def _callback(phase: str, info: dict[str, Any]) -> None:
    global _started, _total_s
    if phase == "start":
        _started = time.thread_time()
    else:
        spent = time.thread_time() - _started
        _total_s += spent
        _collections[info["generation"]] += 1
        _seconds[info["generation"]] += spent


def install() -> None:
    if _callback not in gc.callbacks:
        gc.callbacks.append(_callback)


def stats() -> dict[str, Any]:
    return {
        "gc_s": round(_total_s, 4),
        "gc_collections": list(_collections),
        "gc_s_by_generation": [round(x, 4) for x in _seconds],
    }


def collect() -> dict[str, Any]:
    """gc.collect(), then what the collector tracks: the count, and the most common types."""
    collected = gc.collect()
    objects = gc.get_objects()
    types = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects)
    return {
        "ok": True,
        "collected": collected,
        "tracked_objects": len(objects),
        "types": dict(types.most_common(80)),
    }
