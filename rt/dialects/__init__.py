"""The dialects a server speaks: one entry each in ``DIALECTS``.

A dialect is a codec, a session factory, an error form, the WebSocket paths it answers and,
optionally, REST routes and actors of its own. Connections, rooms, outboxes and the publish
path are the same for all. A new dialect lives in its own package ``rt/dialects/<name>/``
(its sans-IO codec and session, its paths, its routes, its actors) and is registered by one
entry in ``DIALECTS`` below; it touches no core module.

The limits on what a client sends are the same for every dialect (rt/ws/connection.py). What
that shared layer needs from a dialect: its session parses with ``parse_message``
(rt/jsontext.py's limits), never raises for bad input, and marks each error reply
``Send(text, error=True)`` (the invalid-message budget counts those);
``Session.forget(topic)`` drops a subscription the connection refused; ``Codec.encode_error``
writes the connection's own refusals in the dialect's form. And one line in
tests/rt/dialects/test_fuzz.py (VOCABULARY) fuzzes it.

Paths are exact (``/ws/odds``) or patterns with ``{name}`` segments
(``/api/v1/ws/{client_id}``); ``match`` picks the dialect and the segments' values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from rt.dialects import kmarket, predictions, topics, trading, uof
from rt.dialects.base import Dialect, SessionContext, anonymous_claims

__all__ = [
    "BY_PATH",
    "DIALECTS",
    "Dialect",
    "SessionContext",
    "anonymous_claims",
    "by_name",
    "match",
]

#: Every dialect the server speaks. Registering a dialect is one entry here.
DIALECTS: tuple[Dialect, ...] = (
    kmarket.DIALECT,
    uof.DIALECT,
    topics.DIALECT,
    predictions.DIALECT,
    trading.DIALECT,
)


def _compile(path: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", path)
    pattern = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    return re.compile(pattern)


_EXACT: dict[str, Dialect] = {}
_PATTERNS: list[tuple[re.Pattern[str], Dialect]] = []
for _dialect in DIALECTS:
    for _path in _dialect.paths:
        if "{" in _path:
            _PATTERNS.append((_compile(_path), _dialect))
        elif _EXACT.setdefault(_path, _dialect) is not _dialect:
            raise ValueError(f"two dialects claim the WebSocket path {_path}")

#: The dialects by exact path.
BY_PATH: Mapping[str, Dialect] = _EXACT


def by_name(name: str) -> Dialect:
    return next(d for d in DIALECTS if d.name == name)


def match(path: str) -> tuple[Dialect, dict[str, str]] | None:
    """The dialect that answers ``path`` (without its query), and its ``{name}`` values."""
    dialect = _EXACT.get(path)
    if dialect is not None:
        return dialect, {}
    for pattern, dialect in _PATTERNS:
        found = pattern.fullmatch(path)
        if found is not None:
            return dialect, found.groupdict()
    return None
