"""The JSON text rt writes, and how error messages quote what a peer sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

#: Compact JSON as every dialect writes it: no spaces, UTF-8 kept, no NaN or Infinity.
dumps: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
).encode


def show(value: object, *, limit: int = 60) -> str:
    """A received value, short, for an error message: ``expected markets ..., got 5``."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
