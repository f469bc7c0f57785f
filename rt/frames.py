"""WebSocket frames of the server's messages, built once and written to many sockets.

A server-to-client frame is not masked (RFC 6455 section 5.1), so the bytes of one message are
the same for every client that speaks its dialect: a room frames each update once and the
connections write those very bytes (see rt/wire.py). Sans-IO.
"""

from __future__ import annotations

import struct

__all__ = ["frame_text"]

_FIN_TEXT = 0x81  # FIN set, opcode 1 (text); no extension bits: never compressed


def frame_text(text: str) -> bytes:
    """One unfragmented, unmasked text frame carrying ``text``."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes((_FIN_TEXT, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return header + payload
