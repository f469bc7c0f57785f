"""rt/ws/handshake.py: the upgrade's checks, as pure functions over headers."""

from __future__ import annotations

import pytest

from rt.settings import Settings
from rt.ws.handshake import OpenSockets, Refusal, check_key, check_origin, screen

KEY = (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")


def origin(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"Origin", value.encode())]


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("https://odds.example", True),
        ("HTTPS://Odds.Example", True),  # origins compare case-insensitively
        ("https://odds.example:443", False),  # another serialisation is another origin
        ("http://odds.example", False),
        ("https://odds.example.evil", False),
        ("null", False),
    ],
)
def test_origins(value: str, allowed: bool) -> None:
    refusal = check_origin(origin(value), allowed=["https://odds.example/"], any_origin=False)
    assert (refusal is None) is allowed
    if refusal is not None:
        assert (refusal.status, refusal.code) == (403, "FORBIDDEN_ORIGIN")


def test_no_origin_is_not_a_browser_and_is_let_through() -> None:
    assert check_origin([], allowed=[], any_origin=False) is None


def test_any_origin_in_dev_or_with_a_star() -> None:
    assert check_origin(origin("null"), allowed=[], any_origin=True) is None
    assert screen([KEY, *origin("null")], settings=Settings(dev=True), own_origins=()) is None
    settings = Settings(allowed_origins=("*",))
    assert screen([KEY, *origin("http://x")], settings=settings, own_origins=()) is None


@pytest.mark.parametrize(
    "key", [b"", b"abc", b"dGhlIHNhbXBsZSBub25jZQ", b"dGhlIHNhbXBsZSBub25jZSE=", b"!!!!"]
)
def test_a_key_must_be_16_bytes_of_base64(key: bytes) -> None:
    refusal = check_key([(b"Sec-WebSocket-Key", key)])
    assert refusal == Refusal(
        400, "BAD_HANDSHAKE", "Sec-WebSocket-Key must be the base64 of 16 bytes"
    )
    assert check_key([KEY]) is None


def test_open_sockets_per_address_and_in_all() -> None:
    sockets = OpenSockets(per_ip=2, total=3)
    assert sockets.admit("a") is None
    assert sockets.admit("a") is None
    refused = sockets.admit("a")
    assert refused is not None and (refused.status, refused.code) == (429, "TOO_MANY_CONNECTIONS")
    assert sockets.admit("b") is None
    full = sockets.admit("c")
    assert full is not None and full.status == 503
    assert full.headers == ((b"retry-after", b"5"),)
    sockets.release("a")
    assert sockets.admit("c") is None
    for ip in ("a", "b", "c"):
        sockets.release(ip)
    assert (sockets.open, sockets.by_ip("a"), sockets._by_ip) == (0, 0, {})
