"""WebSocket frames of the server's messages, built once and written to many sockets.

A server-to-client frame is not masked (RFC 6455 section 5.1), so the bytes of one message are
the same for every client that speaks its dialect: a room frames each update once and the
connections write those very bytes (see rt/ws/wire.py). Sans-IO.
"""

from __future__ import annotations

import struct

__all__ = ["frame_binary", "frame_close", "frame_text"]

_FIN_TEXT = 0x81  # FIN set, opcode 1 (text); no extension bits: never compressed
_FIN_BINARY = 0x82  # FIN set, opcode 2 (binary)
_FIN_CLOSE = 0x88  # FIN set, opcode 8 (close)


def frame_text(text: str) -> bytes:
    """One unfragmented, unmasked text frame carrying ``text``."""
    return _frame(_FIN_TEXT, text.encode())


def frame_binary(data: bytes) -> bytes:
    """One unfragmented, unmasked binary frame carrying ``data``."""
    return _frame(_FIN_BINARY, data)


def _frame(first: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = bytes((first, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header + payload


def frame_close(code: int, reason: str = "") -> bytes:
    """A close frame with ``code`` and ``reason`` (cut to fit a control frame's 125 bytes)."""
    # Cut on a character boundary: a close reason must stay valid UTF-8.
    cut = reason.encode()[:123].decode("utf-8", "ignore").encode()
    payload = struct.pack("!H", code) + cut
    return bytes((_FIN_CLOSE, len(payload))) + payload
