"""Checks at the WebSocket upgrade, before any token is looked at: who may open a socket.

Pure: each check takes the request's headers, the peer's address and the settings, and
returns a `Refusal` (what the listener answers instead of 101) or None. The listener calls
`screen` once per upgrade; the only state is `OpenSockets`, the counts of open WebSockets
per peer address and in all, owned by the server.

- ``Origin``: a browser names the page that opens the socket. A foreign page (or ``null``:
  a sandboxed frame, a file, a redirect) gets 403; so a page elsewhere cannot use a user's
  browser to reach rt. A client that sends no Origin (not a browser) is let through, and
  still has to authenticate. The server's own pages and ``Settings.allowed_origins`` are
  allowed; ``--dev`` allows any.
- ``Sec-WebSocket-Key`` must be the base64 of 16 bytes (RFC 6455 section 4.1): 400 otherwise.
- Open sockets: at most ``max_connections_per_ip`` per peer address (429) and
  ``max_connections`` in all (503 with ``Retry-After``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass

from rt.settings import Settings

__all__ = ["OpenSockets", "Refusal", "check_key", "check_origin", "screen"]

Headers = Iterable[tuple[bytes, bytes]]

#: Seconds a client refused for the global cap is told to wait (``Retry-After``).
RETRY_AFTER_S = 5


@dataclass(frozen=True, slots=True)
class Refusal:
    """An upgrade refused: the HTTP status, an error code and a message for the body."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def check_origin(headers: Headers, *, allowed: Iterable[str], any_origin: bool) -> Refusal | None:
    """403 for an Origin that is present and not allowed (``null`` never is, but with
    ``any_origin``). Origins compare as RFC 6454 serialises them: scheme://host[:port],
    case-insensitively. An Origin naming the Host the request was sent to is the server's
    own page (/websocket-test, however the browser reached the server) and is allowed."""
    origin = _header(headers, b"origin")
    if origin is None or any_origin:
        return None
    text = origin.decode("latin-1").strip().lower()
    if text != "null" and text in {o.strip().lower().rstrip("/") for o in allowed}:
        return None
    host = _header(headers, b"host")
    if host is not None and text.partition("://")[2] == host.decode("latin-1").strip().lower():
        return None  # a page of this very server (as the browser reached it): same origin
    shown = text if len(text) <= 100 else text[:100] + "..."
    return Refusal(403, "FORBIDDEN_ORIGIN", f"origin {shown!r} may not open a WebSocket here")


def check_key(headers: Headers) -> Refusal | None:
    """400 unless Sec-WebSocket-Key is the base64 encoding of 16 bytes."""
    key = _header(headers, b"sec-websocket-key")
    try:
        ok = key is not None and len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        ok = False
    if ok:
        return None
    return Refusal(400, "BAD_HANDSHAKE", "Sec-WebSocket-Key must be the base64 of 16 bytes")


class OpenSockets:
    """Open WebSockets per peer address and in all, against the settings' caps.

    ``admit`` counts a socket in when it passes both caps; ``release`` counts it out when it
    ends. Addresses with no open socket are forgotten, so the table holds only live peers.
    """

    def __init__(self, *, per_ip: int, total: int) -> None:
        self.per_ip = per_ip
        self.total = total
        self.open = 0
        self._by_ip: dict[str, int] = {}

    def by_ip(self, ip: str) -> int:
        return self._by_ip.get(ip, 0)

    def admit(self, ip: str) -> Refusal | None:
        if self.open >= self.total:
            return Refusal(
                503,
                "SERVER_FULL",
                f"the server has {self.total} WebSockets open (its limit); retry later",
                ((b"retry-after", str(RETRY_AFTER_S).encode()),),
            )
        held = self._by_ip.get(ip, 0)
        if held >= self.per_ip:
            return Refusal(
                429,
                "TOO_MANY_CONNECTIONS",
                f"{ip} already has {self.per_ip} WebSockets open (the limit per address)",
            )
        self._by_ip[ip] = held + 1
        self.open += 1
        return None

    def release(self, ip: str) -> None:
        held = self._by_ip.get(ip, 0)
        if held <= 1:
            self._by_ip.pop(ip, None)
        else:
            self._by_ip[ip] = held - 1
        self.open -= 1


def screen(
    headers: Headers,
    *,
    settings: Settings,
    own_origins: Iterable[str],
) -> Refusal | None:
    """The header checks of one upgrade, cheapest first (the caps are `OpenSockets`')."""
    return check_key(headers) or check_origin(
        headers,
        allowed=(*settings.allowed_origins, *own_origins),
        any_origin=settings.dev or "*" in settings.allowed_origins,
    )
