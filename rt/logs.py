"""Logging setup for ``rt serve``: human lines, or one JSON object per line (``--log-json``).

Every record is stamped with the path of the actor it came from (``actors.current_actor_path``:
the runtime sets it in each actor's task, and the tasks an actor starts inherit it), so a
line from a connection's writer says ``conns/c12`` and one from a room ``rooms/market:1001``.

Tokens and secrets are never written: whatever a message or a traceback contains, JWTs,
``Bearer`` credentials, ``token=``/``secret=``/``password=`` values and the query string of
any path or URL (``/ws/odds?[redacted]``: clients put tokens there) are replaced by
``[redacted]`` before the line is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

from actors import current_actor_path

__all__ = ["ActorFilter", "JsonFormatter", "configure_logging", "redact"]

_SECRETS = re.compile(
    # a query string, after a path (/ws/odds?token=...&userId=7): it may carry anything
    r"(?P<query>(?:\b[a-z]+://[^\s/?#\"']+)?/[^\s?#\"']*\?)[^\s\"'#]+"
    r"|(?P<jwt>eyJ[\w-]+\.[\w-]+\.[\w-]*)"  # a JWT: header.payload.signature
    r"|(?P<bearer>\bbearer\s+)[^\s\"',;}]+"  # Authorization: Bearer <credential>
    # token=..., RT_JWT_SECRET=..., "admin_token": "...", password: ...
    r"|(?P<key>\b[\w-]*(?:token|secret|password)[\"']?\s*[=:]\s*[\"']?)[^\s&\"',;}]+",
    re.IGNORECASE,
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(actor)s]: %(message)s"


def redact(text: str) -> str:
    """``text`` with every token-like value replaced by ``[redacted]``."""
    return _SECRETS.sub(_redacted, text)


def _redacted(match: re.Match[str]) -> str:
    if match["jwt"]:
        return "[redacted]"
    return (match["query"] or match["bearer"] or match["key"]) + "[redacted]"


class ActorFilter(logging.Filter):
    """Sets ``record.actor`` to the path of the actor that logged (None outside actors)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "actor"):
            record.actor = current_actor_path()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, actor (and exc_info)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "actor": getattr(record, "actor", None),
        }
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc_info"] = redact(record.exc_text)
        if record.stack_info:
            line["stack_info"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "actor", None) is None:
            record.actor = "-"
        return redact(super().format(record))


def _iso(created: float) -> str:
    """``2024-03-09T16:18:33.123Z``: UTC, milliseconds."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def configure_logging(*, json_lines: bool, level: str, stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr): JSON lines or text, from ``level`` up.

    Replaces a handler an earlier call installed and leaves any other handler alone, so it
    can be called again (and tests can capture with their own handlers meanwhile).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_rt_handler", False):
            root.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler._rt_handler = True  # type: ignore[attr-defined]
    handler.addFilter(ActorFilter())
    handler.setFormatter(JsonFormatter() if json_lines else _TextFormatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
