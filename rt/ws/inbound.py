"""The frames a client sends, checked from their headers before anything else reads them.

Sans-IO: `FrameGuard.feed(data)` takes the bytes received after the handshake, in any pieces,
and returns those that may go on to the WebSocket library (trio-websocket); at the first
violation it stops and records the RFC 6455 close code to fail the connection with. The
library never sees a byte of a frame the guard refused (a header is held back until it is
whole and checked, a control frame until all of it is), so what it holds stays bounded, and
the client always gets a close frame with the right code (rt/ws/inbound_stream.py hands the
bytes over; the socket's actor sends the close, rt/ws/socket_actor.py).

What is refused, and with which code:

- 1009 a data frame whose header declares more than the message may still hold
  (``max_message_bytes`` counted in payload bytes, UTF-8 for text, across the fragments of
  one message): refused on its header, before its payload arrives; and a message of more
  than ``max_fragments`` frames.
- 1003 a binary message where the dialect speaks JSON text (``binary=False``).
- 1007 text that is not UTF-8 (checked as it arrives, so a long message fails at its first
  bad byte), or a close frame whose reason is not.
- 1002 everything else RFC 6455 forbids: reserved bits (rt negotiates no extension), an
  unknown opcode, an unmasked client frame, a fragmented or oversized (> 125 bytes) control
  frame, a continuation with no message to continue, a new message before the last ended, a
  64-bit length with its top bit set, a close frame of one byte or with a code no endpoint
  may send.

After a valid close frame nothing more is checked: the library answers it and the socket ends.
"""

from __future__ import annotations

import codecs
import re
import struct
from dataclasses import dataclass

__all__ = ["FrameGuard", "GuardLimits", "HeadScanner", "Violation"]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_CONTROL = frozenset({CLOSE, PING, PONG})
_DATA = frozenset({CONTINUATION, TEXT, BINARY})

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_MESSAGE_TOO_BIG = 1009

#: Close codes a peer may send (RFC 6455 7.4, as wsproto accepts them), besides 3000-4999.
_PEER_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013})


@dataclass(frozen=True, slots=True)
class GuardLimits:
    max_message_bytes: int
    max_fragments: int
    #: Binary messages are accepted (else closed with 1003).
    binary: bool = False


@dataclass(frozen=True, slots=True)
class Violation:
    """Why the connection must fail: the close code and a short reason for the close frame."""

    code: int
    reason: str


class FrameGuard:
    def __init__(self, limits: GuardLimits) -> None:
        self.limits = limits
        self.violation: Violation | None = None
        self._header = bytearray()
        self._remaining = 0  # payload bytes of the current frame still to come
        self._in_payload = False
        self._opcode = 0
        self._fin = False
        self._mask = b""
        self._mask_pos = 0
        self._control = bytearray()  # a control frame's payload, unmasked
        self._held = bytearray()  # a control frame's bytes, until it is whole and valid
        self._message: int | None = None  # TEXT or BINARY while a message is open
        self._message_bytes = 0
        self._message_frames = 0
        self._utf8: codecs.IncrementalDecoder | None = None
        self._closed = False

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """Check ``data``; return the bytes that may be passed on now. A frame header is held
        back until it is whole and valid, a control frame until it is whole and valid, and
        nothing of a frame found bad is passed on (then ``violation`` says why)."""
        if self._closed:
            return bytes(data)
        if self.violation is not None:
            return b""
        view = memoryview(data)
        out = bytearray()
        at = 0
        end = len(view)
        while at < end:
            if not self._in_payload:
                at = self._read_header(view, at)
                if self.violation is not None:
                    return bytes(out)
                if not self._in_payload:
                    continue  # the header goes on in the next bytes
                if self._opcode in _CONTROL:
                    self._held += self._header
                else:
                    out += self._header
                self._header.clear()
            else:
                take = min(self._remaining, end - at)
                chunk = view[at : at + take]
                self._payload(chunk, last=take == self._remaining)
                if self.violation is not None:
                    return bytes(out)
                if self._opcode in _CONTROL:
                    self._held += chunk
                else:
                    out += chunk
                at += take
                self._remaining -= take
            if self._remaining == 0:
                self._end_frame()
                if self.violation is not None:
                    return bytes(out)
                out += self._held
                self._held.clear()
                if self._closed:
                    out += view[at:]
                    return bytes(out)
        return bytes(out)

    # -- headers ---------------------------------------------------------------------------

    def _read_header(self, view: memoryview, at: int) -> int:
        header = self._header
        needed = _header_size(header)
        while len(header) < needed and at < len(view):
            take = min(needed - len(header), len(view) - at)
            header += view[at : at + take]
            at += take
            needed = _header_size(header)
        if len(header) == needed:
            self._start_frame(bytes(header))
        return at

    def _start_frame(self, header: bytes) -> None:
        first, second = header[0], header[1]
        fin, opcode = bool(first & 0x80), first & 0x0F
        size = second & 0x7F
        masked = bool(second & 0x80)
        offset = 2
        if size == 126:
            (size,) = struct.unpack_from("!H", header, 2)
            offset = 4
        elif size == 127:
            (size,) = struct.unpack_from("!Q", header, 2)
            offset = 10
        if first & 0x70:
            return self._fail(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension agreed)")
        if opcode not in _DATA and opcode not in _CONTROL:
            return self._fail(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        if not masked:
            return self._fail(CLOSE_PROTOCOL_ERROR, "a client's frames must be masked")
        if size >> 63:
            return self._fail(CLOSE_PROTOCOL_ERROR, "frame length has its top bit set")
        if opcode in _CONTROL:
            if not fin:
                return self._fail(CLOSE_PROTOCOL_ERROR, "a control frame may not be fragmented")
            if size > 125:
                return self._fail(CLOSE_PROTOCOL_ERROR, "a control frame may carry 125 bytes")
        else:
            self._check_data_frame(opcode, size)
            if fin and size == 0 and self._utf8 is not None:
                self._check_text(b"", final=True)
            if self.violation is not None:
                return None
        self._opcode = opcode
        self._fin = fin
        self._mask = header[offset : offset + 4]
        self._mask_pos = 0
        self._remaining = size
        self._in_payload = True
        self._control.clear()
        return None

    def _check_data_frame(self, opcode: int, size: int) -> None:
        limits = self.limits
        if opcode == CONTINUATION:
            if self._message is None:
                return self._fail(CLOSE_PROTOCOL_ERROR, "a continuation with no message open")
        else:
            if self._message is not None:
                return self._fail(CLOSE_PROTOCOL_ERROR, "a new message before the last ended")
            if opcode == BINARY and not limits.binary:
                return self._fail(CLOSE_UNSUPPORTED_DATA, "binary messages are not accepted")
            self._message = opcode
            self._message_bytes = 0
            self._message_frames = 0
            self._utf8 = codecs.getincrementaldecoder("utf-8")() if opcode == TEXT else None
        self._message_frames += 1
        if self._message_frames > limits.max_fragments:
            return self._fail(
                CLOSE_MESSAGE_TOO_BIG, f"a message may have at most {limits.max_fragments} frames"
            )
        self._message_bytes += size
        if self._message_bytes > limits.max_message_bytes:
            return self._fail(
                CLOSE_MESSAGE_TOO_BIG,
                f"a message may have at most {limits.max_message_bytes} bytes",
            )
        return None

    # -- payloads --------------------------------------------------------------------------

    def _payload(self, chunk: memoryview, *, last: bool) -> None:
        if self._opcode in _CONTROL:
            self._control += self._unmask(chunk)
        elif self._utf8 is not None:
            # The message's last bytes are checked as its end too (no sequence left open),
            # before they are passed on.
            self._check_text(self._unmask(chunk), final=last and self._fin)
        # Binary payloads are not looked at: only their size matters, known from the header.

    def _check_text(self, data: bytes, *, final: bool) -> None:
        assert self._utf8 is not None
        try:
            self._utf8.decode(data, final=final)
        except UnicodeDecodeError:
            self._fail(CLOSE_INVALID_PAYLOAD, "text is not valid UTF-8")

    def _unmask(self, chunk: memoryview) -> bytes:
        size = len(chunk)
        mask = self._mask[self._mask_pos :] + self._mask[: self._mask_pos]
        self._mask_pos = (self._mask_pos + size) % 4
        key = (mask * (size // 4 + 1))[:size]
        value = int.from_bytes(chunk, "little") ^ int.from_bytes(key, "little")
        return value.to_bytes(size, "little")

    def _end_frame(self) -> None:
        self._in_payload = False
        opcode = self._opcode
        if opcode == CLOSE:
            self._check_close(bytes(self._control))
            if self.violation is None:
                self._closed = True
            return
        if opcode in _CONTROL or not self._fin:
            return
        self._message = None
        self._utf8 = None
        return None

    def _check_close(self, payload: bytes) -> None:
        if not payload:
            return None
        if len(payload) == 1:
            return self._fail(CLOSE_PROTOCOL_ERROR, "a close frame of one byte")
        (code,) = struct.unpack_from("!H", payload)
        if code not in _PEER_CLOSE_CODES and not 3000 <= code <= 4999:
            return self._fail(CLOSE_PROTOCOL_ERROR, f"close code {code} may not be sent")
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            return self._fail(CLOSE_INVALID_PAYLOAD, "the close reason is not valid UTF-8")
        return None

    def _fail(self, code: int, reason: str) -> None:
        if self.violation is None:
            self.violation = Violation(code, reason)


def _header_size(header: bytearray) -> int:
    """How long the frame header that starts with ``header`` is (2 until its second byte)."""
    if len(header) < 2:
        return 2
    size = header[1] & 0x7F
    extra = 2 if size == 126 else 8 if size == 127 else 0
    return 2 + extra + (4 if header[1] & 0x80 else 0)


#: Where a request head ends, as h11 (trio-websocket's HTTP parser) finds it: a blank line,
#: with or without carriage returns.
_BLANK_LINE = re.compile(rb"\n\r?\n")


class HeadScanner:
    """Finds where the HTTP request head ends (the first blank line) in bytes received in any
    pieces, and keeps its request target: the frames start right after."""

    def __init__(self, max_bytes: int = 64 * 1024) -> None:
        self._seen = bytearray()
        self._max_bytes = max_bytes
        self.target = ""

    def feed(self, data: bytes | bytearray) -> int | None:
        """The offset in ``data`` just past the head's end, or None if it has not ended yet
        (or is longer than anything the library would take: then never)."""
        before = len(self._seen)
        if before > self._max_bytes:
            return None
        self._seen += data
        blank = _BLANK_LINE.search(self._seen, max(0, before - 2))
        if blank is None:
            return None
        parts = bytes(self._seen[: self._seen.find(b"\n")]).split(b" ")
        self.target = parts[1].decode("latin-1") if len(parts) >= 2 else ""
        end = blank.end() - before
        self._seen = bytearray()
        return end
